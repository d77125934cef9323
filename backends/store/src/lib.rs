//! The `MailStore` contract shared by every lmtpd mailbox backend: envelopes, recipients,
//! spooled messages, delivery requests with their targets, the per-recipient reporter and
//! classified delivery errors.
//!
//! The LMTP rule this crate protects: after the final dot the server answers once per
//! accepted recipient, in RCPT order (RFC 2033 §4.2). A store gets one [`Request`] (the
//! message and one [`Delivery`] per recipient, each with one or more [`Target`]s) and a
//! [`Reporter`]; it reports each recipient's outcome once, in any order, from any thread. The
//! reporter, not the store, releases the outcomes to the server in RCPT order, ignores second
//! reports and answers `451 4.3.0` for any recipient the store never reported, so the rule
//! holds whatever a store does. A [`DeliveryError`] carries the reply code the client sees.
//!
//! Modules: [`delivery`] (requests, targets, flags), [`export`] (`lmtpd export`'s mbox and
//! `.eml` output), [`report`] (the reporter), [`group`]
//! (one fsync or COMMIT shared by concurrent writers), [`headers`] (Message-ID and Subject
//! for SQL listings), [`path`] (the one path-component
//! rule), [`template`] (path templates), [`mboxrd`] and [`date`] (mbox format), and with the `testing`
//! feature [`testing`], the contract suite every backend runs.

pub mod date;
pub mod delivery;
pub mod export;
pub mod group;
pub mod headers;
pub mod mboxrd;
pub mod open;
pub mod path;
pub mod report;
pub mod template;
#[cfg(feature = "testing")]
pub mod testing;

pub use crate::delivery::{combine, Delivery, Flag, Flags, Folder, HeaderEdit, Request, Target};
pub use crate::report::{deliver_one, reporter, CloseOnDrop, Outcome, Replies, Reporter};

use std::fmt;
use std::io::{self, Cursor, Read};
use std::net::IpAddr;

/// An RFC 3463 enhanced status code `class.subject.detail`, e.g. `4.2.2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Enhanced(pub u8, pub u16, pub u16);

impl fmt::Display for Enhanced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// Whether the client may retry a failed delivery (4xx) or must give up (5xx).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A 4xx reply: the MTA keeps the message and retries later.
    Temporary,
    /// A 5xx reply: the MTA bounces the message for this recipient.
    Permanent,
}

/// Why one recipient's copy could not be stored (or the recipient cannot receive mail now).
///
/// `text` is shown to the client and must not contain paths, SQL or other internals;
/// `source` is for the log only.
#[derive(Debug)]
pub struct DeliveryError {
    /// Temporary (4xx) or permanent (5xx).
    pub kind: ErrorKind,
    /// The basic three-digit reply code, e.g. 452.
    pub code: u16,
    /// The enhanced status code, whose class matches `code`.
    pub enhanced: Enhanced,
    /// Client-safe reply text.
    pub text: String,
    /// What really happened, for the log.
    pub source: Option<String>,
}

impl DeliveryError {
    /// Builds an error from its reply code; the kind follows from the first digit.
    pub fn new(code: u16, enhanced: Enhanced, text: impl Into<String>) -> Self {
        let kind = if code >= 500 {
            ErrorKind::Permanent
        } else {
            ErrorKind::Temporary
        };
        DeliveryError {
            kind,
            code,
            enhanced,
            text: text.into(),
            source: None,
        }
    }

    /// Attaches the internal cause (logged, never sent to the client).
    pub fn with_source(mut self, source: impl fmt::Display) -> Self {
        self.source = Some(source.to_string());
        self
    }

    /// `550 5.1.1`: no such user here.
    pub fn unknown_user() -> Self {
        Self::new(550, Enhanced(5, 1, 1), "No such user here")
    }

    /// Mailbox full: `452 4.2.2` by default, `552 5.2.2` when `permfail` is set
    /// (`quota_full = permfail`).
    pub fn over_quota(permfail: bool) -> Self {
        if permfail {
            Self::new(552, Enhanced(5, 2, 2), "Mailbox full, quota exceeded")
        } else {
            Self::new(452, Enhanced(4, 2, 2), "Mailbox full, quota exceeded")
        }
    }

    /// `450 4.2.0`: the mailbox is locked by someone else past the lock timeout.
    pub fn mailbox_busy() -> Self {
        Self::new(450, Enhanced(4, 2, 0), "Mailbox busy, try again later")
    }

    /// `452 4.3.1`: the file system or database is full.
    pub fn storage_full() -> Self {
        Self::new(452, Enhanced(4, 3, 1), "Mail system full, try again later")
    }

