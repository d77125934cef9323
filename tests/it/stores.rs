//! End-to-end tests of the mbox and SQLite stores through a real server: concurrent mbox
//! appends read back by Python's `mailbox`, one transaction spread over three stores, SQLite
//! per-recipient outcomes and load checked through `lmtpd export`, a foreign dotlock, and the
//! schema state reported by `lmtpd -t`.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    have_python, hex, list, python, python_holder, spawn, stop_child, wait_for, Client, Scratch,
    TestServer, BIN, GREETING,
};
use lmtpd::config::{Config, LockKind, StoreKind};

const SENDER: &str = "sender@example.net";
/// Bound on every wait for a reply, so a hung server fails the test instead of hanging it.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// The in-process server of tests/common with mbox and SQLite paths in its directory.

impl TestServer {
    fn start(users: &str, tune: impl FnOnce(&mut Config, &Path)) -> TestServer {
        TestServer::with_users(users, |cfg, dir| {
            cfg.mbox.template = format!("{}/mbox/%n", dir.display());
            cfg.sqlite.path = dir.join("db/mail.db");
            tune(cfg, dir);
        })
    }

    fn mbox(&self, local: &str) -> PathBuf {
        self.path("mbox").join(local)
    }

    fn db(&self) -> PathBuf {
        self.path("db/mail.db")
    }

    fn maildir_new(&self, local: &str) -> Vec<PathBuf> {
        list(&self.path(&format!("mail/example.org/{local}/Maildir/new")))
    }

    fn endpoints(&self) -> (SocketAddr, PathBuf) {
        (self.tcp, self.sock.clone())
    }

    fn tcp(&self) -> Client {
        Client::tcp(self.tcp)
    }

    fn unix(&self) -> Client {
        Client::unix(&self.sock)
    }
}

// Clients that have been greeted and sent LHLO, every read and write bounded by
// READ_TIMEOUT.
impl Client {
    fn tcp(addr: SocketAddr) -> Client {
        Client::connect_tcp(addr, Some(READ_TIMEOUT))
            .expect("connect tcp")
            .ready()
    }

    fn unix(path: &Path) -> Client {
        Client::connect_unix(path, Some(READ_TIMEOUT))
            .expect("connect unix")
            .ready()
    }

    /// TCP for even `i`, the Unix socket for odd `i`.
    fn either(i: usize, tcp: SocketAddr, sock: &Path) -> Client {
        if i.is_multiple_of(2) {
            Client::tcp(tcp)
        } else {
            Client::unix(sock)
        }
    }

    fn ready(self) -> Client {
        let mut c = self.greeted(GREETING);
        c.lhlo();
        c
    }

    /// One whole transaction sent in a single pipelined write; returns the replies to the
    /// RCPTs and then the replies after the final dot (one per accepted RCPT).
    fn transaction(&mut self, rcpts: &[&str], msg: &Mail) -> (Vec<String>, Vec<String>) {
        let mut batch = format!("MAIL FROM:<{SENDER}>\r\n");
        for r in rcpts {
            batch.push_str(&format!("RCPT TO:<{r}>\r\n"));
        }
        batch.push_str("DATA\r\n");
        batch.push_str(&msg.wire);
        self.send(batch.as_bytes());
        let mail = self.reply();
        assert!(mail.starts_with("250 2.1.0"), "MAIL -> {mail}");
        let at_rcpt: Vec<String> = rcpts.iter().map(|_| self.reply()).collect();
        let accepted = at_rcpt.iter().filter(|r| r.starts_with("250")).count();
        let data = self.reply();
        if accepted == 0 {
            assert!(data.starts_with("503"), "DATA without recipients -> {data}");
            return (at_rcpt, Vec::new());
        }
        assert!(data.starts_with("354"), "DATA -> {data}");
        let after: Vec<String> = (0..accepted).map(|_| self.reply()).collect();
        (at_rcpt, after)
    }
}

// ---------------------------------------------------------------------------------------
// Messages: what goes over the wire (CRLF, dot-stuffed) and what a store must keep (LF).

struct Mail {
    tag: String,
    /// The DATA content including the final `.` line.
    wire: String,
    /// The message as stored after the trace headers.
    stored: Vec<u8>,
}

