//! Server replies: the [`Reply`] value, enhanced status codes ([`Enhanced`]) and their wire form.

// The one enhanced-status-code type of the workspace is defined in the store crate, because
// the backends build their `DeliveryError`s with it and cannot depend on this crate. Re-using
// it keeps `proto` free of I/O: `lmtpd-store` depends only on `std` and `log`.
pub use lmtpd_store::Enhanced;

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
