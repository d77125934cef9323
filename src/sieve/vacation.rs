//! Vacation replies (RFC 5230 with RFC 3834): which messages never get an auto-reply, and
//! the reply message itself. Pure functions over the envelope and the header section; the
//! caller (`crate::policy`) adds the once-per-period tracking and the sending.

use super::message::{self, Headers};
use super::Vacation;

/// Why no auto-reply goes out for a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The envelope sender is `<>` (a bounce; RFC 5230 §4.6, RFC 3834 §2).
    NullSender,
    /// The sender is a mailing list or mail system address (`MAILER-DAEMON`, `owner-*`,
    /// `*-request`, `LISTSERV`, `majordomo`; RFC 5230 §4.6).
    SystemSender(String),
    /// `Auto-Submitted` other than `no` (RFC 3834 §5).
    AutoSubmitted(String),
    /// A mailing list message: a `List-*` field (RFC 2369, RFC 2919) or `Precedence` bulk,
    /// list or junk.
    ListMail(String),
    /// None of the recipient's addresses is in `To`, `Cc`, `Bcc` or their `Resent-` forms
    /// (RFC 5230 §4.5).
    NotAddressed,
    /// The sender is the recipient (RFC 5230 §4.6: never reply to oneself).
    FromSelf,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NullSender => write!(f, "the sender is <> (a bounce)"),
            Refusal::SystemSender(a) => write!(f, "the sender {a} is a list or system address"),
            Refusal::AutoSubmitted(v) => write!(f, "Auto-Submitted: {v}"),
            Refusal::ListMail(h) => write!(f, "list mail ({h})"),
            Refusal::NotAddressed => write!(
                f,
                "the recipient is not in To, Cc or Bcc (nor in :addresses)"
            ),
            Refusal::FromSelf => write!(f, "the sender is the recipient"),
        }
    }
}

/// The `List-*` fields that mark list mail (RFC 2369 §3, RFC 2919).
const LIST_FIELDS: &[&str] = &[
    "list-id",
    "list-help",
    "list-unsubscribe",
    "list-subscribe",
    "list-post",
    "list-owner",
    "list-archive",
];

/// The header fields that say whom a message was sent to (RFC 5230 §4.5).
const RECIPIENT_FIELDS: &[&str] = &["to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"];

/// `local@domain` lower-cased for comparing, or `None` without an `@`.
fn key(addr: &message::Address) -> Option<String> {
    let domain = addr.domain.as_deref()?;
    Some(format!("{}@{}", addr.local, domain).to_lowercase())
}

/// The comparison keys of addresses as a script or the envelope gives them (a bare address,
/// one in angle brackets, or `Name <address>`).
fn keys_of(list: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for a in list {
        let parsed = match message::parse_envelope_address(a) {
            Some(p) if p.domain.is_some() && !a.contains(' ') => vec![p],
            _ => message::addresses(a),
        };
        out.extend(parsed.iter().filter_map(key));
    }
    out
}

