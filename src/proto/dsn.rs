//! The DSN extension's parameters (RFC 3461): `RET` and `ENVID` on MAIL, `NOTIFY` and
//! `ORCPT` on RCPT, with xtext (§4) and RFC 6533's `utf-8` address type. lmtpd sends no
//! DSNs itself (the MTA does, from the per-recipient replies); it keeps ORCPT's address for
//! the copy's `X-Original-To:` and for Sieve.

use super::reply::Reply;

/// `RET=` (RFC 3461 §4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ret {
    /// `RET=FULL`.
    Full,
    /// `RET=HDRS`.
    Hdrs,
}

/// `NOTIFY=` (RFC 3461 §4.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Notify {
    /// `NEVER`.
    pub never: bool,
    /// `SUCCESS`.
    pub success: bool,
    /// `FAILURE`.
    pub failure: bool,
    /// `DELAY`.
    pub delay: bool,
}

/// `ORCPT=` (RFC 3461 §4.2): the address type and the original recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Orcpt {
    /// The address type as given, lower-cased (`rfc822`, `utf-8`, ...).
    pub addr_type: String,
    /// The decoded address for `rfc822` and `utf-8`; `None` for other types (kept for
    /// the record, not used).
    pub address: Option<String>,
}

/// The longest ENVID (RFC 3461 §4.4: 100 characters).
const MAX_ENVID: usize = 100;
/// The longest ORCPT value (RFC 3461 §4.2: the address part at most 500 characters).
const MAX_ORCPT: usize = 500;

fn bad(text: &'static str) -> Reply {
    Reply::syntax_error(text)
}

