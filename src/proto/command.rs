//! Command lines: the [`Verb`] and [`Command`] types and the parser for one CRLF-stripped
//! command line (LHLO, MAIL with SIZE/BODY/SMTPUTF8, RCPT, DATA, RSET, NOOP, VRFY, HELP, QUIT…).

use super::address::{parse_path, AddressError, Mailbox, PathKind};
use super::reply::Reply;
use super::session::MailFrom;

/// Longest command line accepted, including CRLF: 512 + 26 (SIZE) + 10 (SMTPUTF8) + 16 (BODY)
/// + 500 (RFC 3461 §5: ORCPT and NOTIFY on RCPT; ENVID and RET on MAIL take less).
pub const MAX_COMMAND_LINE: usize = 512 + 26 + 10 + 16 + 500;

/// A recognised command verb (case-insensitive on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// `LHLO`
    Lhlo,
    /// `HELO` (not LMTP: refused)
    Helo,
    /// `EHLO` (not LMTP: refused)
    Ehlo,
    /// `MAIL`
    Mail,
    /// `RCPT`
    Rcpt,
    /// `DATA`
    Data,
    /// `BDAT` (RFC 3030 CHUNKING)
    Bdat,
    /// `RSET`
    Rset,
    /// `NOOP`
    Noop,
    /// `VRFY`
    Vrfy,
    /// `EXPN` (recognised, not implemented)
    Expn,
    /// `HELP`
    Help,
    /// `QUIT`
    Quit,
    /// `STARTTLS` (RFC 3207)
    Starttls,
    /// `XFORWARD` (Postfix's XFORWARD_README)
    Xforward,
}

/// A fully parsed command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `LHLO <name>` with the client's name.
    Lhlo(String),
    /// `HELO ...`
    Helo,
    /// `EHLO ...`
    Ehlo,
    /// `MAIL FROM:<path> [params]`
    Mail(MailFrom),
    /// `RCPT TO:<path> [NOTIFY=...] [ORCPT=...]`
    Rcpt(Mailbox, RcptParams),
    /// `DATA`
    Data,
    /// `BDAT <size> [LAST]`
    Bdat {
        /// The chunk size in octets.
        size: u64,
        /// `LAST` was given.
        last: bool,
    },
    /// `RSET`
    Rset,
    /// `NOOP [ignored]`
    Noop,
    /// `VRFY <arg>`
    Vrfy,
    /// `EXPN ...`
    Expn,
    /// `HELP [ignored]`
    Help,
    /// `QUIT`
    Quit,
    /// `STARTTLS` (no arguments, RFC 3207 §4)
    Starttls,
    /// `XFORWARD attr=value ...`: the attributes given, names upper-cased, values decoded
    /// (`None` for `[UNAVAILABLE]`).
    Xforward(Vec<(XforwardAttr, Option<String>)>),
}

/// The XFORWARD attributes lmtpd accepts (Postfix's list).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XforwardAttr {
    /// `NAME`: the original client's host name.
    Name,
    /// `ADDR`: its address.
    Addr,
    /// `PORT`: its port.
    Port,
    /// `PROTO`: `SMTP` or `ESMTP`.
    Proto,
    /// `HELO`: its HELO/EHLO name.
    Helo,
    /// `IDENT`: the MTA's queue id of the message.
    Ident,
    /// `SOURCE`: `LOCAL` or `REMOTE`.
    Source,
}

impl XforwardAttr {
    /// Every attribute, in the order the LHLO reply lists them.
    pub const ALL: [XforwardAttr; 7] = [
        XforwardAttr::Name,
        XforwardAttr::Addr,
        XforwardAttr::Port,
        XforwardAttr::Proto,
        XforwardAttr::Helo,
        XforwardAttr::Ident,
        XforwardAttr::Source,
    ];

    /// The attribute's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            XforwardAttr::Name => "NAME",
            XforwardAttr::Addr => "ADDR",
            XforwardAttr::Port => "PORT",
            XforwardAttr::Proto => "PROTO",
            XforwardAttr::Helo => "HELO",
            XforwardAttr::Ident => "IDENT",
            XforwardAttr::Source => "SOURCE",
        }
    }
}

