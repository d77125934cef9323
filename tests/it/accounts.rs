//! Delivery to local Unix accounts (`accounts = passwd`) with the real binary started as root
//! (`user = nobody`) and throw-away accounts made with `useradd` (removed with `userdel`
//! when the test ends, failed or not): the copy is written as the account, uid 0 and
//! accounts outside the uid range are refused at RCPT, a symlinked home or a hard-linked
//! mbox is refused without touching the victim, crafted requests on the helper's own socket
//! (deliveries and script requests) are refused, an account's own Sieve script is read as
//! the account and decides its delivery, and a SIGKILLed helper loses no acknowledged
//! message and comes back.
//!
//! Every test needs root (and `useradd`/`userdel` where it makes accounts); see
//! `common::require` for skipping them outside CI.

use crate::common;

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{chown, symlink, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use common::{list, Client, Scratch, BIN};
use lmtpd::helper::server::read_frame;
use lmtpd::helper::wire::{AccountStore, Request};
use lmtpd::sys::{recv_with_fds, send_with_fds};
use lmtpd_store::{Quota, Target};

// =========================================================================================
// Throw-away accounts
// =========================================================================================

/// `useradd` and `userdel` of this test binary, one at a time (they lock /etc/passwd).
static PASSWD: Mutex<()> = Mutex::new(());

/// True when the test runs as root and can make accounts; otherwise the test checks nothing
/// (or fails, see `common::require`).
fn root_with_useradd() -> bool {
    if !common::require("root", lmtpd::sys::euid() == 0) {
        return false;
    }
    let present = ["useradd", "userdel"].iter().all(|t| {
        Command::new(t)
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    });
    common::require("useradd", present)
}

/// A Unix account made for one test; `userdel` when dropped.
struct TestAccount {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

/// The uids /etc/passwd uses now.
fn used_uids() -> HashSet<u32> {
    fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(':').nth(2)?.parse().ok())
        .collect()
}

fn userdel(name: &str, force: bool) -> Option<i32> {
    let mut cmd = Command::new("userdel");
    if force {
        cmd.arg("-f");
    }
    cmd.arg(name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()
        .and_then(|s| s.code())
}

impl TestAccount {
    /// `useradd -M -U -d HOME -u UID -s /usr/sbin/nologin lmtpit-PID-TAG`, with a uid free
    /// in 40000..59999 (another process taking it first means another try). The home is not
    /// made: see [`TestAccount::make_home`].
    fn add(tag: &str, home: &Path) -> TestAccount {
        let name = format!("lmtpit-{}-{tag}", std::process::id());
        let _g = PASSWD.lock().unwrap_or_else(PoisonError::into_inner);
        let mut last = String::new();
        let base = 40_000 + (std::process::id() % 1000) * 16;
        for attempt in 0..30u32 {
            let used = used_uids();
            let uid = (base + attempt * 3..59_999)
                .find(|u| !used.contains(u))
                .expect("a free uid");
            let out = Command::new("useradd")
                .args(["-M", "-U", "-d"])
                .arg(home)
                .args(["-u", &uid.to_string(), "-s", "/usr/sbin/nologin", &name])
                .output()
                .expect("run useradd");
            if out.status.success() {
                let a = lmtpd::sys::lookup_user(&name)
                    .expect("getpwnam")
                    .expect("the new account exists");
                assert_eq!(a.uid, uid);
                return TestAccount {
                    name,
                    uid,
                    gid: a.gid,
                    home: home.to_path_buf(),
                };
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            if out.status.code() == Some(9) {
                // The name is in use: left behind by an earlier run whose pid was the same.
                let _ = userdel(&name, true);
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!("useradd {name}: {last}");
    }

    /// Makes the home: a directory owned by the account, 0700.
    fn make_home(&self) {
        fs::create_dir(&self.home).expect("home");
        chown(&self.home, Some(self.uid), Some(self.gid)).expect("chown home");
        fs::set_permissions(&self.home, fs::Permissions::from_mode(0o700)).expect("chmod home");
    }

    fn addr(&self) -> String {
        format!("{}@host.test", self.name)
    }

    /// The files of the account's `~/Maildir/new`.
    fn new_mail(&self) -> Vec<PathBuf> {
        list(&self.home.join("Maildir/new"))
    }
}

impl Drop for TestAccount {
    fn drop(&mut self) {
        let _g = PASSWD.lock().unwrap_or_else(PoisonError::into_inner);
        for attempt in 0..20 {
            // 0: removed; 6: no such user. 8 (still in use) is forced after a few tries.
            match userdel(&self.name, attempt >= 5) {
                Some(0 | 6) => return,
                _ => thread::sleep(Duration::from_millis(200)),
            }
        }
        eprintln!(
            "WARNING: could not remove the test account {}; run `userdel {}`",
            self.name, self.name
        );
    }
}

// =========================================================================================
// The scratch directory and the real server
// =========================================================================================

/// The `nobody` account lmtpd runs as.
fn nobody() -> lmtpd::sys::Account {
    lmtpd::sys::lookup_user("nobody")
        .expect("getpwnam")
        .expect("nobody exists")
}

/// A scratch directory for a server run as root with `user = nobody`, `accounts = passwd`
/// and `local_domains = host.test`: traversable by every account (0755), `spool/` and
/// `virt/` (the Maildirs of virtual users) owned by nobody, `mail/` (the accounts' mboxes)
/// root:mail 2775.
fn scratch(users: &str, extra: &str) -> Scratch {
    let s = Scratch::with(users, |d| {
        format!(
            "listen = unix:{d}/lmtp.sock\nusers = {d}/users\nhostname = host.test\n\
             user = nobody\nspool_dir = {d}/spool\nretry_journal = {d}/retry.db\nmaildir = {d}/virt/%d/%n/Maildir\n\
             sieve =\nlog_level = info\naccounts = passwd\nlocal_domains = host.test\n\
             account_mbox = {d}/mail/%n\naccount_mail_group = mail\n{extra}"
        )
    });
    fs::set_permissions(s.dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let nobody = nobody();
    for d in ["spool", "virt"] {
        let p = s.path(d);
        fs::create_dir(&p).expect("mkdir");
        chown(&p, Some(nobody.uid), Some(nobody.gid)).expect("chown");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    let mail_gid = lmtpd::sys::lookup_group("mail")
        .expect("getgrnam")
        .expect("group mail exists");
    let mail = s.path("mail");
    fs::create_dir(&mail).expect("mkdir mail");
    chown(&mail, Some(0), Some(mail_gid)).expect("chown mail");
    fs::set_permissions(&mail, fs::Permissions::from_mode(0o2775)).expect("chmod mail");
    s
}

/// A running `lmtpd -c lmtpd.conf` (standard error in `stderr.log`); killed when dropped.
struct Lmtpd {
    child: Option<Child>,
    log: PathBuf,
    sock: PathBuf,
}

impl Lmtpd {
    /// Starts the server of `s` and waits for its greeting.
    fn start(s: &Scratch) -> Lmtpd {
        let log = s.path("stderr.log");
        let err = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open stderr log");
        let child = Command::new(BIN)
            .arg("-c")
            .arg(s.path("lmtpd.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawn lmtpd");
        let mut srv = Lmtpd {
            child: Some(child),
            log,
            sock: s.path("lmtp.sock"),
        };
        let start = Instant::now();
        loop {
            if let Some(Ok(Some(st))) = srv.child.as_mut().map(Child::try_wait) {
                panic!("lmtpd exited at start-up: {st:?}\n{}", srv.log_text());
            }
            if let Ok(c) = Client::connect_unix(&srv.sock, Some(Duration::from_secs(30))) {
                if let Ok(mut c) = c.try_greeted("220 ") {
                    let _ = c.try_cmd("QUIT");
                    return srv;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "lmtpd never answered\n{}",
                srv.log_text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A session after the greeting and LHLO.
    fn session(&self) -> Client {
        session(&self.sock)
    }

    /// SIGTERM; requires exit status 0 within 30 s.
    fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let start = Instant::now();
        let st = loop {
            if let Ok(Some(st)) = c.try_wait() {
                break st;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = c.kill();
                let _ = c.wait();
                panic!("lmtpd ignored SIGTERM\n{}", self.log_text());
            }
            thread::sleep(Duration::from_millis(20));
        };
        assert!(st.success(), "lmtpd exit {st:?}\n{}", self.log_text());
    }
}

impl Drop for Lmtpd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A session on `sock` after the greeting and LHLO, with 30 s timeouts.
fn session(sock: &Path) -> Client {
    let mut c = Client::connect_unix(sock, Some(Duration::from_secs(30)))
        .expect("connect")
        .greeted("220 ");
    c.lhlo();
    c
}

/// The message with `id` on the wire, dot-terminated.
fn wire(id: &str) -> String {
    format!(
        "From: sender@example.net\r\nSubject: accounts {id}\r\nX-Test-Id: {id}\r\n\r\n\
         Hello, this is message {id}.\r\n.\r\n"
    )
}

/// One transaction: per recipient, its RCPT reply and (when that was 250) its reply after
/// the final dot.
fn transaction(c: &mut Client, rcpts: &[&str], id: &str) -> Vec<(String, Option<String>)> {
    c.expect("MAIL FROM:<sender@example.net>", "250");
    let rcpt: Vec<String> = rcpts
        .iter()
        .map(|r| c.cmd(&format!("RCPT TO:<{r}>")))
        .collect();
    if !rcpt.iter().any(|r| r.starts_with("250")) {
        c.expect("RSET", "250");
        return rcpt.into_iter().map(|r| (r, None)).collect();
    }
    c.expect("DATA", "354");
    c.send(wire(id).as_bytes());
    rcpt.into_iter()
        .map(|r| {
            let data = r.starts_with("250").then(|| c.reply());
            (r, data)
        })
        .collect()
}

fn mode(p: &Path) -> (u32, u32) {
    let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.uid(), m.mode() & 0o7777)
}

// =========================================================================================
// Processes
// =========================================================================================

/// The parent pid and state of `pid` from /proc.
fn stat(pid: u32) -> Option<(u32, char)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = s[s.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    Some((rest.next()?.parse().ok()?, state))
}

/// The live (not zombie) children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut v: Vec<u32> = fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|&p| matches!(stat(p), Some((pp, st)) if pp == pid && st != 'Z'))
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// The keeper (`lmtpd account-helper`, a child of the server).
fn keeper_of(server: u32) -> Option<u32> {
    children(server).into_iter().find(|p| {
        fs::read(format!("/proc/{p}/cmdline"))
            .is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == b"account-helper"))
    })
}

/// The helper: the keeper's one child.
fn helper_of(keeper: u32) -> Option<u32> {
    children(keeper).first().copied()
}

// =========================================================================================
// Tests
// =========================================================================================

#[test]
fn an_account_gets_its_copy_as_itself_beside_a_virtual_user_and_an_unknown_local_part() {
    if !root_with_useradd() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let a = TestAccount::add("a", &tmp.path().join("home-a"));
    a.make_home();
    let b = TestAccount::add("b", &tmp.path().join("home-b"));
    b.make_home();
    let s = scratch(&format!("{} store=maildir\nv@virtual.test\n", a.addr()), "");
    let mut srv = Lmtpd::start(&s);
    let mut c = srv.session();
    let unknown = format!("lmtpit-{}-nosuch@host.test", std::process::id());
    let replies = transaction(
        &mut c,
        &[&a.addr(), &b.addr(), "v@virtual.test", &unknown],
        "one",
    );
    c.expect("QUIT", "221");
    let log = srv.log_text();
    for (i, (rcpt, data)) in replies.iter().take(3).enumerate() {
        assert!(rcpt.starts_with("250"), "rcpt {i}: {rcpt}\n{log}");
        let data = data.as_deref().unwrap_or_default();
        assert!(
            data.starts_with("250"),
            "rcpt {i} after DATA: {data}\n{log}"
        );
    }
    assert!(replies[3].0.starts_with("550 5.1.1"), "{:?}", replies[3]);
    assert!(replies[3].1.is_none());

    // A (store=maildir): ~/Maildir, every directory 0700 and the file 0600, all A's.
    let md = a.home.join("Maildir");
    for d in ["", "new", "cur", "tmp"] {
        assert_eq!(mode(&md.join(d)), (a.uid, 0o700), "{}/{d}", md.display());
    }
    let files = a.new_mail();
    assert_eq!(files.len(), 1, "{files:?}\n{log}");
    assert_eq!(mode(&files[0]), (a.uid, 0o600));
    let text = fs::read_to_string(&files[0]).expect("read A's copy");
    assert!(text.contains("X-Test-Id: one"), "{text}");

    // B (account_store = mbox): the mbox in account_mbox, B's, 0600, and no dotlock left.
    let mbox = s.path("mail").join(&b.name);
    assert_eq!(mode(&mbox), (b.uid, 0o600));
    let text = fs::read_to_string(&mbox).expect("read B's mbox");
    assert!(text.starts_with("From "), "{text}");
    assert!(text.contains("X-Test-Id: one"), "{text}");
    assert_eq!(list(&s.path("mail")), vec![mbox.clone()]);
    assert!(!b.home.join("Maildir").exists());

    // The virtual user: lmtpd's own Maildir store, written as nobody.
    let vnew = list(&s.path("virt/virtual.test/v/Maildir/new"));
    assert_eq!(vnew.len(), 1, "{vnew:?}\n{log}");
    assert_eq!(mode(&vnew[0]).0, nobody().uid);
    assert!(fs::read_to_string(&vnew[0])
        .expect("read v's copy")
        .contains("X-Test-Id: one"));
    srv.stop();
}

#[test]
fn uid_0_and_accounts_below_min_uid_are_refused_at_rcpt_unless_allowed() {
    if !common::require("root", lmtpd::sys::euid() == 0) {
        return;
    }
    let s = scratch("", "accounts_allow = bin\n");
    let mut srv = Lmtpd::start(&s);
    let mut c = srv.session();
    c.expect("MAIL FROM:<sender@example.net>", "250");
    for refused in ["root", "Root", "daemon", "nobody"] {
        let r = c.cmd(&format!("RCPT TO:<{refused}@host.test>"));
        assert!(r.starts_with("550 5.1.1"), "{refused}: {r}");
    }
    // bin (uid 2) is in accounts_allow.
    let r = c.cmd("RCPT TO:<bin@host.test>");
    assert!(r.starts_with("250"), "bin: {r}\n{}", srv.log_text());
    c.expect("RSET", "250");
    c.expect("QUIT", "221");
    let log = srv.log_text();
    assert!(log.contains("root has uid 0"), "{log}");
    assert!(log.contains("daemon has uid 1"), "{log}");
    for who in ["root", "daemon", "bin", "nobody"] {
        assert!(!s.path("mail").join(who).exists());
    }
    srv.stop();
}

#[test]
fn a_symlinked_home_and_a_hard_linked_mbox_are_550_5_2_0_and_the_victims_untouched() {
    if !root_with_useradd() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    // C's home is a symlink to D's home.
    let c_acct = TestAccount::add("c", &tmp.path().join("home-c"));
    let d_acct = TestAccount::add("d", &tmp.path().join("home-d"));
    d_acct.make_home();
    let keep = d_acct.home.join("keep");
    fs::write(&keep, b"D's own file\n").expect("write keep");
    chown(&keep, Some(d_acct.uid), Some(d_acct.gid)).expect("chown keep");
    symlink(&d_acct.home, &c_acct.home).expect("symlink C's home");
    // E's mbox is a hard link to F's.
    let e_acct = TestAccount::add("e", &tmp.path().join("home-e"));
    e_acct.make_home();
    let f_acct = TestAccount::add("f", &tmp.path().join("home-f"));
    f_acct.make_home();
    let s = scratch(&format!("{} store=maildir\n", c_acct.addr()), "");
    let victim = s.path("mail").join(&f_acct.name);
    let victim_text = "From victim@example.net Thu Jan  1 00:00:00 1970\nSubject: F's\n\nmine\n\n";
    fs::write(&victim, victim_text).expect("write F's mbox");
    chown(&victim, Some(f_acct.uid), Some(f_acct.gid)).expect("chown F's mbox");
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).expect("chmod");
    fs::hard_link(&victim, s.path("mail").join(&e_acct.name)).expect("hard link");

    let mut srv = Lmtpd::start(&s);
    let mut c = srv.session();
    let replies = transaction(&mut c, &[&c_acct.addr(), &e_acct.addr()], "links");
    c.expect("QUIT", "221");
    let log = srv.log_text();
    for (rcpt, data) in &replies {
        assert!(rcpt.starts_with("250"), "{rcpt}\n{log}");
        let data = data.as_deref().unwrap_or_default();
        assert!(data.starts_with("550 5.2.0"), "{data}\n{log}");
    }
    assert!(log.contains("is a symlink"), "{log}");

    assert_eq!(list(&d_acct.home), vec![keep.clone()], "D's home changed");
    assert_eq!(fs::read_to_string(&keep).expect("keep"), "D's own file\n");
    assert_eq!(fs::read_to_string(&victim).expect("F's mbox"), victim_text);
    let m = fs::metadata(&victim).expect("F's mbox");
    assert_eq!((m.uid(), m.nlink()), (f_acct.uid, 2));
    assert!(!e_acct.home.join("Maildir").exists());
    srv.stop();
}

/// Sends one request on the helper socket: a fresh socketpair, one end passed with `R`,
/// the frame on the other with `body` attached; returns the reply frame's text.
fn ask(helper: &UnixStream, frame: &[u8], body: Option<&File>) -> String {
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    send_with_fds(helper.as_fd(), b"R", &[theirs.as_fd()]).expect("send R");
    drop(theirs);
    let sent = match body {
        Some(f) => send_with_fds(ours.as_fd(), frame, &[f.as_fd()]).expect("send request"),
        None => 0,
    };
    (&ours).write_all(&frame[sent..]).expect("send request");
    ours.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let (payload, fds) = read_frame(&ours).expect("reply frame");
    assert!(fds.is_empty());
    String::from_utf8(payload).expect("UTF-8 reply")
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = u32::try_from(payload.len())
        .expect("len")
        .to_be_bytes()
        .to_vec();
    f.extend_from_slice(payload);
    f
}

#[test]
fn crafted_requests_on_the_helper_socket_are_refused_and_a_good_one_is_delivered() {
    if !root_with_useradd() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let a = TestAccount::add("h", &tmp.path().join("home-h"));
    a.make_home();
    let s = scratch("", "");
    // The configuration as lmtpd sends it: its `-n` dump.
    let out = Command::new(BIN)
        .arg("-c")
        .arg(s.path("lmtpd.conf"))
        .arg("-n")
        .output()
        .expect("lmtpd -n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = s.path("keeper.log");
    let (control, theirs) = UnixStream::pair().expect("socketpair");
    let mut keeper = Command::new(BIN)
        .arg("account-helper")
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(File::create(&log).expect("keeper log"))
        .spawn()
        .expect("spawn the keeper");
    let log_text = || fs::read_to_string(&log).unwrap_or_default();
    (&control)
        .write_all(&frame(&out.stdout))
        .expect("config frame");
    control
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    let (n, mut fds) = recv_with_fds(control.as_fd(), &mut byte).expect("the keeper's H");
    assert_eq!((n, byte, fds.len()), (1, *b"H", 1), "{}", log_text());
    let helper = UnixStream::from(fds.pop().expect("helper socket"));
    // The control socket came in as standard input; nothing the keeper forks (the helper,
    // the children that become accounts) may inherit it there.
    let stdin_of = |pid: u32| fs::read_link(format!("/proc/{pid}/fd/0")).expect("fd 0");
    assert_eq!(stdin_of(keeper.id()), PathBuf::from("/dev/null"));
    // The keeper forks the helper just after announcing its socket.
    let forked = (0..100)
        .find_map(|_| {
            let h = helper_of(keeper.id());
            if h.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            h
        })
        .expect("the helper process");
    assert_eq!(stdin_of(forked), PathBuf::from("/dev/null"));

    let marker = format!("crafted-{}", std::process::id());
    let body_text = format!("Subject: {marker}\n\nroot:x:0:0:{marker}:/root:/bin/sh\n");
    let body_path = s.path("body");
    fs::write(&body_path, &body_text).expect("write body");
    let body = File::open(&body_path).expect("open body");
    let lines = body_text.matches('\n').count();
    let passwd_before = fs::read_to_string("/etc/passwd").expect("passwd");
    assert!(!passwd_before.contains(&marker));

    // (a) A forged field naming a path: the whole frame is refused.
    let forged = format!(
        "lmtpd-helper 1\naccount {}\ndomain host.test\naddress {}\npath /etc/passwd\n\
         store mbox\nid forged\nbody {} {lines}\ntarget inbox 0 - 0 0 0\ntrace 0\n\n",
        a.name,
        a.addr(),
        body_text.len()
    );
    let r = ask(&helper, &frame(forged.as_bytes()), Some(&body));
    assert!(r.starts_with("err 550 5.1.1\n"), "{r}");
    assert!(r.contains("unknown field 'path'"), "{r}");

    let request = |account: &str, domain: &str, id: &str| Request {
        account: account.into(),
        domain: domain.into(),
        address: format!("{account}@{domain}"),
        detail: None,
        store: AccountStore::Maildir,
        quota: Quota::default(),
        sender: Some("sender@example.net".into()),
        id: id.into(),
        smtputf8: false,
        eight_bit: false,
        body_len: body_text.len() as u64,
        body_lines: lines as u64,
        targets: vec![Target::inbox()],
        trace: b"Return-Path: <sender@example.net>\n".to_vec(),
    };
    let encode = |r: Request| r.encode().expect("encode");

    // (b) root, well-formed.
    let r = ask(
        &helper,
        &encode(request("root", "host.test", "root")),
        Some(&body),
    );
    assert!(r.starts_with("err 550 5.1.1\n"), "{r}");
    assert!(r.contains("uid 0"), "{r}");
    let mut root_mbox = request("root", "host.test", "root-mbox");
    root_mbox.store = AccountStore::Mbox;
    let r = ask(&helper, &encode(root_mbox), Some(&body));
    assert!(r.starts_with("err 550 5.1.1\n"), "{r}");
    // (c) a domain that is not in local_domains.
    let r = ask(
        &helper,
        &encode(request(&a.name, "elsewhere.test", "domain")),
        Some(&body),
    );
    assert!(r.starts_with("err 550 5.1.1\n"), "{r}");
    assert!(r.contains("not a local domain"), "{r}");
    // No body descriptor, and an account that is a path.
    let r = ask(
        &helper,
        &encode(request(&a.name, "host.test", "nobody")),
        None,
    );
    assert!(r.starts_with("err 550 5.1.1\n"), "{r}");
    let r = ask(
        &helper,
        &encode(request("../../etc/passwd", "host.test", "dots")),
        Some(&body),
    );
    assert!(r.starts_with("err 550 5.1.1\n"), "{r}");
    assert!(
        !a.home.join("Maildir").exists(),
        "a refused request wrote something"
    );
    assert!(!s.path("mail/root").exists());

    // Script requests (the account's Sieve script, read as the account): a forged path
    // field or root is refused; the active script comes back with its source, a symlink
    // out of the home (to /etc/shadow, which the account cannot read anyway) is refused,
    // and nothing comes back that the account itself could not read.
    let script = |payload: &str| ask(&helper, &frame(payload.as_bytes()), None);
    let r = script(&format!(
        "lmtpd-helper-script 1\naccount {}\ndomain host.test\npath /etc/shadow\nscript active\n\n",
        a.name
    ));
    assert!(r.starts_with("failed refused\n"), "{r}");
    assert!(r.contains("unknown field 'path'"), "{r}");
    let r = script("lmtpd-helper-script 1\naccount root\ndomain host.test\nscript active\n\n");
    assert!(
        r.starts_with("failed refused\n") && r.contains("uid 0"),
        "{r}"
    );
    let active = format!(
        "lmtpd-helper-script 1\naccount {}\ndomain host.test\nscript active\n\n",
        a.name
    );
    assert_eq!(script(&active), "missing\n");
    let source = "require \"fileinto\";\nfileinto \"Crafted\";\n";
    let file = a.home.join(".dovecot.sieve");
    fs::write(&file, source).expect("write script");
    chown(&file, Some(a.uid), Some(a.gid)).expect("chown script");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).expect("chmod script");
    let r = script(&active);
    assert!(r.starts_with("script "), "{r}\n{}", log_text());
    assert!(
        r.ends_with(&format!("{}\n\n{source}", file.display())),
        "{r}"
    );
    fs::remove_file(&file).expect("rm script");
    symlink("/etc/shadow", &file).expect("symlink");
    let r = script(&active);
    assert!(
        r.starts_with("failed refused\n") && r.contains("outside"),
        "{r}"
    );
    assert!(!r.contains("root:"), "{r}");
    fs::remove_file(&file).expect("rm link");
    let r = script(&format!(
        "lmtpd-helper-script 1\naccount {}\ndomain host.test\nscript include ../../etc/shadow\n\n",
        a.name
    ));
    assert!(
        r.starts_with("failed refused\n") && r.contains("cannot be a script name"),
        "{r}"
    );

    // (d) A well-formed request for the account: delivered, as the account.
    let r = ask(
        &helper,
        &encode(request(&a.name, "host.test", "good")),
        Some(&body),
    );
    assert_eq!(r, "ok\n", "{}", log_text());
    let files = a.new_mail();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(mode(&files[0]), (a.uid, 0o600));
    let text = fs::read_to_string(&files[0]).expect("read the copy");
    assert!(
        text.starts_with("Return-Path: <sender@example.net>\n"),
        "{text}"
    );
    assert!(text.contains(&marker), "{text}");

    let passwd_after = fs::read_to_string("/etc/passwd").expect("passwd");
    assert!(!passwd_after.contains(&marker), "/etc/passwd was written");
    assert!(passwd_after.lines().any(|l| l.starts_with("root:x:0:0:")));
    assert_eq!(fs::metadata("/etc/passwd").expect("passwd").nlink(), 1);

    // Closing both sockets ends the helper, then the keeper, with status 0.
    drop(helper);
    drop(control);
    let start = Instant::now();
    let st = loop {
        if let Some(st) = keeper.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = keeper.kill();
            let _ = keeper.wait();
            panic!("the keeper did not exit\n{}", log_text());
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert!(st.success(), "keeper {st:?}\n{}", log_text());
}

/// Writes `text` to `path` as `a`'s own file, 0600.
fn write_as(a: &TestAccount, path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    chown(path, Some(a.uid), Some(a.gid)).expect("chown");
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod");
}

#[test]
fn an_accounts_own_sieve_script_is_read_as_the_account_and_decides_its_delivery() {
    if !root_with_useradd() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    // A: Dovecot's ManageSieve layout in a 0700 home, every file 0600 and A's own, so
    // lmtpd (nobody) could not have read any of it itself.
    let a = TestAccount::add("sa", &tmp.path().join("home-sa"));
    a.make_home();
    let sieve_dir = a.home.join("sieve");
    fs::create_dir(&sieve_dir).expect("mkdir sieve");
    chown(&sieve_dir, Some(a.uid), Some(a.gid)).expect("chown");
    fs::set_permissions(&sieve_dir, fs::Permissions::from_mode(0o700)).expect("chmod");
    write_as(
        &a,
        &sieve_dir.join("main.sieve"),
        "require [\"fileinto\", \"mailbox\", \"include\", \"reject\", \"imap4flags\"];\n\
         include :personal \"lists\";\n\
         if header :contains \"subject\" \"work\" { fileinto :create :flags \"\\\\Flagged\" \"Work\"; stop; }\n\
         if header :contains \"subject\" \"reject-me\" { reject \"Not from you, thanks.\"; }\n",
    );
    write_as(
        &a,
        &sieve_dir.join("lists.sieve"),
        "require [\"fileinto\", \"mailbox\"];\nif header :contains \"subject\" \"lists\" { fileinto :create \"Lists\"; stop; }\n",
    );
    let active = a.home.join(".dovecot.sieve");
    symlink("sieve/main.sieve", &active).expect("symlink");
    lchown(&active, a.uid, a.gid);
    // B: its active script is a symlink out of its home (to a discard script): refused,
    // so B gets the implicit keep.
    let b = TestAccount::add("sb", &tmp.path().join("home-sb"));
    b.make_home();
    let evil = tmp.path().join("evil.sieve");
    fs::write(&evil, "discard;\n").expect("evil");
    fs::set_permissions(&evil, fs::Permissions::from_mode(0o644)).expect("chmod");
    symlink(&evil, b.home.join(".dovecot.sieve")).expect("symlink");
    lchown(&b.home.join(".dovecot.sieve"), b.uid, b.gid);
    // C: a script of its own, switched off by sieve=none on its users-file line.
    let c_acct = TestAccount::add("sc", &tmp.path().join("home-sc"));
    c_acct.make_home();
    write_as(&c_acct, &c_acct.home.join(".dovecot.sieve"), "discard;\n");
    let s = scratch(
        &format!(
            "{} store=maildir\n{} store=maildir\n{} store=maildir sieve=none\n",
            a.addr(),
            b.addr(),
            c_acct.addr()
        ),
        "",
    );
    let mut srv = Lmtpd::start(&s);
    let mut c = srv.session();
    let all = [a.addr(), b.addr(), c_acct.addr()];
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let mut replies = Vec::new();
    for id in ["work", "lists", "reject-me", "plain"] {
        replies.push((id, transaction(&mut c, &all, id)));
    }
    // The same script again: from the cache (the helper still reads the file each time).
    replies.push(("work2", transaction(&mut c, &all, "work2")));
    c.expect("QUIT", "221");
    let log = srv.log_text();
    for (id, r) in &replies {
        for (i, (rcpt, data)) in r.iter().enumerate() {
            assert!(rcpt.starts_with("250"), "{id} rcpt {i}: {rcpt}\n{log}");
            let data = data.as_deref().unwrap_or_default();
            if *id == "reject-me" && i == 0 {
                assert!(
                    data.starts_with("550 5.7.1 Not from you, thanks."),
                    "{data}\n{log}"
                );
            } else {
                assert!(
                    data.starts_with("250"),
                    "{id} rcpt {i} after DATA: {data}\n{log}"
                );
            }
        }
    }
    let ids = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = list(dir)
            .iter()
            .map(|f| {
                let t = fs::read_to_string(f).expect("read copy");
                t.lines()
                    .find_map(|l| l.strip_prefix("X-Test-Id: "))
                    .unwrap_or("?")
                    .to_string()
            })
            .collect();
        v.sort();
        v
    };
    let md = a.home.join("Maildir");
    assert_eq!(ids(&md.join(".Work/cur")), ["work", "work2"], "{log}");
    for f in list(&md.join(".Work/cur")) {
        assert_eq!(mode(&f), (a.uid, 0o600));
        assert!(f.to_string_lossy().ends_with(":2,F"), "{}", f.display());
    }
    assert_eq!(mode(&md.join(".Work")), (a.uid, 0o700));
    assert_eq!(ids(&md.join(".Lists/new")), ["lists"], "{log}");
    assert_eq!(ids(&md.join("new")), ["plain"], "{log}");
    // B: every message kept in INBOX, the refusal logged with the link's target.
    assert_eq!(
        ids(&b.home.join("Maildir/new")),
        ["lists", "plain", "reject-me", "work", "work2"],
        "{log}"
    );
    assert!(log.contains("outside"), "{log}");
    // C: sieve=none, so its discard script never ran.
    assert_eq!(ids(&c_acct.home.join("Maildir/new")).len(), 5, "{log}");
    assert!(log.contains("sieve=fileinto:Work"), "{log}");
    srv.stop();
}

/// `chown -h`: the owner of a symlink itself.
fn lchown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).expect("lchown");
}

#[test]
fn a_sigkilled_helper_loses_no_acknowledged_message_and_comes_back() {
    if !root_with_useradd() {
        return;
    }
    const THREADS: usize = 4;
    const PER_THREAD: usize = 25;
    let tmp = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let a = TestAccount::add("k", &tmp.path().join("home-k"));
    a.make_home();
    let s = scratch(&format!("{} store=maildir\n", a.addr()), "");
    let mut srv = Lmtpd::start(&s);
    let keeper = keeper_of(srv.pid()).expect("the keeper runs");
    let old = helper_of(keeper).expect("the helper runs");

    let acked = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..THREADS)
        .map(|t| {
            let sock = srv.sock.clone();
            let addr = a.addr();
            let acked = Arc::clone(&acked);
            thread::spawn(move || {
                // (id, final reply) of every message.
                let mut out: Vec<(String, String)> = Vec::new();
                let mut c = session(&sock);
                for n in 0..PER_THREAD {
                    let id = format!("t{t}-m{n}");
                    let r = transaction(&mut c, &[&addr], &id).remove(0);
                    let last = r.1.unwrap_or(r.0);
                    if last.starts_with("250") {
                        acked.fetch_add(1, Ordering::SeqCst);
                    } else {
                        // Back off a little, so that the load goes on while the keeper
                        // starts the next helper.
                        thread::sleep(Duration::from_millis(100));
                    }
                    out.push((id, last));
                }
                let _ = c.try_cmd("QUIT");
                out
            })
        })
        .collect();
    // SIGKILL the helper once a fifth of the messages are in.
    let start = Instant::now();
    while acked.load(Ordering::SeqCst) < THREADS * PER_THREAD / 5 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no progress\n{}",
            srv.log_text()
        );
        thread::sleep(Duration::from_millis(1));
    }
    let at_kill = acked.load(Ordering::SeqCst);
    let killed = Command::new("kill")
        .arg("-KILL")
        .arg(old.to_string())
        .status()
        .expect("kill");
    assert!(killed.success());
    let results: Vec<(String, String)> = load
        .into_iter()
        .flat_map(|h| h.join().expect("load thread"))
        .collect();
    let log = srv.log_text();
    let ok: Vec<&str> = results
        .iter()
        .filter(|(_, r)| r.starts_with("250"))
        .map(|(id, _)| id.as_str())
        .collect();
    let tempfailed = results
        .iter()
        .filter(|(_, r)| r.starts_with("451 4.3.0"))
        .count();
    for (id, r) in &results {
        assert!(
            r.starts_with("250") || r.starts_with("451 4.3.0"),
            "{id}: {r}\n{log}"
        );
    }
    eprintln!(
        "helper {old} killed after {at_kill} acknowledged; {} x 250, {tempfailed} x 451 4.3.0",
        ok.len()
    );

    // Every acknowledged message is in the Maildir.
    let mut found = HashSet::new();
    let files = a.new_mail();
    for f in &files {
        let mut text = String::new();
        File::open(f)
            .and_then(|mut h| h.read_to_string(&mut text))
            .expect("read a copy");
        if let Some(id) = text
            .lines()
            .find_map(|l| l.strip_prefix("X-Test-Id: "))
            .map(str::to_string)
        {
            found.insert(id);
        }
        assert_eq!(mode(f), (a.uid, 0o600));
    }
    for id in &ok {
        assert!(found.contains(*id), "{id} got 250 but is not stored\n{log}");
    }
    assert!(files.len() >= ok.len(), "{} files", files.len());

    // A new helper (another pid) is announced to lmtpd, and the next delivery gets 250.
    let start = Instant::now();
    let new = loop {
        if let Some(p) = helper_of(keeper).filter(|&p| p != old) {
            if srv.log_text().contains("account helper is back") {
                break p;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no new helper\n{}",
            srv.log_text()
        );
        thread::sleep(Duration::from_millis(20));
    };
    assert_ne!(new, old);
    let mut c = srv.session();
    let r = transaction(&mut c, &[&a.addr()], "after").remove(0);
    let last = r.1.unwrap_or(r.0);
    assert!(last.starts_with("250"), "{last}\n{}", srv.log_text());
    c.expect("QUIT", "221");
    assert_eq!(a.new_mail().len(), files.len() + 1);
    let log = srv.log_text();
    assert!(log.contains("account helper started again"), "{log}");
    srv.stop();
}
