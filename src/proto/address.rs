//! Envelope addresses: [`Mailbox`] and the RFC 5321 §4.1.2 reverse-/forward-path parser
//! (null sender, source routes, quoted local parts, address literals, SMTPUTF8 addresses).

use std::fmt;

/// Longest local part accepted, in octets as transmitted (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_PART: usize = 64;
/// Longest domain accepted, in octets (RFC 5321 §4.5.3.1.2).
pub const MAX_DOMAIN: usize = 255;
/// Longest path accepted, in octets including the angle brackets (RFC 5321 §4.5.3.1.3).
pub const MAX_PATH: usize = 256;

/// A mailbox from MAIL or RCPT. The local part is stored unquoted (`"john doe"` → `john doe`,
/// `"j\"x"` → `j"x`), case preserved; the domain is kept exactly as given (no case folding)
/// and is `None` only for the special recipient `<Postmaster>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox {
    /// The local part, unquoted.
    pub local: String,
    /// The domain or address literal (with brackets); `None` only for `<Postmaster>`.
    pub domain: Option<String>,
}

impl Mailbox {
    /// Whether the local part is `postmaster` (any case), with or without a domain. Since this
    /// server delivers only to local domains, `postmaster@<any domain>` is the postmaster too.
    pub fn is_postmaster(&self) -> bool {
        self.local.eq_ignore_ascii_case("postmaster")
    }

    /// Whether the whole address is ASCII (otherwise it needs SMTPUTF8).
    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.as_deref().is_none_or(str::is_ascii)
    }
}

impl fmt::Display for Mailbox {
    /// `local@domain`; the local part is re-quoted when it is not a dot-string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_dot_string(&self.local) {
            f.write_str(&self.local)?;
        } else {
            let mut q = String::with_capacity(self.local.len() + 2);
            q.push('"');
            for c in self.local.chars() {
                if c == '"' || c == '\\' {
                    q.push('\\');
                }
                q.push(c);
            }
            q.push('"');
            f.write_str(&q)?;
        }
        if let Some(d) = &self.domain {
            f.write_str("@")?;
            f.write_str(d)?;
        }
        Ok(())
    }
}

/// Why a path was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressError {
    /// Not a valid path (includes invalid UTF-8, control characters, empty quoted local part,
    /// missing domain).
    Syntax,
    /// Local part, domain or whole path longer than the RFC 5321 minimum maxima.
    TooLong,
}

/// Which kind of path is being parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// MAIL FROM: `<>` allowed, domain required.
    Reverse,
    /// RCPT TO: `<Postmaster>` allowed without domain, `<>` refused.
    Forward,
}

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b) || b >= 0x80
}

fn is_dot_string(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|atom| !atom.is_empty() && atom.bytes().all(is_atext))
        && !s.chars().any(char::is_control)
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8) -> Result<(), AddressError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(AddressError::Syntax)
        }
    }
    fn slice(&self, from: usize) -> &'a [u8] {
        self.b.get(from..self.pos).unwrap_or(&[])
    }

    /// Domain = sub-domain *("." sub-domain), or an address literal `[...]`.
    fn domain(&mut self) -> Result<&'a [u8], AddressError> {
        let start = self.pos;
        if self.eat(b'[') {
            let inner = self.pos;
            while let Some(c) = self.peek() {
                if (33..=90).contains(&c) || (94..=126).contains(&c) {
                    self.pos += 1;
                } else {
                    break;
                }
            }
            if self.pos == inner {
                return Err(AddressError::Syntax);
            }
            self.expect(b']')?;
            return Ok(self.slice(start));
        }
        loop {
            let label = self.pos;
            while let Some(c) = self.peek() {
                if c.is_ascii_alphanumeric() || c == b'-' || c >= 0x80 {
                    self.pos += 1;
                } else {
                    break;
                }
            }
            let l = self.slice(label);
            if l.is_empty() || l.first() == Some(&b'-') || l.last() == Some(&b'-') {
                return Err(AddressError::Syntax);
            }
            if !self.eat(b'.') {
                break;
            }
        }
        Ok(self.slice(start))
    }

    /// Local-part = Dot-string / Quoted-string; returns (unquoted bytes, was quoted).
    fn local_part(&mut self) -> Result<(Vec<u8>, bool), AddressError> {
        let mut out = Vec::new();
        if self.eat(b'"') {
            loop {
                match self.peek() {
                    Some(b'"') => {
                        self.pos += 1;
                        break;
                    }
                    Some(b'\\') => {
                        self.pos += 1;
                        match self.peek() {
                            Some(c) if (32..=126).contains(&c) => {
                                out.push(c);
                                self.pos += 1;
                            }
                            _ => return Err(AddressError::Syntax),
                        }
                    }
                    Some(c) if (32..=126).contains(&c) || c >= 0x80 => {
                        out.push(c);
                        self.pos += 1;
                    }
                    _ => return Err(AddressError::Syntax),
                }
            }
            if out.is_empty() {
                return Err(AddressError::Syntax);
            }
            return Ok((out, true));
        }
        loop {
            let atom = self.pos;
            while let Some(c) = self.peek() {
                if is_atext(c) {
                    self.pos += 1;
                } else {
                    break;
                }
            }
            if self.pos == atom {
                return Err(AddressError::Syntax);
            }
            if !self.eat(b'.') {
                break;
            }
        }
        out.extend_from_slice(self.b.get(0..self.pos).unwrap_or(&[]));
        Ok((out, false))
    }
}