/// Why `headers` from envelope sender `sender` (empty for `<>`) must get no reply from the
/// recipient known by `own` (its RCPT address, its user address, the ORCPT; plus the
/// script's `:addresses`), or `None` when a reply may go out.
pub fn refusal(v: &Vacation, sender: &str, own: &[&str], headers: &Headers) -> Option<Refusal> {
    let Some(from) = message::parse_envelope_address(sender) else {
        return Some(Refusal::NullSender);
    };
    let local = from.local.to_ascii_lowercase();
    if local == "mailer-daemon"
        || local == "listserv"
        || local == "majordomo"
        || local.starts_with("owner-")
        || local.ends_with("-request")
    {
        return Some(Refusal::SystemSender(sender.to_string()));
    }
    for f in headers.named("auto-submitted") {
        let kind = f.value.split(';').next().unwrap_or("").trim();
        if !kind.eq_ignore_ascii_case("no") {
            return Some(Refusal::AutoSubmitted(f.value.clone()));
        }
    }
    if let Some(f) = headers
        .fields
        .iter()
        .find(|f| LIST_FIELDS.iter().any(|n| f.name.eq_ignore_ascii_case(n)))
    {
        return Some(Refusal::ListMail(f.name.clone()));
    }
    for f in headers.named("precedence") {
        let p = f.value.trim().to_ascii_lowercase();
        if matches!(p.as_str(), "bulk" | "list" | "junk") {
            return Some(Refusal::ListMail(format!("Precedence: {p}")));
        }
    }
    let mut mine: Vec<&str> = own.to_vec();
    mine.extend(v.addresses.iter().map(String::as_str));
    let mine = keys_of(&mine);
    if key(&from).is_some_and(|k| mine.contains(&k)) {
        return Some(Refusal::FromSelf);
    }
    let addressed = RECIPIENT_FIELDS.iter().any(|name| {
        headers.named(name).any(|f| {
            message::addresses(&f.value)
                .iter()
                .filter_map(key)
                .any(|k| mine.contains(&k))
        })
    });
    if !addressed {
        return Some(Refusal::NotAddressed);
    }
    None
}

/// The fields of a reply that the caller supplies.
pub struct ReplyTo<'a> {
    /// `From:` when the script gave no `:from` (the recipient's address).
    pub from: &'a str,
    /// `To:`, the original envelope sender.
    pub to: &'a str,
    /// `Date:` (RFC 5322 date-time).
    pub date: &'a str,
    /// `Message-ID:` with its angle brackets.
    pub message_id: &'a str,
}

/// The longest header value kept from the original message (`Subject`, `References`).
const MAX_COPIED: usize = 900;