/// A message identified by `tag` (in its Subject and first and last body lines), with body
/// lines that exercise mbox `From ` quoting and LMTP dot-stuffing, and `n % 7` filler lines
/// so that messages differ in size.
fn mail(tag: &str, n: usize) -> Mail {
    let mut lines: Vec<String> = vec![
        format!("From: {SENDER}"),
        "To: someone@example.org".into(),
        format!("Subject: {tag}"),
        format!("Message-ID: <{tag}@stores.test>"),
        String::new(),
        format!("marker {tag} start"),
        "From me".into(),
        ">From me".into(),
        ">>From me too".into(),
        "From".into(),
        ".dot".into(),
        "..dot".into(),
        ".".into(),
        " From indented".into(),
    ];
    for k in 0..n % 7 {
        lines.push(format!("filler {tag} {k} {}", "x".repeat(k * 13)));
    }
    lines.push(format!("marker {tag} end"));
    let mut wire = String::new();
    for l in &lines {
        if l.starts_with('.') {
            wire.push('.');
        }
        wire.push_str(l);
        wire.push_str("\r\n");
    }
    wire.push_str(".\r\n");
    let mut stored = lines.join("\n").into_bytes();
    stored.push(b'\n');
    Mail {
        tag: tag.into(),
        wire,
        stored,
    }
}

/// Splits a stored copy into its trace header block and the rest, checking the block is
/// lmtpd's (`Return-Path`, `Delivered-To`, `Received` with its folded `for` line) for
/// `rcpt`.
fn split_trace<'a>(copy: &'a [u8], rcpt: &str) -> (&'a [u8], &'a [u8]) {
    let mut end = 0;
    for (i, line) in copy.split_inclusive(|&b| b == b'\n').enumerate() {
        let trace_line = match i {
            0 => line.starts_with(b"Return-Path: "),
            1 => line.starts_with(b"Delivered-To: "),
            2 => line.starts_with(b"Received: "),
            _ => line.starts_with(b"\t") || line.starts_with(b" "),
        };
        if !trace_line {
            break;
        }
        end += line.len();
    }
    let (trace, rest) = copy.split_at(end);
    let text = String::from_utf8_lossy(trace);
    let want = format!("Return-Path: <{SENDER}>\nDelivered-To: {rcpt}\nReceived: from client.test");
    assert!(text.starts_with(&want), "trace headers: {text:?}");
    assert!(text.contains(&format!("\tfor <{rcpt}>; ")), "{text:?}");
    (trace, rest)
}

/// The tag of a stored message: its `Subject:` value.
fn tag_of(stored: &[u8]) -> String {
    let text = String::from_utf8_lossy(stored);
    text.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or_else(|| panic!("no Subject in {text:?}"))
        .to_string()
}

