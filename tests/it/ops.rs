//! Operations tests against the real `lmtpd` binary: stdin mode (`-i`), SIGHUP reload,
//! systemd socket activation, dropping root, `-t` exit codes, `lmtpd quota show|recalc`.
#![allow(unsafe_code)] // pre_exec/dup2 to hand a listening socket over as fd 3.

use crate::common;

use std::fs;
use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{spawn, stop_child, wait_for, Client, Scratch, BIN};

/// The scratch directory of a test: users file, `lmtpd.conf` and Maildirs. A type of its own
/// (not an alias) so that its methods do not collide with those other test modules add to
/// [`Scratch`] in the one integration test binary.
struct Setup(Scratch);

impl std::ops::Deref for Setup {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        &self.0
    }
}

impl Setup {
    fn new(users: &str, extra: &str) -> Setup {
        Setup(Scratch::with(users, |d| {
            format!(
                "listen = unix:{d}/lmtp.sock\nusers = {d}/users\nmaildir = {d}/mail/%d/%n/Maildir\n\
                 spool_dir = {d}/spool\nretry_journal = {d}/retry.db\nhostname = ops.test\nallow_root = yes\n{extra}"
            )
        }))
    }

    fn spawn(&self, args: &[&str]) -> Child {
        let child = spawn(&self.path("lmtpd.conf"), args);
        wait_for(&self.path("lmtp.sock"));
        child
    }

