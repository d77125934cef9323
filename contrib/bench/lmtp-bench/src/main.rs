//! `lmtp-bench`: the load generator and disk probe behind `make bench` (contrib/bench/run.sh).
//!
//! `lmtp-bench load` drives an LMTP server over a Unix socket or loopback TCP with N
//! concurrent sessions. Each transaction is pipelined the way an MTA does it: MAIL, every
//! RCPT and DATA go out in one write, the client waits for their replies, then sends the
//! content and the final dot and waits for one reply per accepted recipient. With `--bdat`
//! the content goes as RFC 3030 chunks instead (`BDAT n`, at most 64 KiB each, `LAST` on the
//! final one; raw octets, no dot-stuffing, no final dot), pipelined as Exim does it: MAIL,
//! every RCPT and the chunks go out without waiting (a message of up to 256 KiB in one
//! write); every non-LAST chunk gets one reply, LAST one per accepted recipient. Messages have
//! a fixed size or one drawn per message from a range (exact, headers included, CRLF line
//! ends). Every reply is counted. Latency is measured per recipient reply: the time from
//! writing the final dot (with `--bdat`: the last chunk) to reading that recipient's reply,
//! so a transaction with R recipients gives R samples (at most 1,000,000 are kept, a uniform
//! sample of all of them; the maximum is always exact), reported as `p50_ms`, `p90_ms`,
//! `p99_ms` and `max_ms`. With
//! `--pid` it also reads the server's CPU time (user + system, from `/proc`, for the process
//! and all its descendants) over the run and its peak RSS (`VmHWM`, summed over the tree).
//!
//! A session the server refuses (a `421` greeting, a connection closed or reset before the
//! greeting, or a `421` later on) is counted as `refused`, not as an error: it ends, and the
//! messages it would still have sent (its share of `-m`) are neither sent by the other
//! sessions nor expected. With `--idle N` the generator first opens N connections, reads their
//! greetings (and with `--idle-lhlo` sends LHLO), holds them open without traffic while the
//! load runs, counts how many were greeted, refused, left waiting or dropped by the server,
//! and closes them after the run.
//!
//! `lmtp-bench disk` measures the ceiling a durable delivery works against, in cycles per
//! second, each cycle the durable unit of one store (`--kind`): `file` (Maildir): create a
//! file in `tmp/`, write `--size` bytes, fsync it, rename it into `new/`, fsync `new/`;
//! `append` (mbox): `flock(LOCK_EX)` an mbox-like file, append `--size` bytes, fsync,
//! unlock; `commit` (SQLite): one `BEGIN IMMEDIATE; INSERT; COMMIT` of a `--size`-byte blob
//! in a WAL database with `synchronous=FULL`, each thread on its own connection. Thread t
//! works on directory or file t mod `--files`. Content is written in 64 KiB pieces, so
//! large sizes need no large buffer.
//!
//! `lmtp-bench chart` reads run.sh's raw results file and writes three SVG charts
//! (throughput against the disk's ceiling, latency percentiles, peak RSS against message
//! size): see the `chart` module.
//!
//! Results are printed as one `RESULT key=value ...` (or `DISK ...`) line on standard output,
//! for the script to parse; progress and problems go to standard error.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use getopts::Options;

mod chart;

/// Linux reports process times in `/proc/PID/stat` in units of USER_HZ, which is 100 on every
/// architecture Linux supports (the kernel's `CONFIG_HZ` is not visible there).
const CLOCK_TICKS: f64 = 100.0;
/// Length of one body line, CRLF included.
const LINE: usize = 80;
/// Longest reply line accepted from the server.
const MAX_LINE: usize = 4096;
/// Most lines in one multi-line reply.
const MAX_REPLY_LINES: usize = 100;
/// Upper bound on transactions one session runs (a guard; `-m` is the real limit).
const MAX_MESSAGES: u64 = 100_000_000;
/// Upper bound on probe iterations per thread (a guard; `--seconds` is the real limit).
const MAX_PROBES: u64 = 10_000_000;
/// Most idle connections `--idle` may hold.
const MAX_IDLE: usize = 10_000;
/// Largest BDAT chunk (`--bdat`).
const CHUNK: usize = 64 * 1024;
/// Most non-LAST chunks sent ahead of their replies (`--bdat`); a bound, so that the
/// server's replies never fill the socket while the generator is still writing.
const CHUNK_WINDOW: usize = 16;
/// Most latency samples kept over a run (all sessions together); beyond that a uniform
/// sample of them (reservoir sampling), so memory stays bounded on long runs.
const MAX_LATENCY_SAMPLES: usize = 1_000_000;
/// Content collected before one write to the socket: a message of up to this size goes out
/// in one write (with `--bdat`, together with its envelope).
const SEND_BUF: usize = 256 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("load") => load_main(&args[2..]),
        Some("disk") => disk_main(&args[2..]),
        Some("chart") => chart::chart_main(&args[2..]),
        Some("-h") | Some("--help") | Some("help") => {
            print!("{}", USAGE);
            return ExitCode::SUCCESS;
        }
        _ => Err(format!("expected a mode\n{USAGE}")),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("lmtp-bench: {e}");
            ExitCode::from(64)
        }
    }
}

const USAGE: &str = "\
Usage: lmtp-bench load --connect ADDR [options]
       lmtp-bench chart --results FILE --out DIR [--note TEXT] [--sqlite-body-files BYTES]
       lmtp-bench disk --dir DIR [--kind file|append|commit] [--size SIZE] [--files K]
                       [--seconds S] [--threads N] [--no-dirsync] [--link]

load options:
  --connect ADDR     unix:/path/to/socket or 127.0.0.1:PORT (loopback only)
  -s N               concurrent sessions (default 1)
  -m N               messages in total, shared by the sessions (default 100)
  -l SIZE            message size in bytes, K/M suffixes allowed (default 4K); MIN-MAX
                     gives every message its own size, uniform in that range and the
                     same for the same message number on every run
  -r N               recipients per message (default 1)
  --bdat             send the content with BDAT (CHUNKING, RFC 3030) instead of DATA:
                     chunks of at most 64 KiB, the last one BDAT n LAST, pipelined
                     with MAIL and RCPT; the server must advertise CHUNKING
  --to PATTERN       recipient address; %d is replaced by the mailbox number
                     (default load%d@example.org)
  --mailboxes K      distinct mailboxes 0..K-1 (default 1); recipient j of message i
                     goes to mailbox (i*R + j) mod K
  --same             all R recipients of a message go to the same mailbox (i mod K)
  --max-time SECS    start no new message after SECS seconds (default 600)
  --timeout SECS     give up on a reply after SECS seconds (default 300)
  --pid PID          server process: report its CPU seconds and peak RSS (with descendants)
  --label TEXT       copied into the RESULT line
  --greet-wait SECS  how long each session waits for its greeting before the run starts
                     without it (default 5); a session the server queues is greeted later,
                     inside the measured time
  --idle N           before the load, open N more connections (0 to 10000, default 0),
                     read their greetings and hold them open, silent, until the load ends
  --idle-lhlo        send LHLO on every idle connection once it is greeted
  --idle-wait SECS   how long to wait for all idle connections to be connected and greeted
                     (default 30); those still waiting then are counted as waiting

disk options:
  --dir DIR          a scratch directory on the disk to probe (a subdirectory is made and
                     removed again)
  --seconds S        how long to probe (default 2)
  --kind KIND        what one cycle is (default file):
                       file    create in tmp/, write, fsync, rename into new/, fsync new/
                               (a durable Maildir delivery)
                       append  flock(LOCK_EX) an mbox-like file, append, fsync, unlock
                               (a durable mbox delivery)
                       commit  BEGIN IMMEDIATE; INSERT a blob; COMMIT in one SQLite database
                               (WAL, synchronous=FULL, busy_timeout 30 s; a connection per
                               thread): a durable SQLite delivery
  --size SIZE        bytes per cycle, K/M suffixes allowed (default 4K), written in 64 KiB
                     pieces
  --files K          Maildir directories (file) or mbox files (append) the threads share:
                     thread t uses number t mod K (default 1; commit: always one database)
  --threads N        concurrent probe threads (default 1)
  --no-dirsync       file: leave out the fsync of new/
  --link             file: link into new/ and unlink from tmp/ (as lmtpd does) instead of
                     rename

chart options:
  --results FILE     run.sh's raw results file (WL SERVER STORE REP RESULT|DISK k=v ...);
                     other lines are ignored
  --out DIR          where throughput.svg, latency.svg and rss.svg are written
  --note TEXT        footer line of every chart (commit, date, machine)

disk prints one line: DISK threads= dirsync= (- unless file) kind= size= files= ops=
  secs= per_s= cpu_user_ms_per_op= cpu_sys_ms_per_op= (this process's CPU per cycle).

load prints one line: RESULT label=... deliveries=... dps=... (deliveries/s) mps=...
  (messages/s with every recipient delivered) p50_ms= p90_ms= p99_ms= max_ms= (latency per
  recipient reply: from writing the final dot, or the LAST chunk, to reading that reply;
  percentiles over at most 1,000,000 samples, max exact) cpu_user_ms_per_delivery=
  cpu_sys_ms_per_delivery= rss_kib= (with --pid) and more.

Exit status: 0 when every recipient of every message got 250 (sessions the server refused
with 421, and their messages, do not count), 1 otherwise, 64 on usage errors.
";

// ---------------------------------------------------------------------------------------
// Options

/// `SIZE` or `MIN-MAX` (each at least 512 bytes, MIN ≤ MAX).
fn parse_size_range(s: &str) -> Result<(usize, usize), String> {
    let one = |t: &str| -> Result<usize, String> {
        let v = parse_size(t.trim())?;
        let v = usize::try_from(v).map_err(|_| "size too large".to_string())?;
        if v < 512 {
            return Err("message size must be at least 512 bytes".into());
        }
        Ok(v)
    };
    match s.split_once('-') {
        None => one(s).map(|v| (v, v)),
        Some((lo, hi)) => {
            let (lo, hi) = (one(lo)?, one(hi)?);
            if lo > hi {
                return Err(format!("size range '{s}' is empty"));
            }
            Ok((lo, hi))
        }
    }
}

/// The size of message number `msg`: fixed, or drawn from the range by a hash of `msg`
/// (splitmix64), so a run is reproducible.
fn message_size(range: (usize, usize), msg: u64) -> usize {
    let (lo, hi) = range;
    if lo >= hi {
        return lo;
    }
    let mut z = msg.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let span = (hi - lo) as u64 + 1;
    lo + usize::try_from(z % span).unwrap_or(0)
}

fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 1024),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1024 * 1024),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("'{s}' is not a size"))
}