/// Reverses mboxrd quoting: one `>` less on every line matching `^>+From `.
fn unquote_mboxrd(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for line in raw.split_inclusive(|&b| b == b'\n') {
        let gts = line.iter().take_while(|&&b| b == b'>').count();
        if gts > 0 && line[gts..].starts_with(b"From ") {
            out.extend_from_slice(&line[1..]);
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

/// True for a 24-character asctime() date such as `Sat Jan  3 01:05:34 1996`.
fn is_asctime(s: &str) -> bool {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let b = s.as_bytes();
    let digit = |i: usize| b[i].is_ascii_digit();
    b.len() == 24
        && DAYS.contains(&&s[0..3])
        && b[3] == b' '
        && MONTHS.contains(&&s[4..7])
        && b[7] == b' '
        && (b[8] == b' ' || (b'1'..=b'3').contains(&b[8]))
        && digit(9)
        && b[10] == b' '
        && digit(11)
        && digit(12)
        && b[13] == b':'
        && digit(14)
        && digit(15)
        && b[16] == b':'
        && digit(17)
        && digit(18)
        && b[19] == b' '
        && (20..24).all(digit)
}

// ---------------------------------------------------------------------------------------
// Outside tools: python3 (mailbox, sqlite3) and `lmtpd export`.

/// Answers each SQL query (one scalar each) on the database with Python's sqlite3 module, or
/// `None` when python3 is missing.
fn sql(db: &Path, queries: &[&str]) -> Option<Vec<String>> {
    if !have_python() {
        return None;
    }
    const SCRIPT: &str = "\
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
for q in sys.argv[2:]:
    print(c.execute(q).fetchone()[0])
";
    let db = db.to_str().expect("UTF-8 path");
    let mut args = vec![db];
    args.extend_from_slice(queries);
    let out = python(SCRIPT, &args);
    let v: Vec<String> = out.lines().map(str::to_string).collect();
    assert_eq!(v.len(), queries.len(), "{out}");
    Some(v)
}

/// Reads an mbox file with Python's `mailbox.mbox`: each message's From_ line (without
/// `From `) and its bytes after that line, as Python splits them.
fn python_mbox(path: &Path) -> Vec<(String, Vec<u8>)> {
    const SCRIPT: &str = "\
import mailbox, sys
mb = mailbox.mbox(sys.argv[1], create=False)
for key in mb.iterkeys():
    print(mb.get_message(key).get_from().encode().hex(), mb.get_bytes(key).hex())
";
    python(SCRIPT, &[path.to_str().expect("UTF-8 path")])
        .lines()
        .map(|l| {
            let (from, raw) = l.split_once(' ').expect("two fields");
            (
                String::from_utf8(hex(from)).expect("From_ line is UTF-8"),
                hex(raw),
            )
        })
        .collect()
}

/// `lmtpd export --db DB --mailbox ADDR --eml-dir OUT`: the exported files by UID.
fn export_eml(db: &Path, mailbox: &str, out: &Path) -> BTreeMap<u64, Vec<u8>> {
    let res = Command::new(BIN)
        .arg("export")
        .arg("--db")
        .arg(db)
        .args(["--mailbox", mailbox, "--eml-dir"])
        .arg(out)
        .output()
        .expect("run lmtpd export");
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success(),
        "export {mailbox}: {stdout}{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let files: BTreeMap<u64, Vec<u8>> = list(out)
        .into_iter()
        .map(|p| {
            let uid = p
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("unexpected export file {}", p.display()));
            (uid, fs::read(&p).expect("read exported file"))
        })
        .collect();
    assert!(
        stdout.contains(&format!("{} message(s)", files.len())),
        "{stdout}"
    );
    files
}

fn code(reply: &str) -> &str {
    reply.get(..9).unwrap_or(reply)
}

// ---------------------------------------------------------------------------------------
// mbox

#[test]
fn mbox_eight_connections_append_800_intact_messages_python_reads_back() {
    if !have_python() {
        eprintln!("SKIP mbox_eight_connections_append_800_intact_messages_python_reads_back: no python3 with mailbox");
        return;
    }
    const CONNS: usize = 8;
    const PER_CONN: usize = 100;
    let mut srv = TestServer::start("box@example.org store=mbox\n", |_, _| {});
    let (tcp, sock) = srv.endpoints();
    let started = Instant::now();
    let clients: Vec<_> = (0..CONNS)
        .map(|i| {
            let sock = sock.clone();
            thread::spawn(move || {
                let mut c = Client::either(i, tcp, &sock);
                let mut sent = Vec::with_capacity(PER_CONN);
                for m in 0..PER_CONN {
                    let msg = mail(&format!("c{i}-m{m}"), i + m);
                    let (rcpt, after) = c.transaction(&["box@example.org"], &msg);
                    assert!(rcpt[0].starts_with("250 2.1.5"), "{rcpt:?}");
                    assert!(
                        after[0].starts_with("250 2.0.0 <box@example.org>"),
                        "{after:?}"
                    );
                    sent.push(msg);
                }
                c.expect("QUIT", "221");
                sent
            })
        })
        .collect();
    let mut sent: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for h in clients {
        for m in h.join().expect("client thread") {
            sent.insert(m.tag, m.stored);
        }
    }
    eprintln!(
        "mbox: {} deliveries in {:?}",
        CONNS * PER_CONN,
        started.elapsed()
    );
    srv.stop();
    assert_eq!(sent.len(), CONNS * PER_CONN);

    let path = srv.mbox("box");
    let raw = fs::read(&path).expect("read mbox");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a created mbox is private");
    }
    assert!(!raw.contains(&b'\r'), "LF line endings only");
    assert!(raw.starts_with(b"From "), "starts with a separator");
    assert!(
        raw.ends_with(b"\n\n"),
        "one empty line after the last message"
    );
    assert!(!srv.path("mbox/box.lock").exists(), "dotlock removed");
    // Every separator line is `From <sender> <asctime>` and follows an empty line; the body
    // lines that start with `From ` were all quoted, so separators are exactly the messages.
    let lines: Vec<&[u8]> = raw.split(|&b| b == b'\n').collect();
    let mut separators = 0;
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with(b"From ") {
            continue;
        }
        separators += 1;
        let text = std::str::from_utf8(line).expect("separator is UTF-8");
        let date = text
            .strip_prefix(&format!("From {SENDER} "))
            .unwrap_or_else(|| panic!("separator with another sender: {text:?}"));
        assert!(is_asctime(date), "separator date not asctime: {text:?}");
        assert!(
            i == 0 || lines[i - 1].is_empty(),
            "no empty line before {i}"
        );
    }
    assert_eq!(separators, CONNS * PER_CONN);
    // The quoting itself: one more `>` on each `^>*From ` body line, nothing else touched.
    let quoted = b"\n>From me\n>>From me\n>>>From me too\nFrom\n.dot\n..dot\n.\n From indented\n";
    let quoted_count = raw.windows(quoted.len()).filter(|w| w == quoted).count();
    assert_eq!(quoted_count, CONNS * PER_CONN, "quoted body lines");

    // Python's reader finds the same 800 messages, each exactly what was sent.
    let parsed = python_mbox(&path);
    assert_eq!(
        parsed.len(),
        CONNS * PER_CONN,
        "messages seen by mailbox.mbox"
    );
    let mut seen = BTreeSet::new();
    for (from, bytes) in &parsed {
        assert!(from.starts_with(&format!("{SENDER} ")), "{from:?}");
        assert!(is_asctime(&from[SENDER.len() + 1..]), "{from:?}");
        let copy = unquote_mboxrd(bytes);
        let (_, rest) = split_trace(&copy, "box@example.org");
        let tag = tag_of(rest);
        let want = sent
            .get(&tag)
            .unwrap_or_else(|| panic!("unknown message {tag}"));
        assert_eq!(
            String::from_utf8_lossy(rest),
            String::from_utf8_lossy(want),
            "message {tag} differs from what was sent"
        );
        assert!(seen.insert(tag.clone()), "message {tag} stored twice");
    }
    assert_eq!(seen.len(), CONNS * PER_CONN);
}