    /// `451 4.3.0`: any other local problem; the MTA retries.
    pub fn local_error() -> Self {
        Self::new(
            451,
            Enhanced(4, 3, 0),
            "Local error in processing, try again later",
        )
    }

    /// `451 4.3.5`: the recipient is routed to a store that is not open (RFC 3463 X.3.5).
    pub fn config_error() -> Self {
        Self::new(451, Enhanced(4, 3, 5), "Mail system configuration error")
    }

    /// `550 5.2.0`: the mailbox exists but is unusable (a symlink, a hard link, not a file).
    pub fn mailbox_unusable() -> Self {
        Self::new(550, Enhanced(5, 2, 0), "Mailbox unavailable")
    }

    /// Classifies an I/O error once, the same way in every backend: a full disk or
    /// file-size limit becomes `452 4.3.1`, a disk quota the configured quota reply, anything
    /// else `451 4.3.0`. The OS error goes to `source`.
    pub fn from_io(err: &io::Error, quota_permfail: bool) -> Self {
        let base = match err.raw_os_error() {
            Some(code) if code == ENOSPC || code == EFBIG => Self::storage_full(),
            Some(code) if code == EDQUOT => Self::over_quota(quota_permfail),
            _ => Self::local_error(),
        };
        base.with_source(err)
    }
}

/// errno values used for classification (identical on Linux and the BSDs for these three,
/// except EDQUOT, which differs).
const ENOSPC: i32 = 28;
const EFBIG: i32 = 27;
#[cfg(target_os = "linux")]
const EDQUOT: i32 = 122;
#[cfg(not(target_os = "linux"))]
const EDQUOT: i32 = 69;

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.code, self.enhanced, self.text)?;
        if let Some(src) = &self.source {
            write!(f, " ({src})")?;
        }
        Ok(())
    }
}

impl std::error::Error for DeliveryError {}

/// What a `+detail` in the recipient address does: it may select a folder named by the
/// detail (a Maildir++ folder, an mbox file, a SQLite folder column).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetailMailbox {
    /// Ignore the detail: always deliver to INBOX.
    No,
    /// Deliver to the folder when it exists, else to INBOX.
    Yes,
    /// Deliver to the folder, creating it when missing.
    Create,
}

/// Per-user limits from the users file. `None` means unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quota {
    /// Total bytes the mailbox may hold.
    pub bytes: Option<u64>,
    /// Number of messages the mailbox may hold.
    pub messages: Option<u64>,
    /// Bytes of grace over the byte limit: a message that starts below the byte limit may
    /// end above it by at most this much (0: none). No grace applies to the message count.
    pub grace: u64,
}

impl Quota {
    /// True when any limit is set.
    pub fn is_limited(&self) -> bool {
        self.bytes.is_some() || self.messages.is_some()
    }

    /// True when the usage already reaches a limit (nothing more may be added).
    pub fn is_full(&self, used_bytes: u64, used_messages: u64) -> bool {
        self.bytes.is_some_and(|b| used_bytes >= b)
            || self.messages.is_some_and(|m| used_messages >= m)
    }

    /// True when adding one message of `size` bytes would exceed a limit: with a byte
    /// limit `b`, when the usage already reaches `b`, or when the message would end more
    /// than [`Quota::grace`] bytes above `b`; with a message limit, when one more message
    /// would pass it.
    pub fn would_exceed(&self, used_bytes: u64, used_messages: u64, size: u64) -> bool {
        self.bytes.is_some_and(|b| {
            used_bytes >= b || used_bytes.saturating_add(size) > b.saturating_add(self.grace)
        }) || self
            .messages
            .is_some_and(|m| used_messages.saturating_add(1) > m)
    }

    /// True when a message of `size` bytes could not be stored even into an empty mailbox:
    /// a byte limit is set and `size` exceeds it by more than the grace.
    pub fn can_never_hold(&self, size: u64) -> bool {
        self.bytes
            .is_some_and(|b| size > b.saturating_add(self.grace))
    }
}

/// A mailbox's usage as its quota counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes in use.
    pub bytes: u64,
    /// Messages stored.
    pub messages: u64,
}