/// The reply to a message with header section `original`: RFC 5322 fields with
/// `Auto-Submitted: auto-replied` (RFC 3834 §5), `In-Reply-To` and `References` (RFC 5230
/// §5.8), the subject `:subject` or `Auto: ` and the original one (§5.2), encoded per
/// RFC 2047 when not ASCII; then the reason, as UTF-8 text (quoted-printable when not
/// ASCII) or, with `:mime`, as the MIME entity the script wrote. LF line ends.
pub fn compose(v: &Vacation, original: &Headers, to: &ReplyTo<'_>) -> Vec<u8> {
    let mut out = String::with_capacity(512 + v.reason.len());
    // A `:from` that is not an address (made from variables; a constant one does not
    // compile) gives way to the recipient's address.
    let own = v
        .from
        .as_deref()
        .filter(|f| super::validate::valid_from(f))
        .unwrap_or(to.from);
    let from = clean(own);
    push_field(&mut out, "From", &address_field(&from));
    push_field(&mut out, "To", &format!("<{}>", clean(to.to)));
    let subject = match &v.subject {
        Some(s) => clean(s),
        None => {
            let orig = original
                .named("subject")
                .next()
                .map(|f| message::decode(&f.value))
                .unwrap_or_default();
            format!("Auto: {}", clean(&orig))
        }
    };
    let subject: String = subject.chars().take(MAX_COPIED).collect();
    push_field(&mut out, "Subject", &encode_words(&subject));
    push_field(&mut out, "Date", to.date);
    push_field(&mut out, "Message-ID", to.message_id);
    let msgid = original
        .named("message-id")
        .next()
        .map(|f| clean(&f.value))
        .filter(|m| m.starts_with('<') && m.ends_with('>') && m.len() <= MAX_COPIED);
    if let Some(id) = &msgid {
        push_field(&mut out, "In-Reply-To", id);
        let refs = original
            .named("references")
            .next()
            .map(|f| clean(&f.value))
            .unwrap_or_default();
        let mut ids: Vec<&str> = refs.split_whitespace().collect();
        // Keep the newest references when the list is long (RFC 5322 §3.6.4 allows
        // trimming).
        while ids.iter().map(|i| i.len() + 1).sum::<usize>() > MAX_COPIED {
            ids.remove(0);
        }
        ids.push(id);
        push_field(&mut out, "References", &ids.join("\n "));
    }
    push_field(&mut out, "Auto-Submitted", "auto-replied (vacation)");
    push_field(&mut out, "MIME-Version", "1.0");
    let reason = v.reason.replace("\r\n", "\n");
    if v.mime {
        out.push_str(&reason);
    } else if reason.is_ascii() {
        push_field(&mut out, "Content-Type", "text/plain; charset=us-ascii");
        push_field(&mut out, "Content-Transfer-Encoding", "7bit");
        out.push('\n');
        out.push_str(&reason);
    } else {
        push_field(&mut out, "Content-Type", "text/plain; charset=utf-8");
        push_field(&mut out, "Content-Transfer-Encoding", "quoted-printable");
        out.push('\n');
        out.push_str(&quoted_printable(&reason));
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.into_bytes()
}

fn push_field(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str(": ");
    out.push_str(value);
    out.push('\n');
}

/// A value kept on its header line: line breaks and other controls become spaces.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// A `From` value: a bare address as is; `Name <address>` with the name encoded when it
/// is not ASCII.
fn address_field(from: &str) -> String {
    match from.rfind('<') {
        Some(i) if i > 0 && from.ends_with('>') => {
            let name = from.get(..i).unwrap_or("").trim();
            let addr = from.get(i..).unwrap_or("");
            if name.is_ascii() {
                format!("{name} {addr}")
            } else {
                format!("{} {addr}", encode_words(name.trim_matches('"')))
            }
        }
        _ => from.to_string(),
    }
}

/// `text` as it may stand in an unstructured field: itself when ASCII, else RFC 2047
/// `=?UTF-8?B?...?=` words of at most 75 characters (§2), split between characters
/// (§5: never inside one), joined by folding white space.
pub fn encode_words(text: &str) -> String {
    if text.is_ascii() {
        return text.to_string();
    }
    // 45 octets of UTF-8 become 60 base64 characters: 72 with the delimiters.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes())));
    }
    words.join("\n ")
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sym = |shift: u32| char::from(ALPHABET[((n >> shift) & 63) as usize]);
        out.push(sym(18));
        out.push(sym(12));
        out.push(if chunk.len() > 1 { sym(6) } else { '=' });
        out.push(if chunk.len() > 2 { sym(0) } else { '=' });
    }
    out
}