fn opt_num<T: std::str::FromStr>(
    m: &getopts::Matches,
    name: &str,
    default: T,
) -> Result<T, String> {
    match m.opt_str(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<T>()
            .map_err(|_| format!("-{name} {v}: not a number")),
    }
}

/// Where the server listens.
#[derive(Clone, Debug)]
enum Target {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl Target {
    fn parse(s: &str) -> Result<Target, String> {
        if let Some(p) = s.strip_prefix("unix:") {
            return Ok(Target::Unix(PathBuf::from(p)));
        }
        let addr: SocketAddr = s
            .parse()
            .map_err(|_| format!("'{s}' is neither unix:PATH nor IP:PORT"))?;
        if !addr.ip().is_loopback() {
            return Err(format!("{addr}: only loopback addresses are allowed"));
        }
        Ok(Target::Tcp(addr))
    }
}

/// Settings of one load run.
#[derive(Clone, Debug)]
struct LoadConfig {
    target: Target,
    sessions: usize,
    messages: u64,
    /// Smallest and largest message size (equal for a fixed size).
    size: (usize, usize),
    rcpts: usize,
    /// Send the content with BDAT instead of DATA.
    bdat: bool,
    to: String,
    mailboxes: usize,
    same: bool,
    max_time: Duration,
    timeout: Duration,
    pid: Option<u32>,
    label: String,
    /// Idle connections held open during the run.
    idle: usize,
    /// Send LHLO on the idle connections.
    idle_lhlo: bool,
    /// How long a session waits for its greeting before the run starts without it.
    greet_wait: Duration,
    /// Deadline for connecting and greeting all idle connections.
    idle_wait: Duration,
}

fn load_config(args: &[String]) -> Result<LoadConfig, String> {
    let mut o = Options::new();
    o.optopt("", "connect", "", "ADDR");
    o.optopt("s", "", "", "N");
    o.optopt("m", "", "", "N");
    o.optopt("l", "", "", "SIZE");
    o.optopt("r", "", "", "N");
    o.optflag("", "bdat", "");
    o.optopt("", "to", "", "PATTERN");
    o.optopt("", "mailboxes", "", "K");
    o.optflag("", "same", "");
    o.optopt("", "max-time", "", "SECS");
    o.optopt("", "timeout", "", "SECS");
    o.optopt("", "pid", "", "PID");
    o.optopt("", "label", "", "TEXT");
    o.optopt("", "idle", "", "N");
    o.optflag("", "idle-lhlo", "");
    o.optopt("", "idle-wait", "", "SECS");
    o.optopt("", "greet-wait", "", "SECS");
    let m = o.parse(args).map_err(|e| e.to_string())?;
    if let Some(extra) = m.free.first() {
        return Err(format!("unexpected argument '{extra}'"));
    }
    let target = Target::parse(&m.opt_str("connect").ok_or("--connect is required")?)?;
    let size = parse_size_range(&m.opt_str("l").unwrap_or_else(|| "4K".into()))?;
    let idle_wait: f64 = opt_num(&m, "idle-wait", 30.0)?;
    let greet_wait: f64 = opt_num(&m, "greet-wait", 5.0)?;
    if !(0.1..=600.0).contains(&idle_wait) || !(0.1..=600.0).contains(&greet_wait) {
        return Err("--idle-wait and --greet-wait must be 0.1 to 600 seconds".into());
    }
    let cfg = LoadConfig {
        target,
        sessions: opt_num(&m, "s", 1usize)?,
        messages: opt_num(&m, "m", 100u64)?,
        size,
        rcpts: opt_num(&m, "r", 1usize)?,
        bdat: m.opt_present("bdat"),
        to: m
            .opt_str("to")
            .unwrap_or_else(|| "load%d@example.org".into()),
        mailboxes: opt_num(&m, "mailboxes", 1usize)?,
        same: m.opt_present("same"),
        max_time: Duration::from_secs_f64(opt_num(&m, "max-time", 600.0f64)?),
        timeout: Duration::from_secs_f64(opt_num(&m, "timeout", 300.0f64)?),
        pid: match m.opt_str("pid") {
            None => None,
            Some(p) => Some(p.parse().map_err(|_| format!("--pid {p}: not a number"))?),
        },
        label: m.opt_str("label").unwrap_or_else(|| "-".into()),
        idle: opt_num(&m, "idle", 0usize)?,
        idle_lhlo: m.opt_present("idle-lhlo"),
        idle_wait: Duration::from_secs_f64(idle_wait),
        greet_wait: Duration::from_secs_f64(greet_wait),
    };
    if !(1..=1000).contains(&cfg.sessions) {
        return Err("-s must be 1 to 1000".into());
    }
    if !(1..=1000).contains(&cfg.rcpts) {
        return Err("-r must be 1 to 1000".into());
    }
    if cfg.mailboxes == 0 || cfg.messages == 0 || cfg.messages > MAX_MESSAGES {
        return Err("--mailboxes and -m must be positive (and -m sensible)".into());
    }
    if cfg.idle > MAX_IDLE {
        return Err(format!("--idle must be 0 to {MAX_IDLE}"));
    }
    if cfg.label.contains(char::is_whitespace) {
        return Err("--label must not contain spaces".into());
    }
    Ok(cfg)
}

// ---------------------------------------------------------------------------------------
// Connection

/// One client connection, over either kind of socket.
enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn connect(t: &Target, timeout: Duration) -> std::io::Result<Stream> {
        let s = match t {
            Target::Unix(p) => {
                let s = UnixStream::connect(p)?;
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                Stream::Unix(s)
            }
            Target::Tcp(a) => {
                let s = TcpStream::connect_timeout(a, timeout)?;
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                Stream::Tcp(s)
            }
        };
        Ok(s)
    }

    /// One connection attempt that never blocks for long: on a Unix socket whose listen
    /// queue is full (a server that stopped accepting) it fails with `WouldBlock` at once
    /// instead of waiting; a TCP connect waits at most `timeout`. The stream returned blocks.
    fn try_connect(t: &Target, timeout: Duration) -> std::io::Result<Stream> {
        match t {
            Target::Unix(p) => {
                let s = UnixStream::from(mio::net::UnixStream::connect(p)?);
                s.set_nonblocking(false)?;
                Ok(Stream::Unix(s))
            }
            Target::Tcp(a) => Ok(Stream::Tcp(TcpStream::connect_timeout(a, timeout)?)),
        }
    }

    fn set_read_timeout(&self, d: Duration) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(Some(d)),
            Stream::Tcp(s) => s.set_read_timeout(Some(d)),
        }
    }

    fn set_nonblocking(&self, on: bool) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_nonblocking(on),
            Stream::Tcp(s) => s.set_nonblocking(on),
        }
    }

    fn try_clone(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
        })
    }

    fn shutdown(&self) {
        let _ = match self {
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
        }
    }
}

/// Why a session (or an idle connection) ended before its work was done.
#[derive(Debug)]
enum Stop {
    /// The server refused it: a `421` reply, or a connection closed or reset before the
    /// greeting.
    Refused(String),
    /// The server closed or reset the connection without a `421` (a refusal only before the
    /// greeting).
    Closed(String),
    /// No reply within the read timeout.
    TimedOut(String),
    /// Anything else: a malformed reply, an I/O error.
    Failed(String),
}

impl Stop {
    fn text(&self) -> &str {
        match self {
            Stop::Refused(t) | Stop::Closed(t) | Stop::TimedOut(t) | Stop::Failed(t) => t,
        }
    }

    /// Before the greeting, a closed connection is the server refusing it.
    fn at_greeting(self) -> Stop {
        match self {
            Stop::Closed(t) => Stop::Refused(t),
            other => other,
        }
    }

    /// After the greeting, only a `421` is a refusal; a bare close is an error.
    fn in_session(self) -> Stop {
        match self {
            Stop::Closed(t) => Stop::Failed(t),
            other => other,
        }
    }
}

impl From<String> for Stop {
    fn from(s: String) -> Stop {
        Stop::Failed(s)
    }
}

/// Whether an I/O error means the peer closed or reset the connection.
fn is_closed(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe)
}

/// Reads one (possibly multi-line) reply; returns its code and all its text.
fn read_reply(r: &mut impl BufRead) -> Result<(u16, String), Stop> {
    let mut all = String::new();
    for _ in 0..MAX_REPLY_LINES {
        let mut line = Vec::with_capacity(128);
        let n = r
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .map_err(|e| {
                let text = format!("read: {e}");
                if is_closed(&e) {
                    Stop::Closed(text)
                } else if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) {
                    Stop::TimedOut(text)
                } else {
                    Stop::Failed(text)
                }
            })?;
        if n == 0 {
            return Err(Stop::Closed("connection closed by the server".into()));
        }
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches(['\r', '\n']);
        let code = line
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| Stop::Failed(format!("malformed reply line '{line}'")))?;
        all.push_str(line.get(4..).unwrap_or(""));
        all.push(' ');
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, all));
        }
    }
    Err(Stop::Failed("reply with too many lines".into()))
}

/// A connected LMTP session: a buffered reader and the writing half.
struct Session {
    reader: BufReader<Stream>,
    writer: Stream,
    /// Every reply read, any code.
    replies: u64,
    /// The LHLO reply advertised CHUNKING.
    chunking: bool,
}

impl Session {
    /// Connects, retrying for up to 10 s while the server starts.
    fn open(cfg: &LoadConfig) -> Result<Session, Stop> {
        let mut last = String::new();
        let mut stream = None;
        for _ in 0..100 {
            match Stream::connect(&cfg.target, cfg.timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => {
                    last = e.to_string();
                    thread::sleep(Duration::from_millis(100));
                }
            }
        }
        let stream = stream.ok_or_else(|| format!("connect {:?}: {last}", cfg.target))?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        Ok(Session {
            reader: BufReader::with_capacity(16 * 1024, stream),
            writer,
            replies: 0,
            chunking: false,
        })
    }