#[test]
fn mbox_foreign_dotlock_gives_450_for_that_recipient_only_then_delivers() {
    let srv = TestServer::start("mb@example.org store=mbox\nmd@example.org\n", |c, _| {
        c.mbox.lock_timeout = Duration::from_secs(1);
    });
    let mbox = srv.mbox("mb");
    fs::create_dir_all(mbox.parent().expect("parent")).expect("mkdir");
    let before = "From old@example.net Thu Jan  1 00:00:00 2026\nSubject: old\n\nold\n\n";
    fs::write(&mbox, before).expect("seed mbox");
    let lock = srv.path("mbox/mb.lock");
    fs::write(&lock, b"12345\n").expect("foreign dotlock");

    let mut c = srv.unix();
    let msg = mail("locked", 1);
    let (at_rcpt, after) = c.transaction(&["mb@example.org", "md@example.org"], &msg);
    assert!(
        at_rcpt.iter().all(|r| r.starts_with("250 2.1.5")),
        "{at_rcpt:?}"
    );
    assert_eq!(after.len(), 2);
    assert!(after[0].starts_with("450 4.2.0"), "{after:?}");
    assert!(
        after[1].starts_with("250 2.0.0 <md@example.org>"),
        "{after:?}"
    );
    assert_eq!(
        fs::read_to_string(&mbox).expect("read mbox"),
        before,
        "mbox untouched"
    );
    assert!(lock.exists(), "a foreign, fresh dotlock is left alone");
    assert_eq!(srv.maildir_new("md").len(), 1);

    fs::remove_file(&lock).expect("remove dotlock");
    let (_, after) = c.transaction(&["mb@example.org"], &msg);
    assert!(
        after[0].starts_with("250 2.0.0 <mb@example.org>"),
        "{after:?}"
    );
    c.expect("QUIT", "221");
    let text = fs::read_to_string(&mbox).expect("read mbox");
    let added = text.strip_prefix(before).expect("old content kept");
    assert!(added.starts_with(&format!("From {SENDER} ")), "{added}");
    assert!(added.contains("\nSubject: locked\n"), "{added}");
    assert!(!lock.exists(), "our own dotlock is removed");
}