/// A resolved recipient: who the mail is for and where inside their mailbox it goes.
///
/// Every field that may reach a path has been checked by the directory (no `/`, no `..`,
/// no control characters, no leading dot); backends still treat them as untrusted text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// The forward-path as the client gave it (after source-route removal), for
    /// `Delivered-To`, `for <...>` and the log.
    pub address: String,
    /// Canonical user address from the users file, e.g. `alice@example.org` (`%u`).
    pub user: String,
    /// Local part of `user` (`%n`).
    pub local: String,
    /// Domain of `user`, lower case (`%d`).
    pub domain: String,
    /// The `+detail` of the address, if any. Stores do not read it: the server turns it into
    /// the delivery's [`Target`] (`detail_mailbox`).
    pub detail: Option<String>,
    /// Quota limits for this user.
    pub quota: Quota,
    /// The original recipient the client gave with DSN `ORCPT=` (RFC 3461 §4.2), decoded:
    /// the copy gets an `X-Original-To:` field with it, and Sieve's `envelope "to"` tests it.
    pub orcpt: Option<String>,
}

impl Recipient {
    /// The plainest recipient of `local@domain`: the address is the user, no `+detail`, no
    /// quota. For tools and tests; the server builds its recipients
    /// from the users file.
    pub fn new(local: &str, domain: &str) -> Recipient {
        let address = format!("{local}@{domain}");
        Recipient {
            user: address.clone(),
            address,
            local: local.into(),
            domain: domain.into(),
            detail: None,
            quota: Quota::default(),
            orcpt: None,
        }
    }
}

/// The null or a real reverse-path (`MAIL FROM`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Envelope {
    /// The sender mailbox, `None` for the null reverse-path `<>`.
    pub sender: Option<String>,
    /// The client's LHLO argument.
    pub lhlo: String,
    /// The client's IP address on TCP; `None` on a Unix socket or stdin.
    pub peer: Option<IpAddr>,
    /// Whether MAIL carried `SMTPUTF8`.
    pub smtputf8: bool,
    /// Whether MAIL carried `BODY=8BITMIME`.
    pub eight_bit: bool,
    /// This transaction's id (also in the Received header and the log).
    pub id: String,
}

impl Envelope {
    /// The reverse-path as it appears in `Return-Path:`: the address, or empty for `<>`.
    pub fn sender_or_empty(&self) -> &str {
        self.sender.as_deref().unwrap_or("")
    }
}

/// Why [`pump`] stopped before the end of its source.
#[derive(Debug)]
pub enum PumpError<E> {
    /// Reading the source failed.
    Read(io::Error),
    /// The sink refused a chunk.
    Sink(E),
}

/// Reads `reader` to its end through `buf` (retrying interrupted reads), hands every chunk to
/// `sink` and returns the number of bytes read: the one copy loop of every store, so memory
/// never grows with the message.
pub fn pump<E>(
    reader: &mut dyn Read,
    buf: &mut [u8],
    mut sink: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<u64, PumpError<E>> {
    let mut total = 0u64;
    loop {
        match reader.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => {
                sink(&buf[..n]).map_err(PumpError::Sink)?;
                total += n as u64;
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(PumpError::Read(err)),
        }
    }
}

/// A spooled message body that can be read from the start as often as needed.
pub trait Body: Send + Sync {
    /// The body's length in bytes as stored (LF line endings).
    fn len(&self) -> u64;
    /// True when the body is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A fresh reader positioned at the start of the body.
    fn open(&self) -> io::Result<Box<dyn Read + Send + '_>>;
    /// Number of LF line ends in the body (so a backend can report the CRLF size,
    /// e.g. Maildir's `,W=`).
    fn lines(&self) -> u64;
    /// The file that holds exactly the body from offset 0, when there is one (so it can be
    /// passed to another process as a descriptor instead of being copied).
    fn file(&self) -> Option<&std::fs::File> {
        None
    }
}

/// A body held in memory; handy for tests and tiny messages.
#[derive(Clone, Debug, Default)]
pub struct MemoryBody(pub Vec<u8>);

impl Body for MemoryBody {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn open(&self) -> io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(Cursor::new(&self.0[..])))
    }
    fn lines(&self) -> u64 {
        self.0.iter().filter(|&&b| b == b'\n').count() as u64
    }
}

/// The message handed to a store after the final dot: the envelope plus the spooled body.
/// Each recipient's copy is that recipient's trace prefix ([`Delivery::trace`]) followed by
/// the body.
#[derive(Clone, Copy)]
pub struct Message<'a> {
    /// The envelope of the transaction.
    pub envelope: &'a Envelope,
    /// The body (headers and content, LF line endings, incoming Return-Path removed).
    pub body: &'a dyn Body,
}

impl<'a> Message<'a> {
    /// Wraps an envelope and a body.
    pub fn new(envelope: &'a Envelope, body: &'a dyn Body) -> Self {
        Message { envelope, body }
    }

