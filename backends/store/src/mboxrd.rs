//! The mboxrd format (RFC 4155, standards §7.2–7.5), shared by the mbox store and the SQLite
//! export: the `From ` separator line and the streaming filter that quotes `^>*From ` lines,
//! drops reader-trusted header fields and terminates each message with exactly one empty
//! line.

use std::io::{self, Write};
use std::time::SystemTime;

use crate::date::asctime;

/// Output buffer size of the filter: memory use does not grow with the message.
pub const BUF_SIZE: usize = 64 * 1024;

/// Header fields removed from the message's header section, lower case: mbox readers
/// (Dovecot, mutt) trust them as their own metadata (standards §7.5).
pub const DROPPED_FIELDS: [&str; 7] = [
    "status",
    "x-status",
    "x-uid",
    "x-imapbase",
    "x-imap",
    "x-keywords",
    "content-length",
];

/// Longest header line start buffered while deciding whether the field is dropped; longer
/// field names cannot be one of [`DROPPED_FIELDS`].
const NAME_MAX: usize = 32;

const FROM: &[u8; 5] = b"From ";

/// The envelope sender as one word for the separator line: `MAILER-DAEMON` for the null
/// sender (or an empty one); whitespace and control characters become `-` (qmail mbox(5)).
pub fn separator_sender(sender: Option<&str>) -> String {
    match sender {
        Some(s) if !s.trim().is_empty() => s
            .chars()
            .map(|c| {
                if c.is_whitespace() || c.is_control() {
                    '-'
                } else {
                    c
                }
            })
            .collect(),
        _ => "MAILER-DAEMON".into(),
    }
}

/// The separator line `From <sender> <asctime>\n` (one space each, UTC).
pub fn from_line(sender: Option<&str>, time: SystemTime) -> String {
    format!("From {} {}\n", separator_sender(sender), asctime(time))
}

/// Where the filter is within the current line.
#[derive(Clone, Copy, Debug)]
enum State {
    /// Nothing of the line seen yet.
    LineStart,
    /// The line so far is this many `>`.
    Gt(u64),
    /// The line so far is `gts` times `>` and the first `matched` bytes of `From `.
    From { gts: u64, matched: usize },
    /// A header line whose first `len` bytes (in `name`) are held back until its field name
    /// is known.
    Name { len: usize },
    /// The rest of the line is copied.
    Copy,
    /// The rest of the line is dropped (a removed header field).
    Drop,
}

/// Streams one message copy into mboxrd form: every line matching `^>*From ` gets one more
/// `>`, fields in [`DROPPED_FIELDS`] (with their continuation lines) are removed from the
/// header section (up to the first empty line), and [`finish`](Filter::finish) makes the
/// copy end with a newline followed by one empty line. Works byte by byte across input
/// chunks of any size with a fixed-size output buffer.
pub struct Filter<W: Write> {
    out: W,
    buf: Vec<u8>,
    state: State,
    /// Still in the header section.
    headers: bool,
    /// The current header field is being removed (its continuation lines go too).
    dropping: bool,
    name: [u8; NAME_MAX],
    /// The last byte emitted, if any.
    last: Option<u8>,
    written: u64,
}

impl<W: Write> Filter<W> {
    /// A filter writing to `out`, starting in the header section.
    pub fn new(out: W) -> Self {
        Filter {
            out,
            buf: Vec::with_capacity(BUF_SIZE),
            state: State::LineStart,
            headers: true,
            dropping: false,
            name: [0; NAME_MAX],
            last: None,
            written: 0,
        }
    }

    fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        let Some(&last) = bytes.last() else {
            return Ok(());
        };
        if self.buf.len() + bytes.len() > BUF_SIZE {
            self.flush_buf()?;
        }
        if bytes.len() >= BUF_SIZE {
            self.out.write_all(bytes)?;
        } else {
            self.buf.extend_from_slice(bytes);
        }
        self.last = Some(last);
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn emit_gts(&mut self, mut n: u64) -> io::Result<()> {
        const GTS: [u8; 64] = [b'>'; 64];
        while n > 0 {
            let k = n.min(GTS.len() as u64) as usize;
            self.emit(&GTS[..k])?;
            n -= k as u64;
        }
        Ok(())
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Writes `bytes` as they are (the separator line), outside the line state machine.
    pub fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.emit(bytes)
    }

    /// Filters the next chunk of the copy.
    pub fn feed(&mut self, data: &[u8]) -> io::Result<()> {
        let mut i = 0;
        while i < data.len() {
            match self.state {
                State::Copy | State::Drop => {
                    let rest = &data[i..];
                    let (chunk, line_ends) = match rest.iter().position(|&b| b == b'\n') {
                        Some(p) => (&rest[..=p], true),
                        None => (rest, false),
                    };
                    if matches!(self.state, State::Copy) {
                        self.emit(chunk)?;
                    }
                    if line_ends {
                        self.state = State::LineStart;
                    }
                    i += chunk.len();
                }
                _ => {
                    self.step(data[i])?;
                    i += 1;
                }
            }
        }
        Ok(())
    }

