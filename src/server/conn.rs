//! Drives one LMTP [`Session`] over a blocking stream: reads with a short tick so idle and
//! shutdown deadlines are noticed, answers RCPT with the directory, spools the body, delivers
//! after the final dot and writes + flushes each recipient's reply as soon as it is known.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown as NetShutdown, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lmtpd_store::{DeliveryError, Envelope};

use super::{Context, Live};
use crate::deliver;
use crate::directory::Resolved;
use crate::proto::{Event, Reply, Session, Transaction};
use crate::spool::{Spool, SpoolBody};

/// How often a blocked read wakes up to look at the idle and shutdown deadlines.
const TICK: Duration = Duration::from_millis(500);
/// The longest such wake-up interval of a session idle between transactions (a quarter of
/// the idle timeout when that is shorter). Fewer wake-ups let a thousand cached connections
/// cost next to nothing (with 500 ms they took about 8 % off a CPU-bound load); the price is
/// that SIGTERM reaches an idle session up to this much later.
const IDLE_TICK: Duration = Duration::from_secs(2);
/// DATA content that counts as progress for the idle clock.
const PROGRESS_BYTES: usize = 1024;
/// Input read per system call during DATA (and so the largest chunk fed to the session).
const READ_CHUNK: usize = 64 * 1024;
/// Input read per system call between messages.
const IDLE_READ: usize = 4 * 1024;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// A connected client stream.
#[derive(Debug)]
pub enum Stream {
    /// TCP (loopback).
    Tcp(TcpStream),
    /// Unix-domain socket.
    Unix(UnixStream),
    /// TCP after STARTTLS.
    Tls(Box<super::tls::TlsStream>),
    /// Standard input and output (`lmtpd -i`, inetd style).
    Stdio {
        /// Duplicate of descriptor 0.
        input: File,
        /// Duplicate of descriptor 1.
        output: File,
        /// Read timeout emulated with poll(2).
        timeout: Option<Duration>,
    },
}

impl Stream {
    /// Standard input and output as one stream.
    pub fn stdio() -> io::Result<Stream> {
        Ok(Stream::Stdio {
            input: File::from(io::stdin().as_fd().try_clone_to_owned()?),
            output: File::from(io::stdout().as_fd().try_clone_to_owned()?),
            timeout: None,
        })
    }
    /// Sets the read timeout.
    pub fn set_read_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
            Stream::Tls(s) => s.sock.set_read_timeout(t),
            Stream::Stdio { timeout, .. } => {
                *timeout = t;
                Ok(())
            }
        }
    }
    /// Sets the write timeout (not available on stdout).
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(t),
            Stream::Unix(s) => s.set_write_timeout(t),
            Stream::Tls(s) => s.sock.set_write_timeout(t),
            Stream::Stdio { .. } => Ok(()),
        }
    }
    /// Closes both directions.
    pub fn shutdown(&self, how: NetShutdown) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
            Stream::Tls(s) => s.sock.shutdown(how),
            Stream::Stdio { .. } => Ok(()),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Stdio { input, timeout, .. } => {
                if let Some(t) = timeout {
                    if !crate::sys::wait_readable(input.as_raw_fd(), *t)? {
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                }
                input.read(buf)
            }
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
            Stream::Stdio { output, .. } => output.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
            Stream::Stdio { output, .. } => output.flush(),
        }
    }
}

/// An accepted connection waiting for a worker.
#[derive(Debug)]
pub struct Conn {
    /// The socket.
    pub stream: Stream,
    /// The client's IP on TCP.
    pub peer: Option<IpAddr>,
    /// Connection id for the log.
    pub id: u64,
}