    /// Size in bytes of a copy that starts with `prefix` (trace headers), as stored.
    pub fn copy_size(&self, prefix: &[u8]) -> u64 {
        prefix.len() as u64 + self.body.len()
    }

    /// Number of LF line ends in a copy that starts with `prefix`.
    pub fn copy_lines(&self, prefix: &[u8]) -> u64 {
        prefix.iter().filter(|&&b| b == b'\n').count() as u64 + self.body.lines()
    }

    /// A reader over a whole copy: `prefix`, then the body.
    pub fn reader<'p>(&'p self, prefix: &'p [u8]) -> io::Result<impl Read + 'p> {
        Ok(Cursor::new(prefix).chain(self.body.open()?))
    }
}

/// A mailbox backend (Maildir, mbox, SQLite). Object-safe: the store is chosen at run time
/// and different recipients of one transaction may live in different stores.
pub trait MailStore: Send + Sync {
    /// A short name for logs (`maildir`, `mbox`, `sqlite`).
    fn name(&self) -> &'static str;

    /// At RCPT time: may this recipient receive mail now? (The mailbox is usable and not
    /// already over quota.) Must be cheap: it runs once per RCPT.
    fn check(&self, rcpt: &Recipient) -> Result<(), DeliveryError>;

    /// After the final dot: stores every delivery's copies (one per target) and reports each
    /// delivery's one outcome through `reporter`, by its index in `req.deliveries`, as soon
    /// as it is known: `Ok` only once the copies it covers are durable (fsynced file and
    /// directory, or a committed transaction), combined over the targets with [`combine`].
    /// One recipient's failure never changes another's outcome. When
    /// [`Reporter::report`] returns false (or [`Reporter::client_gone`] is true) the client is
    /// gone: start no further copy, since nobody would learn of it and the client retries
    /// them all; still report every copy already stored (the log must be true). Anything
    /// left unreported when this returns gets `451 4.3.0`.
    fn deliver(&self, req: &Request<'_>, reporter: &Reporter);

    /// Whether [`MailStore::deliver`] reports outcomes one by one while it still works on
    /// later recipients (each copy durable on its own). The server then runs a call with
    /// several recipients on a helper thread and writes each reply as it comes (RFC 2033
    /// §5). A store that makes all of a call's copies durable at once (SQLite: one COMMIT)
    /// says false and is called on the session's own thread, saving the thread.
    fn reports_progressively(&self) -> bool {
        true
    }

    /// Does the recipient's folder `folder` exist (Sieve `mailboxexists`, RFC 5490 §3.1)?
    /// `folder` uses `.` between hierarchy levels, as [`Folder::Named`] does; `INBOX`
    /// (in any case) always exists; a name the store cannot use does not.
    fn mailbox_exists(&self, rcpt: &Recipient, folder: &str) -> Result<bool, DeliveryError>;

    /// The recipient's current usage (cheap: the store's own counters, e.g. `maildirsize`,
    /// the cached mbox count, the SQL counters), `Ok(None)` when the store cannot tell.
    /// A mailbox that does not exist yet uses nothing. Never holds a mailbox lock for long:
    /// the server may call it after every delivery to a recipient with a quota.
    fn usage(&self, rcpt: &Recipient) -> Result<Option<Usage>, DeliveryError> {
        let _ = rcpt;
        Ok(None)
    }

    /// Recounts the usage from the messages themselves and rewrites the store's counters
    /// (for admins after manual changes to a mailbox); returns the new usage; `Ok(None)`
    /// when unsupported.
    fn recalc(&self, rcpt: &Recipient) -> Result<Option<Usage>, DeliveryError> {
        let _ = rcpt;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that is interrupted before every chunk and fails after `fail_after` bytes.
    struct Flaky {
        data: Vec<u8>,
        pos: usize,
        interrupt: bool,
        fail_after: Option<usize>,
    }

    impl Read for Flaky {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(io::ErrorKind::Interrupted.into());
            }
            if self.fail_after.is_some_and(|n| self.pos >= n) {
                return Err(io::Error::other("disk gone"));
            }
            let n = buf.len().min(3).min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    #[test]
    fn pump_retries_interrupted_reads_and_tells_read_from_sink_errors() {
        let flaky = |fail_after| Flaky {
            data: b"0123456789".to_vec(),
            pos: 0,
            interrupt: false,
            fail_after,
        };
        let mut buf = [0u8; 8];
        let mut out = Vec::new();
        let n = pump(&mut flaky(None), &mut buf, |c| {
            out.extend_from_slice(c);
            Ok::<(), ()>(())
        });
        assert!(matches!(n, Ok(10)), "{n:?}");
        assert_eq!(out, b"0123456789");
        let read = pump(&mut flaky(Some(6)), &mut buf, |_| Ok::<(), ()>(()));
        assert!(matches!(read, Err(PumpError::Read(e)) if e.to_string() == "disk gone"));
        let mut seen = 0;
        let sink = pump(&mut flaky(None), &mut buf, |c| {
            seen += c.len();
            if seen > 4 {
                Err("full")
            } else {
                Ok(())
            }
        });
        assert!(matches!(sink, Err(PumpError::Sink("full"))));
        assert_eq!(seen, 6, "no chunk after the refused one");
    }

    #[test]
    fn io_errors_are_classified_once() {
        let full = io::Error::from_raw_os_error(ENOSPC);
        let e = DeliveryError::from_io(&full, false);
        assert_eq!((e.code, e.enhanced), (452, Enhanced(4, 3, 1)));
        let other = io::Error::from_raw_os_error(5); // EIO
        let e = DeliveryError::from_io(&other, false);
        assert_eq!((e.code, e.enhanced), (451, Enhanced(4, 3, 0)));
        assert_eq!(e.kind, ErrorKind::Temporary);
        let quota = io::Error::from_raw_os_error(EDQUOT);
        let e = DeliveryError::from_io(&quota, true);
        assert_eq!((e.code, e.enhanced), (552, Enhanced(5, 2, 2)));
        assert_eq!(e.kind, ErrorKind::Permanent);
    }

    #[test]
    fn quota_limits() {
        let q = Quota {
            bytes: Some(1000),
            messages: Some(2),
            grace: 0,
        };
        assert!(!q.is_full(990, 1));
        assert!(q.would_exceed(990, 1, 20));
        assert!(!q.would_exceed(990, 1, 5));
        assert!(!q.would_exceed(990, 1, 10), "ends exactly at the limit");
        assert!(q.would_exceed(0, 2, 1));
        assert!(q.is_full(1000, 0));
        assert!(!Quota::default().is_limited());
    }

    #[test]
    fn quota_grace_lets_a_message_that_starts_below_the_limit_end_above_it() {
        let q = Quota {
            bytes: Some(1000),
            messages: Some(5),
            grace: 100,
        };
        // Below the limit: may end at limit + grace, not one byte later.
        assert!(!q.would_exceed(999, 0, 101));
        assert!(q.would_exceed(999, 0, 102));
        assert!(!q.would_exceed(0, 0, 1100));
        assert!(q.would_exceed(0, 0, 1101));
        // At or above the limit nothing more goes in, however small.
        assert!(q.would_exceed(1000, 0, 1));
        assert!(q.would_exceed(1000, 0, 0));
        assert!(q.would_exceed(1050, 0, 1));
        assert!(q.is_full(1000, 0));
        assert!(!q.is_full(999, 0));
        // No grace for the message count.
        assert!(q.would_exceed(0, 5, 1));
        assert!(!q.would_exceed(0, 4, 1));
        // Saturating arithmetic at the edges.
        let huge = Quota {
            bytes: Some(u64::MAX - 1),
            messages: None,
            grace: u64::MAX,
        };
        assert!(!huge.would_exceed(0, 0, u64::MAX));
        assert!(!huge.can_never_hold(u64::MAX));
    }

    #[test]
    fn can_never_hold_is_size_over_limit_plus_grace() {
        let q = Quota {
            bytes: Some(1000),
            messages: Some(1),
            grace: 10,
        };
        assert!(!q.can_never_hold(1010));
        assert!(q.can_never_hold(1011));
        let no_grace = Quota { grace: 0, ..q };
        assert!(!no_grace.can_never_hold(1000));
        assert!(no_grace.can_never_hold(1001));
        // Only the byte limit can make a message too big for good.
        let count_only = Quota {
            bytes: None,
            messages: Some(0),
            grace: 0,
        };
        assert!(!count_only.can_never_hold(u64::MAX));
        assert!(!Quota::default().can_never_hold(u64::MAX));
    }

    #[test]
    fn message_reader_prefixes_trace() {
        let env = Envelope::default();
        let body = MemoryBody(b"Subject: x\n\nhi\n".to_vec());
        let msg = Message::new(&env, &body);
        let trace = b"X-T: 1\n";
        let mut out = Vec::new();
        msg.reader(trace)
            .and_then(|mut rd| rd.read_to_end(&mut out))
            .ok();
        assert_eq!(out, b"X-T: 1\nSubject: x\n\nhi\n");
        assert_eq!(msg.copy_size(trace), out.len() as u64);
        assert_eq!(msg.copy_lines(trace), 4);
    }
}