#[test]
fn mbox_foreign_fcntl_lock_gives_450_and_leaves_the_mbox_untouched() {
    if !have_python() {
        eprintln!(
            "SKIP mbox_foreign_fcntl_lock_gives_450_and_leaves_the_mbox_untouched: no python3"
        );
        return;
    }
    let srv = TestServer::start("mb@example.org store=mbox\nmd@example.org\n", |c, _| {
        c.mbox.lock_timeout = Duration::from_secs(1);
        c.mbox.locks = vec![LockKind::Fcntl, LockKind::Dotlock];
    });
    let mbox = srv.mbox("mb");
    fs::create_dir_all(mbox.parent().expect("parent")).expect("mkdir");
    let before = "From old@example.net Thu Jan  1 00:00:00 2026\nSubject: old\n\nold\n\n";
    fs::write(&mbox, before).expect("seed mbox");
    // Another process holds a POSIX write lock on the whole file until its stdin closes.
    let (mut holder, line) = python_holder(
        "import fcntl, sys\n\
         f = open(sys.argv[1], 'r+')\n\
         fcntl.lockf(f, fcntl.LOCK_EX)\n\
         print('locked', flush=True)\n\
         sys.stdin.read()\n",
        &mbox,
    );
    assert_eq!(line, "locked\n");

    let mut c = srv.tcp();
    let msg = mail("fcntl", 2);
    let (_, after) = c.transaction(&["md@example.org", "mb@example.org"], &msg);
    assert!(
        after[0].starts_with("250 2.0.0 <md@example.org>"),
        "{after:?}"
    );
    assert!(after[1].starts_with("450 4.2.0"), "{after:?}");
    assert_eq!(fs::read_to_string(&mbox).expect("read mbox"), before);
    assert!(
        !srv.path("mbox/mb.lock").exists(),
        "our dotlock not left behind"
    );

    drop(holder.stdin.take());
    assert!(holder.wait().expect("wait for holder").success());
    let (_, after) = c.transaction(&["mb@example.org"], &msg);
    assert!(
        after[0].starts_with("250 2.0.0 <mb@example.org>"),
        "{after:?}"
    );
    c.expect("QUIT", "221");
    let text = fs::read_to_string(&mbox).expect("read mbox");
    assert!(text.starts_with(before) && text.contains("\nSubject: fcntl\n"));
}

// ---------------------------------------------------------------------------------------
// Several stores in one transaction

#[test]
fn one_transaction_over_maildir_mbox_and_sqlite_replies_in_rcpt_order() {
    let users = "md@example.org\nmb@example.org store=mbox\nsq@example.org store=sqlite\n\
                 sq2@example.org store=sqlite\n";
    let mut srv = TestServer::start(users, |_, _| {});
    let mut c = srv.tcp();
    let msg = mail("mixed-stores", 3);
    let order = [
        "sq@example.org",
        "mb@example.org",
        "nobody@example.org",
        "md@example.org",
        "sq2@example.org",
    ];
    let (at_rcpt, after) = c.transaction(&order, &msg);
    let codes: Vec<&str> = at_rcpt.iter().map(|r| code(r)).collect();
    assert_eq!(
        codes,
        [
            "250 2.1.5",
            "250 2.1.5",
            "550 5.1.1",
            "250 2.1.5",
            "250 2.1.5"
        ],
        "{at_rcpt:?}"
    );
    assert_eq!(after.len(), 4, "one reply per accepted RCPT: {after:?}");
    for (reply, rcpt) in after.iter().zip([
        "sq@example.org",
        "mb@example.org",
        "md@example.org",
        "sq2@example.org",
    ]) {
        assert!(
            reply.starts_with(&format!("250 2.0.0 <{rcpt}> ")),
            "replies out of RCPT order: {after:?}"
        );
    }
    c.expect("QUIT", "221");

    // Maildir
    let files = srv.maildir_new("md");
    assert_eq!(files.len(), 1);
    let copy = fs::read(&files[0]).expect("read maildir copy");
    assert_eq!(split_trace(&copy, "md@example.org").1, &msg.stored[..]);
    // mbox
    let raw = fs::read(srv.mbox("mb")).expect("read mbox");
    let text = String::from_utf8_lossy(&raw);
    assert_eq!(text.matches("\nFrom ").count() + 1, 1, "{text}");
    let (sep, rest) = text.split_once('\n').expect("separator line");
    assert!(
        is_asctime(
            sep.strip_prefix(&format!("From {SENDER} "))
                .expect("separator")
        ),
        "{sep}"
    );
    let copy = unquote_mboxrd(
        rest.strip_suffix('\n')
            .expect("final empty line")
            .as_bytes(),
    );
    assert_eq!(split_trace(&copy, "mb@example.org").1, &msg.stored[..]);
    // Nobody else's store got a copy.
    assert!(srv.maildir_new("mb").is_empty() && srv.maildir_new("sq").is_empty());
    assert!(!srv.mbox("md").exists() && !srv.mbox("sq").exists());

    // SQLite, exported while the server is still running (a WAL reader).
    for rcpt in ["sq@example.org", "sq2@example.org"] {
        let out = srv.path(&format!("export-{rcpt}"));
        let files = export_eml(&srv.db(), rcpt, &out);
        assert_eq!(files.len(), 1, "{rcpt}");
        let copy = files.get(&1).expect("uid 1");
        assert_eq!(split_trace(copy, rcpt).1, &msg.stored[..]);
    }
    // The Maildir user has no mailbox in the database at all.
    let res = Command::new(BIN)
        .arg("export")
        .arg("--db")
        .arg(srv.db())
        .args(["--mailbox", "md@example.org", "--eml-dir"])
        .arg(srv.path("export-md"))
        .output()
        .expect("run lmtpd export");
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        !res.status.success() && err.contains("no mailbox md@example.org"),
        "{err}"
    );
    srv.stop();
    // mbox and maildir recipients sit between the two SQLite ones, so each SQLite
    // recipient was its own store call with its own body row.
    if let Some(v) = sql(
        &srv.db(),
        &[
            "SELECT count(*) FROM messages",
            "SELECT count(*) FROM deliveries",
        ],
    ) {
        assert_eq!(v, ["2", "2"]);
    }
}