    fn new_mail(&self, user: &str) -> usize {
        fs::read_dir(self.path(&format!("mail/example.org/{user}/Maildir/new")))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Client {
    fn open(p: &Path) -> Client {
        Client::connect_unix(p, Some(Duration::from_secs(20)))
            .expect("connect")
            .greeted("220")
    }
}

/// Sends SIGHUP to the server.
fn hup(child: &Child) {
    Command::new("kill")
        .arg("-HUP")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
}

/// The reload is asynchronous: runs `probe` with a new session until it returns true.
fn until_reloaded(sock: &Path, what: &str, mut probe: impl FnMut(&mut Client) -> bool) {
    let start = Instant::now();
    loop {
        let mut c = Client::open(sock);
        c.cmd("LHLO hup.test");
        if probe(&mut c) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what} never applied"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn stdin_mode_runs_a_whole_transaction_over_a_pipe() {
    let s = Setup::new("alice@example.org\n", "");
    let mut child = Command::new(BIN)
        .arg("-c")
        .arg(s.path("lmtpd.conf"))
        .arg("-i")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let script = "LHLO pipe.test\r\nMAIL FROM:<s@example.net>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: pipe\r\n\r\nover a pipe\r\n.\r\nQUIT\r\n";
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    let text = String::from_utf8_lossy(&out.stdout);
    let codes: Vec<&str> = text
        .lines()
        .filter(|l| l.as_bytes().get(3) == Some(&b' '))
        .map(|l| &l[..3])
        .collect();
    assert_eq!(
        codes,
        ["220", "250", "250", "250", "550", "354", "250", "221"],
        "{text}"
    );
    assert!(out.status.success());
    assert_eq!(s.new_mail("alice"), 1);
}

#[test]
fn sighup_reloads_users_while_a_session_completes() {
    let s = Setup::new("alice@example.org\n", "");
    let child = s.spawn(&[]);
    let mut a = Client::open(&s.path("lmtp.sock"));
    a.cmd("LHLO a.test");
    assert!(a.cmd("MAIL FROM:<s@example.net>").starts_with("250"));
    assert!(a.cmd("RCPT TO:<alice@example.org>").starts_with("250"));
    assert!(a
        .cmd("RCPT TO:<carol@example.org>")
        .starts_with("550 5.1.1"));

    fs::write(s.path("users"), "alice@example.org\ncarol@example.org\n").expect("users");
    hup(&child);
    until_reloaded(&s.path("lmtp.sock"), "the new users file", |b| {
        b.cmd("MAIL FROM:<s@example.net>");
        b.cmd("RCPT TO:<carol@example.org>").starts_with("250")
    });
    // The session opened before the reload still completes its transaction.
    assert!(a.cmd("DATA").starts_with("354"));
    assert!(a
        .cmd("Subject: x\r\n\r\nbody\r\n.")
        .starts_with("250 2.0.0"));
    assert_eq!(s.new_mail("alice"), 1);
    let log = stop_child(child);
    assert!(log.contains("reloaded"), "{log}");
}

#[test]
fn a_bad_users_file_on_sighup_keeps_the_old_table() {
    let s = Setup::new("alice@example.org\n", "");
    let child = s.spawn(&[]);
    fs::write(s.path("users"), "alice@example.org quota=lots\n").expect("users");
    hup(&child);
    std::thread::sleep(Duration::from_millis(300));
    let mut c = Client::open(&s.path("lmtp.sock"));
    c.cmd("LHLO c.test");
    c.cmd("MAIL FROM:<s@example.net>");
    assert!(c.cmd("RCPT TO:<alice@example.org>").starts_with("250"));
    // An open transaction would hold SIGTERM for shutdown_timeout: end it first.
    c.cmd("QUIT");
    let log = stop_child(child);
    assert!(log.contains("keeping the previous table"), "{log}");
}

#[test]
fn sighup_applies_new_settings_and_keeps_restart_only_ones() {
    let s = Setup::new("alice@example.org\nbob@example.org\n", "");
    let child = s.spawn(&[]);
    let conf = s.path("lmtpd.conf");
    let mut text = fs::read_to_string(&conf).expect("conf");
    text.push_str("max_recipients = 1\nworkers = 3\n");
    fs::write(&conf, text).expect("conf");
    hup(&child);
    until_reloaded(&s.path("lmtp.sock"), "the new max_recipients", |c| {
        c.cmd("MAIL FROM:<s@example.net>");
        assert!(c.cmd("RCPT TO:<alice@example.org>").starts_with("250"));
        let second = c.cmd("RCPT TO:<bob@example.org>");
        c.cmd("QUIT");
        second.starts_with("452 4.5.3")
    });
    let log = stop_child(child);
    assert!(log.contains("need a restart"), "{log}");
    assert!(log.contains("workers"), "{log}");
    assert!(log.contains("settings changed"), "{log}");
}

#[test]
fn socket_activation_uses_fd_3() {
    let s = Setup::new("alice@example.org\n", "");
    let path = s.path("activated.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let mut cmd = Command::new("/bin/sh");
    // LISTEN_PID must be lmtpd's own pid: the shell's $$ survives its exec.
    cmd.arg("-c")
        .arg(format!(
            "LISTEN_PID=$$ LISTEN_FDS=1 exec {BIN} -c {}",
            s.path("lmtpd.conf").display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let fd = listener.as_raw_fd();
    // SAFETY: dup2 is async-signal-safe; it runs in the child between fork and exec and
    // only touches descriptors.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself keeps FD_CLOEXEC, so clear it explicitly when fd is 3.
            let rc = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn");
    let mut c = Client::open(&path);
    c.cmd("LHLO act.test");
    c.cmd("MAIL FROM:<s@example.net>");
    assert!(c.cmd("RCPT TO:<alice@example.org>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    assert!(c
        .cmd("Subject: a\r\n\r\nactivated\r\n.")
        .starts_with("250 2.0.0"));
    drop(c);
    let log = stop_child(child);
    assert!(log.contains("socket activation"), "{log}");
    assert!(
        !s.path("lmtp.sock").exists(),
        "configured listener not bound"
    );
    assert!(
        path.exists(),
        "an inherited socket file is left to its owner"
    );
    assert_eq!(s.new_mail("alice"), 1);
}

#[test]
fn started_as_root_it_becomes_the_configured_user() {
    if !common::require("root", unsafe_free_euid() == 0) {
        return;
    }
    let s = Setup::new(
        "alice@example.org\n",
        "user = nobody\nsocket_mode = 0620\nsocket_owner = nobody\nsocket_group = root\n",
    );
    // allow_root = yes is in the base config; it must not matter once user is set.
    let child = s.spawn(&[]);
    let status = fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap_or("")
        .to_string();
    let nobody = lmtpd::sys::lookup_user("nobody")
        .expect("lookup")
        .expect("nobody exists");
    // Wait until the privilege drop happened (it follows the bind).
    let start = Instant::now();
    let mut uid_line = uid_line;
    while !uid_line.contains(&format!("\t{}\t", nobody.uid))
        && start.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(20));
        let st = fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
        uid_line = st
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .unwrap_or("")
            .to_string();
    }
    let n = nobody.uid;
    assert_eq!(
        uid_line,
        format!("Uid:\t{n}\t{n}\t{n}\t{n}"),
        "real, effective, saved, fs uid"
    );
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(s.path("lmtp.sock")).expect("socket");
    assert_eq!(meta.uid(), nobody.uid);
    assert_eq!(meta.gid(), 0);
    assert_eq!(meta.mode() & 0o777, 0o620);
    stop_child(child);
}

fn unsafe_free_euid() -> u32 {
    lmtpd::sys::euid()
}

#[test]
fn root_without_user_is_refused_unless_allowed() {
    if !common::require("root", lmtpd::sys::euid() == 0) {
        return;
    }
    let s = Setup::new("alice@example.org\n", "allow_root = no\n");
    let out = Command::new(BIN)
        .arg("-c")
        .arg(s.path("lmtpd.conf"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("without 'user'"));
}

#[test]
fn check_mode_lists_every_problem_and_exits_78() {
    let s = Setup::new("ok@example.org\nbad\n", "workers = lots\nbogus = 1\n");
    let out = Command::new(BIN)
        .arg("-c")
        .arg(s.path("lmtpd.conf"))
        .arg("-t")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lmtpd.conf:8: workers"), "{err}");
    assert!(err.contains("lmtpd.conf:9: bogus"), "{err}");
    assert!(err.contains("users:2:"), "{err}");

    let good = Setup::new("ok@example.org\n", "");
    let out = Command::new(BIN)
        .arg("-c")
        .arg(good.path("lmtpd.conf"))
        .arg("-t")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn man_pages_are_mandoc_lint_clean() {
    let Ok(out) = Command::new("mandoc")
        .args([
            "-T",
            "lint",
            "-W",
            "warning",
            "man/lmtpd.8",
            "man/lmtpd.conf.5",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
    else {
        common::require("mandoc", false);
        return;
    };
    assert!(
        out.status.success(),
        "mandoc -T lint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts lmtpd on `s` and returns its exit status and standard error, killing it (and
/// failing) if it is still running after 20 s.
fn start_expecting_exit(s: &Setup) -> (Option<i32>, String) {
    let mut child = spawn(&s.path("lmtpd.conf"), &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("lmtpd did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    (status.code(), err)
}

#[test]
fn a_store_that_cannot_open_exits_by_kind() {
    // Not a database file at all: the configuration must change, EX_CONFIG.
    let s = Setup::new("alice@example.org\n", "");
    let conf = s.path("lmtpd.conf");
    let base = fs::read_to_string(&conf).expect("conf");
    let dir = s.path("db");
    fs::create_dir(&dir).expect("mkdir");
    fs::write(
        &conf,
        format!("{base}store = sqlite\nsqlite = {}\n", dir.display()),
    )
    .expect("conf");
    let (code, err) = start_expecting_exit(&s);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("not a regular file"), "{err}");
    // A path the system refuses (its parent is a file): EX_UNAVAILABLE.
    let under_file = s.path("users").join("mail.db");
    fs::write(
        &conf,
        format!("{base}store = sqlite\nsqlite = {}\n", under_file.display()),
    )
    .expect("conf");
    let (code, err) = start_expecting_exit(&s);
    assert_eq!(code, Some(69), "{err}");
    assert!(err.contains("mail.db"), "{err}");
}

/// Runs `lmtpd quota ARGS -c CONF`; its exit code and standard output.
fn quota_cmd(conf: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .arg("quota")
        .args(args)
        .arg("-c")
        .arg(conf)
        .output()
        .expect("run lmtpd quota");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.code(), format!("{stdout}{stderr}"))
}

#[test]
fn quota_show_reports_maildirsize_and_recalc_recounts_after_a_message_is_deleted_by_hand() {
    let s = Setup::new("alice@example.org quota=10K quota_messages=50\n", "");
    let child = s.spawn(&[]);
    let mut c = Client::open(&s.path("lmtp.sock"));
    c.cmd("LHLO quota.test");
    for i in 0..3 {
        assert!(c.cmd("MAIL FROM:<s@example.net>").starts_with("250"));
        assert!(c.cmd("RCPT TO:<alice@example.org>").starts_with("250"));
        assert!(c.cmd("DATA").starts_with("354"));
        let r = c.cmd(&format!("Subject: m{i}\r\n\r\nbody {i}\r\n."));
        assert!(r.starts_with("250 2.0.0"), "{r}");
    }
    stop_child(child);
    let new = s.path("mail/example.org/alice/Maildir/new");
    let files = common::list(&new);
    assert_eq!(files.len(), 3);
    let size = |p: &Path| fs::metadata(p).expect("stat").len();
    let all: u64 = files.iter().map(|p| size(p)).sum();
    let conf = s.path("lmtpd.conf");
    let pct = |n: u64, of: u64| format!("{}.{}%", n * 1000 / of / 10, n * 1000 / of % 10);

    let (code, out) = quota_cmd(&conf, &["show", "alice@example.org"]);
    assert_eq!(code, Some(0), "{out}");
    let three = format!(
        "usage: {all} bytes ({}), 3 messages (6.0%)\n",
        pct(all, 10240)
    );
    assert_eq!(
        out,
        format!(
            "address: alice@example.org\nuser: alice@example.org\nstore: maildir\n\
             limits: 10240 bytes, 50 messages, grace 0 bytes\n{three}"
        )
    );

    // Deleted by hand: `show` reports the store's own (now stale) figure...
    let left = all - size(&files[0]);
    fs::remove_file(&files[0]).expect("rm");
    let (code, out) = quota_cmd(&conf, &["show", "alice@example.org"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.ends_with(&three), "{out}");
    // ...`recalc` the true one, before and after, and `show` agrees afterwards.
    let (code, out) = quota_cmd(&conf, &["recalc", "alice@example.org"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.ends_with(&format!(
            "before: {all} bytes ({}), 3 messages (6.0%)\n\
             after: {left} bytes ({}), 2 messages (4.0%)\n",
            pct(all, 10240),
            pct(left, 10240)
        )),
        "{out}"
    );
    let (code, out) = quota_cmd(&conf, &["show", "alice@example.org"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.ends_with(&format!(
            "usage: {left} bytes ({}), 2 messages (4.0%)\n",
            pct(left, 10240)
        )),
        "{out}"
    );
    let maildirsize = s.path("mail/example.org/alice/Maildir/maildirsize");
    assert_eq!(
        fs::read_to_string(maildirsize).expect("maildirsize"),
        format!("10240S,50C\n{left} 2\n")
    );

    // Exit codes: an unknown address 67, bad arguments 64.
    let (code, out) = quota_cmd(&conf, &["show", "nobody@example.org"]);
    assert_eq!(code, Some(67), "{out}");
    assert!(out.contains("550 5.1.1"), "{out}");
    assert_eq!(quota_cmd(&conf, &["show"]).0, Some(64));
    assert_eq!(quota_cmd(&conf, &["list", "alice@example.org"]).0, Some(64));
    assert_eq!(
        quota_cmd(&conf, &["show", "a@example.org", "b@example.org"]).0,
        Some(64)
    );
}