fn to_text(bytes: Vec<u8>) -> Result<String, AddressError> {
    let s = String::from_utf8(bytes).map_err(|_| AddressError::Syntax)?;
    if s.chars().any(char::is_control) {
        return Err(AddressError::Syntax);
    }
    Ok(s)
}

/// Parses a path at the start of `input`, which must begin with `<`. Returns the mailbox
/// (`None` for the null reverse-path `<>`) and the bytes following the closing `>`.
/// A source route (`@a,@b:`) is accepted and dropped.
pub fn parse_path(input: &[u8], kind: PathKind) -> Result<(Option<Mailbox>, &[u8]), AddressError> {
    let mut c = Cursor { b: input, pos: 0 };
    c.expect(b'<')?;
    if c.eat(b'>') {
        return match kind {
            PathKind::Reverse => Ok((None, input.get(c.pos..).unwrap_or(&[]))),
            PathKind::Forward => Err(AddressError::Syntax),
        };
    }
    let mut routed = false;
    if c.peek() == Some(b'@') {
        routed = true;
        loop {
            c.expect(b'@')?;
            c.domain()?;
            if !c.eat(b',') {
                break;
            }
        }
        c.expect(b':')?;
    }
    let local_start = c.pos;
    // Parse the local part on a sub-cursor so the dot-string slice starts at the local part.
    let mut lc = Cursor {
        b: input.get(local_start..).unwrap_or(&[]),
        pos: 0,
    };
    let (local, quoted) = lc.local_part()?;
    c.pos = local_start + lc.pos;
    let local_raw_len = lc.pos;
    let domain = if c.eat(b'@') {
        let d = c.domain()?;
        if d.len() > MAX_DOMAIN {
            return Err(AddressError::TooLong);
        }
        Some(d.to_vec())
    } else {
        None
    };
    c.expect(b'>')?;
    if c.pos > MAX_PATH || local_raw_len > MAX_LOCAL_PART {
        return Err(AddressError::TooLong);
    }
    let rest = input.get(c.pos..).unwrap_or(&[]);
    let local = to_text(local)?;
    let domain = match domain {
        Some(d) => Some(to_text(d)?),
        None => {
            let postmaster = kind == PathKind::Forward
                && !quoted
                && !routed
                && local.eq_ignore_ascii_case("postmaster");
            if !postmaster {
                return Err(AddressError::Syntax);
            }
            None
        }
    };
    Ok((Some(Mailbox { local, domain }), rest))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fwd(s: &str) -> Result<Mailbox, AddressError> {
        match parse_path(s.as_bytes(), PathKind::Forward) {
            Ok((Some(m), b"")) => Ok(m),
            Ok(_) => Err(AddressError::Syntax),
            Err(e) => Err(e),
        }
    }

    fn mb(local: &str, domain: &str) -> Mailbox {
        Mailbox {
            local: local.into(),
            domain: Some(domain.into()),
        }
    }

    #[test]
    fn null_reverse_path_is_accepted_only_for_mail() {
        assert_eq!(parse_path(b"<>", PathKind::Reverse), Ok((None, &b""[..])));
        assert_eq!(fwd("<>"), Err(AddressError::Syntax));
    }

    #[test]
    fn plain_address_parses_and_rest_is_returned() {
        let (m, rest) = parse_path(b"<a.b@example.org> SIZE=1", PathKind::Reverse).unwrap();
        assert_eq!(m, Some(mb("a.b", "example.org")));
        assert_eq!(rest, b" SIZE=1");
    }

    #[test]
    fn source_route_is_stripped() {
        assert_eq!(
            fwd("<@a.example,@b.example:user@example.org>"),
            Ok(mb("user", "example.org"))
        );
        assert_eq!(
            fwd("<@a.example:user@example.org>"),
            Ok(mb("user", "example.org"))
        );
        assert_eq!(
            fwd("<@a.example user@example.org>"),
            Err(AddressError::Syntax)
        );
    }

    #[test]
    fn quoted_local_parts_are_unquoted() {
        assert_eq!(
            fwd("<\"john doe\"@example.org>"),
            Ok(mb("john doe", "example.org"))
        );
        assert_eq!(
            fwd("<\"j\\\"x\"@example.org>"),
            Ok(mb("j\"x", "example.org"))
        );
        assert_eq!(fwd("<\"Joe\\,Smith\"@x>"), Ok(mb("Joe,Smith", "x")));
        assert_eq!(fwd("<\"a>b\"@x>"), Ok(mb("a>b", "x")));
    }

    #[test]
    fn quoted_and_unquoted_forms_are_the_same_mailbox() {
        assert_eq!(fwd("<\"jdoe\"@x>"), fwd("<jdoe@x>"));
    }

    #[test]
    fn empty_quoted_local_part_is_syntax_error() {
        assert_eq!(fwd("<\"\"@x>"), Err(AddressError::Syntax));
    }

    #[test]
    fn postmaster_without_domain_only_for_rcpt() {
        let m = fwd("<Postmaster>").unwrap();
        assert_eq!(m.domain, None);
        assert!(m.is_postmaster());
        assert!(fwd("<pOsTmAsTeR>").unwrap().is_postmaster());
        assert!(fwd("<POSTMASTER@example.org>").unwrap().is_postmaster());
        assert_eq!(fwd("<user>"), Err(AddressError::Syntax));
        assert_eq!(fwd("<\"Postmaster\">"), Err(AddressError::Syntax));
        assert!(parse_path(b"<Postmaster>", PathKind::Reverse).is_err());
    }

    #[test]
    fn address_literals_parse() {
        assert_eq!(fwd("<u@[192.0.2.1]>"), Ok(mb("u", "[192.0.2.1]")));
        assert_eq!(
            fwd("<u@[IPv6:2001:db8::1]>"),
            Ok(mb("u", "[IPv6:2001:db8::1]"))
        );
        assert_eq!(fwd("<u@[]>"), Err(AddressError::Syntax));
    }

    #[test]
    fn domain_case_is_kept() {
        assert_eq!(fwd("<User@Example.ORG>"), Ok(mb("User", "Example.ORG")));
    }

    #[test]
    fn malformed_paths_are_syntax_errors() {
        for s in [
            "",
            "<",
            "<a@b",
            "a@b",
            "<a@>",
            "<@b>",
            "<a..b@c>",
            "<.a@c>",
            "<a.@c>",
            "<a@b..c>",
            "<a@-b>",
            "<a@b->",
            "<a b@c>",
            "<a@b c>",
            "<\"a@b>",
            "<\"a\\\x01\"@b>",
            "<a\x01@b>",
            "<\"a\x7f\"@b>",
            "<a@b>>",
            "<@:a@b>",
            "<@a,a@b>",
        ] {
            assert!(fwd(s).is_err(), "{s:?} should fail");
        }
    }

    #[test]
    fn address_length_caps() {
        let l64 = "a".repeat(64);
        assert!(fwd(&format!("<{l64}@x>")).is_ok());
        assert_eq!(fwd(&format!("<a{l64}@x>")), Err(AddressError::TooLong));
        let d = format!("{}.org", "d".repeat(60));
        let long_domain = [d.as_str(); 5].join(".");
        assert!(long_domain.len() > 255);
        assert_eq!(
            fwd(&format!("<a@{long_domain}>")),
            Err(AddressError::TooLong)
        );
        // local 64 + domain 200: path over 256.
        let dom = [
            "d".repeat(39),
            "d".repeat(39),
            "d".repeat(39),
            "d".repeat(39),
            "d".repeat(39),
        ]
        .join(".");
        assert_eq!(fwd(&format!("<{l64}@{dom}>")), Err(AddressError::TooLong));
    }

    #[test]
    fn utf8_addresses_parse_and_invalid_utf8_is_refused() {
        let m = fwd("<usér@exämple.org>").unwrap();
        assert!(!m.is_ascii());
        assert_eq!(m.local, "usér");
        assert_eq!(
            parse_path(b"<us\xe9r@x>", PathKind::Forward),
            Err(AddressError::Syntax)
        );
        // U+0085 (a C1 control) is refused.
        assert_eq!(fwd("<a\u{85}b@x>"), Err(AddressError::Syntax));
    }

    #[test]
    fn display_requotes_non_dot_string_local_parts() {
        assert_eq!(mb("john doe", "x").to_string(), "\"john doe\"@x");
        assert_eq!(mb("j\"x", "x").to_string(), "\"j\\\"x\"@x");
        assert_eq!(mb("a.b", "x").to_string(), "a.b@x");
        assert_eq!(mb("a..b", "x").to_string(), "\"a..b\"@x");
        let pm = Mailbox {
            local: "Postmaster".into(),
            domain: None,
        };
        assert_eq!(pm.to_string(), "Postmaster");
    }
}
