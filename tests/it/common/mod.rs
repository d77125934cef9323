//! Helpers shared by the integration tests: a line-oriented LMTP client over TCP or a Unix
//! socket, an in-process server, the real `lmtpd` binary, directory listings, python3, and
//! [`require`] for tests that need an outside tool or root.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use lmtpd::config::{Config, DetailMailbox, Listen};
use lmtpd::directory::Directory;
use lmtpd::server::{Context, Server, Shutdown};

/// The `lmtpd` binary built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_lmtpd");

// ---------------------------------------------------------------------------------------
// Files

/// The entries of `dir`, sorted; empty when it cannot be read.
pub fn list(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Waits (up to 20 s) until `p` exists.
pub fn wait_for(p: &Path) {
    let start = Instant::now();
    while !p.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{} never appeared",
            p.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// A scratch directory holding a users file and `lmtpd.conf`.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    /// Writes the users file `users` and `lmtpd.conf`, whose text `conf` makes from the
    /// directory's path.
    pub fn with(users: &str, conf: impl FnOnce(&str) -> String) -> Scratch {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display().to_string();
        fs::write(dir.path().join("users"), users).expect("write users file");
        fs::write(dir.path().join("lmtpd.conf"), conf(&d)).expect("write config");
        Scratch { dir }
    }

    /// `p` in the scratch directory.
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
}

// ---------------------------------------------------------------------------------------
// The LMTP client

/// A connected stream a [`Client`] can talk over.
pub trait Duplex: Read + Write + Send {
    /// As the inherent method of the stream.
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()>;
    /// As the inherent method of the stream.
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()>;
}

impl Duplex for TcpStream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, t)
    }
}

impl Duplex for UnixStream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        UnixStream::set_write_timeout(self, t)
    }
}

/// A line-oriented LMTP client. The `try_` methods return I/O errors (EOF included); the
/// others panic on them.
pub struct Client {
    pub r: BufReader<Box<dyn Duplex>>,
}

impl Client {
    /// A client on a connected stream; `timeout` bounds every read and write (`None`: wait
    /// for ever). Reads nothing, not even the greeting.
    pub fn new(s: impl Duplex + 'static, timeout: Option<Duration>) -> io::Result<Client> {
        s.set_read_timeout(timeout)?;
        s.set_write_timeout(timeout)?;
        Ok(Client {
            r: BufReader::new(Box::new(s)),
        })
    }

    /// [`Client::new`] over a new TCP connection to `addr`.
    pub fn connect_tcp(addr: SocketAddr, timeout: Option<Duration>) -> io::Result<Client> {
        Client::new(TcpStream::connect(addr)?, timeout)
    }

    /// [`Client::new`] over a new connection to the Unix socket `path`.
    pub fn connect_unix(path: &Path, timeout: Option<Duration>) -> io::Result<Client> {
        Client::new(UnixStream::connect(path)?, timeout)
    }

    /// Reads the greeting; an error (the greeting) unless it starts with `prefix`.
    pub fn try_greeted(mut self, prefix: &str) -> io::Result<Client> {
        let greeting = self.try_reply()?;
        if !greeting.starts_with(prefix) {
            return Err(io::Error::other(greeting));
        }
        Ok(self)
    }

    /// Reads the greeting and asserts it starts with `prefix`.
    pub fn greeted(self, prefix: &str) -> Client {
        self.try_greeted(prefix)
            .unwrap_or_else(|e| panic!("greeting: {e}"))
    }

    /// Writes `bytes` as they are.
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let s = self.r.get_mut();
        s.write_all(bytes)?;
        s.flush()
    }

    /// Reads one whole (possibly multi-line) reply; EOF is an error.
    pub fn try_reply(&mut self) -> io::Result<String> {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed while waiting for a reply; got {all:?}"),
                ));
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(all);
            }
        }
    }

    /// Sends `line` with CRLF and reads the reply.
    pub fn try_cmd(&mut self, line: &str) -> io::Result<String> {
        self.try_send(format!("{line}\r\n").as_bytes())?;
        self.try_reply()
    }

    /// [`Client::try_send`], panicking on an error.
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes).expect("write");
    }

    /// [`Client::try_reply`], panicking on an error.
    pub fn reply(&mut self) -> String {
        self.try_reply()
            .unwrap_or_else(|e| panic!("read reply: {e}"))
    }

    /// [`Client::try_cmd`], panicking on an error.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// Sends `line` and asserts the reply starts with `code`.
    pub fn expect(&mut self, line: &str, code: &str) -> String {
        let r = self.cmd(line);
        assert!(r.starts_with(code), "{line} -> {r}");
        r
    }

    /// `LHLO client.test`, asserting a 250 that offers PIPELINING.
    pub fn lhlo(&mut self) {
        let r = self.cmd("LHLO client.test");
        assert!(r.starts_with("250") && r.contains("PIPELINING"), "{r}");
    }

    /// True when the server closed the connection (EOF or reset) within the read timeout.
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0) | Err(_))
    }
}