// ---------------------------------------------------------------------------------------
// SQLite

fn sqlite_server(users: &str) -> TestServer {
    TestServer::start(users, |c, _| {
        c.delivery.store = StoreKind::Sqlite;
    })
}

#[test]
fn sqlite_valid_unknown_and_over_quota_in_one_transaction() {
    let mut srv = sqlite_server("alice@example.org\nsmall@example.org quota=1K\n");
    let mut c = srv.unix();
    // 2000 bytes of body: over small@'s 1 KiB quota only once the copy is known.
    let mut msg = mail("quota", 0);
    let big = format!("{}\r\n", "q".repeat(98)).repeat(20);
    msg.wire = msg
        .wire
        .replacen("marker quota end", &format!("{big}marker quota end"), 1);
    let stored_big = big.replace("\r\n", "\n");
    let stored = String::from_utf8(msg.stored.clone())
        .expect("UTF-8")
        .replacen(
            "marker quota end",
            &format!("{stored_big}marker quota end"),
            1,
        );
    msg.stored = stored.into_bytes();
    // The over-quota recipient comes first: its rolled-back transaction must not take the
    // shared body with it, nor leave one behind.
    let (at_rcpt, after) = c.transaction(
        &[
            "small@example.org",
            "nobody@example.org",
            "alice@example.org",
        ],
        &msg,
    );
    let codes: Vec<&str> = at_rcpt.iter().map(|r| code(r)).collect();
    assert_eq!(codes, ["250 2.1.5", "550 5.1.1", "250 2.1.5"]);
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after[0].starts_with("452 4.2.2"), "{after:?}");
    assert!(
        after[1].starts_with("250 2.0.0 <alice@example.org>"),
        "{after:?}"
    );
    // A small message still fits small@.
    let (_, after) = c.transaction(&["small@example.org"], &mail("fits", 0));
    assert!(after[0].starts_with("250 2.0.0"), "{after:?}");
    c.expect("QUIT", "221");
    srv.stop();

    let alice = export_eml(&srv.db(), "alice@example.org", &srv.path("x-alice"));
    assert_eq!(alice.len(), 1);
    let copy = alice.get(&1).expect("alice uid 1");
    assert_eq!(
        String::from_utf8_lossy(split_trace(copy, "alice@example.org").1),
        String::from_utf8_lossy(&msg.stored)
    );
    let small = export_eml(&srv.db(), "small@example.org", &srv.path("x-small"));
    assert_eq!(small.len(), 1, "only the message that fit");
    let copy = small.get(&1).expect("the refused copy used no uid");
    assert_eq!(tag_of(split_trace(copy, "small@example.org").1), "fits");

    match sql(
        &srv.db(),
        &[
            "PRAGMA integrity_check",
            "SELECT count(*) FROM deliveries d JOIN messages m ON m.id = d.message_id \
             JOIN mailboxes b ON b.id = d.mailbox_id \
             WHERE b.address = 'small@example.org' AND m.subject = 'quota'",
            "SELECT count(*) FROM messages WHERE subject = 'quota'",
            "SELECT count(*) FROM deliveries",
            "SELECT used_messages || ' ' || (used_bytes = \
             (SELECT sum(size) FROM deliveries WHERE mailbox_id = mailboxes.id)) \
             FROM mailboxes WHERE address = 'small@example.org'",
            "SELECT count(*) FROM messages WHERE id NOT IN (SELECT message_id FROM deliveries)",
        ],
    ) {
        Some(v) => assert_eq!(v, ["ok", "0", "1", "2", "1 1", "0"]),
        None => eprintln!("SKIP SQL row checks: no python3 with sqlite3"),
    }
}