/// The longest XFORWARD value, decoded (XFORWARD_README: 255).
pub const MAX_XFORWARD_VALUE: usize = 255;

/// Parses XFORWARD's arguments: one or more `name=value`, names case-insensitive, values
/// xtext (`[UNAVAILABLE]` and `[TEMPUNAVAIL]` mean unknown); an unknown name, a value past
/// [`MAX_XFORWARD_VALUE`] or bad xtext is `501 5.5.4`.
fn parse_xforward(args: &[u8]) -> Result<Command, Reply> {
    let mut out = Vec::new();
    for p in args.split(|&b| b == b' ').filter(|p| !p.is_empty()) {
        let eq = p
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| Reply::syntax_error("Syntax: XFORWARD attribute=value ..."))?;
        let (name, value) = (&p[..eq], &p[eq + 1..]);
        let attr = XforwardAttr::ALL
            .iter()
            .copied()
            .find(|a| name.eq_ignore_ascii_case(a.name().as_bytes()))
            .ok_or_else(|| Reply::syntax_error("Bad XFORWARD attribute name"))?;
        let value = if value.eq_ignore_ascii_case(b"[UNAVAILABLE]")
            || value.eq_ignore_ascii_case(b"[TEMPUNAVAIL]")
        {
            None
        } else {
            let v = super::dsn::decode_xtext(value)
                .filter(|v| {
                    v.len() <= MAX_XFORWARD_VALUE && v.iter().all(|&b| (32..127).contains(&b))
                })
                .ok_or_else(|| Reply::syntax_error("Bad XFORWARD attribute value"))?;
            Some(String::from_utf8_lossy(&v).into_owned())
        };
        out.push((attr, value));
    }
    if out.is_empty() {
        return Err(Reply::syntax_error("Syntax: XFORWARD attribute=value ..."));
    }
    Ok(Command::Xforward(out))
}

/// The DSN parameters of a RCPT (RFC 3461 §4.1, §4.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RcptParams {
    /// `NOTIFY=`.
    pub notify: Option<super::dsn::Notify>,
    /// `ORCPT=`.
    pub orcpt: Option<super::dsn::Orcpt>,
}

/// Transaction-dependent facts the parser needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParseContext {
    /// Fixed maximum message size (0 = none), for MAIL's `SIZE=`.
    pub max_message_size: u64,
    /// Whether the open transaction's MAIL carried `SMTPUTF8` (allows non-ASCII RCPT addresses).
    pub smtputf8: bool,
}

/// Splits a command line (without CRLF, trailing whitespace already removed) into its verb and
/// argument bytes (after the single separating space). `None` if the verb is unknown.
pub fn split_verb(line: &[u8]) -> Option<(Verb, &[u8])> {
    let (word, args) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (
            line.get(..i).unwrap_or(&[]),
            line.get(i + 1..).unwrap_or(&[]),
        ),
        None => (line, &[][..]),
    };
    const VERBS: [(&[u8], Verb); 15] = [
        (b"LHLO", Verb::Lhlo),
        (b"HELO", Verb::Helo),
        (b"EHLO", Verb::Ehlo),
        (b"MAIL", Verb::Mail),
        (b"RCPT", Verb::Rcpt),
        (b"DATA", Verb::Data),
        (b"BDAT", Verb::Bdat),
        (b"RSET", Verb::Rset),
        (b"NOOP", Verb::Noop),
        (b"VRFY", Verb::Vrfy),
        (b"EXPN", Verb::Expn),
        (b"HELP", Verb::Help),
        (b"QUIT", Verb::Quit),
        (b"STARTTLS", Verb::Starttls),
        (b"XFORWARD", Verb::Xforward),
    ];
    VERBS
        .iter()
        .find(|(name, _)| word.eq_ignore_ascii_case(name))
        .map(|&(_, v)| (v, args))
}

/// Removes trailing spaces and tabs (tolerated before CRLF, RFC 5321 §4.1.1).
pub fn trim_trailing_ws(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line.get(end - 1), Some(b' ' | b'\t')) {
        end -= 1;
    }
    line.get(..end).unwrap_or(&[])
}

