//! The one test driver for [`Session`] (and the DATA decoder), shared by the session unit
//! tests, `tests/it/hardening.rs` and the fuzz targets in `tests/fuzz`: feed bytes in given
//! chunks, answer every verdict and outcome, collect the replies and events. No I/O.
//!
//! Not part of the API (hidden from the docs); test support only, so it checks the session's
//! invariants with `assert!` and panics when one breaks:
//!
//! - [`Session::poll`] yields nothing while a verdict or the outcomes are awaited;
//! - exactly one post-DATA reply per accepted recipient, in order, and nothing else; a
//!   refused message has its reply once per recipient;
//! - buffered input stays within one chunk plus [`MAX_COMMAND_LINE`], Body chunks and the
//!   output after a read are bounded by what was just received, output ends on CRLF;
//! - `Close` is yielded once, and nothing is sent after the end of input.

use super::{Event, MailFrom, Mailbox, Reply, Session, SessionConfig, MAX_COMMAND_LINE};
use crate::proto::{DataDecoder, Enhanced};

/// One DATA transaction as the driver saw it.
#[derive(Debug, PartialEq, Eq)]
pub struct Msg<R> {
    /// The MAIL command.
    pub mail: MailFrom,
    /// The accepted recipients, as the verdicts returned them.
    pub rcpts: Vec<R>,
    /// The size the session counted.
    pub size: u64,
    /// The content delivered (empty when refused).
    pub body: Vec<u8>,
    /// The reply a refused (discarded) message got, once per recipient.
    pub discarded: Option<Reply>,
    /// The transaction's XFORWARD attributes.
    pub xforward: super::Xforward,
}

/// Everything a driver observes.
#[derive(Debug, PartialEq, Eq)]
pub struct Transcript<R> {
    /// Every octet the session sent, in order.
    pub output: Vec<u8>,
    /// [`Transcript::output`] as text (invalid UTF-8 replaced).
    pub out: String,
    /// The transactions that reached the end of DATA.
    pub msgs: Vec<Msg<R>>,
    /// Every `Recipient` event, in order.
    pub recipients: Vec<Mailbox>,
    /// `Close` was yielded.
    pub closed: bool,
    /// Content of a message still being received when the input ended.
    pub body: Option<Vec<u8>>,
    /// The events as one log independent of the chunking: `[start]`, the content and
    /// `[end]` for a delivered message, `[discarded]`, `[abandoned]`, `[starttls]`,
    /// `[close]`.
    pub log: Vec<u8>,
}

impl<R> Transcript<R> {
    /// The event log followed by `[replies]` and the output: what must not depend on how
    /// the input was chunked.
    pub fn log_and_replies(&self) -> Vec<u8> {
        let mut v = self.log.clone();
        v.extend_from_slice(b"\n[replies]\n");
        v.extend_from_slice(&self.output);
        v
    }
}

/// Answers a `Recipient` event: the recipient handle, or the refusal sent for it.
pub type Verdict<'a, R> = &'a mut dyn FnMut(&Mailbox) -> Result<R, Reply>;
/// Answers one recipient of a `MessageEnd`: its post-DATA reply.
pub type Outcome<'a, R> = &'a mut dyn FnMut(&R) -> Reply;

/// Drives a new session with `cfg`: feeds `chunks` one by one (stopping when the session
/// closes), answering every event through `verdict` and `outcome`; with `eof` the input then
/// ends (as when the peer closes). Checks the invariants listed at the top of this module.
pub fn drive<R>(
    cfg: &SessionConfig,
    chunks: &[&[u8]],
    eof: bool,
    verdict: Verdict<'_, R>,
    outcome: Outcome<'_, R>,
) -> Transcript<R> {
    let mut s: Session<R> = Session::new(cfg.clone());
    let mut t = Transcript {
        output: Vec::new(),
        out: String::new(),
        msgs: Vec::new(),
        recipients: Vec::new(),
        closed: false,
        body: None,
        log: Vec::new(),
    };
    let mut last_chunk = 0usize;
    for c in chunks {
        drain(&mut s, &mut t, last_chunk, verdict, outcome);
        take(&mut s, &mut t, last_chunk);
        if s.is_closed() {
            break;
        }
        s.receive(c);
        last_chunk = c.len();
        assert!(s.input.len() <= c.len() + MAX_COMMAND_LINE);
    }
    drain(&mut s, &mut t, last_chunk, verdict, outcome);
    take(&mut s, &mut t, last_chunk);
    if eof {
        s.eof();
        drain(&mut s, &mut t, last_chunk, verdict, outcome);
        assert!(s.take_output().is_empty(), "output after EOF");
    }
    t.out = String::from_utf8_lossy(&t.output).into_owned();
    t
}