    /// Waits up to `wait` for the greeting, then sends LHLO and reads its reply (waiting up
    /// to `timeout`). `Ok(false)`: no greeting yet (call again). A `421` greeting or a
    /// connection closed before it is [`Stop::Refused`].
    fn greet(&mut self, wait: Duration, timeout: Duration) -> Result<bool, Stop> {
        let set = |s: &Session, d| {
            s.reader
                .get_ref()
                .set_read_timeout(d)
                .map_err(|e| Stop::Failed(e.to_string()))
        };
        set(self, wait)?;
        let greeting = self.reply();
        set(self, timeout)?;
        let (code, text) = match greeting {
            Ok(reply) => reply,
            Err(Stop::TimedOut(_)) => return Ok(false),
            Err(e) => return Err(e.at_greeting()),
        };
        if code != 220 {
            return Err(Stop::Failed(format!("greeting: {code} {text}")));
        }
        self.send(b"LHLO lmtp-bench.localhost\r\n")
            .map_err(Stop::in_session)?;
        let (code, text) = self.reply().map_err(Stop::in_session)?;
        if code != 250 {
            return Err(Stop::Failed(format!("LHLO: {code} {text}")));
        }
        let upper = text.to_ascii_uppercase();
        if !upper.contains("PIPELINING") {
            eprintln!("lmtp-bench: note: the server does not advertise PIPELINING");
        }
        self.chunking = upper.split_whitespace().any(|w| w == "CHUNKING");
        Ok(true)
    }

    fn send(&mut self, b: &[u8]) -> Result<(), Stop> {
        self.writer.write_all(b).map_err(|e| self.write_failed(&e))
    }

    /// What a failed write means: a server that closed the connection may have said why
    /// (`421`) first, and that reply is still there to read.
    fn write_failed(&mut self, e: &std::io::Error) -> Stop {
        let text = format!("write: {e}");
        if !is_closed(e) {
            return Stop::Failed(text);
        }
        match self.reply() {
            Err(Stop::Refused(t)) => Stop::Refused(t),
            _ => Stop::Closed(text),
        }
    }

    /// Reads one reply; a `421` (the server is closing the connection) is
    /// [`Stop::Refused`].
    fn reply(&mut self) -> Result<(u16, String), Stop> {
        let (code, text) = read_reply(&mut self.reader)?;
        self.replies += 1;
        if code == 421 {
            return Err(Stop::Refused(format!("{code} {}", text.trim_end())));
        }
        Ok((code, text))
    }

    fn quit(mut self) {
        if self.send(b"QUIT\r\n").is_ok() {
            let _ = self.reply();
        }
        self.writer.shutdown();
    }
}

// ---------------------------------------------------------------------------------------
// Idle connections

/// Raises this process's soft limit on open files towards `want` (never above the hard
/// limit) and returns the soft limit now in force (0 when it cannot be read).
#[allow(unsafe_code)]
fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into `lim`, a valid, exclusively borrowed value
    // of exactly that type; nothing else is touched.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    if lim.rlim_cur >= want {
        return lim.rlim_cur;
    }
    let raised = libc::rlimit {
        rlim_cur: want.min(lim.rlim_max),
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit only reads `raised`, a valid `rlimit` that lives across the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        raised.rlim_cur
    } else {
        lim.rlim_cur
    }
}

/// Connections held open, silent, while the load runs (`--idle`).
#[derive(Default)]
struct Idle {
    /// Open connections and whether each was greeted (the others are still waiting).
    conns: Vec<(Stream, bool)>,
    /// Greeted (and, with `--idle-lhlo`, answered LHLO with 250).
    greeted: u64,
    /// Refused: `421`, or closed or reset before the greeting (or, after it, with `421`).
    refused: u64,
    /// Not connected, or not greeted, within `--idle-wait`.
    waiting: u64,
    /// Greeted but closed by the server (or sent something) before the load ended.
    dropped: u64,
    /// Anything else that went wrong (the run then fails).
    errors: Vec<String>,
}