/// Parses one command line (CRLF removed). Errors are the reply to send.
pub fn parse(line: &[u8], ctx: &ParseContext) -> Result<Command, Reply> {
    if line.iter().any(|&b| b == b'\r' || b == b'\n') {
        return Err(Reply::bare_newline_in_command());
    }
    let line = trim_trailing_ws(line);
    let (verb, args) = split_verb(line).ok_or_else(Reply::unrecognised)?;
    match verb {
        Verb::Lhlo => parse_lhlo(args).map(Command::Lhlo),
        Verb::Helo => Ok(Command::Helo),
        Verb::Ehlo => Ok(Command::Ehlo),
        Verb::Mail => parse_mail(args, ctx).map(Command::Mail),
        Verb::Rcpt => parse_rcpt(args, ctx).map(|(m, p)| Command::Rcpt(m, p)),
        Verb::Data => no_args(args, Command::Data, "Syntax: DATA"),
        Verb::Bdat => match parse_bdat(args) {
            Ok((size, last)) => Ok(Command::Bdat { size, last }),
            Err(_) => Err(Reply::syntax_error(BDAT_SYNTAX)),
        },
        Verb::Rset => no_args(args, Command::Rset, "Syntax: RSET"),
        Verb::Quit => no_args(args, Command::Quit, "Syntax: QUIT"),
        Verb::Noop => Ok(Command::Noop),
        Verb::Help => Ok(Command::Help),
        Verb::Starttls => no_args(args, Command::Starttls, "Syntax: STARTTLS"),
        Verb::Xforward => parse_xforward(args),
        Verb::Expn => Ok(Command::Expn),
        Verb::Vrfy => {
            if args.iter().all(|&b| b == b' ') {
                Err(Reply::syntax_error("Syntax: VRFY address"))
            } else {
                Ok(Command::Vrfy)
            }
        }
    }
}

/// The text of the `501` for a malformed BDAT.
pub const BDAT_SYNTAX: &str = "Syntax: BDAT size [LAST]";

/// Why a BDAT command line is malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BdatError {
    /// The size is missing, not a number, or past `u64::MAX`: the chunk's end is unknown.
    Size,
    /// The size is readable but what follows it is not `LAST`: the chunk can still be
    /// skipped.
    Args(u64),
}

/// Parses BDAT's arguments: `chunk-size [SP "LAST"]`, chunk-size = 1*DIGIT (RFC 3030 §2),
/// `LAST` in any case, trailing whitespace already removed.
pub fn parse_bdat(args: &[u8]) -> Result<(u64, bool), BdatError> {
    let digits = args.iter().take_while(|b| b.is_ascii_digit()).count();
    let (num, rest) = args.split_at(digits);
    if num.is_empty() {
        return Err(BdatError::Size);
    }
    let mut size = 0u64;
    for &d in num {
        size = size
            .checked_mul(10)
            .and_then(|s| s.checked_add(u64::from(d - b'0')))
            .ok_or(BdatError::Size)?;
    }
    match rest {
        [] => Ok((size, false)),
        [b' ', word @ ..] if word.eq_ignore_ascii_case(b"LAST") => Ok((size, true)),
        // `BDAT 12x`: the digits are not a number of their own.
        [c, ..] if *c != b' ' => Err(BdatError::Size),
        _ => Err(BdatError::Args(size)),
    }
}

fn no_args(args: &[u8], c: Command, text: &'static str) -> Result<Command, Reply> {
    if args.is_empty() {
        Ok(c)
    } else {
        Err(Reply::syntax_error(text))
    }
}

/// LHLO argument: one token of letters, digits, `.-_:[]` or non-ASCII UTF-8 (domain or
/// address literal). Refusing other characters keeps it safe to put in a Received header.
fn parse_lhlo(args: &[u8]) -> Result<String, Reply> {
    let bad = || Reply::syntax_error("Syntax: LHLO hostname");
    let args = trim_leading_sp(args);
    if args.is_empty() {
        return Err(bad());
    }
    let s = std::str::from_utf8(args).map_err(|_| bad())?;
    let ok = s.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(c, '.' | '-' | '_' | ':' | '[' | ']')
            || (!c.is_ascii() && !c.is_control())
    });
    if ok {
        Ok(s.to_string())
    } else {
        Err(bad())
    }
}

fn trim_leading_sp(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|&&c| c == b' ').count();
    b.get(n..).unwrap_or(&[])
}