impl Conn {
    /// Wraps an accepted stream and gives it an id.
    pub fn new(stream: Stream, peer: Option<IpAddr>) -> Conn {
        Conn {
            stream,
            peer,
            id: NEXT_CONN.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Writes `reply` with a short write timeout and closes: for connections that cannot be
    /// served.
    pub fn refuse(&mut self, reply: &Reply) {
        self.say(reply);
        self.close();
    }

    /// Writes `reply` (outside any session, e.g. before a greeting) with a short write
    /// timeout.
    pub fn say(&mut self, reply: &Reply) {
        let _ = self.stream.set_write_timeout(Some(Duration::from_secs(1)));
        let _ = self.stream.write_all(&reply.to_bytes());
    }

    /// Shuts the connection down in both directions (the client sees it end).
    pub fn close(&mut self) {
        self.stream.shutdown(NetShutdown::Both);
    }

    /// The peer for log lines.
    pub fn peer_text(&self) -> String {
        match self.peer {
            Some(ip) => ip.to_string(),
            None => "local".into(),
        }
    }
}

/// Why a session ended, for the log.
fn end_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => "connection lost".into(),
        _ => e.to_string(),
    }
}

/// A RCPT local part that makes the session panic, armed only by [`arm_test_panic`].
static TEST_PANIC: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// For tests of the pool's panic handling only (nothing in lmtpd calls it): from now on a
/// `RCPT TO:<local_part@...>` makes its session panic, as a bug would.
#[doc(hidden)]
pub fn arm_test_panic(local_part: &'static str) {
    let _ = TEST_PANIC.set(local_part);
}

/// Runs one session to its end.
pub fn serve(ctx: &Context, conn: &mut Conn) {
    log::debug!("conn={} connect from {}", conn.id, conn.peer_text());
    let started = Instant::now();
    // Limits and the idle timeout are fixed for the session when it starts; users, stores
    // and paths are looked up per transaction, so a SIGHUP reaches open sessions too.
    let live = ctx.live();
    let timeout = live.config.limits.timeout;
    if let Err(e) = conn
        .stream
        .set_read_timeout(Some(TICK))
        .and_then(|_| conn.stream.set_write_timeout(Some(timeout)))
    {
        log::warn!("conn={}: cannot set timeouts: {e}", conn.id);
        return;
    }
    // STARTTLS is offered on TCP only, when a certificate is configured.
    let tls = live
        .tls
        .clone()
        .filter(|_| matches!(conn.stream, Stream::Tcp(_)));
    let mut session_cfg = live.session.clone();
    session_cfg.starttls = tls.is_some();
    session_cfg.tls_required = tls.is_some() && live.config.tls.required;
    // XFORWARD only from the MTA on this machine: a Unix socket, standard input or loopback.
    session_cfg.xforward = live.config.xforward.local
        && match &conn.stream {
            Stream::Tcp(_) | Stream::Tls(_) => conn.peer.is_some_and(|ip| ip.is_loopback()),
            Stream::Unix(_) | Stream::Stdio { .. } => true,
        };
    let mut driver = Driver {
        ctx,
        conn_id: conn.id,
        peer: conn.peer,
        timeout,
        tls,
        session: Session::new(session_cfg),
        pinned: None,
        spool: None,
        spool_error: None,
        tx_seq: 0,
    };
    let end = driver.run(&mut conn.stream);
    // The socket is closed by the caller: the pool first frees this session's slot, so a
    // client that sees its connection end can connect again at once.
    log::debug!(
        "conn={} closed after {} ms: {end}",
        conn.id,
        started.elapsed().as_millis()
    );
}

struct Driver<'c> {
    ctx: &'c Context,
    conn_id: u64,
    peer: Option<IpAddr>,
    /// Idle timeout of this session.
    timeout: Duration,
    /// STARTTLS's configuration when the session offers it.
    tls: Option<Arc<rustls::ServerConfig>>,
    session: Session<Resolved>,
    /// The settings of the current transaction, taken at its first RCPT and kept to its
    /// end, so that a SIGHUP never splits one transaction across two configurations.
    pinned: Option<(u64, Arc<Live>)>,
    spool: Option<Spool>,
    spool_error: Option<io::Error>,
    tx_seq: u64,
}