/// Takes the output queued so far, checking its bound and its line ends.
fn take<R>(s: &mut Session<R>, t: &mut Transcript<R>, last_chunk: usize) {
    let out = s.take_output();
    assert!(
        out.len() <= 64 * (last_chunk + MAX_COMMAND_LINE) + 4096,
        "{} output octets after a {last_chunk}-octet read",
        out.len()
    );
    assert!(out.is_empty() || out.ends_with(b"\r\n"));
    t.output.extend_from_slice(&out);
}

/// Polls until `None`, answering events like a driver.
fn drain<R>(
    s: &mut Session<R>,
    t: &mut Transcript<R>,
    last_chunk: usize,
    verdict: Verdict<'_, R>,
    outcome: Outcome<'_, R>,
) {
    loop {
        let bound = s.input.len().saturating_sub(s.pos);
        assert!(s.body.len() <= bound + 1 + 65536);
        match s.poll() {
            None => break,
            Some(Event::Recipient(m)) => {
                assert!(!m.local.is_empty());
                assert!(s.poll().is_none(), "poll must wait for the verdict");
                t.recipients.push(m.clone());
                s.recipient_verdict(verdict(&m));
            }
            Some(Event::MessageStart) => {
                assert!(s.in_data());
                t.body = Some(Vec::new());
                t.log.extend_from_slice(b"\n[start]\n");
            }
            Some(Event::Body(b)) => {
                assert!(!b.is_empty());
                assert!(
                    b.len() <= last_chunk + MAX_COMMAND_LINE + 1,
                    "body chunk {} after a {last_chunk}-octet read",
                    b.len()
                );
                t.body.get_or_insert_with(Vec::new).extend_from_slice(b);
            }
            Some(Event::MessageEnd(tx)) => {
                assert!(!tx.rcpts.is_empty(), "MessageEnd without recipients");
                let before = s.output().len();
                let mut want = Vec::new();
                for r in &tx.rcpts {
                    assert!(s.poll().is_none(), "poll must wait for the outcomes");
                    let reply = outcome(r);
                    reply.write_to(&mut want);
                    s.delivery_outcome(reply);
                }
                // Exactly one reply per accepted recipient, in order, nothing else.
                assert_eq!(&s.output()[before..], &want[..]);
                let body = t.body.take().unwrap_or_default();
                t.log.extend_from_slice(&body);
                t.log.extend_from_slice(b"\n[end]\n");
                t.msgs.push(Msg {
                    mail: tx.mail,
                    rcpts: tx.rcpts,
                    size: tx.size,
                    body,
                    discarded: None,
                    xforward: tx.xforward,
                });
            }
            Some(Event::MessageDiscarded(tx, r)) => {
                assert!(!tx.rcpts.is_empty());
                let all = r.to_bytes().repeat(tx.rcpts.len());
                assert!(s.output().ends_with(&all));
                t.body.take();
                t.log.extend_from_slice(b"\n[discarded]\n");
                t.msgs.push(Msg {
                    mail: tx.mail,
                    rcpts: tx.rcpts,
                    size: tx.size,
                    body: Vec::new(),
                    discarded: Some(r),
                    xforward: tx.xforward,
                });
            }
            Some(Event::StartTls) => {
                assert!(s.tls());
                t.log.extend_from_slice(b"\n[starttls]\n");
            }
            Some(Event::MessageAbandoned) => {
                assert!(
                    t.body.take().is_some(),
                    "MessageAbandoned without MessageStart"
                );
                t.log.extend_from_slice(b"\n[abandoned]\n");
            }
            Some(Event::Close) => {
                assert!(s.is_closed());
                assert!(!t.closed, "Close is yielded once");
                t.closed = true;
                t.log.extend_from_slice(b"\n[close]\n");
            }
        }
    }
}

/// `input` cut into pieces of the given sizes, cycled (each at least 1 octet).
pub fn split<'a>(input: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut v = Vec::new();
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(1)
            .clamp(1, 65536)
            .min(rest.len());
        let (a, b) = rest.split_at(n);
        v.push(a);
        rest = b;
        i += 1;
    }
    v
}

/// Recipient verdict drawn from the input (the recipient's local part), so that every
/// chunking of the same input sees the same store behaviour: first octet % 4 is 0 → `550
/// 5.1.1`, 1 → `452 4.2.2`, else accepted with the last octet as the handle.
pub fn fuzz_verdict(m: &Mailbox) -> Result<u32, Reply> {
    let first = m.local.as_bytes().first().copied().unwrap_or(0);
    match first % 4 {
        0 => Err(Reply::new(550, Enhanced(5, 1, 1), "unknown")),
        1 => Err(Reply::new(452, Enhanced(4, 2, 2), "full")),
        _ => Ok(u32::from(m.local.as_bytes().last().copied().unwrap_or(0))),
    }
}

