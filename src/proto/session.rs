//! The LMTP session state machine: buffers input, splits command lines on CRLF only, sequences
//! LHLO/MAIL/RCPT/DATA, runs the DATA decoder and hands the driver [`Event`]s, queueing every
//! reply (including the per-recipient post-dot replies) in order.

use super::command::{self, BdatError, Command, ParseContext, Verb, MAX_COMMAND_LINE};
use super::data::{ChunkDecoder, DataDecoder};
use super::reply::Reply;

pub use super::address::Mailbox;

/// What to do with bare CR / bare LF inside message content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BareNewline {
    /// Accept: a bare LF is delivered as a line break, a bare CR as a CR.
    Normalize,
    /// Read to the real end of data, then refuse the message with `550 5.5.2` per recipient.
    Reject,
}

/// Session settings.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Our name, used in the greeting and the first LHLO line.
    pub hostname: String,
    /// Fixed maximum message size in octets (0 = unlimited); advertised as `SIZE n`.
    pub max_message_size: u64,
    /// Maximum accepted recipients per transaction; more get `452 4.5.3`.
    pub max_recipients: usize,
    /// Consecutive error replies before `421 4.7.0 ... too many errors` and Close (0 = never).
    pub max_errors: usize,
    /// Bare CR/LF policy for content.
    pub bare_newline: BareNewline,
    /// STARTTLS is offered (RFC 3207): a TCP listener with a certificate. The driver
    /// upgrades the stream on [`Event::StartTls`].
    pub starttls: bool,
    /// MAIL is refused with `530 5.7.0` until TLS is active (`tls = required`).
    pub tls_required: bool,
    /// XFORWARD is offered (the client is allowed by `xforward`).
    pub xforward: bool,
}

impl Default for SessionConfig {
    /// hostname `localhost`, no size limit, 1000 recipients, 20 errors, [`BareNewline::Normalize`].
    fn default() -> Self {
        SessionConfig {
            hostname: "localhost".to_string(),
            max_message_size: 0,
            max_recipients: 1000,
            max_errors: 20,
            bare_newline: BareNewline::Normalize,
            starttls: false,
            tls_required: false,
            xforward: false,
        }
    }
}

/// The accepted MAIL command.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MailFrom {
    /// The reverse-path; `None` for the null sender `<>`.
    pub sender: Option<Mailbox>,
    /// The declared `SIZE=` (saturated at `u64::MAX`).
    pub size: Option<u64>,
    /// `BODY=8BITMIME` was given.
    pub eight_bit: bool,
    /// `SMTPUTF8` was given.
    pub smtputf8: bool,
    /// DSN `RET=` (RFC 3461 §4.3).
    pub ret: Option<super::dsn::Ret>,
    /// DSN `ENVID=`, decoded (RFC 3461 §4.4).
    pub envid: Option<String>,
}

/// A complete transaction handed to the driver at the end of DATA.
#[derive(Debug)]
pub struct Transaction<R> {
    /// The LHLO argument of this session.
    pub lhlo: String,
    /// The MAIL command.
    pub mail: MailFrom,
    /// The accepted recipients, in RCPT order, duplicates included.
    pub rcpts: Vec<R>,
    /// Message size as received, counted as RFC 1870 does.
    pub size: u64,
    /// What XFORWARD said about the original client and the MTA's queue id.
    pub xforward: Xforward,
}

/// The XFORWARD attributes of a transaction (unknown: `None`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Xforward {
    /// `NAME`.
    pub name: Option<String>,
    /// `ADDR`.
    pub addr: Option<String>,
    /// `PORT`.
    pub port: Option<String>,
    /// `PROTO`.
    pub proto: Option<String>,
    /// `HELO`.
    pub helo: Option<String>,
    /// `IDENT`: the MTA's queue id.
    pub ident: Option<String>,
    /// `SOURCE`.
    pub source: Option<String>,
}