impl Idle {
    /// Opens `cfg.idle` connections: all connects first, then every greeting (and LHLO), so a
    /// server that starts a process per connection can work on them in parallel. Everything
    /// is bounded by `--idle-wait`; connections not greeted by then are counted as waiting.
    fn open(cfg: &LoadConfig) -> Idle {
        let mut idle = Idle::default();
        if cfg.idle == 0 {
            return idle;
        }
        let deadline = Instant::now() + cfg.idle_wait;
        let left = || {
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        };
        let mut streams = Vec::with_capacity(cfg.idle);
        'connect: for i in 0..cfg.idle {
            loop {
                match Stream::try_connect(&cfg.target, left()) {
                    Ok(s) => {
                        streams.push(s);
                        break;
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        // The listen queue is full: the server is not accepting.
                        if Instant::now() >= deadline {
                            idle.waiting += (cfg.idle - i) as u64;
                            break 'connect;
                        }
                        thread::sleep(Duration::from_millis(2));
                    }
                    Err(e) if is_closed(&e) => {
                        idle.refused += 1;
                        break;
                    }
                    Err(e) => {
                        idle.errors.push(format!(
                            "idle connection {i}: connect {:?}: {e} ({} not opened)",
                            cfg.target,
                            cfg.idle - i
                        ));
                        break 'connect;
                    }
                }
            }
        }
        for mut s in streams {
            match Idle::greet(&mut s, cfg.idle_lhlo, left()) {
                Ok(true) => {
                    idle.greeted += 1;
                    idle.conns.push((s, true));
                }
                Ok(false) => {
                    idle.waiting += 1;
                    idle.conns.push((s, false));
                }
                Err(Stop::Refused(_) | Stop::Closed(_)) => idle.refused += 1,
                Err(e) => idle.errors.push(format!("idle connection: {}", e.text())),
            }
        }
        idle
    }

    /// Reads the greeting (and with `lhlo` sends LHLO and reads its reply) within `wait`;
    /// `Ok(false)` when the server has not answered by then.
    fn greet(s: &mut Stream, lhlo: bool, wait: Duration) -> Result<bool, Stop> {
        s.set_read_timeout(wait)
            .map_err(|e| Stop::Failed(e.to_string()))?;
        // Each reply is read through a short-lived reader: the server sends nothing after
        // it unasked, so nothing buffered is lost when the reader goes.
        let mut r = BufReader::with_capacity(1024, &mut *s);
        let code = match read_reply(&mut r) {
            Ok((code, _)) => code,
            Err(Stop::TimedOut(_)) => return Ok(false),
            Err(e) => return Err(e.at_greeting()),
        };
        match code {
            220 => {}
            421 => return Err(Stop::Refused("421 greeting".into())),
            c => return Err(Stop::Failed(format!("greeting: {c}"))),
        }
        if !lhlo {
            return Ok(true);
        }
        drop(r);
        s.write_all(b"LHLO lmtp-bench.localhost\r\n")
            .map_err(|e| Stop::Failed(format!("LHLO: {e}")))?;
        let mut r = BufReader::with_capacity(4096, &mut *s);
        match read_reply(&mut r) {
            Ok((250, _)) => Ok(true),
            Ok((421, _)) => Err(Stop::Refused("421 to LHLO".into())),
            Ok((c, t)) => Err(Stop::Failed(format!("LHLO: {c} {t}"))),
            Err(Stop::TimedOut(_)) => Ok(false),
            Err(e) => Err(e.in_session()),
        }
    }

    /// Counts the greeted connections the server has closed (or written to: a timeout
    /// `421`) since they were opened, then closes them all.
    fn close(&mut self) {
        for (mut s, greeted) in self.conns.drain(..) {
            if greeted {
                let mut b = [0u8; 256];
                let open = s.set_nonblocking(true).is_ok()
                    && matches!(s.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
                if !open {
                    self.dropped += 1;
                }
            }
            s.shutdown();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Messages

/// The fixed part of every message body: whole lines of printable text, none starting with
/// a dot, each `LINE` bytes long with its CRLF.
fn body_block() -> Vec<u8> {
    let mut block = Vec::with_capacity(LINE * 1024);
    for i in 0..1024usize {
        let mut line = format!("{i:04} lmtp-bench filler ");
        let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut k = i;
        while line.len() < LINE - 2 {
            line.push(char::from(alphabet[k % alphabet.len()]));
            k += 7;
        }
        block.extend_from_slice(line.as_bytes());
        block.extend_from_slice(b"\r\n");
    }
    block
}

/// Writes a body of exactly `len` bytes (CRLF line ends, ending in CRLF) in large writes.
fn write_body(w: &mut impl Write, block: &[u8], len: usize) -> std::io::Result<()> {
    let full = len / LINE;
    let rem = len % LINE;
    // rem == 1 cannot be a line of its own: make the last full line one byte longer.
    let (full, last) = match rem {
        0 => (full, None),
        1 => (full - 1, Some(LINE + 1)),
        r => (full, Some(r)),
    };
    let mut left = full * LINE;
    while left > 0 {
        let n = left.min(block.len());
        w.write_all(&block[..n])?;
        left -= n;
    }
    if let Some(n) = last {
        let mut line = vec![b'z'; n - 2];
        line.extend_from_slice(b"\r\n");
        w.write_all(&line)?;
    }
    Ok(())
}

fn recipient(cfg: &LoadConfig, msg: u64, j: usize) -> String {
    let k = cfg.mailboxes as u64;
    let mailbox = if cfg.same {
        msg % k
    } else {
        (msg * cfg.rcpts as u64 + j as u64) % k
    };
    cfg.to.replace("%d", &mailbox.to_string())
}

// ---------------------------------------------------------------------------------------
// Load run

/// What one session counted.
#[derive(Default)]
struct Tally {
    /// Transactions whose content was sent (final dot written; with `--bdat`, the LAST chunk
    /// written with at least one recipient accepted).
    messages: u64,
    /// Transactions in which every recipient got 250 after the dot (or BDAT LAST).
    messages_ok: u64,
    /// 250 replies after the dot (or BDAT LAST).
    deliveries: u64,
    /// BDAT chunks sent (`--bdat`), LAST ones included.
    chunks: u64,
    /// 4xx replies (any stage) other than `421`, which ends the session as refused.
    tempfail: u64,
    /// 5xx replies (any stage).
    permfail: u64,
    /// Every reply read, including greeting and LHLO.
    replies: u64,
    /// Connection and protocol errors.
    errors: Vec<String>,
    /// Microseconds from the final dot to each recipient's reply (a bounded sample).
    latencies: Latencies,
    /// Sessions the server refused (0 or 1 per session): see [`Stop::Refused`].
    refused: u64,
    /// Transactions cut short by a `421` after the final dot (counted in `messages`).
    cut_messages: u64,
    /// 250 replies in those transactions before the `421` (counted in `deliveries`).
    cut_deliveries: u64,
    /// What the server said when it refused the session.
    refusals: Vec<String>,
}

/// Latency samples in microseconds, one per recipient reply after the final dot: all of them
/// up to a cap, beyond it a uniform sample (reservoir sampling with a fixed-seed generator,
/// so a run is reproducible); the largest is kept exactly.
#[derive(Debug)]
struct Latencies {
    /// The kept samples (at most `cap`).
    kept: Vec<u64>,
    /// Samples offered, kept or not.
    seen: u64,
    /// The largest sample offered.
    max: u64,
    /// Most samples kept.
    cap: usize,
    /// State of the generator choosing which samples to replace.
    rng: u64,
}

impl Default for Latencies {
    fn default() -> Latencies {
        Latencies::with_cap(MAX_LATENCY_SAMPLES)
    }
}

impl Latencies {
    fn with_cap(cap: usize) -> Latencies {
        Latencies {
            kept: Vec::new(),
            seen: 0,
            max: 0,
            cap: cap.max(1),
            rng: 0x2545_f491_4f6c_dd1d,
        }
    }

    /// Next value of a splitmix64 generator.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn push(&mut self, us: u64) {
        self.seen += 1;
        self.max = self.max.max(us);
        if self.kept.len() < self.cap {
            self.kept.push(us);
            return;
        }
        // Keep this one with probability cap / seen, in place of a random kept one.
        let j = self.next_random() % self.seen;
        if let Ok(j) = usize::try_from(j) {
            if j < self.cap {
                self.kept[j] = us;
            }
        }
    }

    /// Adds another session's samples; past the cap, each is weighted by how many samples
    /// it stands for, approximately (its share of that session's samples is kept).
    fn merge(&mut self, other: Latencies) {
        self.max = self.max.max(other.max);
        if other.kept.len() as u64 == other.seen {
            for us in other.kept {
                self.push(us);
            }
            return;
        }
        // The other side was sampled: offer each of its kept samples as often as it stands
        // for, rounded, so the mix keeps the proportions of the two sessions.
        let weight = other.seen as f64 / other.kept.len().max(1) as f64;
        let mut owed = 0.0f64;
        for us in other.kept {
            owed += weight;
            while owed >= 1.0 {
                self.push(us);
                owed -= 1.0;
            }
        }
    }

    /// The kept samples, sorted, in microseconds.
    fn sorted(mut self) -> (Vec<u64>, u64) {
        self.kept.sort_unstable();
        (self.kept, self.max)
    }
}

impl Tally {
    fn count(&mut self, code: u16) {
        match code / 100 {
            4 => self.tempfail += 1,
            5 => self.permfail += 1,
            _ => {}
        }
    }
}

/// The MAIL and RCPT replies of one transaction, read in order.
#[derive(Default)]
struct Envelope {
    /// Replies read so far: MAIL's, then one per RCPT.
    read: usize,
    mail_ok: bool,
    /// RCPTs answered 250.
    accepted: usize,
}

impl Envelope {
    /// Whether all 1 + R replies have been read.
    fn done(&self, rcpts: &[String]) -> bool {
        self.read > rcpts.len()
    }

    /// Reads the next envelope reply (MAIL's first, then the RCPTs' in order).
    fn read_next(&mut self, s: &mut Session, t: &mut Tally, rcpts: &[String]) -> Result<(), Stop> {
        let (code, text) = s.reply()?;
        t.count(code);
        if self.read == 0 {
            self.mail_ok = code == 250;
            if !self.mail_ok && t.errors.len() < 5 {
                t.errors.push(format!("MAIL: {code} {text}"));
            }
        } else if code == 250 {
            self.accepted += 1;
        } else if t.errors.len() < 5 {
            let r = rcpts.get(self.read - 1).map_or("?", String::as_str);
            t.errors.push(format!("RCPT {r}: {code} {text}"));
        }
        self.read += 1;
        Ok(())
    }
}

/// `MAIL FROM` and one `RCPT TO` per recipient, CRLF-terminated.
fn envelope_commands(rcpts: &[String]) -> String {
    let mut envelope = String::from("MAIL FROM:<bench@example.net>\r\n");
    for r in rcpts {
        envelope.push_str(&format!("RCPT TO:<{r}>\r\n"));
    }
    envelope
}

/// The header block of message `msg` from session `id`, blank line included.
fn message_header(to: &str, id: usize, msg: u64) -> String {
    format!(
        "From: <bench@example.net>\r\n\
         To: <{to}>\r\n\
         Subject: lmtp-bench {id}/{msg}\r\n\
         Message-ID: <{msg}.{id}.{}@lmtp-bench.localhost>\r\n\
         Date: Thu, 1 Jan 2026 00:00:00 +0000\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n",
        std::process::id()
    )
}

/// Runs one transaction; `Err` means the session cannot go on (`Stop::Refused`: the server
/// ended it with `421`).
fn transaction(
    s: &mut Session,
    cfg: &LoadConfig,
    block: &[u8],
    msg: u64,
    id: usize,
    t: &mut Tally,
) -> Result<(), Stop> {
    if cfg.bdat {
        return transaction_bdat(s, cfg, block, msg, id, t);
    }
    let rcpts: Vec<String> = (0..cfg.rcpts).map(|j| recipient(cfg, msg, j)).collect();
    let mut envelope = envelope_commands(&rcpts);
    envelope.push_str("DATA\r\n");
    s.send(envelope.as_bytes())?;

    let mut env = Envelope::default();
    while !env.done(&rcpts) {
        env.read_next(s, t, &rcpts)?;
    }
    let (code, text) = s.reply()?;
    t.count(code);
    if code != 354 {
        if t.errors.len() < 5 {
            t.errors.push(format!("DATA: {code} {text}"));
        }
        s.send(b"RSET\r\n")?;
        let (code, _) = s.reply()?;
        t.count(code);
        return Ok(());
    }

    let header = message_header(&rcpts[0], id, msg);
    let size = message_size(cfg.size, msg);
    let body_len = size.saturating_sub(header.len()).max(2);
    if size <= SEND_BUF {
        let mut buf = Vec::with_capacity(size + 8);
        buf.extend_from_slice(header.as_bytes());
        write_body(&mut buf, block, body_len).map_err(|e| format!("body: {e}"))?;
        buf.extend_from_slice(b".\r\n");
        s.send(&buf)?;
    } else {
        let mut w = std::io::BufWriter::with_capacity(SEND_BUF, &mut s.writer);
        let written = w
            .write_all(header.as_bytes())
            .and_then(|_| write_body(&mut w, block, body_len))
            .and_then(|_| w.write_all(b".\r\n"))
            .and_then(|_| w.flush());
        drop(w);
        if let Err(e) = written {
            return Err(s.write_failed(&e));
        }
    }
    let dot = Instant::now();
    t.messages += 1;
    final_replies(s, t, &rcpts, env.accepted, env.mail_ok, dot, "after DATA")
}

/// Reads the replies to the final dot (or `BDAT ... LAST`), one per accepted recipient, and
/// counts the deliveries and the latency since `sent`.
fn final_replies(
    s: &mut Session,
    t: &mut Tally,
    rcpts: &[String],
    accepted: usize,
    mail_ok: bool,
    sent: Instant,
    what: &str,
) -> Result<(), Stop> {
    let mut ok = 0usize;
    for r in rcpts.iter().take(accepted) {
        let reply = s.reply();
        if reply.is_ok() {
            t.latencies
                .push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
        }
        let (code, text) = match reply {
            Ok(reply) => reply,
            Err(e) => {
                // The content went out, but not every recipient was answered: what was
                // acknowledged so far is stored and counts; the rest is not expected.
                if matches!(e, Stop::Refused(_)) {
                    t.cut_messages += 1;
                    t.cut_deliveries += ok as u64;
                }
                t.deliveries += ok as u64;
                return Err(e);
            }
        };
        t.count(code);
        if code == 250 {
            ok += 1;
        } else if t.errors.len() < 5 {
            t.errors.push(format!("{what} {r}: {code} {text}"));
        }
    }
    t.deliveries += ok as u64;
    if mail_ok && ok == rcpts.len() {
        t.messages_ok += 1;
    }
    Ok(())
}

/// Writes what is written to it as BDAT chunks of at most [`CHUNK`] octets behind the
/// transaction's envelope, and reads the replies it has outrun whenever more than
/// [`CHUNK_WINDOW`] chunks are unanswered. A full chunk is held until more content arrives,
/// so [`Chunker::finish`] can send the last one as `BDAT n LAST` (never `BDAT 0 LAST`).
struct Chunker<'a> {
    s: &'a mut Session,
    t: &'a mut Tally,
    rcpts: &'a [String],
    /// The envelope replies read so far.
    env: Envelope,
    /// Non-LAST chunks sent whose reply has not been read.
    unanswered: usize,
    /// The octets of the chunk being filled.
    chunk: Vec<u8>,
    /// Commands and chunks not yet written to the socket.
    out: Vec<u8>,
    /// Why a write failed (`Write` can only return an `io::Error`).
    stop: Option<Stop>,
}

impl Chunker<'_> {
    /// Frames the held octets as one chunk (`LAST` when `last`) and sends what is due.
    fn emit(&mut self, last: bool) -> Result<(), Stop> {
        let n = self.chunk.len();
        let cmd = if last {
            format!("BDAT {n} LAST\r\n")
        } else {
            format!("BDAT {n}\r\n")
        };
        self.out.extend_from_slice(cmd.as_bytes());
        self.out.extend_from_slice(&self.chunk);
        self.chunk.clear();
        self.t.chunks += 1;
        if !last {
            self.unanswered += 1;
        }
        if last || self.out.len() >= SEND_BUF {
            self.send_out()?;
        }
        while self.unanswered > CHUNK_WINDOW {
            self.read_next()?;
        }
        Ok(())
    }

    fn send_out(&mut self) -> Result<(), Stop> {
        if !self.out.is_empty() {
            self.s.send(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }

    /// Reads the oldest outstanding reply: the envelope's first, then the chunks'.
    fn read_next(&mut self) -> Result<(), Stop> {
        // Everything asked must have been sent before waiting for its answer.
        self.send_out()?;
        if !self.env.done(self.rcpts) {
            return self.env.read_next(self.s, self.t, self.rcpts);
        }
        let (code, text) = self.s.reply()?;
        self.t.count(code);
        self.unanswered = self.unanswered.saturating_sub(1);
        if code != 250 && self.t.errors.len() < 5 {
            self.t.errors.push(format!("BDAT: {code} {text}"));
        }
        Ok(())
    }

    /// Sends the held octets as `BDAT n LAST`, then reads every reply before LAST's.
    fn finish(mut self) -> Result<(Envelope, Instant), Stop> {
        self.emit(true)?;
        let sent = Instant::now();
        while !self.env.done(self.rcpts) || self.unanswered > 0 {
            self.read_next()?;
        }
        Ok((self.env, sent))
    }
}

impl Write for Chunker<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // A full chunk with more content to come is not the last one.
        if self.chunk.len() == CHUNK {
            if let Err(e) = self.emit(false) {
                self.stop = Some(e);
                return Err(std::io::Error::other("BDAT chunk not sent"));
            }
        }
        let n = buf.len().min(CHUNK - self.chunk.len());
        self.chunk.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// [`transaction`] with `--bdat`: MAIL, the RCPTs and the content as BDAT chunks, pipelined
/// (Exim's way with CHUNKING): a message of up to [`SEND_BUF`] octets goes out with its
/// envelope in one write. The content is the same as with DATA, sent raw: no dot-stuffing,
/// no final dot. Each non-LAST chunk gets one reply; LAST gets one per accepted recipient
/// (RFC 2033 §4.3 with RFC 3030), none when no recipient was accepted, and one when MAIL
/// failed (there is no transaction). The latency runs from writing the LAST chunk.
fn transaction_bdat(
    s: &mut Session,
    cfg: &LoadConfig,
    block: &[u8],
    msg: u64,
    id: usize,
    t: &mut Tally,
) -> Result<(), Stop> {
    if !s.chunking {
        return Err(Stop::Failed(
            "--bdat: the server does not advertise CHUNKING".into(),
        ));
    }
    let rcpts: Vec<String> = (0..cfg.rcpts).map(|j| recipient(cfg, msg, j)).collect();
    let header = message_header(&rcpts[0], id, msg);
    let size = message_size(cfg.size, msg);
    let body_len = size.saturating_sub(header.len()).max(2);
    let mut out = Vec::with_capacity(size.min(SEND_BUF) + 1024);
    out.extend_from_slice(envelope_commands(&rcpts).as_bytes());
    let mut c = Chunker {
        s: &mut *s,
        t: &mut *t,
        rcpts: &rcpts,
        env: Envelope::default(),
        unanswered: 0,
        chunk: Vec::with_capacity(CHUNK.min(size)),
        out,
        stop: None,
    };
    let written = c
        .write_all(header.as_bytes())
        .and_then(|_| write_body(&mut c, block, body_len));
    if let Err(e) = written {
        return Err(c
            .stop
            .take()
            .unwrap_or_else(|| Stop::Failed(format!("body: {e}"))));
    }
    let (env, sent) = c.finish()?;
    if !env.mail_ok {
        // No transaction: the LAST chunk got one refusal.
        let (code, text) = s.reply()?;
        t.count(code);
        if t.errors.len() < 5 {
            t.errors.push(format!("BDAT LAST: {code} {text}"));
        }
        return Ok(());
    }
    if env.accepted == 0 {
        return Ok(());
    }
    t.messages += 1;
    final_replies(s, t, &rcpts, env.accepted, env.mail_ok, sent, "after BDAT")
}

/// CPU seconds and peak RSS of a process tree.
#[derive(Clone, Copy, Debug, Default)]
struct ProcSample {
    /// utime (+ cutime of reaped children), seconds.
    user_s: f64,
    /// stime (+ cstime of reaped children), seconds.
    sys_s: f64,
    /// Sum of VmHWM over the live processes, KiB.
    hwm_kib: u64,
    /// Live processes in the tree.
    procs: usize,
}

/// Fields 4 (ppid) and 14–17 (utime, stime, cutime, cstime) of `/proc/PID/stat`, as
/// (ppid, user ticks, system ticks); a process's own and its reaped children's times.
fn read_stat(pid: u32) -> Option<(u32, u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): field n is f[n - 3].
    let ppid = f.get(1)?.parse().ok()?;
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    let user = num(11)? + num(13)?;
    let sys = num(12)? + num(14)?;
    Some((ppid, user, sys))
}

fn read_hwm(pid: u32) -> u64 {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Samples `root` and every process descending from it.
fn sample_tree(root: u32) -> ProcSample {
    let mut parent = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                if let Some((ppid, user, sys)) = read_stat(pid) {
                    parent.push((pid, ppid, user, sys));
                }
            }
        }
    }
    let mut tree = vec![root];
    // Grow the set until no process is added (at most one pass per process).
    for _ in 0..parent.len() + 1 {
        let before = tree.len();
        for &(pid, ppid, _, _) in &parent {
            if tree.contains(&ppid) && !tree.contains(&pid) {
                tree.push(pid);
            }
        }
        if tree.len() == before {
            break;
        }
    }
    let mut s = ProcSample::default();
    for &(pid, _, user, sys) in &parent {
        if tree.contains(&pid) {
            s.user_s += user as f64 / CLOCK_TICKS;
            s.sys_s += sys as f64 / CLOCK_TICKS;
            s.hwm_kib += read_hwm(pid);
            s.procs += 1;
        }
    }
    s
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