/// Post-DATA outcome of the `seq`th recipient (counted over the session), also drawn from the
/// input: handle % 3 == 0 → `452 4.3.1`, else `250 2.0.0`.
pub fn fuzz_outcome(seq: usize, r: u32) -> Reply {
    match r % 3 {
        0 => Reply::new(452, Enhanced(4, 3, 1), format!("fail {seq}")),
        _ => Reply::new(250, Enhanced(2, 0, 0), format!("saved {seq}")),
    }
}

/// The fuzz drive: `input` in pieces of `sizes` (cycled), verdicts and outcomes from
/// [`fuzz_verdict`] / [`fuzz_outcome`], then the end of input; returns
/// [`Transcript::log_and_replies`], which must be the same for every chunking.
pub fn fuzz_drive(cfg: &SessionConfig, input: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut seq = 0usize;
    let t = drive(
        cfg,
        &split(input, sizes),
        true,
        &mut fuzz_verdict,
        &mut |&r| {
            seq += 1;
            fuzz_outcome(seq, r)
        },
    );
    t.log_and_replies()
}

/// The DATA decoder run to completion in chunks: everything observable.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The content produced.
    pub out: Vec<u8>,
    /// Octets consumed.
    pub consumed: usize,
    /// The end of data was found.
    pub done: bool,
    /// [`DataDecoder::size`].
    pub size: u64,
    /// [`DataDecoder::saw_bare_cr`].
    pub bare_cr: bool,
    /// [`DataDecoder::saw_bare_lf`].
    pub bare_lf: bool,
    /// [`DataDecoder::over_limit`].
    pub over: bool,
}

/// Runs a decoder with limit `max` over `input` in pieces of `chunks` (cycled) until the end
/// of data or of input. Checks that a call consumes at most its input, produces at most one
/// octet more than it was given, and stops early only at the end of data.
pub fn decode_chunked(max: u64, input: &[u8], chunks: &[usize]) -> Decoded {
    let mut d = DataDecoder::new(max);
    let mut out = Vec::new();
    let mut pos = 0;
    let mut ci = 0;
    while pos < input.len() && !d.is_done() {
        let n = chunks
            .get(ci % chunks.len().max(1))
            .copied()
            .unwrap_or(1)
            .max(1);
        ci += 1;
        let end = (pos + n).min(input.len());
        let before = out.len();
        let used = d.decode(&input[pos..end], &mut out);
        assert!(used <= end - pos);
        assert!(out.len() - before <= end - pos + 1, "output bound");
        if used < end - pos {
            assert!(d.is_done(), "stopped early without the end of data");
        }
        pos += used;
    }
    Decoded {
        out,
        consumed: pos,
        done: d.is_done(),
        size: d.size(),
        bare_cr: d.saw_bare_cr(),
        bare_lf: d.saw_bare_lf(),
        over: d.over_limit(),
    }
}

/// Whole-buffer reference model of DATA: the first CRLF.CRLF (counting the CRLF that ended
/// the DATA command) ends the data; lines are split on CRLF only; a leading dot is removed;
/// CRLF becomes LF. Returns (content, octets consumed) or None when the end is not there.
pub fn reference_decode(input: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut p = b"\r\n".to_vec();
    p.extend_from_slice(input);
    let j = p.windows(5).position(|w| w == b"\r\n.\r\n")?;
    if j == 0 {
        return Some((Vec::new(), 3));
    }
    let mut out = Vec::new();
    let mut rest = &input[..j - 2];
    loop {
        let (line, next) = match rest.windows(2).position(|w| w == b"\r\n") {
            Some(i) => (&rest[..i], Some(&rest[i + 2..])),
            None => (rest, None),
        };
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        out.push(b'\n');
        match next {
            Some(n) => rest = n,
            None => break,
        }
    }
    Some((out, j + 3))
}

/// A small deterministic pseudo-random generator (xorshift64) for the seeded robustness and
/// fuzz tests: the same seed gives the same cases on every machine.
#[derive(Clone, Debug)]
pub struct XorShift(pub u64);

impl XorShift {
    /// A generator from `seed` (made odd, since zero would stay zero).
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % (n.max(1) as u64)) as usize
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        (self.next_u64() >> 24) as u8
    }

    /// One of `items`, chosen at random (`items` must not be empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}
