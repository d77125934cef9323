//! Server replies: the [`Reply`] value, enhanced status codes ([`Enhanced`]), their wire form,
//! and one named constructor for every reply the server itself composes (the codes follow the
//! table in the standards notes; a store's per-recipient errors come from `lmtpd-store`'s
//! `DeliveryError` constructors instead).

// The one enhanced-status-code type of the workspace is defined in the store crate, because
// the backends build their `DeliveryError`s with it and cannot depend on this crate. Re-using
// it keeps `proto` free of I/O: `lmtpd-store` depends only on `std` and `log`.
use lmtpd_store::DeliveryError;
pub use lmtpd_store::Enhanced;

use std::fmt::Display;

/// Longest reply line we ever emit, including the trailing CRLF (RFC 5321 §4.5.3.1.5).
pub const MAX_REPLY_LINE: usize = 512;

/// One complete (possibly multi-line) reply: a basic code, an optional enhanced code repeated on
/// every line, and the text lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit basic reply code (e.g. 250).
    pub code: u16,
    /// The enhanced status code written at the start of every line's text, if any.
    pub enhanced: Option<Enhanced>,
    /// The text lines; one wire line each. An empty vector is written as one line without text.
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply `code x.y.z text`.
    pub fn new(code: u16, enhanced: Enhanced, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced: Some(enhanced),
            lines: vec![text.into()],
        }
    }

    /// A one-line reply without an enhanced code (greeting, 354).
    pub fn plain(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced: None,
            lines: vec![text.into()],
        }
    }

    /// Whether this is a positive completion (2xx) reply.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// Appends the wire form to `out`: `ddd-` on every line but the last, `ddd ` on the last,
    /// the enhanced code (if any) repeated on every line, CRLF line ends. CR and LF inside the
    /// text are replaced by spaces, and each line is cut to at most [`MAX_REPLY_LINE`] octets
    /// including CRLF (at a UTF-8 character boundary).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let empty = [String::new()];
        let lines: &[String] = if self.lines.is_empty() {
            &empty
        } else {
            &self.lines
        };
        let last = lines.len().saturating_sub(1);
        for (i, text) in lines.iter().enumerate() {
            let mut line = format!("{:03}", self.code);
            line.push(if i == last { ' ' } else { '-' });
            if let Some(e) = self.enhanced {
                line.push_str(&e.to_string());
                line.push(' ');
            }
            for c in text.chars() {
                let c = if c == '\r' || c == '\n' { ' ' } else { c };
                if line.len() + c.len_utf8() > MAX_REPLY_LINE - 2 {
                    break;
                }
                line.push(c);
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form as a new byte vector (see [`Reply::write_to`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }
}

/// The replies the server composes, one constructor each. Where a reply's text varies only
/// in what it quotes back (a host name, an address), that is the argument; the code, the
/// enhanced code and the wording live here and nowhere else.
impl Reply {
    fn coded(code: u16, e: (u8, u16, u16), text: impl Into<String>) -> Reply {
        Reply::new(code, Enhanced(e.0, e.1, e.2), text)
    }

    // Connection level: greeting, LHLO, closing.

    /// `220 <host> LMTP ready`: the greeting, first word our name, no enhanced code
    /// (RFC 5321 §4.3.1, §3.1; RFC 2034 §3 exempts the greeting).
    pub fn greeting(host: &str) -> Reply {
        Reply::plain(220, format!("{host} LMTP ready"))
    }

    /// The multi-line `250` LHLO reply: our name, then one extension keyword per line, no
    /// enhanced code (RFC 2033 §4.1; RFC 5321 §4.1.1.1; RFC 2034 §3). `max_size` is the
    /// RFC 1870 `SIZE` parameter (0 = no fixed limit).
    pub fn lhlo(host: &str, max_size: u64) -> Reply {
        Reply {
            code: 250,
            enhanced: None,
            lines: vec![
                host.to_string(),
                "PIPELINING".into(),
                "ENHANCEDSTATUSCODES".into(),
                "8BITMIME".into(),
                "CHUNKING".into(),
                format!("SIZE {max_size}"),
                "SMTPUTF8".into(),
                "DSN".into(),
            ],
        }
    }

    /// `220 2.0.0 Ready to start TLS`: the answer to STARTTLS (RFC 3207 §4); the TLS
    /// handshake follows at once.
    pub fn tls_ready() -> Reply {
        Reply::coded(220, (2, 0, 0), "Ready to start TLS")
    }

    /// `503 5.5.1 Error: TLS already active`: a second STARTTLS (RFC 3207 §4.2: the command
    /// is not offered again after a successful handshake).
    pub fn tls_active() -> Reply {
        Reply::coded(503, (5, 5, 1), "Error: TLS already active")
    }

    /// `503 5.5.1 Error: STARTTLS inside a transaction`: STARTTLS resets the session, so it
    /// is refused between MAIL and the end of the transaction.
    pub fn tls_in_transaction() -> Reply {
        Reply::coded(
            503,
            (5, 5, 1),
            "Error: STARTTLS inside a transaction, send RSET",
        )
    }

    /// `503 5.5.1 Error: XFORWARD inside a transaction`: XFORWARD comes before MAIL
    /// (XFORWARD_README).
    pub fn xforward_in_transaction() -> Reply {
        Reply::coded(503, (5, 5, 1), "Error: XFORWARD inside a transaction")
    }

    /// `530 5.7.0 Must issue a STARTTLS command first`: `tls = required` (RFC 3207 §4).
    pub fn tls_required() -> Reply {
        Reply::coded(530, (5, 7, 0), "Must issue a STARTTLS command first")
    }

    /// `221 2.0.0 Bye`: the answer to QUIT (RFC 5321 §4.1.1.10).
    pub fn bye() -> Reply {
        Reply::coded(221, (2, 0, 0), "Bye")
    }

    /// `421 4.7.0 <host> Error: too many errors`: the consecutive-error limit was reached and
    /// the connection closes (RFC 5321 §3.8: a server may close with 421).
    pub fn too_many_errors(host: &str) -> Reply {
        Reply::coded(421, (4, 7, 0), format!("{host} Error: too many errors"))
    }

    /// `421 4.4.2 <host> Error: timeout exceeded`: the client was idle or stalled too long
    /// (RFC 5321 §4.5.3.2, §3.8).
    pub fn timeout(host: &str) -> Reply {
        Reply::coded(421, (4, 4, 2), format!("{host} Error: timeout exceeded"))
    }

    /// `421 4.3.2 <host> Service shutting down`: sent to idle sessions on shutdown
    /// (RFC 5321 §3.8; RFC 3463 X.3.2 "not accepting messages").
    pub fn shutting_down(host: &str) -> Reply {
        Reply::coded(421, (4, 3, 2), format!("{host} Service shutting down"))
    }

    /// `421 4.3.2 <host> Too many connections, try again later`: written instead of the
    /// greeting when every session slot is taken (RFC 5321 §3.8, §4.2.2).
    pub fn too_many_connections(host: &str) -> Reply {
        Reply::coded(
            421,
            (4, 3, 2),
            format!("{host} Too many connections, try again later"),
        )
    }

    /// `421 4.3.2 <host> Out of resources, try again later`: written instead of the greeting
    /// while the process is out of descriptors or memory (RFC 5321 §3.8, §4.2.2).
    pub fn out_of_resources(host: &str) -> Reply {
        Reply::coded(
            421,
            (4, 3, 2),
            format!("{host} Out of resources, try again later"),
        )
    }

    /// `421 4.3.0 Internal error, closing connection; try again later`: the session hit a
    /// bug and is closed (RFC 5321 §3.8; RFC 3463 X.3.0).
    pub fn internal_error() -> Reply {
        Reply::coded(
            421,
            (4, 3, 0),
            "Internal error, closing connection; try again later",
        )
    }

    // Commands that succeed.

    /// `250 2.0.0 Ok`: RSET and NOOP (RFC 5321 §4.1.1.5, §4.1.1.9).
    pub fn ok() -> Reply {
        Reply::coded(250, (2, 0, 0), "Ok")
    }

    /// `250 2.1.0 Ok`: MAIL accepted (RFC 5321 §4.1.1.2; RFC 2034 §6 example).
    pub fn mail_ok() -> Reply {
        Reply::coded(250, (2, 1, 0), "Ok")
    }

    /// `250 2.1.5 <mailbox> OK`: RCPT accepted (RFC 5321 §4.1.1.3; RFC 3463 X.1.5).
    pub fn rcpt_ok(mailbox: &impl Display) -> Reply {
        Reply::coded(250, (2, 1, 5), format!("<{mailbox}> OK"))
    }

    /// `354 End data with <CR><LF>.<CR><LF>`: DATA accepted; a 3xx carries no enhanced code
    /// (RFC 5321 §4.1.1.4; RFC 2034 §3).
    pub fn start_data() -> Reply {
        Reply::plain(354, "End data with <CR><LF>.<CR><LF>")
    }

    /// `250 2.0.0 <n> octets received`: a BDAT chunk that is not the last one was taken
    /// (RFC 3030 §2: each non-LAST BDAT gets exactly one reply; RFC 2033 §4.3).
    pub fn chunk_ok(octets: u64) -> Reply {
        Reply::coded(250, (2, 0, 0), format!("{octets} octets received"))
    }

    /// `503 5.5.0 Error: an earlier BDAT failed, send RSET`: a chunk after a failed one in the
    /// same transaction (RFC 3030 §2: after a failure the client must RSET); its octets have
    /// been read and dropped.
    pub fn chunk_after_failure() -> Reply {
        Reply::coded(503, (5, 5, 0), "Error: an earlier BDAT failed, send RSET")
    }

    /// `503 5.5.1 Error: DATA after BDAT`: DATA and BDAT do not mix in one transaction
    /// (RFC 3030 §2).
    pub fn data_after_bdat() -> Reply {
        Reply::coded(503, (5, 5, 1), "Error: DATA after BDAT")
    }

    /// `503 5.5.1 Error: RCPT after BDAT`: the recipients are complete once content started.
    pub fn rcpt_after_bdat() -> Reply {
        Reply::coded(503, (5, 5, 1), "Error: RCPT after BDAT")
    }

    /// `421 4.5.0 <host> Error: BDAT size unreadable, closing`: after the `501` for a BDAT
    /// whose size is not a number (or does not fit 64 bits): the chunk's end cannot be
    /// known, so its octets must not be read as commands (RFC 3030 §2; RFC 5321 §3.8).
    pub fn chunk_size_unknown(host: &str) -> Reply {
        Reply::coded(
            421,
            (4, 5, 0),
            format!("{host} Error: BDAT size unreadable, closing connection"),
        )
    }

    /// `252 2.0.0 Cannot VRFY user, ...`: VRFY neither confirms nor denies a user
    /// (RFC 5321 §3.5.3).
    pub fn cannot_vrfy() -> Reply {
        Reply::coded(
            252,
            (2, 0, 0),
            "Cannot VRFY user, but will accept message and attempt delivery",
        )
    }

    /// `214 2.0.0 Commands: ...`: the answer to HELP (RFC 5321 §4.1.1.8).
    pub fn help() -> Reply {
        Reply::coded(
            214,
            (2, 0, 0),
            "Commands: LHLO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT",
        )
    }

    /// `250 2.0.0 <address> <id> Saved`: one recipient's copy is stored durably
    /// (RFC 2033 §4.2: one reply per accepted recipient after the final dot).
    pub fn saved(address: &str, id: &str) -> Reply {
        Reply::coded(250, (2, 0, 0), format!("<{address}> {id} Saved"))
    }

    /// `250 2.0.0 <address> EARLIER Saved before`: a retry of a copy already stored as
    /// transaction `earlier` (the retry journal); nothing is stored again.
    pub fn already_saved(address: &str, earlier: &str) -> Reply {
        Reply::coded(
            250,
            (2, 0, 0),
            format!("<{address}> {earlier} Saved before, not stored again"),
        )
    }

    // Command errors.

    /// `500 5.5.2 Error: command not recognized` (RFC 5321 §4.2.4; RFC 3463 X.5.2).
    pub fn unrecognised() -> Reply {
        Reply::coded(500, (5, 5, 2), "Error: command not recognized")
    }

    /// `500 5.5.2 Error: line too long`: a command line over the limit (RFC 5321 §4.5.3.1.4).
    pub fn line_too_long() -> Reply {
        Reply::coded(500, (5, 5, 2), "Error: line too long")
    }

    /// `500 5.5.2 Error: bare <CR> or <LF> in command`: only CRLF ends a line
    /// (RFC 5321 §2.3.8).
    pub fn bare_newline_in_command() -> Reply {
        Reply::coded(500, (5, 5, 2), "Error: bare <CR> or <LF> in command")
    }

    /// `500 5.5.1 Error: this is LMTP, use LHLO`: HELO and EHLO must not get a 2xx in LMTP
    /// (RFC 2033 §4.1).
    pub fn not_lmtp() -> Reply {
        Reply::coded(500, (5, 5, 1), "Error: this is LMTP, use LHLO")
    }

    /// `502 5.5.1 Error: command not implemented`: EXPN (RFC 5321 §4.2.4, §3.5.2).
    pub fn not_implemented() -> Reply {
        Reply::coded(502, (5, 5, 1), "Error: command not implemented")
    }

    /// `501 5.5.4 <text>`: bad arguments; `text` says which (`Syntax: DATA`, `Bad SIZE
    /// parameter`, ...) (RFC 5321 §4.1.1, §4.3.2; RFC 3463 X.5.4).
    pub fn syntax_error(text: &'static str) -> Reply {
        Reply::coded(501, (5, 5, 4), text)
    }

    /// `503 5.5.1 Error: send LHLO first`: MAIL, RCPT or DATA before LHLO
    /// (RFC 5321 §4.1.1.1, §4.1.4).
    pub fn lhlo_first() -> Reply {
        Reply::coded(503, (5, 5, 1), "Error: send LHLO first")
    }

    /// `503 5.5.1 Error: nested MAIL command`: MAIL inside a transaction (RFC 5321 §4.1.4).
    pub fn nested_mail() -> Reply {
        Reply::coded(503, (5, 5, 1), "Error: nested MAIL command")
    }

    /// `503 5.5.1 Error: need MAIL command`: RCPT or DATA without MAIL (RFC 5321 §4.1.4).
    pub fn need_mail() -> Reply {
        Reply::coded(503, (5, 5, 1), "Error: need MAIL command")
    }

    /// `503 5.5.1 Error: no valid recipients`: DATA with no successful RCPT must fail with
    /// 503 in LMTP (RFC 2033 §4.2).
    pub fn no_valid_recipients() -> Reply {
        Reply::coded(503, (5, 5, 1), "Error: no valid recipients")
    }

    /// `501 5.1.7 Bad sender address syntax` (RFC 5321 §4.1.2; RFC 3463 X.1.7).
    pub fn bad_sender_syntax() -> Reply {
        Reply::coded(501, (5, 1, 7), "Bad sender address syntax")
    }

    /// `501 5.1.7 Path too long`: a reverse-path over 256 octets (RFC 5321 §4.5.3.1.3).
    pub fn sender_too_long() -> Reply {
        Reply::coded(501, (5, 1, 7), "Path too long")
    }

    /// `501 5.1.3 Bad recipient address syntax` (RFC 5321 §4.1.2; RFC 3463 X.1.3).
    pub fn bad_recipient_syntax() -> Reply {
        Reply::coded(501, (5, 1, 3), "Bad recipient address syntax")
    }

    /// `501 5.1.3 Path too long`: a forward-path over 256 octets (RFC 5321 §4.5.3.1.3).
    pub fn recipient_too_long() -> Reply {
        Reply::coded(501, (5, 1, 3), "Path too long")
    }

    /// `555 5.5.4 Unsupported option`: an unknown MAIL or RCPT parameter
    /// (RFC 5321 §4.1.1.11).
    pub fn unsupported_option() -> Reply {
        Reply::coded(555, (5, 5, 4), "Unsupported option")
    }

    /// `555 5.5.4 Unsupported BODY parameter`: a BODY value other than 7BIT or 8BITMIME
    /// (RFC 6152 §2; RFC 5321 §4.1.1.11).
    pub fn unsupported_body() -> Reply {
        Reply::coded(555, (5, 5, 4), "Unsupported BODY parameter")
    }

    /// `552 5.3.4 Message size exceeds fixed limit`: at MAIL for `SIZE=` over the limit, and
    /// after the dot for each recipient of a message that grew over it (RFC 1870 §6.1;
    /// RFC 3463 X.3.4).
    pub fn message_too_big() -> Reply {
        Reply::coded(552, (5, 3, 4), "Message size exceeds fixed limit")
    }

    /// `550 5.6.7 Non-ASCII sender requires SMTPUTF8` (RFC 6531 §3.5).
    pub fn non_ascii_sender() -> Reply {
        Reply::coded(550, (5, 6, 7), "Non-ASCII sender requires SMTPUTF8")
    }

    /// `553 5.6.7 Non-ASCII recipient requires SMTPUTF8` (RFC 6531 §3.5).
    pub fn non_ascii_recipient() -> Reply {
        Reply::coded(553, (5, 6, 7), "Non-ASCII recipient requires SMTPUTF8")
    }

    /// `452 4.5.3 Error: too many recipients`: RCPT over the per-transaction limit
    /// (RFC 5321 §4.5.3.1.10).
    pub fn too_many_recipients() -> Reply {
        Reply::coded(452, (4, 5, 3), "Error: too many recipients")
    }

    /// `550 5.5.2 Bare <CR> or <LF> received`: content refused for each recipient under the
    /// reject policy for bare line ends (RFC 5321 §2.3.8; Postfix's wording).
    pub fn bare_newline_refused() -> Reply {
        Reply::coded(550, (5, 5, 2), "Bare <CR> or <LF> received")
    }

    /// `451 4.3.5 Mail system configuration error`: a recipient is routed to a store that is
    /// not open (RFC 3463 X.3.5); the one definition is [`DeliveryError::config_error`].
    pub fn config_error() -> Reply {
        Reply::delivery_error(&DeliveryError::config_error())
    }

    /// The reply for a store's [`DeliveryError`]: its code, enhanced code and client-safe
    /// text (never its `source`).
    pub fn delivery_error(e: &DeliveryError) -> Reply {
        // A multi-line text (a Sieve reject reason) is a multi-line reply (RFC 5429 §2.1.1).
        let mut r = Reply::new(e.code, e.enhanced, String::new());
        r.lines = e.text.split('\n').map(String::from).collect();
        r
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_displays_dotted() {
        assert_eq!(Enhanced(4, 2, 2).to_string(), "4.2.2");
    }

    #[test]
    fn one_line_reply_with_enhanced_code() {
        let r = Reply::new(250, Enhanced(2, 1, 0), "Ok");
        assert_eq!(r.to_bytes(), b"250 2.1.0 Ok\r\n");
        assert!(r.is_positive());
    }

    #[test]
    fn plain_reply_has_no_enhanced_code() {
        let r = Reply::plain(354, "End data with <CR><LF>.<CR><LF>");
        assert_eq!(r.to_bytes(), b"354 End data with <CR><LF>.<CR><LF>\r\n");
        assert!(!r.is_positive());
    }

    #[test]
    fn multi_line_reply_repeats_code_and_enhanced_code() {
        let r = Reply {
            code: 452,
            enhanced: Some(Enhanced(4, 2, 2)),
            lines: vec!["a".into(), "b".into(), "c".into()],
        };
        assert_eq!(
            r.to_bytes(),
            b"452-4.2.2 a\r\n452-4.2.2 b\r\n452 4.2.2 c\r\n".to_vec()
        );
    }

    #[test]
    fn reply_text_never_emits_cr_or_lf() {
        let r = Reply::new(550, Enhanced(5, 1, 1), "x\r\n250 2.0.0 forged\ry\nz");
        assert_eq!(r.to_bytes(), b"550 5.1.1 x  250 2.0.0 forged y z\r\n");
    }

    #[test]
    fn reply_line_is_capped_at_512_octets() {
        let r = Reply::new(550, Enhanced(5, 1, 1), "é".repeat(1000));
        let b = r.to_bytes();
        assert!(b.len() <= MAX_REPLY_LINE);
        assert!(b.ends_with(b"\r\n"));
        assert!(std::str::from_utf8(&b).is_ok());
    }

    /// Every named reply with its exact wire form: the bytes clients (and the integration
    /// tests) see must not change when a constructor is edited.
    fn named() -> Vec<(Reply, &'static str)> {
        let m = "a@b";
        vec![
            (Reply::greeting("h"), "220 h LMTP ready\r\n"),
            (
                Reply::lhlo("h", 7),
                "250-h\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n\
                 250-CHUNKING\r\n250-SIZE 7\r\n250-SMTPUTF8\r\n250 DSN\r\n",
            ),
            (Reply::bye(), "221 2.0.0 Bye\r\n"),
            (
                Reply::too_many_errors("h"),
                "421 4.7.0 h Error: too many errors\r\n",
            ),
            (
                Reply::timeout("h"),
                "421 4.4.2 h Error: timeout exceeded\r\n",
            ),
            (
                Reply::shutting_down("h"),
                "421 4.3.2 h Service shutting down\r\n",
            ),
            (
                Reply::too_many_connections("h"),
                "421 4.3.2 h Too many connections, try again later\r\n",
            ),
            (
                Reply::out_of_resources("h"),
                "421 4.3.2 h Out of resources, try again later\r\n",
            ),
            (
                Reply::internal_error(),
                "421 4.3.0 Internal error, closing connection; try again later\r\n",
            ),
            (Reply::ok(), "250 2.0.0 Ok\r\n"),
            (Reply::mail_ok(), "250 2.1.0 Ok\r\n"),
            (Reply::rcpt_ok(&m), "250 2.1.5 <a@b> OK\r\n"),
            (
                Reply::start_data(),
                "354 End data with <CR><LF>.<CR><LF>\r\n",
            ),
            (Reply::chunk_ok(12), "250 2.0.0 12 octets received\r\n"),
            (
                Reply::chunk_after_failure(),
                "503 5.5.0 Error: an earlier BDAT failed, send RSET\r\n",
            ),
            (
                Reply::data_after_bdat(),
                "503 5.5.1 Error: DATA after BDAT\r\n",
            ),
            (
                Reply::rcpt_after_bdat(),
                "503 5.5.1 Error: RCPT after BDAT\r\n",
            ),
            (
                Reply::chunk_size_unknown("h"),
                "421 4.5.0 h Error: BDAT size unreadable, closing connection\r\n",
            ),
            (
                Reply::cannot_vrfy(),
                "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery\r\n",
            ),
            (
                Reply::help(),
                "214 2.0.0 Commands: LHLO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT\r\n",
            ),
            (Reply::saved(m, "x-1-2"), "250 2.0.0 <a@b> x-1-2 Saved\r\n"),
            (
                Reply::unrecognised(),
                "500 5.5.2 Error: command not recognized\r\n",
            ),
            (Reply::line_too_long(), "500 5.5.2 Error: line too long\r\n"),
            (
                Reply::bare_newline_in_command(),
                "500 5.5.2 Error: bare <CR> or <LF> in command\r\n",
            ),
            (
                Reply::not_lmtp(),
                "500 5.5.1 Error: this is LMTP, use LHLO\r\n",
            ),
            (
                Reply::not_implemented(),
                "502 5.5.1 Error: command not implemented\r\n",
            ),
            (
                Reply::syntax_error("Syntax: DATA"),
                "501 5.5.4 Syntax: DATA\r\n",
            ),
            (Reply::lhlo_first(), "503 5.5.1 Error: send LHLO first\r\n"),
            (
                Reply::nested_mail(),
                "503 5.5.1 Error: nested MAIL command\r\n",
            ),
            (Reply::need_mail(), "503 5.5.1 Error: need MAIL command\r\n"),
            (
                Reply::no_valid_recipients(),
                "503 5.5.1 Error: no valid recipients\r\n",
            ),
            (
                Reply::bad_sender_syntax(),
                "501 5.1.7 Bad sender address syntax\r\n",
            ),
            (Reply::sender_too_long(), "501 5.1.7 Path too long\r\n"),
            (
                Reply::bad_recipient_syntax(),
                "501 5.1.3 Bad recipient address syntax\r\n",
            ),
            (Reply::recipient_too_long(), "501 5.1.3 Path too long\r\n"),
            (
                Reply::unsupported_option(),
                "555 5.5.4 Unsupported option\r\n",
            ),
            (
                Reply::unsupported_body(),
                "555 5.5.4 Unsupported BODY parameter\r\n",
            ),
            (
                Reply::message_too_big(),
                "552 5.3.4 Message size exceeds fixed limit\r\n",
            ),
            (
                Reply::non_ascii_sender(),
                "550 5.6.7 Non-ASCII sender requires SMTPUTF8\r\n",
            ),
            (
                Reply::non_ascii_recipient(),
                "553 5.6.7 Non-ASCII recipient requires SMTPUTF8\r\n",
            ),
            (
                Reply::too_many_recipients(),
                "452 4.5.3 Error: too many recipients\r\n",
            ),
            (
                Reply::bare_newline_refused(),
                "550 5.5.2 Bare <CR> or <LF> received\r\n",
            ),
            (
                Reply::config_error(),
                "451 4.3.5 Mail system configuration error\r\n",
            ),
        ]
    }

    #[test]
    fn named_replies_have_their_exact_wire_form() {
        for (r, want) in named() {
            assert_eq!(String::from_utf8(r.to_bytes()).unwrap(), want);
        }
    }

    #[test]
    fn named_replies_carry_an_enhanced_code_of_their_class_except_220_354_and_lhlo() {
        // RFC 2034 §3: every 2xx/4xx/5xx reply but the greeting and the LHLO reply carries
        // one, whose class is the basic code's first digit; 3xx replies carry none.
        for (r, want) in named() {
            let exempt = r.code == 220 || r.code == 354 || r.lines.len() > 1;
            match r.enhanced {
                Some(e) => {
                    assert!(!exempt, "{want}");
                    assert_eq!(u16::from(e.0), r.code / 100, "{want}");
                }
                None => assert!(exempt, "{want}"),
            }
        }
    }

    #[test]
    fn empty_lines_vector_writes_one_line() {
        let r = Reply {
            code: 250,
            enhanced: None,
            lines: vec![],
        };
        assert_eq!(r.to_bytes(), b"250 \r\n");
    }
}