/// Strips a case-insensitive `FROM:`/`TO:` prefix; the path must follow with no space.
fn strip_prefix_ci<'a>(args: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = args.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        args.get(prefix.len()..)
    } else {
        None
    }
}

fn parse_mail(args: &[u8], ctx: &ParseContext) -> Result<MailFrom, Reply> {
    let path = strip_prefix_ci(args, b"FROM:")
        .filter(|p| p.first() == Some(&b'<'))
        .ok_or_else(|| Reply::syntax_error("Syntax: MAIL FROM:<address>"))?;
    let (sender, rest) = parse_path(path, PathKind::Reverse).map_err(|e| match e {
        AddressError::Syntax => Reply::bad_sender_syntax(),
        AddressError::TooLong => Reply::sender_too_long(),
    })?;
    let mut mail = MailFrom {
        sender,
        ..MailFrom::default()
    };
    let params = split_params(rest)?;
    let (mut seen_size, mut seen_body, mut seen_utf8) = (false, false, false);
    for (key, value) in params {
        if key.eq_ignore_ascii_case(b"SIZE") {
            if std::mem::replace(&mut seen_size, true) {
                return Err(Reply::syntax_error("Duplicate SIZE parameter"));
            }
            let v = value.ok_or_else(|| Reply::syntax_error("Bad SIZE parameter"))?;
            if v.is_empty() || v.len() > 20 || !v.iter().all(u8::is_ascii_digit) {
                return Err(Reply::syntax_error("Bad SIZE parameter"));
            }
            let n = v.iter().fold(0u64, |acc, &d| {
                acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
            });
            mail.size = Some(n);
        } else if key.eq_ignore_ascii_case(b"BODY") {
            if std::mem::replace(&mut seen_body, true) {
                return Err(Reply::syntax_error("Duplicate BODY parameter"));
            }
            let v = value.ok_or_else(|| Reply::syntax_error("Bad BODY parameter"))?;
            if v.eq_ignore_ascii_case(b"7BIT") {
                mail.eight_bit = false;
            } else if v.eq_ignore_ascii_case(b"8BITMIME") {
                mail.eight_bit = true;
            } else {
                return Err(Reply::unsupported_body());
            }
        } else if key.eq_ignore_ascii_case(b"SMTPUTF8") {
            if std::mem::replace(&mut seen_utf8, true) {
                return Err(Reply::syntax_error("Duplicate SMTPUTF8 parameter"));
            }
            if value.is_some() {
                return Err(Reply::syntax_error("SMTPUTF8 takes no value"));
            }
            mail.smtputf8 = true;
        } else if key.eq_ignore_ascii_case(b"RET") {
            let v = value.ok_or_else(|| Reply::syntax_error("Bad RET parameter"))?;
            if mail.ret.replace(super::dsn::parse_ret(v)?).is_some() {
                return Err(Reply::syntax_error("Duplicate RET parameter"));
            }
        } else if key.eq_ignore_ascii_case(b"ENVID") {
            let v = value.ok_or_else(|| Reply::syntax_error("Bad ENVID parameter"))?;
            if mail.envid.replace(super::dsn::parse_envid(v)?).is_some() {
                return Err(Reply::syntax_error("Duplicate ENVID parameter"));
            }
        } else {
            return Err(Reply::unsupported_option());
        }
    }
    if let Some(n) = mail.size {
        if ctx.max_message_size != 0 && n > ctx.max_message_size {
            return Err(Reply::message_too_big());
        }
    }
    if let Some(m) = &mail.sender {
        if !m.is_ascii() && !mail.smtputf8 {
            return Err(Reply::non_ascii_sender());
        }
    }
    Ok(mail)
}