impl Xforward {
    fn set(&mut self, attr: super::command::XforwardAttr, value: Option<String>) {
        use super::command::XforwardAttr as A;
        let slot = match attr {
            A::Name => &mut self.name,
            A::Addr => &mut self.addr,
            A::Port => &mut self.port,
            A::Proto => &mut self.proto,
            A::Helo => &mut self.helo,
            A::Ident => &mut self.ident,
            A::Source => &mut self.source,
        };
        *slot = value;
    }

    /// `name[addr]` of the original client when either is known.
    pub fn client(&self) -> Option<String> {
        match (&self.name, &self.addr) {
            (None, None) => None,
            (n, a) => Some(format!(
                "{}[{}]",
                n.as_deref().unwrap_or("unknown"),
                a.as_deref().unwrap_or("unknown")
            )),
        }
    }
}

/// What the driver must act on, returned by [`Session::poll`].
#[derive(Debug)]
pub enum Event<'s, R> {
    /// A syntactically valid RCPT: the driver must call [`Session::recipient_verdict`] before
    /// anything else; [`Session::poll`] returns `None` until then.
    Recipient(Mailbox),
    /// 354 has been queued, or the first BDAT chunk of a transaction with recipients was
    /// accepted: the driver opens a spool.
    MessageStart,
    /// The next chunk of content: dot-unstuffed (DATA), CRLF converted to LF.
    Body(&'s [u8]),
    /// The message begun by `MessageStart` will not end (a BDAT chunk failed, or RSET, MAIL
    /// or LHLO came between chunks): the driver drops the spool. A later `MessageDiscarded`
    /// of the same transaction may still follow (at BDAT LAST).
    MessageAbandoned,
    /// The final CRLF.CRLF was seen and the content is acceptable: the driver must call
    /// [`Session::delivery_outcome`] exactly `rcpts.len()` times, in order; `poll` yields
    /// nothing else until then.
    MessageEnd(Transaction<R>),
    /// The content was refused (size over the limit → `552 5.3.4`; bare CR/LF with
    /// [`BareNewline::Reject`] → `550 5.5.2`). The session has already queued that reply once
    /// per recipient; the driver drops the spool.
    MessageDiscarded(Transaction<R>, Reply),
    /// After `220 2.0.0 Ready to start TLS`: the driver flushes the output and runs the TLS
    /// handshake on the stream before reading anything else. The session has already
    /// forgotten LHLO and discarded whatever input followed the STARTTLS line (RFC 3207
    /// §4.2: commands pipelined before the handshake are not executed).
    StartTls,
    /// After 221 / 421: the driver flushes the output and closes. Yielded once.
    Close,
}

#[derive(Debug)]
enum Phase {
    /// Reading command lines.
    Command,
    /// Waiting for `recipient_verdict` for this mailbox.
    AwaitVerdict(Mailbox, super::command::RcptParams),
    /// Reading content.
    Data(DataDecoder),
    /// Reading the octets of one BDAT chunk.
    Chunk(Chunk),
    /// Waiting for this many more `delivery_outcome` calls.
    AwaitOutcomes(usize),
    /// No more input is processed.
    Closed,
}

/// One BDAT chunk being read.
#[derive(Debug)]
struct Chunk {
    /// Octets of the chunk still to be read.
    remaining: u64,
    /// Whether the octets go to the message (else they are read and dropped).
    keep: bool,
    /// What happens once the octets are read.
    end: ChunkEnd,
}

/// What a BDAT chunk is answered with once its octets are read.
#[derive(Debug)]
enum ChunkEnd {
    /// Exactly one reply: any non-LAST chunk, or a BDAT outside a transaction.
    Reply(Reply),
    /// The LAST chunk of a transaction: one reply per accepted recipient (zero when none
    /// was accepted, RFC 2033 §4.3) — the delivery outcomes, or this refusal for each.
    Last(Option<Reply>),
}