/// Quoted-printable (RFC 2045 §6.7) of text with LF line ends: lines of at most 76
/// characters with soft breaks, `=` and non-ASCII octets as `=XX`, trailing white space
/// encoded.
fn quoted_printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let bytes = line.as_bytes();
        let mut width = 0;
        for (j, &b) in bytes.iter().enumerate() {
            let last = j + 1 == bytes.len();
            let plain = (b == b' ' || b == b'\t') && !last || (33..=126).contains(&b) && b != b'=';
            let piece = if plain {
                char::from(b).to_string()
            } else {
                format!("={b:02X}")
            };
            if width + piece.len() > 75 {
                out.push_str("=\n");
                width = 0;
            }
            width += piece.len();
            out.push_str(&piece);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::sieve::Pos;

    fn vacation() -> Vacation {
        Vacation {
            reason: "I am away".into(),
            subject: None,
            from: None,
            addresses: Vec::new(),
            mime: false,
            handle: "h".into(),
            seconds: 86_400,
            pos: Pos { line: 1, column: 1 },
        }
    }

    fn headers(text: &str) -> Headers {
        Headers::parse(text.as_bytes())
    }

    const ME: &[&str] = &["alice@example.org"];
    const PLAIN: &str = "From: bob@example.com\nTo: Alice <alice@example.org>\nSubject: hi\nMessage-ID: <1@example.com>\n\n";

    #[test]
    fn rfc5230_4_6_a_personal_message_gets_a_reply() {
        assert_eq!(
            refusal(&vacation(), "bob@example.com", ME, &headers(PLAIN)),
            None
        );
    }

    #[test]
    fn rfc5230_4_6_no_reply_to_the_null_sender() {
        assert_eq!(
            refusal(&vacation(), "", ME, &headers(PLAIN)),
            Some(Refusal::NullSender)
        );
    }

    #[test]
    fn rfc5230_4_6_no_reply_to_list_and_system_senders() {
        for s in [
            "MAILER-DAEMON@example.com",
            "owner-rust@lists.example.com",
            "rust-request@lists.example.com",
            "listserv@example.com",
            "Majordomo@example.com",
        ] {
            assert!(
                matches!(
                    refusal(&vacation(), s, ME, &headers(PLAIN)),
                    Some(Refusal::SystemSender(_))
                ),
                "{s}"
            );
        }
    }

    #[test]
    fn rfc3834_5_no_reply_to_auto_submitted_mail_except_no() {
        let auto = format!("Auto-Submitted: auto-replied\n{PLAIN}");
        assert!(matches!(
            refusal(&vacation(), "bob@example.com", ME, &headers(&auto)),
            Some(Refusal::AutoSubmitted(_))
        ));
        let generated = format!("Auto-Submitted: Auto-Generated; owner-email=x@y\n{PLAIN}");
        assert!(refusal(&vacation(), "bob@example.com", ME, &headers(&generated)).is_some());
        let no = format!("Auto-Submitted: no\n{PLAIN}");
        assert_eq!(
            refusal(&vacation(), "bob@example.com", ME, &headers(&no)),
            None
        );
    }

    #[test]
    fn rfc5230_4_6_no_reply_to_list_mail() {
        for field in [
            "List-Id: <rust.lists.example.com>",
            "List-Unsubscribe: <mailto:x@example.com>",
            "list-post: <mailto:rust@example.com>",
            "Precedence: bulk",
            "Precedence: List",
            "Precedence: junk",
        ] {
            let text = format!("{field}\n{PLAIN}");
            assert!(
                matches!(
                    refusal(&vacation(), "bob@example.com", ME, &headers(&text)),
                    Some(Refusal::ListMail(_))
                ),
                "{field}"
            );
        }
        let first_class = format!("Precedence: first-class\n{PLAIN}");
        assert_eq!(
            refusal(&vacation(), "bob@example.com", ME, &headers(&first_class)),
            None
        );
    }

    #[test]
    fn rfc5230_4_5_only_mail_addressed_to_the_recipient_is_answered() {
        let other = "From: bob@example.com\nTo: carol@example.org\n\n";
        assert_eq!(
            refusal(&vacation(), "bob@example.com", ME, &headers(other)),
            Some(Refusal::NotAddressed)
        );
        let cc = "From: bob@example.com\nTo: carol@example.org\nCc: ALICE@Example.ORG\n\n";
        assert_eq!(
            refusal(&vacation(), "bob@example.com", ME, &headers(cc)),
            None
        );
        let resent = "From: bob@example.com\nTo: x@y\nResent-To: alice@example.org\n\n";
        assert_eq!(
            refusal(&vacation(), "bob@example.com", ME, &headers(resent)),
            None
        );
        let mut v = vacation();
        v.addresses = vec!["Alice Work <alice@work.example>".into()];
        let work = "From: bob@example.com\nTo: group: alice@work.example;\n\n";
        assert_eq!(
            refusal(&v, "bob@example.com", ME, &headers(work)),
            None,
            ":addresses count as the recipient's"
        );
    }

    #[test]
    fn rfc5230_4_6_never_a_reply_to_oneself() {
        assert_eq!(
            refusal(&vacation(), "alice@example.org", ME, &headers(PLAIN)),
            Some(Refusal::FromSelf)
        );
    }

    fn reply_text(v: &Vacation, original: &str) -> String {
        let to = ReplyTo {
            from: "alice@example.org",
            to: "bob@example.com",
            date: "Thu, 03 Dec 2026 15:00:00 +0000",
            message_id: "<r1@lmtp.example.org>",
        };
        String::from_utf8(compose(v, &headers(original), &to)).unwrap()
    }

    #[test]
    fn rfc3834_the_reply_is_marked_auto_replied_and_threads() {
        let orig = "From: bob@example.com\nSubject: lunch?\nMessage-ID: <1@example.com>\nReferences: <0@example.com>\n\n";
        let r = reply_text(&vacation(), orig);
        assert!(
            r.starts_with("From: alice@example.org\nTo: <bob@example.com>\n"),
            "{r}"
        );
        assert!(r.contains("\nSubject: Auto: lunch?\n"), "{r}");
        assert!(
            r.contains("\nAuto-Submitted: auto-replied (vacation)\n"),
            "{r}"
        );
        assert!(r.contains("\nIn-Reply-To: <1@example.com>\n"), "{r}");
        assert!(
            r.contains("\nReferences: <0@example.com>\n <1@example.com>\n"),
            "{r}"
        );
        assert!(r.contains("\nMessage-ID: <r1@lmtp.example.org>\n"), "{r}");
        assert!(r.ends_with("\n\nI am away\n"), "{r}");
        let parsed = headers(&r);
        assert_eq!(parsed.named("mime-version").count(), 1);
    }

    #[test]
    fn rfc2047_utf8_subjects_are_encoded_words() {
        let mut v = vacation();
        v.subject = Some("Abwesenheitsnotiz: bin im Urlaub, zurück am Montag — Grüße".into());
        let r = reply_text(&v, PLAIN);
        let subject = headers(&r).named("subject").next().unwrap().value.clone();
        assert!(subject.is_ascii(), "{subject}");
        for word in subject.split_whitespace() {
            assert!(word.len() <= 75 && word.starts_with("=?UTF-8?B?"), "{word}");
        }
        assert_eq!(message::decode(&subject), v.subject.clone().unwrap());
    }

    #[test]
    fn a_utf8_reason_is_quoted_printable_a_mime_reason_is_used_as_written() {
        let mut v = vacation();
        v.reason = "Bin weg. Grüße".into();
        let r = reply_text(&v, PLAIN);
        assert!(
            r.contains("Content-Type: text/plain; charset=utf-8\n"),
            "{r}"
        );
        assert!(
            r.contains("Content-Transfer-Encoding: quoted-printable\n"),
            "{r}"
        );
        assert!(r.contains("Gr=C3=BC=C3=9Fe"), "{r}");
        assert!(r.is_ascii());
        v.mime = true;
        v.reason = "Content-Type: text/html\n\n<p>away</p>".into();
        let r = reply_text(&v, PLAIN);
        assert!(
            r.contains("MIME-Version: 1.0\nContent-Type: text/html\n\n<p>away</p>\n"),
            "{r}"
        );
    }

    #[test]
    fn rfc5230_4_4_a_from_that_is_not_an_address_gives_way_to_the_recipient() {
        let mut v = vacation();
        v.from = Some("not an address".into());
        assert!(reply_text(&v, PLAIN).starts_with("From: alice@example.org\n"));
        v.from = Some("Alice Example <alice@work.example>".into());
        assert!(reply_text(&v, PLAIN).starts_with("From: Alice Example <alice@work.example>\n"));
        v.from = Some("Jörg <joerg@example.org>".into());
        let r = reply_text(&v, PLAIN);
        assert!(r.starts_with("From: =?UTF-8?B?"), "{r}");
        assert!(
            r.lines().next().unwrap().ends_with(" <joerg@example.org>"),
            "{r}"
        );
    }

    #[test]
    fn quoted_printable_lines_stay_short() {
        let text = "é".repeat(100);
        let qp = quoted_printable(&text);
        assert!(qp.lines().all(|l| l.len() <= 76), "{qp}");
        assert_eq!(quoted_printable("a \nb"), "a=20\nb");
    }

    #[test]
    fn base64_matches_rfc4648_test_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), enc);
        }
    }
}