fn parse_rcpt(args: &[u8], ctx: &ParseContext) -> Result<(Mailbox, RcptParams), Reply> {
    let path = strip_prefix_ci(args, b"TO:")
        .filter(|p| p.first() == Some(&b'<'))
        .ok_or_else(|| Reply::syntax_error("Syntax: RCPT TO:<address>"))?;
    let (mbox, rest) = parse_path(path, PathKind::Forward).map_err(|e| match e {
        AddressError::Syntax => Reply::bad_recipient_syntax(),
        AddressError::TooLong => Reply::recipient_too_long(),
    })?;
    let mut out = RcptParams::default();
    for (key, value) in split_params(rest)? {
        if key.eq_ignore_ascii_case(b"NOTIFY") {
            let v = value.ok_or_else(|| Reply::syntax_error("Bad NOTIFY parameter"))?;
            if out.notify.replace(super::dsn::parse_notify(v)?).is_some() {
                return Err(Reply::syntax_error("Duplicate NOTIFY parameter"));
            }
        } else if key.eq_ignore_ascii_case(b"ORCPT") {
            let v = value.ok_or_else(|| Reply::syntax_error("Bad ORCPT parameter"))?;
            if out
                .orcpt
                .replace(super::dsn::parse_orcpt(v, ctx.smtputf8)?)
                .is_some()
            {
                return Err(Reply::syntax_error("Duplicate ORCPT parameter"));
            }
        } else {
            return Err(Reply::unsupported_option());
        }
    }
    let mbox = mbox.ok_or_else(Reply::bad_recipient_syntax)?;
    if !mbox.is_ascii() && !ctx.smtputf8 {
        return Err(Reply::non_ascii_recipient());
    }
    Ok((mbox, out))
}

type Param<'a> = (&'a [u8], Option<&'a [u8]>);