/// Decodes xtext (RFC 3461 §4): printable ASCII `!`..`~` except `+` and `=`, and `+XX`
/// with two upper-case hex digits for any octet.
pub fn decode_xtext(v: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        let b = v[i];
        if b == b'+' {
            let hex = v.get(i + 1..i + 3)?;
            if !hex
                .iter()
                .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c))
            {
                return None;
            }
            let text = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(text, 16).ok()?);
            i += 3;
        } else if (b'!'..=b'~').contains(&b) && b != b'=' {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

/// `RET=FULL|HDRS`.
pub fn parse_ret(v: &[u8]) -> Result<Ret, Reply> {
    if v.eq_ignore_ascii_case(b"FULL") {
        Ok(Ret::Full)
    } else if v.eq_ignore_ascii_case(b"HDRS") {
        Ok(Ret::Hdrs)
    } else {
        Err(bad("Bad RET parameter (FULL or HDRS)"))
    }
}

/// `ENVID=xtext`, at most 100 characters.
pub fn parse_envid(v: &[u8]) -> Result<String, Reply> {
    if v.is_empty() || v.len() > MAX_ENVID {
        return Err(bad("Bad ENVID parameter"));
    }
    let decoded = decode_xtext(v).ok_or_else(|| bad("Bad ENVID parameter (xtext)"))?;
    if decoded.iter().any(|&b| !(32..=126).contains(&b)) {
        return Err(bad("Bad ENVID parameter"));
    }
    Ok(String::from_utf8_lossy(&decoded).into_owned())
}

/// `NOTIFY=NEVER` or a comma-separated list of `SUCCESS`, `FAILURE`, `DELAY` (each once).
pub fn parse_notify(v: &[u8]) -> Result<Notify, Reply> {
    let mut n = Notify::default();
    if v.eq_ignore_ascii_case(b"NEVER") {
        n.never = true;
        return Ok(n);
    }
    for word in v.split(|&b| b == b',') {
        let slot = if word.eq_ignore_ascii_case(b"SUCCESS") {
            &mut n.success
        } else if word.eq_ignore_ascii_case(b"FAILURE") {
            &mut n.failure
        } else if word.eq_ignore_ascii_case(b"DELAY") {
            &mut n.delay
        } else {
            return Err(bad(
                "Bad NOTIFY parameter (NEVER, or SUCCESS,FAILURE,DELAY)",
            ));
        };
        if std::mem::replace(slot, true) {
            return Err(bad("Bad NOTIFY parameter (a keyword twice)"));
        }
    }
    Ok(n)
}

/// `ORCPT=addr-type;xtext`. `rfc822` addresses must be ASCII; `utf-8` (RFC 6533 §3,
/// utf-8-addr-xtext: `\x{HEX}` for non-ASCII characters, xtext for the rest) is accepted
/// only when the transaction is SMTPUTF8. Other address types are kept without decoding.
pub fn parse_orcpt(v: &[u8], smtputf8: bool) -> Result<Orcpt, Reply> {
    if v.len() > MAX_ORCPT + 16 {
        return Err(bad("Bad ORCPT parameter (too long)"));
    }
    let semi = v
        .iter()
        .position(|&b| b == b';')
        .ok_or_else(|| bad("Bad ORCPT parameter (addr-type;address)"))?;
    let (ty, rest) = (&v[..semi], &v[semi + 1..]);
    let atom = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-';
    if ty.is_empty() || !ty.iter().all(atom) || rest.is_empty() {
        return Err(bad("Bad ORCPT parameter (addr-type;address)"));
    }
    let addr_type = String::from_utf8_lossy(ty).to_ascii_lowercase();
    let decoded = decode_xtext(rest).ok_or_else(|| bad("Bad ORCPT parameter (xtext)"))?;
    let address = match addr_type.as_str() {
        "rfc822" => {
            if decoded.iter().any(|&b| !(33..=126).contains(&b)) {
                return Err(bad("Bad ORCPT parameter (rfc822 address)"));
            }
            Some(String::from_utf8_lossy(&decoded).into_owned())
        }
        "utf-8" if smtputf8 => Some(
            unescape_utf8(&decoded).ok_or_else(|| bad("Bad ORCPT parameter (utf-8 address)"))?,
        ),
        "utf-8" => return Err(bad("ORCPT utf-8 addresses need SMTPUTF8")),
        _ => None,
    };
    Ok(Orcpt { addr_type, address })
}

/// RFC 6533 §3's `\x{HEX}` escapes (1 to 6 hex digits, a Unicode scalar value) in an
/// otherwise UTF-8 address; no controls or spaces.
fn unescape_utf8(v: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(v).ok()?;
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("\\x{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 3..];
        let end = after.find('}')?;
        let hex = &after[..end];
        if hex.is_empty() || hex.len() > 6 {
            return None;
        }
        out.push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    (!out.is_empty() && !out.chars().any(|c| c.is_control() || c.is_whitespace())).then_some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn rfc3461_4_xtext_decodes_plus_hex_and_refuses_the_rest() {
        assert_eq!(decode_xtext(b"a+2Bb").as_deref(), Some(&b"a+b"[..]));
        assert_eq!(decode_xtext(b"x+3Dy").as_deref(), Some(&b"x=y"[..]));
        assert!(decode_xtext(b"a+2b").is_none(), "lower-case hex");
        assert!(decode_xtext(b"a+2").is_none(), "short");
        assert!(decode_xtext(b"a=b").is_none(), "= must be encoded");
        assert!(decode_xtext(b"a b").is_none());
    }

    #[test]
    fn rfc3461_4_2_orcpt_rfc822_is_decoded() {
        let o = parse_orcpt(b"rfc822;alias+2Bx@example.org", false).unwrap();
        assert_eq!(o.addr_type, "rfc822");
        assert_eq!(o.address.as_deref(), Some("alias+x@example.org"));
        let o = parse_orcpt(b"RFC822;a@b", false).unwrap();
        assert_eq!(o.addr_type, "rfc822", "the type is case-insensitive");
        let other = parse_orcpt(b"x-foo;whatever", false).unwrap();
        assert_eq!(other.address, None, "unknown types are kept, not used");
        for bad in [
            &b"rfc822"[..],
            b";a@b",
            b"rfc822;",
            b"rf c;a",
            b"rfc822;a+2",
        ] {
            let e = parse_orcpt(bad, false).unwrap_err();
            assert_eq!(
                (e.code, e.enhanced.map(|x| x.to_string())),
                (501, Some("5.5.4".into()))
            );
        }
        assert!(parse_orcpt(&[b"rfc822;".as_slice(), &[b'a'; 600]].concat(), false).is_err());
    }

    #[test]
    fn rfc6533_3_utf8_orcpt_needs_smtputf8_and_unescapes() {
        let o = parse_orcpt(b"utf-8;j\\x{F6}rg@example.org", true).unwrap();
        assert_eq!(o.address.as_deref(), Some("jörg@example.org"));
        assert!(parse_orcpt(b"utf-8;a@b", false).is_err());
        assert!(parse_orcpt(b"utf-8;a\\x{110000}@b", true).is_err());
        assert!(parse_orcpt(b"utf-8;a\\x{}@b", true).is_err());
    }

    #[test]
    fn rfc3461_4_1_notify_is_never_or_a_list_each_once() {
        assert!(parse_notify(b"NEVER").unwrap().never);
        let n = parse_notify(b"success,Failure,DELAY").unwrap();
        assert!(n.success && n.failure && n.delay && !n.never);
        assert!(parse_notify(b"NEVER,SUCCESS").is_err());
        assert!(parse_notify(b"SUCCESS,SUCCESS").is_err());
        assert!(parse_notify(b"").is_err());
        assert!(parse_notify(b"SOMETIMES").is_err());
    }

    #[test]
    fn rfc3461_4_3_and_4_4_ret_and_envid() {
        assert_eq!(parse_ret(b"full").unwrap(), Ret::Full);
        assert_eq!(parse_ret(b"HDRS").unwrap(), Ret::Hdrs);
        assert!(parse_ret(b"BODY").is_err());
        assert_eq!(parse_envid(b"QQ314159+2B1").unwrap(), "QQ314159+1");
        assert!(parse_envid(&[b'a'; 101]).is_err());
        assert!(parse_envid(b"").is_err());
        assert!(parse_envid(b"+00").is_err(), "a control character");
    }
}