/// What [`Session::poll`] does after `finish_chunk`.
// A return value that lives for one call: the size of the transaction it carries costs
// nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum ChunkStep<R> {
    /// Yield the content in `body`.
    Body,
    /// Yield this event.
    Event(Event<'static, R>),
    /// Go on processing input.
    Continue,
}

/// The BDAT state of the open transaction, from its first BDAT to LAST or RSET.
#[derive(Debug, Default)]
struct Chunking {
    dec: ChunkDecoder,
    /// Chunk octets announced so far (RFC 1870 size: no transformation is undone).
    octets: u64,
    /// `MessageStart` was yielded and no `MessageAbandoned` since.
    started: bool,
    /// A chunk failed: later ones get `503 5.5.0` until RSET (RFC 3030 §2).
    failed: bool,
}

/// Capacity each buffer keeps between transactions (see [`Session::shrink_idle`]).
pub const IDLE_BUFFER: usize = 1024;

/// A sans-IO LMTP server session; `R` is whatever the driver wants to remember per accepted
/// recipient.
#[derive(Debug)]
pub struct Session<R> {
    cfg: SessionConfig,
    /// Received, not yet processed input is `input[pos..]`.
    input: Vec<u8>,
    pos: usize,
    /// Inside an over-long command line whose beginning was discarded.
    discarding: bool,
    out: Vec<u8>,
    /// Decoded content handed out by the last `Event::Body`.
    body: Vec<u8>,
    lhlo: Option<String>,
    mail: Option<MailFrom>,
    rcpts: Vec<R>,
    /// BDAT state of the open transaction (`None`: no BDAT in it yet).
    chunking: Option<Chunking>,
    phase: Phase,
    errors: usize,
    close_pending: bool,
    /// MAIL commands accepted so far: the number of the current transaction.
    transactions: u64,
    /// TLS is active on the connection (STARTTLS succeeded).
    tls: bool,
    /// XFORWARD attributes for the next transaction.
    xforward: Xforward,
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

impl<R> Session<R> {
    /// A new session; queues the greeting `220 <hostname> LMTP ready`.
    pub fn new(cfg: SessionConfig) -> Self {
        let mut s = Session {
            input: Vec::new(),
            pos: 0,
            discarding: false,
            out: Vec::new(),
            body: Vec::new(),
            lhlo: None,
            mail: None,
            rcpts: Vec::new(),
            chunking: None,
            phase: Phase::Command,
            errors: 0,
            close_pending: false,
            transactions: 0,
            tls: false,
            xforward: Xforward::default(),
            cfg,
        };
        let greeting = Reply::greeting(&s.cfg.hostname);
        greeting.write_to(&mut s.out);
        s
    }

    /// The DSN parameters (NOTIFY, ORCPT) of the RCPT whose verdict is awaited, for the
    /// driver handling [`Event::Recipient`].
    pub fn pending_recipient_params(&self) -> Option<&super::command::RcptParams> {
        match &self.phase {
            Phase::AwaitVerdict(_, p) => Some(p),
            _ => None,
        }
    }

    /// The `SIZE=` the current transaction's MAIL declared (RFC 1870 §6), so a recipient
    /// whose whole quota is smaller can be refused at RCPT, before the body is sent.
    pub fn declared_size(&self) -> Option<u64> {
        self.mail.as_ref().and_then(|m| m.size)
    }

    /// What XFORWARD said so far in this session (the MTA's queue id, its client).
    pub fn xforward(&self) -> &Xforward {
        &self.xforward
    }

    /// Whether TLS is active (a STARTTLS was answered `220`).
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// Appends received bytes. The driver calls this only after [`Session::poll`] returned
    /// `None`, with chunks of at most 64 KiB; unprocessed input never exceeds one chunk plus
    /// [`MAX_COMMAND_LINE`] octets then. Ignored once the session is closed.
    pub fn receive(&mut self, bytes: &[u8]) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        if self.pos > 0 {
            self.input.drain(..self.pos.min(self.input.len()));
            self.pos = 0;
        }
        self.input.extend_from_slice(bytes);
    }