fn load_main(args: &[String]) -> Result<bool, String> {
    let cfg = Arc::new(load_config(args)?);
    // Two descriptors per session (reader and writer), one per idle connection, some spare.
    let want = (cfg.idle + 2 * cfg.sessions + 64) as u64;
    let nofile = raise_nofile(want);
    if nofile < want {
        eprintln!("lmtp-bench: note: open files limited to {nofile}, {want} wanted");
    }
    let mut idle = Idle::open(&cfg);
    let block = Arc::new(body_block());
    let next = Arc::new(AtomicU64::new(0));
    // Messages to send: -m, less the shares of sessions the server refuses.
    let budget = Arc::new(AtomicU64::new(cfg.messages));
    let ready = Arc::new(Barrier::new(cfg.sessions + 1));
    let go = Arc::new(Barrier::new(cfg.sessions + 1));
    let start_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));

    let mut handles = Vec::with_capacity(cfg.sessions);
    for id in 0..cfg.sessions {
        let (cfg, block, next) = (cfg.clone(), block.clone(), next.clone());
        let (ready, go, start_at) = (ready.clone(), go.clone(), start_at.clone());
        let budget = budget.clone();
        // This session's share of the messages, which it takes back out if it is refused.
        let n = cfg.sessions as u64;
        let share = cfg.messages / n + u64::from((id as u64) < cfg.messages % n);
        let give_back = move |budget: &AtomicU64, k: u64| {
            let _ = budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(k))
            });
        };
        let h = thread::Builder::new()
            .name(format!("session-{id}"))
            .spawn(move || {
                let mut t = Tally {
                    latencies: Latencies::with_cap(MAX_LATENCY_SAMPLES / cfg.sessions),
                    ..Tally::default()
                };
                // A session the server queues instead of greeting must not hold up the
                // start of the others: after --greet-wait it is greeted once running.
                let session = Session::open(&cfg).and_then(|mut s| {
                    let greeted = s.greet(cfg.greet_wait, cfg.timeout)?;
                    Ok((s, greeted))
                });
                // Refused at connect: settled before the start, so the budget is exact.
                if let Err(Stop::Refused(_)) = &session {
                    give_back(&budget, share);
                }
                ready.wait();
                go.wait();
                let session = match session {
                    Ok((mut s, false)) => match s.greet(cfg.timeout, cfg.timeout) {
                        Ok(true) => Ok(s),
                        Ok(false) => Err(Stop::TimedOut("no greeting".into())),
                        Err(e) => {
                            if let Stop::Refused(_) = e {
                                give_back(&budget, share);
                            }
                            Err(e)
                        }
                    },
                    Ok((s, true)) => Ok(s),
                    Err(e) => Err(e),
                };
                let mut s = match session {
                    Ok(s) => s,
                    Err(Stop::Refused(e)) => {
                        t.refused = 1;
                        t.refusals.push(format!("session {id}, at connect: {e}"));
                        return t;
                    }
                    Err(e) => {
                        t.errors.push(format!("session {id}: {}", e.text()));
                        return t;
                    }
                };
                let mut taken = 0u64;
                let deadline = start_at
                    .lock()
                    .map(|g| g.unwrap_or_else(Instant::now))
                    .unwrap_or_else(|_| Instant::now())
                    + cfg.max_time;
                for _ in 0..MAX_MESSAGES {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let msg = next.fetch_add(1, Ordering::Relaxed);
                    if msg >= budget.load(Ordering::Relaxed) {
                        break;
                    }
                    taken += 1;
                    match transaction(&mut s, &cfg, &block, msg, id, &mut t) {
                        Ok(()) => {}
                        Err(Stop::Refused(e)) => {
                            // What it would still have sent is not sent by the others.
                            give_back(&budget, share.saturating_sub(taken));
                            t.refused = 1;
                            t.refusals.push(format!("session {id}, message {msg}: {e}"));
                            t.replies += s.replies;
                            return t;
                        }
                        Err(e) => {
                            let e = e.text();
                            t.errors.push(format!("session {id}, message {msg}: {e}"));
                            t.replies += s.replies;
                            return t;
                        }
                    }
                }
                t.replies += s.replies;
                s.quit();
                t
            })
            .map_err(|e| format!("cannot start a session thread: {e}"))?;
        handles.push(h);
    }

    ready.wait();
    let before = cfg.pid.map(sample_tree);
    let start = Instant::now();
    if let Ok(mut g) = start_at.lock() {
        *g = Some(start);
    }
    go.wait();

    let mut total = Tally::default();
    for h in handles {
        let t = h
            .join()
            .map_err(|_| "a session thread panicked".to_string())?;
        total.messages += t.messages;
        total.messages_ok += t.messages_ok;
        total.deliveries += t.deliveries;
        total.tempfail += t.tempfail;
        total.permfail += t.permfail;
        total.replies += t.replies;
        total.chunks += t.chunks;
        total.errors.extend(t.errors);
        total.latencies.merge(t.latencies);
        total.refused += t.refused;
        total.refusals.extend(t.refusals);
        total.cut_messages += t.cut_messages;
        total.cut_deliveries += t.cut_deliveries;
    }
    let secs = start.elapsed().as_secs_f64().max(1e-6);
    let after = cfg.pid.map(sample_tree);
    idle.close();
    total.errors.append(&mut idle.errors);

    let (latencies, max_us) = std::mem::take(&mut total.latencies).sorted();
    // CPU over the run: seconds, and milliseconds per delivery (user+sys, user, sys).
    let (mut cpu, mut per) = (
        ["-".to_string(), "-".into(), "-".into()],
        ["-".to_string(), "-".into(), "-".into()],
    );
    let (mut hwm_kib, mut procs) = ("-".to_string(), "-".to_string());
    // Without /proc (not Linux) the samples are empty: report "-", not zeros.
    if let (Some(b), Some(a)) = (before, after.filter(|a| a.procs > 0)) {
        let user = (a.user_s - b.user_s).max(0.0);
        let sys = (a.sys_s - b.sys_s).max(0.0);
        for (i, v) in [user + sys, user, sys].into_iter().enumerate() {
            cpu[i] = format!("{v:.3}");
            if total.deliveries > 0 {
                per[i] = format!("{:.3}", v * 1000.0 / total.deliveries as f64);
            }
        }
        hwm_kib = a.hwm_kib.to_string();
        procs = a.procs.to_string();
    }
    for e in total.errors.iter().take(10) {
        eprintln!("lmtp-bench: {}: {e}", cfg.label);
    }
    if total.refused > 0 {
        eprintln!(
            "lmtp-bench: {}: {} of {} sessions refused, e.g. {}",
            cfg.label,
            total.refused,
            cfg.sessions,
            total.refusals.first().map_or("-", String::as_str)
        );
    }
    let expected = total.messages * cfg.rcpts as u64;
    println!(
        "RESULT label={} sessions={} size={} rcpts={} messages={} messages_ok={} deliveries={} \
         expected={} tempfail={} permfail={} errors={} replies={} secs={:.3} dps={:.1} mps={:.1} \
         p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2} latency_samples={} cpu_s={} cpu_user_s={} cpu_sys_s={} cpu_ms_per_delivery={} \
         cpu_user_ms_per_delivery={} cpu_sys_ms_per_delivery={} rss_kib={} procs={} \
         refused={} idle={} idle_greeted={} idle_refused={} idle_waiting={} idle_dropped={} \
         proto={} chunks={}",
        cfg.label,
        cfg.sessions,
        if cfg.size.0 == cfg.size.1 {
            cfg.size.0.to_string()
        } else {
            format!("{}-{}", cfg.size.0, cfg.size.1)
        },
        cfg.rcpts,
        total.messages,
        total.messages_ok,
        total.deliveries,
        expected,
        total.tempfail,
        total.permfail,
        total.errors.len(),
        total.replies,
        secs,
        total.deliveries as f64 / secs,
        total.messages_ok as f64 / secs,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.99),
        max_us as f64 / 1000.0,
        latencies.len(),
        cpu[0],
        cpu[1],
        cpu[2],
        per[0],
        per[1],
        per[2],
        hwm_kib,
        procs,
        total.refused,
        cfg.idle,
        idle.greeted,
        idle.refused,
        idle.waiting,
        idle.dropped,
        if cfg.bdat { "bdat" } else { "data" },
        total.chunks,
    );
    // Transactions a 421 cut short, and refused sessions, are not failures of the server to
    // deliver what it accepted: leave them out of the check.
    let complete = total.messages - total.cut_messages;
    Ok(total.errors.is_empty()
        && total.deliveries - total.cut_deliveries == complete * cfg.rcpts as u64
        && (total.messages > 0 || total.refused == cfg.sessions as u64))
}