// ---------------------------------------------------------------------------------------
// An in-process server

/// The greeting of a [`TestServer`] (its host name is `lmtpd.test`).
pub const GREETING: &str = "220 lmtpd.test";

/// A real server run in a thread of the test, on 127.0.0.1 (any port) and a Unix socket in
/// its scratch directory; shut down when dropped.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub tcp: SocketAddr,
    pub sock: PathBuf,
    pub shutdown: Arc<Shutdown>,
    pub handle: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server with the users file `users` and Maildirs under `mail/` of its scratch
    /// directory, after `tune` has changed the configuration (it gets the directory too).
    pub fn with_users(users: &str, tune: impl FnOnce(&mut Config, &Path)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let users_path = dir.path().join("users");
        fs::write(&users_path, users).expect("write users file");
        let sock = dir.path().join("lmtp.sock");
        let mut cfg = Config::default();
        cfg.listeners.listen = vec![
            Listen::Tcp("127.0.0.1:0".parse().expect("addr")),
            Listen::Unix(sock.clone()),
        ];
        cfg.delivery.hostname = "lmtpd.test".into();
        cfg.recipients.users = users_path;
        cfg.maildir.template = format!("{}/mail/%d/%n/Maildir", dir.path().display());
        cfg.delivery.spool_dir = dir.path().join("spool");
        cfg.delivery.detail_mailbox = DetailMailbox::Create;
        cfg.delivery.retry_journal = dir.path().join("state/retry.db");
        cfg.process.shutdown_timeout = Duration::from_secs(5);
        tune(&mut cfg, dir.path());
        let directory = Directory::load(&cfg).expect("users file");
        let server = Server::bind(Context::new(cfg, directory).expect("context")).expect("bind");
        let tcp = server
            .local_addrs()
            .into_iter()
            .find_map(|l| match l {
                Listen::Tcp(a) => Some(a),
                Listen::Unix(_) => None,
            })
            .expect("tcp listener");
        let shutdown = Arc::clone(&server.context().shutdown);
        let handle = thread::spawn(move || server.run().expect("server run"));
        TestServer {
            dir,
            tcp,
            sock,
            shutdown,
            handle: Some(handle),
        }
    }

    /// `p` in the scratch directory.
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Shuts the server down and waits for its thread.
    pub fn stop(&mut self) {
        self.shutdown.trigger();
        if let Some(h) = self.handle.take() {
            h.join().expect("server thread");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------
// The real binary

/// Starts `lmtpd -c CONF ARGS` with its standard error piped (for [`stop_child`]).
pub fn spawn(conf: &Path, args: &[&str]) -> Child {
    Command::new(BIN)
        .arg("-c")
        .arg(conf)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lmtpd")
}

/// SIGTERM, then requires exit status 0; returns what the server wrote to standard error.
pub fn stop_child(mut child: Child) -> String {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().expect("wait");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "lmtpd exit {status:?}: {err}");
    err
}

// ---------------------------------------------------------------------------------------
// Required tools

/// A test that needs `what` (a tool, or root) calls this with whether it is there: the one
/// rule of [`lmtpd_store::testing::require`] (fail loudly when it is missing, unless
/// `LMTPD_TEST_SKIP` names it outside CI), shared with the backends' own tests.
pub fn require(what: &str, present: bool) -> bool {
    lmtpd_store::testing::require(what, present)
}

/// True when python3 with its `mailbox` and `sqlite3` modules is there; without them the test
/// fails unless it may skip (see [`require`]).
pub fn have_python() -> bool {
    let present = Command::new("python3")
        .args(["-c", "import mailbox, sqlite3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    require("python3", present)
}

/// Runs `python3 - ARGS` with `script` on stdin and returns its standard output.
pub fn python(script: &str, args: &[&str]) -> String {
    let mut child = Command::new("python3")
        .arg("-")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    child
        .stdin
        .take()
        .expect("python stdin")
        .write_all(script.as_bytes())
        .expect("write python script");
    let out = child.wait_with_output().expect("wait for python3");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("python output is UTF-8")
}

/// Starts `python3 -c SCRIPT ARG`, a process that takes a lock, prints a line and holds the
/// lock until its stdin closes; returns it with that line once it has been printed.
pub fn python_holder(script: &str, arg: &Path) -> (Child, String) {
    let mut holder = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(arg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn python3 lock holder");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().expect("holder stdout"))
        .read_line(&mut line)
        .expect("read holder");
    (holder, line)
}

/// Decodes lower- or upper-case hex.
pub fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}