/// `sqlite_body_files` (default 256 KiB): a 300 KiB message for two recipients is one body
/// file beside the database, named by one `messages` row with an empty BLOB, and
/// `lmtpd export` gives back each copy byte for byte; a 4 KiB message stays in the database.
#[test]
fn sqlite_a_large_body_is_one_file_beside_the_database_and_exports_exactly() {
    let mut srv = sqlite_server("alice@example.org\nbob@example.org\n");
    let mut c = srv.unix();
    let mut msg = mail("large", 0);
    let filler = format!("{}\r\n", "L".repeat(98)).repeat(3000);
    msg.wire = msg
        .wire
        .replacen("marker large end", &format!("{filler}marker large end"), 1);
    let stored = String::from_utf8(msg.stored.clone())
        .expect("UTF-8")
        .replacen(
            "marker large end",
            &format!("{}marker large end", filler.replace("\r\n", "\n")),
            1,
        );
    msg.stored = stored.into_bytes();
    assert!(msg.stored.len() > 256 << 10);
    let (_, after) = c.transaction(&["alice@example.org", "bob@example.org"], &msg);
    assert!(
        after.iter().all(|r| r.starts_with("250 2.0.0")),
        "{after:?}"
    );
    let (_, after) = c.transaction(&["alice@example.org"], &mail("small", 0));
    assert!(after[0].starts_with("250 2.0.0"), "{after:?}");
    c.expect("QUIT", "221");
    srv.stop();

    let mut bodies = srv.db().into_os_string();
    bodies.push(".bodies");
    let files: Vec<_> = list(Path::new(&bodies))
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(
        files.len(),
        1,
        "one body file for both recipients: {files:?}"
    );
    assert_eq!(fs::read(&files[0]).expect("body file"), msg.stored);
    for rcpt in ["alice@example.org", "bob@example.org"] {
        let out = export_eml(&srv.db(), rcpt, &srv.path(&format!("x-{rcpt}")));
        let copy = out.get(&1).expect("uid 1");
        assert!(
            split_trace(copy, rcpt).1 == msg.stored.as_slice(),
            "{rcpt}'s copy differs"
        );
    }
    if let Some(v) = sql(
        &srv.db(),
        &[
            "SELECT count(*) FROM messages WHERE body_file IS NOT NULL AND length(body) = 0",
            "SELECT count(*) FROM messages WHERE body_file IS NULL AND subject = 'small'",
        ],
    ) {
        assert_eq!(v, ["1", "1"]);
    }
}