    /// Processes buffered input. `None` means more input is needed, or a verdict/outcome is
    /// awaited.
    pub fn poll(&mut self) -> Option<Event<'_, R>> {
        self.body.clear();
        loop {
            if self.close_pending {
                self.close_pending = false;
                return Some(Event::Close);
            }
            match &mut self.phase {
                Phase::Closed | Phase::AwaitVerdict(..) | Phase::AwaitOutcomes(_) => return None,
                Phase::Data(dec) => {
                    if dec.is_done() {
                        return self.finish_data();
                    }
                    let rest = self.input.get(self.pos..).unwrap_or(&[]);
                    let n = dec.decode(rest, &mut self.body);
                    self.pos = self.pos.saturating_add(n).min(self.input.len());
                    let refused = dec.over_limit()
                        || (self.cfg.bare_newline == BareNewline::Reject && dec.saw_bare_newline());
                    if refused {
                        self.body.clear();
                    }
                    if !self.body.is_empty() {
                        return Some(Event::Body(&self.body));
                    }
                    if !dec.is_done() {
                        return None;
                    }
                }
                Phase::Chunk(c) => {
                    if c.remaining == 0 {
                        match self.finish_chunk() {
                            ChunkStep::Body => return Some(Event::Body(&self.body)),
                            ChunkStep::Event(ev) => return Some(ev),
                            ChunkStep::Continue => continue,
                        }
                    }
                    let rest = self.input.get(self.pos..).unwrap_or(&[]);
                    if rest.is_empty() {
                        return None;
                    }
                    let n = usize::try_from(c.remaining).map_or(rest.len(), |r| r.min(rest.len()));
                    c.remaining -= n as u64;
                    if c.keep {
                        if let Some(ch) = &mut self.chunking {
                            ch.dec.decode(rest.get(..n).unwrap_or(&[]), &mut self.body);
                        }
                    }
                    self.pos = self.pos.saturating_add(n).min(self.input.len());
                    if !self.body.is_empty() {
                        return Some(Event::Body(&self.body));
                    }
                }
                Phase::Command => {
                    let line = self.next_line()?;
                    if let Some(ev) = self.handle_line(line) {
                        return Some(ev);
                    }
                }
            }
        }
    }

    /// Takes the next complete command line (without CRLF) out of the input, or `Some(None)`
    /// for an over-long line that has just ended. `None` if no complete line is buffered.
    fn next_line(&mut self) -> Option<Option<Vec<u8>>> {
        let rest = self.input.get(self.pos..).unwrap_or(&[]);
        match find_crlf(rest) {
            Some(i) => {
                let too_long = std::mem::replace(&mut self.discarding, false)
                    || i.saturating_add(2) > MAX_COMMAND_LINE;
                let line = if too_long {
                    None
                } else {
                    Some(rest.get(..i).unwrap_or(&[]).to_vec())
                };
                self.pos = self.pos.saturating_add(i + 2).min(self.input.len());
                Some(line)
            }
            None => {
                // Keep a trailing CR: it may be the first half of the CRLF.
                let keep = usize::from(rest.last() == Some(&b'\r'));
                let content = rest.len() - keep;
                if self.discarding || content > MAX_COMMAND_LINE - 2 {
                    self.discarding = true;
                    self.pos = self.pos.saturating_add(content).min(self.input.len());
                    self.input.drain(..self.pos);
                    self.pos = 0;
                }
                None
            }
        }
    }

    fn send(&mut self, r: &Reply) {
        r.write_to(&mut self.out);
    }

    /// Queues a reply to a command and keeps the consecutive-error count; closes with 421 when
    /// the limit is reached.
    fn respond(&mut self, r: Reply) {
        self.send(&r);
        if r.code >= 400 {
            self.errors = self.errors.saturating_add(1);
            if self.cfg.max_errors != 0 && self.errors >= self.cfg.max_errors {
                self.send(&Reply::too_many_errors(&self.cfg.hostname));
                self.close();
            }
        } else {
            self.errors = 0;
        }
    }

    fn close(&mut self) {
        if !matches!(self.phase, Phase::Closed) {
            self.phase = Phase::Closed;
            self.close_pending = true;
        }
        self.mail = None;
        self.rcpts.clear();
        self.chunking = None;
        self.input.clear();
        self.pos = 0;
        self.discarding = false;
    }

    /// Ends the open transaction; `MessageAbandoned` when it had a BDAT message started.
    fn reset_transaction(&mut self) -> Option<Event<'static, R>> {
        self.mail = None;
        self.rcpts.clear();
        self.xforward = Xforward::default();
        let started = self.chunking.take().is_some_and(|c| c.started);
        started.then_some(Event::MessageAbandoned)
    }

    fn handle_line(&mut self, line: Option<Vec<u8>>) -> Option<Event<'static, R>> {
        let Some(line) = line else {
            self.respond(Reply::line_too_long());
            return None;
        };
        // Sequencing is checked on the verb before the arguments are parsed.
        let verb = command::split_verb(command::trim_trailing_ws(&line)).map(|(v, _)| v);
        let has_bare = line.iter().any(|&b| b == b'\r' || b == b'\n');
        if verb == Some(Verb::Bdat) && !has_bare {
            return self.bdat(&line);
        }
        if !has_bare {
            let seq = match verb {
                Some(Verb::Mail | Verb::Rcpt | Verb::Data) if self.lhlo.is_none() => {
                    Some(Reply::lhlo_first())
                }
                Some(Verb::Mail) if self.cfg.tls_required && !self.tls => {
                    Some(Reply::tls_required())
                }
                Some(Verb::Mail) if self.mail.is_some() => Some(Reply::nested_mail()),
                Some(Verb::Rcpt | Verb::Data) if self.mail.is_none() => Some(Reply::need_mail()),
                Some(Verb::Data) if self.chunking.is_some() => Some(Reply::data_after_bdat()),
                Some(Verb::Rcpt) if self.chunking.is_some() => Some(Reply::rcpt_after_bdat()),
                Some(Verb::Data) if self.rcpts.is_empty() => Some(Reply::no_valid_recipients()),
                _ => None,
            };
            if let Some(r) = seq {
                self.respond(r);
                return None;
            }
        }
        let ctx = ParseContext {
            max_message_size: self.cfg.max_message_size,
            smtputf8: self.mail.as_ref().is_some_and(|m| m.smtputf8),
        };
        let cmd = match command::parse(&line, &ctx) {
            Ok(c) => c,
            Err(r) => {
                self.respond(r);
                return None;
            }
        };
        match cmd {
            Command::Lhlo(name) => {
                let ev = self.reset_transaction();
                self.lhlo = Some(name);
                let mut r = Reply::lhlo(&self.cfg.hostname, self.cfg.max_message_size);
                if self.cfg.starttls && !self.tls {
                    r.lines.push("STARTTLS".into());
                }
                if self.cfg.xforward {
                    let names: Vec<&str> = super::command::XforwardAttr::ALL
                        .iter()
                        .map(|a| a.name())
                        .collect();
                    r.lines.push(format!("XFORWARD {}", names.join(" ")));
                }
                self.respond(r);
                return ev;
            }
            Command::Xforward(attrs) => {
                if !self.cfg.xforward {
                    self.respond(Reply::not_implemented());
                } else if self.mail.is_some() {
                    self.respond(Reply::xforward_in_transaction());
                } else {
                    for (a, v) in attrs {
                        self.xforward.set(a, v);
                    }
                    self.respond(Reply::ok());
                }
            }
            Command::Starttls => {
                if !self.cfg.starttls {
                    self.respond(Reply::not_implemented());
                } else if self.tls {
                    self.respond(Reply::tls_active());
                } else if self.mail.is_some() {
                    self.respond(Reply::tls_in_transaction());
                } else {
                    // RFC 3207 §4.2: everything known before the handshake is forgotten,
                    // and anything the client pipelined after STARTTLS is dropped unread.
                    self.respond(Reply::tls_ready());
                    // No transaction is open, so no BDAT message is abandoned here.
                    let _ = self.reset_transaction();
                    self.lhlo = None;
                    self.input.clear();
                    self.pos = 0;
                    self.tls = true;
                    return Some(Event::StartTls);
                }
            }
            Command::Helo | Command::Ehlo => {
                self.respond(Reply::not_lmtp());
            }
            Command::Mail(m) => {
                self.rcpts.clear();
                self.mail = Some(m);
                self.transactions += 1;
                self.respond(Reply::mail_ok());
            }
            Command::Rcpt(m, params) => {
                if self.rcpts.len() >= self.cfg.max_recipients {
                    self.respond(Reply::too_many_recipients());
                } else {
                    self.phase = Phase::AwaitVerdict(m.clone(), params);
                    return Some(Event::Recipient(m));
                }
            }
            Command::Data => {
                self.respond(Reply::start_data());
                self.phase = Phase::Data(DataDecoder::new(self.cfg.max_message_size));
                return Some(Event::MessageStart);
            }
            Command::Rset => {
                let ev = self.reset_transaction();
                self.respond(Reply::ok());
                return ev;
            }
            // Handled by `bdat` before parsing.
            Command::Bdat { .. } => self.respond(Reply::unrecognised()),
            Command::Noop => self.respond(Reply::ok()),
            Command::Vrfy => self.respond(Reply::cannot_vrfy()),
            Command::Expn => self.respond(Reply::not_implemented()),
            Command::Help => self.respond(Reply::help()),
            Command::Quit => {
                self.respond(Reply::bye());
                self.close();
            }
        }
        None
    }

    /// A BDAT command line (no bare CR/LF in it): decides now what the chunk's octets are for
    /// and what it will be answered, then reads the octets (always, even when the command
    /// fails: RFC 3030 §2) before answering.
    fn bdat(&mut self, line: &[u8]) -> Option<Event<'static, R>> {
        let args = command::split_verb(command::trim_trailing_ws(line)).map_or(&[][..], |(_, a)| a);
        let (size, last, syntax_ok) = match command::parse_bdat(args) {
            Ok((size, last)) => (size, last, true),
            Err(BdatError::Args(size)) => (size, false, false),
            Err(BdatError::Size) => {
                // Where the chunk ends is unknown: reading on could take its octets for
                // commands, so the session ends here.
                self.respond(Reply::syntax_error(command::BDAT_SYNTAX));
                if !self.is_closed() {
                    self.send(&Reply::chunk_size_unknown(&self.cfg.hostname));
                    self.close();
                }
                return None;
            }
        };
        let chunk = |keep, end| {
            Phase::Chunk(Chunk {
                remaining: size,
                keep,
                end,
            })
        };
        let outside = if self.lhlo.is_none() {
            Some(Reply::lhlo_first())
        } else if self.mail.is_none() {
            Some(Reply::need_mail())
        } else {
            None
        };
        if let Some(r) = outside {
            self.phase = chunk(false, ChunkEnd::Reply(r));
            return None;
        }
        let max = self.cfg.max_message_size;
        let no_rcpts = self.rcpts.is_empty();
        let ch = self.chunking.get_or_insert_with(Chunking::default);
        ch.octets = ch.octets.saturating_add(size);
        let failure = if !syntax_ok {
            Some(Reply::syntax_error(command::BDAT_SYNTAX))
        } else if ch.failed {
            Some(Reply::chunk_after_failure())
        } else if max != 0 && ch.octets > max {
            Some(Reply::message_too_big())
        } else {
            None
        };
        let mut event = None;
        if failure.is_some() {
            ch.failed = true;
            if std::mem::take(&mut ch.started) {
                event = Some(Event::MessageAbandoned);
            }
        } else if !no_rcpts && !ch.started {
            ch.started = true;
            event = Some(Event::MessageStart);
        }
        let keep = ch.started;
        let end = match (last, failure) {
            (true, failure) => ChunkEnd::Last(failure),
            (false, Some(r)) => ChunkEnd::Reply(r),
            (false, None) if no_rcpts => ChunkEnd::Reply(Reply::no_valid_recipients()),
            (false, None) => ChunkEnd::Reply(Reply::chunk_ok(size)),
        };
        self.phase = chunk(keep, end);
        event
    }

    /// All octets of a BDAT chunk are read: answer it; after LAST, end the transaction.
    fn finish_chunk(&mut self) -> ChunkStep<R> {
        if let Some(ch) = &mut self.chunking {
            let last_ok =
                matches!(&self.phase, Phase::Chunk(c) if matches!(c.end, ChunkEnd::Last(None)));
            if ch.started && last_ok {
                // A CR that ended the last chunk is content too.
                ch.dec.finish(&mut self.body);
                if !self.body.is_empty() {
                    return ChunkStep::Body;
                }
            }
        }
        let Phase::Chunk(c) = std::mem::replace(&mut self.phase, Phase::Command) else {
            return ChunkStep::Continue;
        };
        let refusal = match c.end {
            ChunkEnd::Reply(r) => {
                self.respond(r);
                return ChunkStep::Continue;
            }
            ChunkEnd::Last(refusal) => refusal,
        };
        let ch = self.chunking.take().unwrap_or_default();
        let tx = Transaction {
            lhlo: self.lhlo.clone().unwrap_or_default(),
            mail: self.mail.take().unwrap_or_default(),
            rcpts: std::mem::take(&mut self.rcpts),
            size: ch.octets,
            xforward: std::mem::take(&mut self.xforward),
        };
        if tx.rcpts.is_empty() {
            // RFC 2033 §4.3: no accepted recipient, no reply to BDAT LAST.
            return ChunkStep::Continue;
        }
        let refusal = refusal.or_else(|| {
            (self.cfg.bare_newline == BareNewline::Reject && ch.dec.saw_bare_newline())
                .then(Reply::bare_newline_refused)
        });
        match refusal {
            Some(r) => {
                for _ in 0..tx.rcpts.len() {
                    self.send(&r);
                }
                ChunkStep::Event(Event::MessageDiscarded(tx, r))
            }
            None => {
                self.phase = Phase::AwaitOutcomes(tx.rcpts.len());
                ChunkStep::Event(Event::MessageEnd(tx))
            }
        }
    }

    /// The decoder reached the end of data and all content has been handed out.
    fn finish_data(&mut self) -> Option<Event<'_, R>> {
        let Phase::Data(dec) = std::mem::replace(&mut self.phase, Phase::Command) else {
            return None;
        };
        let tx = Transaction {
            lhlo: self.lhlo.clone().unwrap_or_default(),
            mail: self.mail.take().unwrap_or_default(),
            rcpts: std::mem::take(&mut self.rcpts),
            size: dec.size(),
            // The attributes hold for one transaction (XFORWARD_README).
            xforward: std::mem::take(&mut self.xforward),
        };
        let refusal = if dec.over_limit() {
            Some(Reply::message_too_big())
        } else if self.cfg.bare_newline == BareNewline::Reject && dec.saw_bare_newline() {
            Some(Reply::bare_newline_refused())
        } else {
            None
        };
        match refusal {
            Some(r) => {
                for _ in 0..tx.rcpts.len() {
                    self.send(&r);
                }
                Some(Event::MessageDiscarded(tx, r))
            }
            None => {
                if !tx.rcpts.is_empty() {
                    self.phase = Phase::AwaitOutcomes(tx.rcpts.len());
                }
                Some(Event::MessageEnd(tx))
            }
        }
    }

    /// Answers the last [`Event::Recipient`]: `Ok` queues `250 2.1.5 <addr> OK` and remembers
    /// `R`; `Err` queues that reply. Ignored when no verdict is awaited.
    pub fn recipient_verdict(&mut self, verdict: Result<R, Reply>) {
        let Phase::AwaitVerdict(m, _) = std::mem::replace(&mut self.phase, Phase::Command) else {
            return;
        };
        match verdict {
            Ok(r) => {
                self.rcpts.push(r);
                self.respond(Reply::rcpt_ok(&m));
            }
            Err(r) => {
                // A refused recipient is business as usual, not a protocol error: it neither
                // counts toward nor resets the consecutive-error limit.
                self.send(&r);
            }
        }
    }

    /// Queues the post-dot reply for the next recipient; after the last one the transaction is
    /// over. Ignored when no outcome is awaited.
    pub fn delivery_outcome(&mut self, reply: Reply) {
        if let Phase::AwaitOutcomes(n) = &mut self.phase {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.phase = Phase::Command;
            }
            self.send(&reply);
        }
    }

    /// Bytes to send.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// Takes the bytes to send, leaving the output empty.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// The peer was idle or stalled too long: queues `421 4.4.2 <host> Error: timeout exceeded`,
    /// drops any open transaction, then Close. Ignored when already closed.
    pub fn timeout(&mut self) {
        if self.is_closed() {
            return;
        }
        self.send(&Reply::timeout(&self.cfg.hostname));
        self.close();
    }

    /// If idle (see [`Session::is_idle`]), queues `421 4.3.2 <host> Service shutting down`,
    /// then Close, and returns true; otherwise returns false. Returns true without queueing
    /// anything when the session is already closed.
    pub fn shutdown(&mut self) -> bool {
        if self.is_closed() {
            return true;
        }
        if !self.is_idle() {
            return false;
        }
        self.send(&Reply::shutting_down(&self.cfg.hostname));
        self.close();
        true
    }

    /// Between transactions (greeted or not), no input buffered, not awaiting anything.
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Command)
            && self.mail.is_none()
            && self.chunking.is_none()
            && self.pos >= self.input.len()
            && !self.discarding
    }

    /// Whether the session is closed (after 221/421 or [`Session::eof`]).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// The peer closed the connection: drops any open transaction (a partial DATA yields no
    /// event at all), then Close.
    pub fn eof(&mut self) {
        self.close();
    }

    /// Whether content is being read (between 354 and the final dot, or a BDAT chunk's
    /// octets).
    pub fn in_data(&self) -> bool {
        matches!(self.phase, Phase::Data(_) | Phase::Chunk(_))
    }

    /// Between transactions, gives back the memory the buffers grew to during the last one
    /// (input up to a read chunk plus a line, decoded content up to a chunk), keeping
    /// [`IDLE_BUFFER`] bytes each, so a connection an MTA keeps cached costs little. Does
    /// nothing while a transaction or buffered input is pending.
    pub fn shrink_idle(&mut self) {
        if !self.is_idle() {
            return;
        }
        self.input.clear();
        self.pos = 0;
        self.input.shrink_to(IDLE_BUFFER);
        self.body.clear();
        self.body.shrink_to(IDLE_BUFFER);
        if self.out.is_empty() {
            self.out.shrink_to(IDLE_BUFFER);
        }
    }

    /// The number of the current transaction: it grows by one with every accepted MAIL, so
    /// a driver can tell that a RCPT belongs to a new transaction even after a RSET or an
    /// abandoned one (RFC 5321 §3.3: MAIL starts a new transaction).
    pub fn transaction(&self) -> u64 {
        self.transactions
    }
}

#[doc(hidden)]
pub mod testing;

#[cfg(test)]
mod tests;