    /// Copies one byte in the middle of a line.
    fn copy_byte(&mut self, b: u8) -> io::Result<()> {
        self.emit(&[b])?;
        self.state = if b == b'\n' {
            State::LineStart
        } else {
            State::Copy
        };
        Ok(())
    }

    /// Advances the line-start state machine by one byte.
    fn step(&mut self, b: u8) -> io::Result<()> {
        match self.state {
            State::LineStart if self.headers => match b {
                b'\n' => {
                    self.headers = false;
                    self.dropping = false;
                    self.emit(b"\n")?;
                }
                b' ' | b'\t' if self.dropping => self.state = State::Drop,
                b' ' | b'\t' => self.copy_byte(b)?,
                b'>' => {
                    self.dropping = false;
                    self.state = State::Gt(1);
                }
                b'F' => {
                    self.dropping = false;
                    self.state = State::From { gts: 0, matched: 1 };
                }
                _ => {
                    self.dropping = false;
                    self.state = State::Name { len: 0 };
                    self.step(b)?;
                }
            },
            State::LineStart => match b {
                b'>' => self.state = State::Gt(1),
                b'F' => self.state = State::From { gts: 0, matched: 1 },
                _ => self.copy_byte(b)?,
            },
            State::Gt(n) => match b {
                b'>' => self.state = State::Gt(n.saturating_add(1)),
                b'F' => self.state = State::From { gts: n, matched: 1 },
                _ => {
                    self.emit_gts(n)?;
                    self.copy_byte(b)?;
                }
            },
            State::From { gts, matched } => {
                if b == FROM[matched] {
                    if matched + 1 == FROM.len() {
                        self.emit(b">")?;
                        self.emit_gts(gts)?;
                        self.emit(FROM)?;
                        self.state = State::Copy;
                    } else {
                        self.state = State::From {
                            gts,
                            matched: matched + 1,
                        };
                    }
                } else {
                    self.emit_gts(gts)?;
                    self.emit(&FROM[..matched])?;
                    self.copy_byte(b)?;
                }
            }
            State::Name { len } => {
                if b == b':' {
                    let mut end = len;
                    while end > 0 && matches!(self.name[end - 1], b' ' | b'\t') {
                        end -= 1;
                    }
                    let name = &self.name[..end];
                    if DROPPED_FIELDS
                        .iter()
                        .any(|f| f.as_bytes().eq_ignore_ascii_case(name))
                    {
                        self.dropping = true;
                        self.state = State::Drop;
                    } else {
                        let held = self.name;
                        self.emit(&held[..len])?;
                        self.copy_byte(b)?;
                    }
                } else if b == b'\n' || len == NAME_MAX {
                    let held = self.name;
                    self.emit(&held[..len])?;
                    self.copy_byte(b)?;
                } else {
                    self.name[len] = b;
                    self.state = State::Name { len: len + 1 };
                }
            }
            State::Copy => self.copy_byte(b)?,
            State::Drop => {
                if b == b'\n' {
                    self.state = State::LineStart;
                }
            }
        }
        Ok(())
    }

    /// Ends the copy: emits what is held back, a newline if the copy does not end with one,
    /// then the empty line that terminates every mbox message. Returns the writer and the
    /// number of bytes written.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        match self.state {
            State::Gt(n) => self.emit_gts(n)?,
            State::From { gts, matched } => {
                self.emit_gts(gts)?;
                self.emit(&FROM[..matched])?;
            }
            State::Name { len } => {
                let held = self.name;
                self.emit(&held[..len])?;
            }
            State::LineStart | State::Copy | State::Drop => {}
        }
        self.state = State::LineStart;
        if self.last.is_some_and(|b| b != b'\n') {
            self.emit(b"\n")?;
        }
        self.emit(b"\n")?;
        self.flush_buf()?;
        self.out.flush()?;
        Ok((self.out, self.written))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    /// The filter's output for `input`, fed whole and fed byte by byte (they must agree).
    fn filtered(input: &[u8]) -> Vec<u8> {
        let mut whole = Filter::new(Vec::new());
        whole.feed(input).unwrap();
        let (whole, _) = whole.finish().unwrap();
        let mut bytewise = Filter::new(Vec::new());
        for b in input {
            bytewise.feed(std::slice::from_ref(b)).unwrap();
        }
        let (bytewise, _) = bytewise.finish().unwrap();
        assert_eq!(whole, bytewise, "{:?}", String::from_utf8_lossy(input));
        whole
    }

    #[test]
    fn quoting_and_termination_do_not_depend_on_chunk_boundaries() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"\n\nFrom x\n", b"\n\n>From x\n\n"),
            (b"\n\n>From x\n", b"\n\n>>From x\n\n"),
            (b"\n\na\n>>>From \n", b"\n\na\n>>>>From \n\n"),
            (b"\n\nFrom", b"\n\nFrom\n\n"),
            (b"\n\n>>>", b"\n\n>>>\n\n"),
            (b"\n\nx From y\n", b"\n\nx From y\n\n"),
            (b"\n\n>Fro\nFrom\n", b"\n\n>Fro\nFrom\n\n"),
            (
                b"Subject: s\nStatus: RO\n\nStatus: body\n",
                b"Subject: s\n\nStatus: body\n\n",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                filtered(input),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }
}