#[test]
fn sqlite_eight_connections_200_messages_3_recipients_exact_rows_and_bodies() {
    const CONNS: usize = 8;
    const PER_CONN: usize = 200;
    const RCPTS: [&str; 3] = ["r1@example.org", "r2@example.org", "r3@example.org"];
    let mut srv = sqlite_server("r1@example.org\nr2@example.org\nr3@example.org\n");
    let (tcp, sock) = srv.endpoints();
    let started = Instant::now();
    let clients: Vec<_> = (0..CONNS)
        .map(|i| {
            let sock = sock.clone();
            thread::spawn(move || {
                let mut c = Client::either(i, tcp, &sock);
                let mut sent = Vec::with_capacity(PER_CONN);
                for m in 0..PER_CONN {
                    let msg = mail(&format!("c{i}-m{m}"), i * 3 + m);
                    let (at_rcpt, after) = c.transaction(&RCPTS, &msg);
                    assert!(at_rcpt.iter().all(|r| r.starts_with("250 2.1.5")));
                    assert_eq!(after.len(), RCPTS.len());
                    for (reply, rcpt) in after.iter().zip(RCPTS) {
                        assert!(
                            reply.starts_with(&format!("250 2.0.0 <{rcpt}> ")),
                            "{after:?}"
                        );
                    }
                    sent.push(msg);
                }
                c.expect("QUIT", "221");
                sent
            })
        })
        .collect();
    let mut sent: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for h in clients {
        for m in h.join().expect("client thread") {
            sent.insert(m.tag, m.stored);
        }
    }
    let total = CONNS * PER_CONN;
    eprintln!(
        "sqlite: {} deliveries ({total} transactions) in {:?}",
        total * RCPTS.len(),
        started.elapsed()
    );
    srv.stop();
    assert_eq!(sent.len(), total);

    for rcpt in RCPTS {
        let files = export_eml(&srv.db(), rcpt, &srv.path(&format!("x-{rcpt}")));
        assert_eq!(files.len(), total, "{rcpt}");
        let uids: Vec<u64> = files.keys().copied().collect();
        assert_eq!(uids, (1..=total as u64).collect::<Vec<_>>(), "UIDs 1..=N");
        let mut seen = BTreeSet::new();
        for copy in files.values() {
            let (_, rest) = split_trace(copy, rcpt);
            let tag = tag_of(rest);
            let want = sent
                .get(&tag)
                .unwrap_or_else(|| panic!("{rcpt}: unknown message {tag}"));
            assert_eq!(rest, &want[..], "{rcpt}: message {tag} differs");
            assert!(seen.insert(tag), "{rcpt}: a message exported twice");
        }
    }

    let n = total.to_string();
    let d = (total * RCPTS.len()).to_string();
    match sql(
        &srv.db(),
        &[
            "PRAGMA integrity_check",
            "SELECT count(*) FROM mailboxes",
            "SELECT count(*) FROM deliveries",
            // One body row per transaction: all three recipients went to one
            // store call.
            "SELECT count(*) FROM messages",
            "SELECT count(*) FROM (SELECT message_id FROM deliveries GROUP BY message_id \
             HAVING count(*) = 3 AND count(DISTINCT mailbox_id) = 3)",
            "SELECT min(used_messages) || ' ' || max(used_messages) FROM mailboxes",
            "SELECT count(*) FROM mailboxes b WHERE used_bytes = \
             (SELECT sum(size) FROM deliveries d WHERE d.mailbox_id = b.id)",
        ],
    ) {
        Some(v) => assert_eq!(
            v,
            ["ok", "3", &d, &n, &n, &format!("{n} {n}"), "3"],
            "row counts"
        ),
        None => eprintln!("SKIP SQL row counts: no python3 with sqlite3"),
    }
}

// ---------------------------------------------------------------------------------------
// `lmtpd -t` and the schema

fn run_check(conf: &Path) -> String {
    let out = Command::new(BIN)
        .arg("-c")
        .arg(conf)
        .arg("-t")
        .output()
        .expect("run lmtpd -t");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "lmtpd -t failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn check_mode_reports_the_sqlite_schema_state_before_and_after_a_start() {
    let dir = Scratch::with("alice@example.org\n", |d| {
        format!(
            "listen = unix:{d}/lmtp.sock\nusers = {d}/users\nstore = sqlite\n\
             sqlite = {d}/db/mail.db\nspool_dir = {d}\nhostname = stores.test\n\
             retry_journal = {d}/retry.db\n\
             allow_root = yes\n"
        )
    })
    .dir;
    let d = dir.path().display().to_string();
    fs::create_dir(dir.path().join("db")).expect("db dir");
    let conf = dir.path().join("lmtpd.conf");
    let db = dir.path().join("db/mail.db");

    let out = run_check(&conf);
    assert!(
        out.contains(&format!(
            "sqlite: {d}/db/mail.db will be created at start-up"
        )),
        "{out}"
    );
    assert!(!db.exists(), "-t must not create the database");

    let child = spawn(&conf, &[]);
    wait_for(&dir.path().join("lmtp.sock"));
    stop_child(child);
    assert!(db.is_file(), "created at start-up");

    let out = run_check(&conf);
    assert!(
        out.contains(&format!(
            "sqlite: {d}/db/mail.db: schema version 2 of 2 (up to date)"
        )),
        "{out}"
    );
}