/// Splits `rest` (what follows the path) into `keyword[=value]` parameters. It must be empty
/// or start with a space; keyword = ALPHA/DIGIT *(ALPHA/DIGIT/"-"), value = printable ASCII
/// except `=` and SP (RFC 5321 §4.1.2).
fn split_params(rest: &[u8]) -> Result<Vec<Param<'_>>, Reply> {
    let bad = || Reply::syntax_error("Bad parameter syntax");
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    if rest.first() != Some(&b' ') {
        return Err(bad());
    }
    let mut out = Vec::new();
    for p in rest.split(|&b| b == b' ').filter(|p| !p.is_empty()) {
        let (key, value) = match p.iter().position(|&b| b == b'=') {
            Some(i) => (
                p.get(..i).unwrap_or(&[]),
                Some(p.get(i + 1..).unwrap_or(&[])),
            ),
            None => (p, None),
        };
        let key_ok = key.first().is_some_and(u8::is_ascii_alphanumeric)
            && key.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-');
        let value_ok = value.is_none_or(|v| {
            !v.is_empty() && v.iter().all(|&b| (33..=126).contains(&b) && b != b'=')
        });
        if !key_ok || !value_ok {
            return Err(bad());
        }
        out.push((key, value));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::proto::Enhanced;

    fn ctx() -> ParseContext {
        ParseContext {
            max_message_size: 1000,
            smtputf8: false,
        }
    }

    fn p(s: &str) -> Result<Command, Reply> {
        parse(s.as_bytes(), &ctx())
    }

    fn code(s: &str) -> (u16, Option<Enhanced>) {
        match p(s) {
            Ok(c) => panic!("{s:?} parsed as {c:?}"),
            Err(r) => (r.code, r.enhanced),
        }
    }

    fn mail(s: &str) -> MailFrom {
        match p(s) {
            Ok(Command::Mail(m)) => m,
            other => panic!("{s:?}: {other:?}"),
        }
    }

    #[test]
    fn max_command_line_is_1064_rfc3461_5_adds_500() {
        assert_eq!(MAX_COMMAND_LINE, 1064);
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(p("LhLo x"), Ok(Command::Lhlo("x".into())));
        assert_eq!(p("noop"), Ok(Command::Noop));
        assert!(matches!(p("mail from:<a@b>"), Ok(Command::Mail(_))));
        assert!(matches!(p("rcpt to:<a@b>"), Ok(Command::Rcpt(..))));
    }

    #[test]
    fn unknown_verb_is_500_5_5_2() {
        assert_eq!(code("FOO"), (500, Some(Enhanced(5, 5, 2))));
        assert_eq!(code("NOOPX"), (500, Some(Enhanced(5, 5, 2))));
        assert_eq!(code(""), (500, Some(Enhanced(5, 5, 2))));
        assert_eq!(code("\u{e9}t\u{e9}"), (500, Some(Enhanced(5, 5, 2))));
    }

    #[test]
    fn bare_cr_or_lf_in_line_is_500() {
        assert_eq!(code("NOOP\nQUIT"), (500, Some(Enhanced(5, 5, 2))));
        assert_eq!(code("NOOP\rQUIT"), (500, Some(Enhanced(5, 5, 2))));
    }

    #[test]
    fn lhlo_argument_rules() {
        assert_eq!(code("LHLO"), (501, Some(Enhanced(5, 5, 4))));
        assert_eq!(code("LHLO "), (501, Some(Enhanced(5, 5, 4))));
        assert_eq!(code("LHLO a(b)"), (501, Some(Enhanced(5, 5, 4))));
        assert_eq!(code("LHLO a b"), (501, Some(Enhanced(5, 5, 4))));
        assert_eq!(p("LHLO [IPv6:::1]"), Ok(Command::Lhlo("[IPv6:::1]".into())));
        assert_eq!(
            p("LHLO mx.example  "),
            Ok(Command::Lhlo("mx.example".into()))
        );
    }

    #[test]
    fn trailing_whitespace_is_tolerated() {
        assert_eq!(p("NOOP \t "), Ok(Command::Noop));
        assert_eq!(p("DATA  "), Ok(Command::Data));
        assert!(matches!(p("MAIL FROM:<a@b> \t"), Ok(Command::Mail(_))));
    }

    #[test]
    fn data_rset_quit_with_args_are_501() {
        for s in ["DATA x", "RSET x", "QUIT x"] {
            assert_eq!(code(s), (501, Some(Enhanced(5, 5, 4))), "{s}");
        }
        assert_eq!(p("NOOP anything"), Ok(Command::Noop));
    }

    #[test]
    fn mail_null_sender() {
        assert_eq!(mail("MAIL FROM:<>").sender, None);
    }

    #[test]
    fn mail_space_after_colon_is_501() {
        assert_eq!(code("MAIL FROM: <a@b>"), (501, Some(Enhanced(5, 5, 4))));
        assert_eq!(code("MAIL FROM :<a@b>"), (501, Some(Enhanced(5, 5, 4))));
        assert_eq!(code("MAIL FROM:a@b"), (501, Some(Enhanced(5, 5, 4))));
    }

    #[test]
    fn mail_bad_sender_is_501_5_1_7() {
        assert_eq!(code("MAIL FROM:<a@>"), (501, Some(Enhanced(5, 1, 7))));
        assert_eq!(
            code("MAIL FROM:<Postmaster>"),
            (501, Some(Enhanced(5, 1, 7)))
        );
        assert_eq!(code("MAIL FROM:<a@b>x"), (501, Some(Enhanced(5, 5, 4))));
    }

    #[test]
    fn mail_size_parameter() {
        assert_eq!(mail("MAIL FROM:<a@b> SIZE=1000").size, Some(1000));
        assert_eq!(mail("MAIL FROM:<a@b> size=0").size, Some(0));
        assert_eq!(
            code("MAIL FROM:<a@b> SIZE=abc"),
            (501, Some(Enhanced(5, 5, 4)))
        );
        assert_eq!(
            code("MAIL FROM:<a@b> SIZE="),
            (501, Some(Enhanced(5, 5, 4)))
        );
        assert_eq!(code("MAIL FROM:<a@b> SIZE"), (501, Some(Enhanced(5, 5, 4))));
        assert_eq!(
            code("MAIL FROM:<a@b> SIZE=123456789012345678901"),
            (501, Some(Enhanced(5, 5, 4)))
        );
        assert_eq!(
            code("MAIL FROM:<a@b> SIZE=1001"),
            (552, Some(Enhanced(5, 3, 4)))
        );
        assert_eq!(
            code("MAIL FROM:<a@b> SIZE=99999999999999999999"),
            (552, Some(Enhanced(5, 3, 4)))
        );
        let unlimited = ParseContext::default();
        match parse(b"MAIL FROM:<a@b> SIZE=99999999999999999999", &unlimited) {
            Ok(Command::Mail(m)) => assert_eq!(m.size, Some(u64::MAX)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mail_body_parameter() {
        assert!(mail("MAIL FROM:<a@b> BODY=8BITMIME").eight_bit);
        assert!(!mail("MAIL FROM:<a@b> body=7bit").eight_bit);
        assert_eq!(
            code("MAIL FROM:<a@b> BODY=BINARYMIME"),
            (555, Some(Enhanced(5, 5, 4)))
        );
        assert_eq!(code("MAIL FROM:<a@b> BODY"), (501, Some(Enhanced(5, 5, 4))));
    }

    #[test]
    fn mail_smtputf8_parameter() {
        assert!(mail("MAIL FROM:<a@b> SMTPUTF8").smtputf8);
        assert_eq!(
            code("MAIL FROM:<a@b> SMTPUTF8=yes"),
            (501, Some(Enhanced(5, 5, 4)))
        );
        assert_eq!(code("MAIL FROM:<usér@b>"), (550, Some(Enhanced(5, 6, 7))));
        assert_eq!(
            mail("MAIL FROM:<usér@b> SMTPUTF8").sender.unwrap().local,
            "usér"
        );
    }

    #[test]
    fn mail_duplicate_parameter_is_501() {
        assert_eq!(
            code("MAIL FROM:<a@b> SIZE=1 SIZE=2"),
            (501, Some(Enhanced(5, 5, 4)))
        );
        assert_eq!(
            code("MAIL FROM:<a@b> BODY=7BIT body=8BITMIME"),
            (501, Some(Enhanced(5, 5, 4)))
        );
        assert_eq!(
            code("MAIL FROM:<a@b> SMTPUTF8 SMTPUTF8"),
            (501, Some(Enhanced(5, 5, 4)))
        );
    }

    #[test]
    fn mail_unknown_parameter_is_555() {
        assert_eq!(
            code("MAIL FROM:<a@b> FOO=bar"),
            (555, Some(Enhanced(5, 5, 4)))
        );
        assert_eq!(
            code("MAIL FROM:<a@b> MT-PRIORITY=3"),
            (555, Some(Enhanced(5, 5, 4)))
        );
        assert_eq!(code("MAIL FROM:<a@b> =x"), (501, Some(Enhanced(5, 5, 4))));
    }

    #[test]
    fn mail_all_parameters_together() {
        let m = mail("MAIL FROM:<a@b> SIZE=10 BODY=8BITMIME SMTPUTF8");
        assert_eq!(
            m,
            MailFrom {
                sender: Some(Mailbox {
                    local: "a".into(),
                    domain: Some("b".into())
                }),
                size: Some(10),
                eight_bit: true,
                smtputf8: true,
                ret: None,
                envid: None,
            }
        );
    }

    #[test]
    fn rfc3461_mail_takes_ret_and_envid_once_each() {
        let m = mail("MAIL FROM:<a@b> RET=HDRS ENVID=QQ+2B1");
        assert_eq!(m.ret, Some(crate::proto::Ret::Hdrs));
        assert_eq!(m.envid.as_deref(), Some("QQ+1"));
        let ctx = ParseContext::default();
        for bad in [
            "MAIL FROM:<a@b> RET=HDRS RET=FULL",
            "MAIL FROM:<a@b> ENVID=x ENVID=y",
            "MAIL FROM:<a@b> RET=BODY",
            "MAIL FROM:<a@b> RET",
        ] {
            let e = parse(bad.as_bytes(), &ctx).unwrap_err();
            assert_eq!(
                (e.code, e.enhanced.map(|x| x.to_string())),
                (501, Some("5.5.4".into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn rfc3461_rcpt_takes_notify_and_orcpt_once_each() {
        let ctx = ParseContext::default();
        let Ok(Command::Rcpt(m, p)) = parse(
            b"RCPT TO:<a@b> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;alias@b",
            &ctx,
        ) else {
            panic!("not a RCPT")
        };
        assert_eq!(m.to_string(), "a@b");
        assert!(p.notify.is_some_and(|n| n.success && n.failure));
        assert_eq!(p.orcpt.and_then(|o| o.address).as_deref(), Some("alias@b"));
        for bad in [
            "RCPT TO:<a@b> NOTIFY=NEVER NOTIFY=NEVER",
            "RCPT TO:<a@b> ORCPT=rfc822;x@y ORCPT=rfc822;z@y",
            "RCPT TO:<a@b> ORCPT=rfc822",
            "RCPT TO:<a@b> NOTIFY",
        ] {
            let e = parse(bad.as_bytes(), &ctx).unwrap_err();
            assert_eq!(
                (e.code, e.enhanced.map(|x| x.to_string())),
                (501, Some("5.5.4".into())),
                "{bad}"
            );
        }
        let e = parse(b"RCPT TO:<a@b> FOO=1", &ctx).unwrap_err();
        assert_eq!(e.code, 555, "an unknown parameter is still 555");
    }

    #[test]
    fn rcpt_parameters_other_than_dsns_are_555() {
        assert_eq!(code("RCPT TO:<a@b> XFOO=1"), (555, Some(Enhanced(5, 5, 4))));
        assert!(matches!(
            p("RCPT TO:<a@b> NOTIFY=SUCCESS ORCPT=rfc822;a@b"),
            Ok(Command::Rcpt(..))
        ));
    }

    #[test]
    fn rcpt_syntax_errors_are_501_5_1_3() {
        for s in [
            "RCPT TO:<a>",
            "RCPT TO:<\"\"@x>",
            "RCPT TO:<>",
            "RCPT TO:<a@b c>",
        ] {
            assert_eq!(code(s), (501, Some(Enhanced(5, 1, 3))), "{s}");
        }
        assert_eq!(code("RCPT TO: <a@b>"), (501, Some(Enhanced(5, 5, 4))));
        assert_eq!(code("RCPT TO:<a\u{1}@b>"), (501, Some(Enhanced(5, 1, 3))));
        let bytes = b"RCPT TO:<us\xe9r@x>";
        assert_eq!(parse(bytes, &ctx()).map_err(|r| r.code), Err(501));
    }

    #[test]
    fn rcpt_non_ascii_needs_smtputf8() {
        assert_eq!(code("RCPT TO:<usér@x>"), (553, Some(Enhanced(5, 6, 7))));
        let c = ParseContext {
            smtputf8: true,
            ..ctx()
        };
        assert!(matches!(
            parse("RCPT TO:<usér@x>".as_bytes(), &c),
            Ok(Command::Rcpt(..))
        ));
    }

    #[test]
    fn rcpt_too_long_path_is_501() {
        let s = format!("RCPT TO:<{}@x>", "a".repeat(65));
        assert_eq!(code(&s), (501, Some(Enhanced(5, 1, 3))));
    }

    #[test]
    fn vrfy_needs_an_argument_expn_and_help_parse() {
        assert_eq!(p("VRFY joe"), Ok(Command::Vrfy));
        assert_eq!(code("VRFY"), (501, Some(Enhanced(5, 5, 4))));
        assert_eq!(p("EXPN list"), Ok(Command::Expn));
        assert_eq!(p("HELP"), Ok(Command::Help));
        assert_eq!(p("HELO x"), Ok(Command::Helo));
        assert_eq!(p("EHLO x"), Ok(Command::Ehlo));
    }

    #[test]
    fn bdat_arguments() {
        assert_eq!(parse_bdat(b"0"), Ok((0, false)));
        assert_eq!(parse_bdat(b"0 LAST"), Ok((0, true)));
        assert_eq!(parse_bdat(b"0012 last"), Ok((12, true)));
        assert_eq!(parse_bdat(b"18446744073709551615"), Ok((u64::MAX, false)));
        assert_eq!(parse_bdat(b"18446744073709551616"), Err(BdatError::Size));
        assert_eq!(parse_bdat(b""), Err(BdatError::Size));
        assert_eq!(parse_bdat(b"x"), Err(BdatError::Size));
        assert_eq!(parse_bdat(b"-1"), Err(BdatError::Size));
        assert_eq!(parse_bdat(b"12x"), Err(BdatError::Size));
        assert_eq!(parse_bdat(b"12 FIRST"), Err(BdatError::Args(12)));
        assert_eq!(parse_bdat(b"12 LAST x"), Err(BdatError::Args(12)));
        assert_eq!(parse_bdat(b"12  LAST"), Err(BdatError::Args(12)));
        assert_eq!(
            p("bdat 5 LAST  "),
            Ok(Command::Bdat {
                size: 5,
                last: true
            })
        );
        assert_eq!(code("BDAT x"), (501, Some(Enhanced(5, 5, 4))));
    }
}