impl Driver<'_> {
    fn run(&mut self, stream: &mut Stream) -> String {
        // Commands come in small reads; content gets the full chunk, given back between
        // transactions (a connection an MTA keeps cached then costs a few KiB).
        let mut buf = vec![0u8; IDLE_READ];
        // The idle clock restarts on progress, not on every byte: when a reply goes out,
        // or when DATA content keeps arriving (PROGRESS_BYTES at a time). A client that
        // trickles one byte at a time therefore cannot hold a worker past `timeout`.
        let mut last_progress = Instant::now();
        let mut unproductive = 0usize;
        let idle_tick = (self.timeout / 4).clamp(TICK, IDLE_TICK);
        let mut tick = TICK;
        loop {
            if let Err(e) = self.drain(stream) {
                return end_reason(&e);
            }
            if !self.session.output().is_empty() {
                last_progress = Instant::now();
                unproductive = 0;
            }
            if let Err(e) = flush(&mut self.session, stream) {
                return end_reason(&e);
            }
            if self.session.is_closed() {
                return "closed".into();
            }
            if self.ctx.shutdown.is_triggered() && self.session.shutdown() {
                continue;
            }
            if self.session.in_data() {
                if buf.len() < READ_CHUNK {
                    buf.resize(READ_CHUNK, 0);
                }
            } else if buf.len() > IDLE_READ && self.session.is_idle() {
                buf.truncate(IDLE_READ);
                buf.shrink_to_fit();
                self.session.shrink_idle();
            }
            let want = if self.session.is_idle() {
                idle_tick
            } else {
                TICK
            };
            if want != tick && stream.set_read_timeout(Some(want)).is_ok() {
                tick = want;
            }
            let timeout = self.timeout;
            if last_progress.elapsed() >= timeout {
                log::info!("conn={} timeout: no progress for {timeout:?}", self.conn_id);
                self.session.timeout();
                self.spool = None;
                continue;
            }
            match stream.read(&mut buf) {
                Ok(0) => {
                    self.session.eof();
                    self.spool = None;
                    return if self.session.in_data() {
                        "connection lost during DATA".into()
                    } else {
                        "client closed".into()
                    };
                }
                Ok(n) => {
                    unproductive += n;
                    if self.session.in_data() && unproductive >= PROGRESS_BYTES {
                        last_progress = Instant::now();
                        unproductive = 0;
                    }
                    self.session.receive(&buf[..n]);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.session.eof();
                    return end_reason(&e);
                }
            }
        }
    }

    /// Processes every event the buffered input yields. Post-dot replies are flushed one
    /// recipient at a time, so `stream` is needed here.
    fn drain(&mut self, stream: &mut Stream) -> io::Result<()> {
        loop {
            let Some(ev) = self.session.poll() else {
                return Ok(());
            };
            match ev {
                Event::Recipient(mailbox) => {
                    let orcpt = self
                        .session
                        .pending_recipient_params()
                        .and_then(|p| p.orcpt.as_ref())
                        .and_then(|o| o.address.clone());
                    let verdict = self.check_recipient(&mailbox).map(|mut r| {
                        r.rcpt.orcpt = orcpt;
                        r
                    });
                    crate::metrics::get().rcpt(match &verdict {
                        Ok(_) => 250,
                        Err(reply) => reply.code,
                    });
                    self.session.recipient_verdict(verdict);
                }
                Event::MessageStart => {
                    let spool = Spool::new(&self.live().config.delivery.spool_dir);
                    // The retry journal's key needs the body's SHA-256.
                    self.spool = Some(if self.ctx.journal.is_some() {
                        spool.with_hash()
                    } else {
                        spool
                    });
                    self.spool_error = None;
                }
                Event::Body(chunk) => {
                    crate::metrics::get().received(chunk.len());
                    if let Some(sp) = &mut self.spool {
                        if let Err(e) = sp.write(chunk) {
                            // Keep reading to the final dot; every recipient is told then.
                            self.spool_error = Some(e);
                            self.spool = None;
                        }
                    }
                }
                Event::MessageAbandoned => {
                    self.spool = None;
                    self.spool_error = None;
                }
                Event::MessageEnd(tx) => {
                    crate::metrics::get().transaction(false);
                    let r = self.deliver(tx, stream);
                    self.pinned = None;
                    r?
                }
                Event::MessageDiscarded(tx, reply) => {
                    crate::metrics::get().transaction(true);
                    self.pinned = None;
                    self.spool = None;
                    self.tx_seq += 1;
                    for r in &tx.rcpts {
                        log::info!(
                            "conn={} from=<{}> to=<{}> size={} status={} refused: {}",
                            self.conn_id,
                            tx.mail
                                .sender
                                .as_ref()
                                .map(|s| s.to_string())
                                .unwrap_or_default(),
                            r.rcpt.address,
                            tx.size,
                            reply.code,
                            reply.lines.first().map(String::as_str).unwrap_or("")
                        );
                    }
                }
                Event::StartTls => {
                    flush(&mut self.session, stream)?;
                    self.start_tls(stream)?;
                }
                Event::Close => return Ok(()),
            }
        }
    }

    /// After `220 Ready to start TLS`: the handshake on the TCP stream, which then becomes
    /// the TLS stream. Nothing the client sent before the handshake is kept (the session
    /// dropped it). A failed handshake ends the connection.
    fn start_tls(&mut self, stream: &mut Stream) -> io::Result<()> {
        let (Some(config), Stream::Tcp(tcp)) = (self.tls.clone(), &*stream) else {
            return Err(io::Error::other("STARTTLS without TLS"));
        };
        let tcp = tcp.try_clone()?;
        match super::tls::accept(config, tcp) {
            Ok(tls) => {
                log::info!(
                    "conn={} STARTTLS: {}",
                    self.conn_id,
                    super::tls::describe(&tls)
                );
                *stream = Stream::Tls(Box::new(tls));
                Ok(())
            }
            Err(e) => {
                log::info!("conn={} STARTTLS handshake failed: {e}", self.conn_id);
                Err(e)
            }
        }
    }

    /// The settings for the transaction in progress: those pinned at its first RCPT, or
    /// the current ones (pinned now) when this is a new transaction.
    fn live(&mut self) -> Arc<Live> {
        let tx = self.session.transaction();
        match &self.pinned {
            Some((t, live)) if *t == tx => Arc::clone(live),
            _ => {
                let live = self.ctx.live();
                self.pinned = Some((tx, Arc::clone(&live)));
                live
            }
        }
    }

    fn check_recipient(&mut self, mailbox: &crate::proto::Mailbox) -> Result<Resolved, Reply> {
        if TEST_PANIC.get() == Some(&mailbox.local.as_str()) {
            panic!("test hook: RCPT TO:<{mailbox}>");
        }
        let live = self.live();
        let directory = &live.directory;
        let resolved = directory.resolve(mailbox).map_err(|e| {
            log::info!(
                "conn={} rcpt=<{mailbox}> refused: {} {}",
                self.conn_id,
                e.code,
                e.enhanced
            );
            Reply::delivery_error(&e)
        })?;
        let Some(store) = live.stores.route(&resolved) else {
            log::error!(
                "conn={} rcpt=<{mailbox}>: store {} is not open",
                self.conn_id,
                resolved.store.name()
            );
            return Err(Reply::config_error());
        };
        // A declared SIZE= above the whole quota could never be stored: refused now, before
        // the body is sent (RFC 1870 §6.1), and permanently.
        if let Some(e) =
            crate::quota::never_fits(&resolved.rcpt.quota, self.session.declared_size())
        {
            log::info!(
                "conn={} rcpt=<{mailbox}> user={} refused at RCPT: {e}",
                self.conn_id,
                resolved.rcpt.user
            );
            crate::metrics::get().policy(crate::metrics::PolicyEvent::NeverFits);
            return Err(Reply::delivery_error(&e));
        }
        match store.check(&resolved.rcpt) {
            Ok(()) => Ok(resolved),
            // A full mailbox is refused after DATA instead when only the message can tell
            // a retry from a new one: under a bounded tempfail (how long has it waited?),
            // and for a queued message (XFORWARD IDENT) whose lost-reply copy may be the one
            // that filled the mailbox (the retry must get 250, not a bounce).
            Err(e)
                if crate::quota::is_over_quota(&e)
                    && self.ctx.journal.is_some()
                    && ((!resolved.policy.permfail
                        && !live.config.delivery.quota_tempfail_max.is_zero())
                        || (!live.config.delivery.retry_window.is_zero()
                            && self.session.xforward().ident.is_some())) =>
            {
                log::debug!(
                    "conn={} rcpt=<{mailbox}> over quota: decided after DATA (a retry or quota_tempfail_max)",
                    self.conn_id
                );
                Ok(resolved)
            }
            Err(e) => {
                let e = crate::quota::apply(&resolved.policy, e);
                log::info!(
                    "conn={} rcpt=<{mailbox}> user={} refused at RCPT: {e}",
                    self.conn_id,
                    resolved.rcpt.user
                );
                Err(Reply::delivery_error(&e))
            }
        }
    }

    fn deliver(&mut self, tx: Transaction<Resolved>, stream: &mut Stream) -> io::Result<()> {
        let dot = Instant::now();
        self.tx_seq += 1;
        let env = Envelope {
            sender: tx.mail.sender.as_ref().map(|s| s.to_string()),
            lhlo: tx.lhlo.clone(),
            peer: self.peer,
            smtputf8: tx.mail.smtputf8,
            eight_bit: tx.mail.eight_bit,
            id: format!("{}-{}-{}", self.ctx.id_prefix, self.conn_id, self.tx_seq),
        };
        let body: Result<SpoolBody, io::Error> = match (self.spool.take(), self.spool_error.take())
        {
            (_, Some(e)) => Err(e),
            (Some(sp), None) => sp.finish(),
            (None, None) => Err(io::Error::other("no spool")),
        };
        let body = match body {
            Ok(body) => body,
            Err(e) => {
                // The body could not be kept: every recipient gets the same temporary error.
                log::warn!("conn={} id={} spool failed: {e}", self.conn_id, env.id);
                let err = DeliveryError::from_io(&e, false);
                for r in &tx.rcpts {
                    crate::metrics::get().delivery(r.store, err.enhanced, dot.elapsed());
                    self.session.delivery_outcome(Reply::delivery_error(&err));
                }
                return flush(&mut self.session, stream);
            }
        };
        let live = self.live();
        let job = deliver::Job {
            stores: &live.stores,
            hostname: &live.config.delivery.hostname,
            detail_mailbox: live.config.delivery.detail_mailbox,
            conn: self.conn_id,
            env: &env,
            body: &body,
            dot,
            xforward: &tx.xforward,
            filter: crate::policy::configured(&live.config).then_some(crate::policy::Filter {
                cfg: &live.config.sieve,
                cache: &live.scripts,
                delimiters: &live.config.recipients.recipient_delimiter,
                hostname: &live.config.delivery.hostname,
                account_scripts: crate::policy::account_scripts(&live.config),
            }),
            rules: deliver::Rules {
                journal: self.ctx.journal.as_deref(),
                retry: !live.config.delivery.retry_window.is_zero(),
                tempfail_max: live.config.delivery.quota_tempfail_max,
                body_sha256: body.sha256().copied(),
                warning: Some(&live.warning),
            },
        };
        let session = &mut self.session;
        deliver::deliver_all(&job, &tx.rcpts, |reply| {
            session.delivery_outcome(reply);
            flush(session, stream)
        })
    }
}

fn flush(session: &mut Session<Resolved>, stream: &mut Stream) -> io::Result<()> {
    if session.output().is_empty() {
        return Ok(());
    }
    let out = session.take_output();
    stream.write_all(&out)?;
    stream.flush()
}