// ---------------------------------------------------------------------------------------
// Disk probe

/// What one probe cycle does: the durable unit of one store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProbeKind {
    /// Maildir: create a file in `tmp/`, write, fsync, rename (or link) into `new/`, fsync
    /// `new/`.
    File,
    /// mbox: `flock(LOCK_EX)` an mbox-like file, append, fsync, unlock.
    Append,
    /// SQLite: `BEGIN IMMEDIATE`, insert a blob, `COMMIT` (WAL, `synchronous=FULL`).
    Commit,
}

impl ProbeKind {
    fn parse(s: &str) -> Result<ProbeKind, String> {
        match s {
            "file" => Ok(ProbeKind::File),
            "append" => Ok(ProbeKind::Append),
            "commit" => Ok(ProbeKind::Commit),
            _ => Err(format!("--kind {s}: expected file, append or commit")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            ProbeKind::File => "file",
            ProbeKind::Append => "append",
            ProbeKind::Commit => "commit",
        }
    }
}

/// Settings of one disk probe.
#[derive(Clone, Debug)]
struct DiskConfig {
    /// Where the scratch directory is made.
    base: PathBuf,
    seconds: f64,
    threads: usize,
    kind: ProbeKind,
    /// Bytes written per cycle.
    size: u64,
    /// Directories (file), mbox files (append) shared by the threads: thread t uses t mod K.
    files: usize,
    /// fsync `new/` after the rename (file only).
    dirsync: bool,
    /// Link and unlink instead of rename (file only).
    link: bool,
}

/// Largest `--size` (a guard).
const MAX_PROBE_SIZE: u64 = 1 << 30;
/// The piece the probe writes its `--size` bytes in.
const PROBE_PIECE: usize = 64 * 1024;
/// Above this size the commit probe writes its blob in pieces (zeroblob, then blob writes)
/// instead of binding one buffer.
const PROBE_BLOB_INLINE: u64 = 1 << 20;

fn disk_config(args: &[String]) -> Result<DiskConfig, String> {
    let mut o = Options::new();
    o.optopt("", "dir", "", "DIR");
    o.optopt("", "seconds", "", "S");
    o.optopt("", "threads", "", "N");
    o.optopt("", "kind", "", "KIND");
    o.optopt("", "size", "", "SIZE");
    o.optopt("", "files", "", "K");
    o.optflag("", "no-dirsync", "");
    o.optflag("", "link", "");
    let m = o.parse(args).map_err(|e| e.to_string())?;
    if let Some(extra) = m.free.first() {
        return Err(format!("unexpected argument '{extra}'"));
    }
    let cfg = DiskConfig {
        base: PathBuf::from(m.opt_str("dir").ok_or("--dir is required")?),
        seconds: opt_num(&m, "seconds", 2.0)?,
        threads: opt_num(&m, "threads", 1)?,
        kind: ProbeKind::parse(&m.opt_str("kind").unwrap_or_else(|| "file".into()))?,
        size: parse_size(&m.opt_str("size").unwrap_or_else(|| "4K".into()))?,
        files: opt_num(&m, "files", 1)?,
        dirsync: !m.opt_present("no-dirsync"),
        link: m.opt_present("link"),
    };
    if !(1..=64).contains(&cfg.threads) || !(0.1..=600.0).contains(&cfg.seconds) {
        return Err("--threads 1..64, --seconds 0.1..600".into());
    }
    if !(1..=MAX_PROBE_SIZE).contains(&cfg.size) {
        return Err("--size must be 1 byte to 1G".into());
    }
    if !(1..=1000).contains(&cfg.files) {
        return Err("--files must be 1 to 1000".into());
    }
    Ok(cfg)
}

/// Writes `size` bytes of `piece` (repeated) to `w`.
fn write_repeated(w: &mut impl Write, piece: &[u8], size: u64) -> std::io::Result<()> {
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left).map_or(piece.len(), |l| l.min(piece.len()));
        w.write_all(&piece[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// One `file` probe thread in Maildir-like directory `dir`: create + write + fsync + rename
/// (or link, then unlink after the directory fsync) + fsync dir, until `until`.
fn probe_file(dir: &Path, thread: usize, until: Instant, cfg: &DiskConfig) -> std::io::Result<u64> {
    let tmp = dir.join("tmp");
    let new = dir.join("new");
    let newdir = File::open(&new)?;
    let piece = vec![b'x'; PROBE_PIECE];
    let mut n = 0u64;
    for i in 0..MAX_PROBES {
        if Instant::now() >= until {
            break;
        }
        let name = format!("{thread}.{i}");
        let t = tmp.join(&name);
        let mut f = OpenOptions::new().write(true).create_new(true).open(&t)?;
        write_repeated(&mut f, &piece, cfg.size)?;
        f.sync_all()?;
        drop(f);
        if cfg.link {
            fs::hard_link(&t, new.join(&name))?;
        } else {
            fs::rename(&t, new.join(&name))?;
        }
        if cfg.dirsync {
            newdir.sync_all()?;
        }
        if cfg.link {
            fs::remove_file(&t)?;
        }
        n += 1;
    }
    Ok(n)
}

/// `flock(fd, op)`, retried on EINTR.
#[allow(unsafe_code)]
fn flock(f: &File, op: libc::c_int) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: flock takes a descriptor and an operation; `f` keeps the descriptor open
        // for the duration of the call and no memory is passed.
        if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// One `append` probe thread on mbox-like file `path` (kept open): lock, append, fsync,
/// unlock, until `until`.
fn probe_append(path: &Path, until: Instant, cfg: &DiskConfig) -> std::io::Result<u64> {
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    let piece = vec![b'x'; PROBE_PIECE];
    let mut n = 0u64;
    for _ in 0..MAX_PROBES {
        if Instant::now() >= until {
            break;
        }
        flock(&f, libc::LOCK_EX)?;
        let done = write_repeated(&mut f, &piece, cfg.size).and_then(|_| f.sync_all());
        flock(&f, libc::LOCK_UN)?;
        done?;
        n += 1;
    }
    Ok(n)
}

/// Opens the commit probe's database with the settings every connection uses.
fn probe_db(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let c = rusqlite::Connection::open(path)?;
    c.busy_timeout(Duration::from_secs(30))?;
    c.pragma_update(None, "synchronous", "FULL")?;
    Ok(c)
}

/// One `commit` probe thread on its own connection to the database at `path`: one
/// transaction inserting a `size`-byte blob per cycle, until `until`, each cycle holding
/// `turn` (the threads' in-process write lock).
fn probe_commit(
    path: &Path,
    until: Instant,
    cfg: &DiskConfig,
    turn: &Mutex<()>,
) -> rusqlite::Result<u64> {
    let c = probe_db(path)?;
    let inline = cfg.size <= PROBE_BLOB_INLINE;
    let body = if inline {
        vec![b'x'; usize::try_from(cfg.size).unwrap_or(0)]
    } else {
        vec![b'x'; PROBE_PIECE]
    };
    let size = i64::try_from(cfg.size).unwrap_or(i64::MAX);
    let mut n = 0u64;
    for _ in 0..MAX_PROBES {
        if Instant::now() >= until {
            break;
        }
        let _turn = turn.lock().unwrap_or_else(|p| p.into_inner());
        c.execute_batch("BEGIN IMMEDIATE")?;
        let done = (|| {
            if inline {
                c.execute("INSERT INTO t(body) VALUES (?1)", [&body])?;
            } else {
                c.execute("INSERT INTO t(body) VALUES (zeroblob(?1))", [size])?;
                let mut blob =
                    c.blob_open(rusqlite::MAIN_DB, "t", "body", c.last_insert_rowid(), false)?;
                write_repeated(&mut blob, &body, cfg.size)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            }
            c.execute_batch("COMMIT")
        })();
        if done.is_err() {
            let _ = c.execute_batch("ROLLBACK");
        }
        done?;
        n += 1;
    }
    Ok(n)
}

/// What a disk probe measured.
#[derive(Debug)]
struct DiskResult {
    /// Cycles completed by all threads.
    ops: u64,
    secs: f64,
    /// This process's user and system CPU per cycle, ms ("-" when not measurable).
    user_ms: String,
    sys_ms: String,
}

/// Runs the probe `cfg` describes in a scratch directory under `cfg.base`, which it removes
/// again (also when the probe fails).
fn run_probe(cfg: &DiskConfig) -> Result<DiskResult, String> {
    let dir = cfg.base.join(format!("probe-{}", std::process::id()));
    let made = prepare_probe(cfg, &dir);
    let result = made.and_then(|()| probe_threads(cfg, &dir));
    let _ = fs::remove_dir_all(&dir);
    result
}

/// Makes the scratch directory's Maildir directories, or the database and its table.
fn prepare_probe(cfg: &DiskConfig, dir: &Path) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", dir.display());
    fs::create_dir_all(dir).map_err(|e| err(&e))?;
    match cfg.kind {
        ProbeKind::File => {
            for k in 0..cfg.files {
                for sub in ["tmp", "new"] {
                    fs::create_dir_all(dir.join(format!("m{k}")).join(sub)).map_err(|e| err(&e))?;
                }
            }
        }
        ProbeKind::Append => {}
        ProbeKind::Commit => {
            // WAL is set once, before the threads connect: it is a property of the file.
            let c = probe_db(&dir.join("probe.db")).map_err(|e| err(&e))?;
            c.pragma_update(None, "journal_mode", "WAL")
                .and_then(|()| {
                    c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
                })
                .map_err(|e| err(&e))?;
        }
    }
    Ok(())
}

/// Starts the probe threads on the prepared scratch directory and sums their cycles.
fn probe_threads(cfg: &DiskConfig, dir: &Path) -> Result<DiskResult, String> {
    let cpu_before = read_stat(std::process::id());
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(cfg.seconds);
    // The commit threads take turns in-process, as a server's writers would, instead of
    // sleeping in SQLite's busy handler (which measured the handler, not the disk).
    let turn = Arc::new(Mutex::new(()));
    let handles: Vec<_> = (0..cfg.threads)
        .map(|t| {
            let (d, cfg, turn) = (dir.to_path_buf(), cfg.clone(), Arc::clone(&turn));
            thread::spawn(move || -> Result<u64, String> {
                let k = t % cfg.files;
                match cfg.kind {
                    ProbeKind::File => probe_file(&d.join(format!("m{k}")), t, until, &cfg)
                        .map_err(|e| e.to_string()),
                    ProbeKind::Append => probe_append(&d.join(format!("mbox{k}")), until, &cfg)
                        .map_err(|e| e.to_string()),
                    ProbeKind::Commit => probe_commit(&d.join("probe.db"), until, &cfg, &turn)
                        .map_err(|e| e.to_string()),
                }
            })
        })
        .collect();
    let mut ops = 0u64;
    let mut failed = None;
    for h in handles {
        match h.join() {
            Ok(Ok(n)) => ops += n,
            Ok(Err(e)) => failed = Some(e),
            Err(_) => failed = Some("probe thread panicked".into()),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if let Some(e) = failed {
        return Err(format!("disk probe: {e}"));
    }
    // This process's own CPU time per cycle: what the kernel charges for one durable unit.
    let (user_ms, sys_ms) = match (cpu_before, read_stat(std::process::id())) {
        (Some((_, u0, s0)), Some((_, u1, s1))) if ops > 0 => {
            let per = |a: u64, b: u64| {
                format!(
                    "{:.3}",
                    b.saturating_sub(a) as f64 * 1000.0 / CLOCK_TICKS / ops as f64
                )
            };
            (per(u0, u1), per(s0, s1))
        }
        _ => ("-".to_string(), "-".to_string()),
    };
    Ok(DiskResult {
        ops,
        secs,
        user_ms,
        sys_ms,
    })
}

fn disk_main(args: &[String]) -> Result<bool, String> {
    let cfg = disk_config(args)?;
    let r = run_probe(&cfg)?;
    // threads= and dirsync= stay the first two fields: run.sh's start-of-run lines match
    // on them by position.
    println!(
        "DISK threads={} dirsync={} kind={} size={} files={} ops={} secs={:.3} per_s={:.0} \
         cpu_user_ms_per_op={} cpu_sys_ms_per_op={}",
        cfg.threads,
        if cfg.kind == ProbeKind::File {
            u8::from(cfg.dirsync).to_string()
        } else {
            "-".to_string()
        },
        cfg.kind.name(),
        cfg.size,
        cfg.files,
        r.ops,
        r.secs,
        r.ops as f64 / r.secs.max(1e-6),
        r.user_ms,
        r.sys_ms,
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_are_capped_and_the_maximum_is_exact() {
        let mut l = Latencies::with_cap(100);
        for us in 1..=10_000u64 {
            l.push(us);
        }
        assert_eq!((l.seen, l.kept.len(), l.max), (10_000, 100, 10_000));
        let mut all = Latencies::with_cap(1000);
        all.merge(l);
        let mut small = Latencies::with_cap(1000);
        for us in [5u64, 1, 3] {
            small.push(us);
        }
        all.merge(small);
        let (sorted, max) = all.sorted();
        assert_eq!(max, 10_000);
        assert!(sorted.len() <= 1000 && sorted.windows(2).all(|w| w[0] <= w[1]));
        // The sample stands for 1..=10000: its median is somewhere in the middle.
        let p50 = percentile(&sorted, 0.5);
        assert!((2.0..8.0).contains(&p50), "{p50} ms");
        assert_eq!(percentile(&[1000, 2000, 3000], 0.5), 2.0);
        assert_eq!(percentile(&[], 0.99), 0.0);
    }

    fn disk_args(extra: &[&str]) -> Result<DiskConfig, String> {
        let mut args = vec!["--dir".to_string(), "/nonexistent".to_string()];
        args.extend(extra.iter().map(|a| a.to_string()));
        disk_config(&args)
    }

    #[test]
    fn disk_options_parse() {
        let d = disk_args(&[]).expect("defaults");
        assert_eq!(
            (d.kind, d.size, d.files, d.threads),
            (ProbeKind::File, 4096, 1, 1)
        );
        assert!(d.dirsync && !d.link);
        let d = disk_args(&[
            "--kind",
            "append",
            "--size",
            "10M",
            "--files",
            "8",
            "--threads",
            "8",
        ])
        .expect("append");
        assert_eq!(
            (d.kind, d.size, d.files, d.threads),
            (ProbeKind::Append, 10 << 20, 8, 8)
        );
        assert_eq!(
            disk_args(&["--kind", "commit"]).map(|d| d.kind),
            Ok(ProbeKind::Commit)
        );
        assert!(disk_args(&["--kind", "mmap"]).is_err());
        assert!(disk_args(&["--size", "0"]).is_err());
        assert!(disk_args(&["--size", "2G"]).is_err());
        assert!(disk_args(&["--files", "0"]).is_err());
        assert!(disk_args(&["--threads", "65"]).is_err());
        assert!(disk_args(&["stray"]).is_err());
    }

    #[test]
    fn every_probe_kind_runs_and_cleans_up() {
        let base = tempfile::tempdir().expect("tmp");
        // 100 KiB crosses the 64 KiB piece; 2 MiB takes the commit probe's blob path.
        for (kind, size) in [
            ("file", "100K"),
            ("append", "100K"),
            ("commit", "100K"),
            ("commit", "2M"),
        ] {
            let mut cfg =
                disk_args(&["--kind", kind, "--size", size, "--files", "2"]).expect("options");
            cfg.base = base.path().to_path_buf();
            cfg.seconds = 0.2;
            cfg.threads = 3;
            let r = run_probe(&cfg).expect("probe");
            assert!(r.ops > 0, "{kind} {size}: {r:?}");
            let left: Vec<_> = fs::read_dir(base.path()).expect("read").collect();
            assert!(left.is_empty(), "{kind}: scratch left behind: {left:?}");
        }
    }

    #[test]
    fn body_has_the_exact_length_and_no_leading_dots() {
        let block = body_block();
        for len in [2usize, 3, 79, 80, 81, 82, 159, 160, 161, 4000, 100_000] {
            let mut out = Vec::new();
            write_body(&mut out, &block, len).expect("write to a Vec");
            assert_eq!(out.len(), len, "length {len}");
            assert!(out.ends_with(b"\r\n"));
            assert!(!out.windows(3).any(|w| w == b"\n.\r" || w == b"\n.."));
            assert!(out.first() != Some(&b'.'));
        }
    }

    #[test]
    fn recipients_spread_or_repeat() {
        let mut cfg = load_config(&[
            "--connect".into(),
            "127.0.0.1:1".into(),
            "-r".into(),
            "5".into(),
            "--mailboxes".into(),
            "5".into(),
        ])
        .expect("valid options");
        let r: Vec<String> = (0..5).map(|j| recipient(&cfg, 3, j)).collect();
        assert_eq!(r.len(), 5);
        let mut u = r.clone();
        u.sort();
        u.dedup();
        assert_eq!(u.len(), 5);
        cfg.same = true;
        assert!((0..5).all(|j| recipient(&cfg, 3, j) == "load3@example.org"));
    }

    #[test]
    fn sizes_and_targets_parse() {
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert!(parse_size("x").is_err());
        assert_eq!(parse_size_range("4K"), Ok((4096, 4096)));
        assert_eq!(parse_size_range("1K-64K"), Ok((1024, 65536)));
        assert!(parse_size_range("64K-1K").is_err());
        assert!(parse_size_range("100-1K").is_err(), "below 512 bytes");
        let sizes: Vec<usize> = (0..1000).map(|m| message_size((1024, 65536), m)).collect();
        assert!(sizes.iter().all(|&s| (1024..=65536).contains(&s)));
        assert!(sizes.iter().any(|&s| s < 8192) && sizes.iter().any(|&s| s > 57344));
        assert_eq!(
            message_size((1024, 65536), 7),
            message_size((1024, 65536), 7)
        );
        assert_eq!(message_size((4096, 4096), 7), 4096);
        assert!(Target::parse("10.0.0.1:24").is_err());
        assert!(Target::parse("unix:/tmp/s").is_ok());
    }

    /// Options for a load run against the Unix socket `path`.
    fn cfg_for(path: &Path, extra: &[&str]) -> LoadConfig {
        let mut args = vec!["--connect".to_string(), format!("unix:{}", path.display())];
        args.extend(extra.iter().map(|a| a.to_string()));
        load_config(&args).expect("valid options")
    }

    /// Reads one line from a fake server's side of a connection.
    fn line(r: &mut BufReader<UnixStream>) -> String {
        let mut l = String::new();
        r.read_line(&mut l).expect("read");
        l
    }

    /// The fake server's side of a greeting: `220`, the client's LHLO, then `caps` (the
    /// whole LHLO reply). Returns the reader for the rest of the conversation.
    fn greet_fake(c: &mut UnixStream, caps: &[u8]) -> BufReader<UnixStream> {
        let mut r = BufReader::new(c.try_clone().expect("clone"));
        c.write_all(b"220 fake\r\n").expect("write");
        assert!(line(&mut r).starts_with("LHLO"));
        c.write_all(caps).expect("write");
        r
    }

    #[test]
    fn a_421_greeting_a_close_before_it_or_a_421_later_is_a_refusal() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("lmtp.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let server = thread::spawn(move || {
            // 1: refused in the greeting; 2: closed before it; 3: greeted, then 421 to MAIL.
            let (mut c, _) = listener.accept().expect("accept");
            c.write_all(b"421 4.3.2 busy\r\n").expect("write");
            drop(c);
            let (c, _) = listener.accept().expect("accept");
            drop(c);
            let (mut c, _) = listener.accept().expect("accept");
            let mut r = greet_fake(&mut c, b"250-fake\r\n250 PIPELINING\r\n");
            assert!(line(&mut r).starts_with("MAIL"));
            c.write_all(b"421 4.3.2 shutting down\r\n").expect("write");
        });
        let cfg = cfg_for(&path, &[]);
        let wait = Duration::from_secs(60);
        for _ in 0..2 {
            let mut s = Session::open(&cfg).expect("connect");
            let got = s.greet(wait, wait);
            assert!(matches!(got, Err(Stop::Refused(_))), "{got:?}");
        }
        let mut s = Session::open(&cfg).expect("connect");
        assert!(matches!(s.greet(wait, wait), Ok(true)));
        let mut t = Tally::default();
        let got = transaction(&mut s, &cfg, &body_block(), 0, 0, &mut t);
        assert!(matches!(got, Err(Stop::Refused(_))), "{got:?}");
        assert_eq!((t.messages, t.deliveries, t.tempfail), (0, 0, 0));
        server.join().expect("fake server");
    }

    #[test]
    fn bdat_sends_the_content_raw_in_64k_chunks_and_counts_every_reply() {
        // One chunk, exactly one, three (the last short) and 33 (more than the window).
        for size in [4096usize, CHUNK, 150_000, 32 * CHUNK + 1] {
            let dir = tempfile::tempdir().expect("tmp");
            let path = dir.path().join("lmtp.sock");
            let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
            let server = thread::spawn(move || {
                let (mut c, _) = listener.accept().expect("accept");
                let mut r = greet_fake(&mut c, b"250-fake\r\n250-PIPELINING\r\n250 CHUNKING\r\n");
                let (mut content, mut chunks, mut rcpts) = (Vec::new(), Vec::new(), 0);
                loop {
                    let l = line(&mut r);
                    if l.starts_with("MAIL") {
                        c.write_all(b"250 2.1.0 Ok\r\n").expect("write");
                    } else if l.starts_with("RCPT") {
                        rcpts += 1;
                        c.write_all(b"250 2.1.5 Ok\r\n").expect("write");
                    } else if let Some(arg) = l.strip_prefix("BDAT ") {
                        let mut w = arg.split_whitespace();
                        let n: usize = w.next().expect("size").parse().expect("number");
                        let last = w.next() == Some("LAST");
                        let mut b = vec![0u8; n];
                        r.read_exact(&mut b).expect("chunk octets");
                        content.extend_from_slice(&b);
                        chunks.push((n, last));
                        if last {
                            for _ in 0..rcpts {
                                c.write_all(b"250 2.0.0 Saved\r\n").expect("write");
                            }
                        } else {
                            c.write_all(format!("250 2.0.0 {n} octets received\r\n").as_bytes())
                                .expect("write");
                        }
                    } else {
                        assert!(l.starts_with("QUIT"), "{l:?}");
                        c.write_all(b"221 bye\r\n").expect("write");
                        return (content, chunks);
                    }
                }
            });
            let cfg = cfg_for(&path, &["--bdat", "-r", "2", "-l", &size.to_string()]);
            let wait = Duration::from_secs(60);
            let mut s = Session::open(&cfg).expect("connect");
            assert!(matches!(s.greet(wait, wait), Ok(true)));
            assert!(s.chunking);
            let mut t = Tally::default();
            transaction(&mut s, &cfg, &body_block(), 7, 0, &mut t).expect("transaction");
            let replies = s.replies;
            s.quit();
            let (content, chunks) = server.join().expect("fake server");
            let want = size.div_ceil(CHUNK);
            assert!(t.errors.is_empty(), "{:?}", t.errors);
            assert_eq!(
                (t.messages, t.messages_ok, t.deliveries),
                (1, 1, 2),
                "{size}"
            );
            assert_eq!((t.chunks, chunks.len()), (want as u64, want), "{size}");
            // Greeting and LHLO, MAIL and 2 RCPTs, one per non-LAST chunk, 2 for LAST.
            assert_eq!(replies, 2 + 3 + (want as u64 - 1) + 2, "{size}");
            // One latency sample per recipient reply to LAST.
            assert_eq!(t.latencies.seen, 2);
            for (i, &(n, last)) in chunks.iter().enumerate() {
                assert_eq!(last, i + 1 == want, "{size}: chunk {i}");
                assert!(n > 0 && (n == CHUNK || last), "{size}: chunk {i} of {n}");
            }
            // The message as DATA would carry it, minus dot-stuffing and the final dot.
            assert_eq!(content.len(), size);
            assert!(
                content.starts_with(b"From: <bench@example.net>\r\nTo: <load0@example.org>\r\n")
            );
            assert!(content.ends_with(b"\r\n") && !content.ends_with(b"\r\n.\r\n"));
        }
    }

    #[test]
    fn bdat_needs_chunking() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("lmtp.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let server = thread::spawn(move || {
            let (mut c, _) = listener.accept().expect("accept");
            let mut r = greet_fake(&mut c, b"250-fake\r\n250 PIPELINING\r\n");
            // Nothing more comes: the client gives up before MAIL.
            assert_eq!(line(&mut r), "");
        });
        let cfg = cfg_for(&path, &["--bdat"]);
        let wait = Duration::from_secs(60);
        let mut s = Session::open(&cfg).expect("connect");
        assert!(matches!(s.greet(wait, wait), Ok(true)));
        let mut t = Tally::default();
        let got = transaction(&mut s, &cfg, &body_block(), 0, 0, &mut t);
        assert!(matches!(got, Err(Stop::Failed(_))), "{got:?}");
        s.writer.shutdown();
        drop(s);
        server.join().expect("fake server");
    }

    #[test]
    fn idle_connections_are_counted_greeted_refused_and_dropped() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("lmtp.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let (drop_tx, drop_rx) = std::sync::mpsc::channel::<()>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let server = thread::spawn(move || {
            // Connections 0, 2 and 3 are greeted and answer LHLO; 1 is refused.
            let mut held = Vec::new();
            for i in 0..4 {
                let (mut c, _) = listener.accept().expect("accept");
                if i == 1 {
                    c.write_all(b"421 4.3.2 busy\r\n").expect("write");
                    continue;
                }
                greet_fake(&mut c, b"250-fake\r\n250 PIPELINING\r\n");
                held.push(c);
            }
            // The "server" then closes one of the idle connections (a timeout, say).
            drop_rx.recv().expect("go");
            drop(held.pop());
            done_tx.send(()).expect("done");
            drop_rx.recv().expect("end");
        });
        let cfg = cfg_for(&path, &["--idle", "4", "--idle-lhlo"]);
        let mut idle = Idle::open(&cfg);
        assert!(idle.errors.is_empty(), "{:?}", idle.errors);
        assert_eq!((idle.greeted, idle.refused, idle.waiting), (3, 1, 0));
        drop_tx.send(()).expect("go");
        done_rx.recv().expect("dropped");
        idle.close();
        assert_eq!(idle.dropped, 1);
        assert!(idle.conns.is_empty());
        drop_tx.send(()).expect("end");
        server.join().expect("fake server");
    }
}
