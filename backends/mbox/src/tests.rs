//! Unit tests of the mbox backend, one per rule (standards §7 and §10.11).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lmtpd_store::testing::{Modal, Under};
use lmtpd_store::{
    testing, Body, Delivery, DeliveryError, DetailMailbox, Enhanced, Envelope, Flag, Flags,
    MailStore, MemoryBody, Message, Quota, Recipient, Target,
};
use tempfile::TempDir;

use crate::{default_locks, lock, queue, quota, LockKind, MboxConfig, MboxStore, DOTLOCK_STALE};
use lmtpd_store::date;
use lmtpd_store::mboxrd::{self, Filter};

const TRACE: &[u8] = b"Return-Path: <s@x.org>\nDelivered-To: alice@example.org\n";
const BODY: &[u8] = b"Subject: hi\n\nhello\n";

const BUSY: Option<(u16, Enhanced)> = Some((450, Enhanced(4, 2, 0)));
const UNUSABLE: Option<(u16, Enhanced)> = Some((550, Enhanced(5, 2, 0)));
const LOCAL_ERROR: Option<(u16, Enhanced)> = Some((451, Enhanced(4, 3, 0)));
const OVER_QUOTA: Option<(u16, Enhanced)> = Some((452, Enhanced(4, 2, 2)));
const STORAGE_FULL: Option<(u16, Enhanced)> = Some((452, Enhanced(4, 3, 1)));

fn config(template: String) -> MboxConfig {
    MboxConfig {
        template,
        locks: default_locks(),
        lock_timeout: Duration::from_secs(10),
        quota_permfail: false,
    }
}

/// A store whose inboxes are `<dir>/<domain>/<local>` (a shared spool per domain).
fn store(dir: &Path) -> MboxStore {
    MboxStore::new(config(format!("{}/%d/%n", dir.display())))
}

fn store_with(dir: &Path, locks: &[LockKind], timeout: Duration) -> MboxStore {
    MboxStore::new(MboxConfig {
        locks: locks.to_vec(),
        lock_timeout: timeout,
        ..config(format!("{}/%d/%n", dir.display()))
    })
}

fn rcpt(local: &str) -> Recipient {
    Recipient::new(local, "example.org")
}

impl Under for MboxStore {
    fn parts(&self) -> (&dyn MailStore, DetailMailbox) {
        (self, DetailMailbox::Yes)
    }
}

fn with_detail(local: &str, detail: &str) -> Recipient {
    Recipient {
        detail: Some(detail.into()),
        ..rcpt(local)
    }
}

fn with_quota(local: &str, bytes: Option<u64>, messages: Option<u64>) -> Recipient {
    Recipient {
        quota: Quota {
            bytes,
            messages,
            grace: 0,
        },
        ..rcpt(local)
    }
}

fn env_from(sender: Option<&str>) -> Envelope {
    Envelope {
        sender: sender.map(str::to_string),
        ..Envelope::default()
    }
}

/// Delivers through the real path (`MailStore::deliver` and a reporter), every copy starting
/// with [`TRACE`], each recipient's `+detail` turned into its target as the server does.
fn deliver_env(
    st: &impl Under,
    env: &Envelope,
    body: &dyn Body,
    rcpts: &[Recipient],
) -> Vec<Result<(), DeliveryError>> {
    testing::deliver_recipients(st, env, body, rcpts, |_| TRACE.to_vec())
}

fn deliver_body(
    st: &impl Under,
    body: &dyn Body,
    rcpts: &[Recipient],
) -> Vec<Result<(), DeliveryError>> {
    deliver_env(st, &env_from(Some("s@x.org")), body, rcpts)
}

fn deliver(st: &impl Under, rcpts: &[Recipient]) -> Vec<Result<(), DeliveryError>> {
    deliver_body(st, &MemoryBody(BODY.to_vec()), rcpts)
}

fn mbox(dir: &TempDir, local: &str) -> PathBuf {
    dir.path().join("example.org").join(local)
}

fn code(r: &Result<(), DeliveryError>) -> Option<(u16, Enhanced)> {
    r.as_ref().err().map(|e| (e.code, e.enhanced))
}

/// One message of an mbox file: its separator line (without LF) and its content (up to,
/// not including, the empty line that ends it).
#[derive(Debug)]
struct Parsed {
    separator: String,
    content: Vec<u8>,
}

/// Splits an mbox written by us: separators are `From ` lines at the start or after an
/// empty line; every message ends with an empty line.
fn parse(data: &[u8]) -> Vec<Parsed> {
    assert!(data.is_empty() || data.starts_with(b"From "), "{data:?}");
    let mut starts = vec![0usize];
    let mut i = 0;
    while let Some(p) = find(&data[i..], b"\n\nFrom ") {
        starts.push(i + p + 2);
        i += p + 2;
    }
    if data.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(data.len());
        let chunk = &data[s..end];
        assert!(
            chunk.ends_with(b"\n\n"),
            "message not ended by an empty line"
        );
        let nl = chunk.iter().position(|&b| b == b'\n').unwrap();
        out.push(Parsed {
            separator: String::from_utf8(chunk[..nl].to_vec()).unwrap(),
            content: chunk[nl + 1..chunk.len() - 1].to_vec(),
        });
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Undoes mboxrd quoting: one `>` less on every `^>+From ` line.
fn unquote(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for line in data.split_inclusive(|&b| b == b'\n') {
        let gts = line.iter().take_while(|&&b| b == b'>').count();
        if gts > 0 && line[gts..].starts_with(b"From ") {
            out.extend_from_slice(&line[1..]);
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

/// Runs the filter over `input` fed in chunks of `sizes` (cycled) and returns the output.
fn filter_chunked(input: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut f = Filter::new(Vec::new());
    let mut i = 0;
    let mut k = 0;
    while i < input.len() {
        let n = sizes[k % sizes.len()].min(input.len() - i);
        f.feed(&input[i..i + n]).unwrap();
        i += n;
        k += 1;
    }
    f.finish().unwrap().0
}

/// A body whose reader returns 1 to 7 bytes per read.
struct TrickleBody(Vec<u8>);

struct Trickle<'a> {
    data: &'a [u8],
    pos: usize,
    n: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.n = self.n % 7 + 1;
        let k = self.n.min(buf.len()).min(self.data.len() - self.pos);
        buf[..k].copy_from_slice(&self.data[self.pos..self.pos + k]);
        self.pos += k;
        Ok(k)
    }
}

impl Body for TrickleBody {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn open(&self) -> io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(Trickle {
            data: &self.0,
            pos: 0,
            n: 0,
        }))
    }
    fn lines(&self) -> u64 {
        self.0.iter().filter(|&&b| b == b'\n').count() as u64
    }
}

/// A body whose reader fails after `fail_after` bytes.
struct FailingBody {
    data: Vec<u8>,
    fail_after: usize,
}

struct Failing<'a> {
    body: &'a FailingBody,
    pos: usize,
}

impl Read for Failing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.body.fail_after {
            return Err(io::Error::other("spool read failed (injected)"));
        }
        let k = buf.len().min(self.body.fail_after - self.pos);
        buf[..k].copy_from_slice(&self.body.data[self.pos..self.pos + k]);
        self.pos += k;
        Ok(k)
    }
}

impl Body for FailingBody {
    fn len(&self) -> u64 {
        self.data.len() as u64
    }
    fn open(&self) -> io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(Failing { body: self, pos: 0 }))
    }
    fn lines(&self) -> u64 {
        0
    }
}

/// A body whose reader, after its first read, tells the test it is inside the delivery
/// and waits for permission to continue.
struct PausingBody {
    data: Vec<u8>,
    inside: Mutex<Option<mpsc::Sender<()>>>,
    go: Mutex<Option<mpsc::Receiver<()>>>,
}

struct Pausing<'a> {
    body: &'a PausingBody,
    pos: usize,
}

impl Read for Pausing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos > 0 {
            if let Some(tx) = self.body.inside.lock().unwrap().take() {
                tx.send(()).unwrap();
                let rx = self.body.go.lock().unwrap().take().unwrap();
                rx.recv().unwrap();
            }
        }
        let k = buf.len().min(self.body.data.len() - self.pos).min(4);
        buf[..k].copy_from_slice(&self.body.data[self.pos..self.pos + k]);
        self.pos += k;
        Ok(k)
    }
}

impl Body for PausingBody {
    fn len(&self) -> u64 {
        self.data.len() as u64
    }
    fn open(&self) -> io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(Pausing { body: self, pos: 0 }))
    }
    fn lines(&self) -> u64 {
        0
    }
}

/// True when python3 is there; without it the test fails unless it may skip
/// ([`testing::require`]).
fn python3() -> bool {
    testing::have_python3()
}

/// A child process holding a lock on `path` (python3 `fcntl.lockf` or `fcntl.flock`),
/// started and confirmed; killed on drop.
struct LockHolder(Child);

impl LockHolder {
    fn start(path: &Path, call: &str) -> LockHolder {
        let script = format!(
            "import fcntl,sys,time\nf=open(sys.argv[1],'a')\n{call}(f, fcntl.LOCK_EX)\n\
             print('locked', flush=True)\ntime.sleep(30)\n"
        );
        let mut child = Command::new("python3")
            .args(["-c", &script])
            .arg(path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
        LockHolder(child)
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Asks a helper process whether an fcntl write lock on `path` is free right now.
fn fcntl_lock_is_free(path: &Path) -> bool {
    let out = Command::new("python3")
        .args([
            "-c",
            "import fcntl,sys\nf=open(sys.argv[1],'a')\ntry:\n    \
             fcntl.lockf(f, fcntl.LOCK_EX|fcntl.LOCK_NB)\n    print('free')\n\
             except OSError:\n    print('busy')\n",
        ])
        .arg(path)
        .output()
        .unwrap();
    match String::from_utf8_lossy(&out.stdout).trim() {
        "free" => true,
        "busy" => false,
        other => panic!("helper said {other:?}"),
    }
}

/// Checks the §10.11 item 61 pattern by hand:
/// `^From \S+ (Mon|...|Sun) (Jan|...|Dec) [ 123]\d \d\d:\d\d:\d\d \d{4}$`.
fn separator_matches(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("From ") else {
        return false;
    };
    let Some((sender, date)) = rest.split_once(' ') else {
        return false;
    };
    let d = date.as_bytes();
    let digit = |i: usize| d[i].is_ascii_digit();
    !sender.is_empty()
        && !sender.chars().any(char::is_whitespace)
        && d.len() == 24
        && ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].contains(&&date[0..3])
        && d[3] == b' '
        && [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ]
        .contains(&&date[4..7])
        && d[7] == b' '
        && b" 123".contains(&d[8])
        && digit(9)
        && d[10] == b' '
        && digit(11)
        && digit(12)
        && d[13] == b':'
        && digit(14)
        && digit(15)
        && d[16] == b':'
        && digit(17)
        && digit(18)
        && d[19] == b' '
        && (20..24).all(digit)
}

// ---------------------------------------------------------------------------------------
// Format.

#[test]
fn from_line_matches_standard_pattern_and_file_is_lf_only() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    let data = fs::read(mbox(&dir, "alice")).unwrap();
    let first = data.split(|&b| b == b'\n').next().unwrap();
    let first = std::str::from_utf8(first).unwrap();
    assert!(separator_matches(first), "{first:?}");
    assert!(first.starts_with("From s@x.org "), "{first}");
    assert!(!data.contains(&b'\r'));
    assert!(data.ends_with(b"\n\n") && !data.ends_with(b"\n\n\n"));
    let msgs = parse(&data);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].content, [TRACE, BODY].concat());
}

#[test]
fn asctime_is_utc_24_characters_with_padded_day() {
    let at = |secs: u64| date::asctime(UNIX_EPOCH + Duration::from_secs(secs));
    assert_eq!(at(0), "Thu Jan  1 00:00:00 1970");
    assert_eq!(at(951_782_400), "Tue Feb 29 00:00:00 2000");
    assert_eq!(at(1_000_000_000), "Sun Sep  9 01:46:40 2001");
    assert_eq!(at(1_796_012_511), "Mon Nov 30 04:21:51 2026");
    assert_eq!(
        date::asctime(UNIX_EPOCH - Duration::from_secs(1)),
        "Wed Dec 31 23:59:59 1969"
    );
    let now = mboxrd::from_line(Some("a@b"), SystemTime::now());
    assert!(separator_matches(now.trim_end_matches('\n')), "{now}");
}

#[test]
fn null_sender_is_mailer_daemon_and_spaces_become_dashes() {
    assert_eq!(mboxrd::separator_sender(None), "MAILER-DAEMON");
    assert_eq!(mboxrd::separator_sender(Some("")), "MAILER-DAEMON");
    assert_eq!(mboxrd::separator_sender(Some("a b\tc\nd@x")), "a-b-c-d@x");
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    let res = deliver_env(
        &st,
        &env_from(None),
        &MemoryBody(BODY.to_vec()),
        &[rcpt("alice")],
    );
    assert!(res[0].is_ok());
    let msgs = parse(&fs::read(mbox(&dir, "alice")).unwrap());
    assert!(
        msgs[0].separator.starts_with("From MAILER-DAEMON "),
        "{}",
        msgs[0].separator
    );
    assert!(separator_matches(&msgs[0].separator));
}

#[test]
fn mboxrd_quoting_adds_one_gt_and_unquoting_round_trips() {
    let body = b"Subject: q\n\nFrom me\n>From me\n>>From me\nFrom\nFromage\n>From\n \
                 From x\nx From y\n>>>>From deep\n"
        .to_vec();
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    assert!(deliver_body(&st, &MemoryBody(body.clone()), &[rcpt("alice")])[0].is_ok());
    let msgs = parse(&fs::read(mbox(&dir, "alice")).unwrap());
    assert_eq!(msgs.len(), 1);
    let stored = &msgs[0].content;
    let expected_body = b"Subject: q\n\n>From me\n>>From me\n>>>From me\nFrom\nFromage\n>From\n \
                          From x\nx From y\n>>>>>From deep\n";
    assert_eq!(stored, &[TRACE, &expected_body[..]].concat());
    assert_eq!(unquote(stored), [TRACE, &body[..]].concat());
}

#[test]
fn quoting_applies_after_bare_lf_lines_and_across_chunk_boundaries() {
    let input = b"Subject: x\nX-Status: A\n\nline\nFrom a\n\nFrom b\n>From c\n>>\n>>F\nFrom\
                  \nFro\nX\n>>>From d\nFrom "
        .to_vec();
    let whole = filter_chunked(&input, &[input.len()]);
    assert_eq!(
        whole,
        b"Subject: x\n\nline\n>From a\n\n>From b\n>>From c\n>>\n>>F\nFrom\nFro\nX\n\
          >>>>From d\n>From \n\n"
    );
    for sizes in [
        &[1usize][..],
        &[2],
        &[3],
        &[7],
        &[1, 2, 3, 4, 5, 6, 7],
        &[5, 1],
    ] {
        assert_eq!(filter_chunked(&input, sizes), whole, "chunks {sizes:?}");
    }
    // The same through a delivery whose spool reader returns 1-7 bytes per read.
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    let res = deliver_body(&st, &TrickleBody(input.clone()), &[rcpt("alice")]);
    assert!(res[0].is_ok(), "{res:?}");
    let msgs = parse(&fs::read(mbox(&dir, "alice")).unwrap());
    assert_eq!(msgs.len(), 1);
    let mut expected = TRACE.to_vec();
    expected.extend_from_slice(&whole[..whole.len() - 1]);
    assert_eq!(msgs[0].content, expected);
}

#[test]
fn reader_trusted_headers_are_removed_only_from_the_header_section() {
    let body = b"Status: RO\nX-Status: A\nSubject: keep\nX-UID: 5\nX-IMAPbase: 1 2\n\
                 X-IMAP: 1\nX-Keywords: a\n b\n\tc\nX-UIDL: keep\ncontent-length : 7\n\
                 CONTENT-LENGTH: 9\nX-Keywordsx: keep\nTo: keep\n  folded keep\n\n\
                 Status: body keeps this\nContent-Length: 3\n"
        .to_vec();
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    assert!(deliver_body(&st, &MemoryBody(body), &[rcpt("alice")])[0].is_ok());
    let msgs = parse(&fs::read(mbox(&dir, "alice")).unwrap());
    let expected = [
        TRACE,
        b"Subject: keep\nX-UIDL: keep\nX-Keywordsx: keep\nTo: keep\n  folded keep\n\n\
          Status: body keeps this\nContent-Length: 3\n",
    ]
    .concat();
    assert_eq!(
        String::from_utf8_lossy(&msgs[0].content),
        String::from_utf8_lossy(&expected)
    );
    // A body without any header section (it starts with the empty line) keeps everything.
    let out = filter_chunked(b"\nStatus: x\n", &[3]);
    assert_eq!(out, b"\nStatus: x\n\n");
}

#[test]
fn copy_ends_with_exactly_one_empty_line() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    for body in [
        &b"Subject: a\n\nno newline at end"[..],
        b"Subject: b\n\nends\n",
    ] {
        assert!(deliver_body(&st, &MemoryBody(body.to_vec()), &[rcpt("alice")])[0].is_ok());
    }
    let data = fs::read(mbox(&dir, "alice")).unwrap();
    assert!(data.ends_with(b"ends\n\n") && !data.ends_with(b"\n\n\n"));
    let msgs = parse(&data);
    assert_eq!(msgs.len(), 2);
    assert_eq!(
        msgs[0].content,
        [TRACE, b"Subject: a\n\nno newline at end\n"].concat()
    );
    assert_eq!(msgs[1].content, [TRACE, b"Subject: b\n\nends\n"].concat());
    assert!(find(&data, b"end\n\nFrom ").is_some());
}

#[test]
fn separator_follows_an_empty_line_even_after_a_foreign_unterminated_message() {
    let dir = TempDir::new().unwrap();
    let path = mbox(&dir, "alice");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(
        &path,
        b"From x Thu Jan  1 00:00:00 1970\nSubject: old\n\nno end",
    )
    .unwrap();
    let st = store(dir.path());
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    let data = fs::read(&path).unwrap();
    assert!(find(&data, b"no end\n\nFrom s@x.org ").is_some());
    assert_eq!(parse(&data).len(), 2);
}

#[test]
fn two_deliveries_are_read_back_identical_by_python_mailbox() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    let bodies = [
        b"Subject: one\nFrom: a@b\n\nfirst\nFrom the start\n".to_vec(),
        b"Subject: two\n\nsecond\n\n>From quoted\nlast line".to_vec(),
    ];
    for b in &bodies {
        assert!(deliver_body(&st, &MemoryBody(b.clone()), &[rcpt("alice")])[0].is_ok());
    }
    if !python3() {
        return;
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import mailbox,sys\nfor m in mailbox.mbox(sys.argv[1]):\n    \
             sys.stdout.write(m.as_bytes().hex()+' '+m.get_from()+'\\n')\n",
        ])
        .arg(mbox(&dir, "alice"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for (line, body) in lines.iter().zip(&bodies) {
        let (hex, from) = line.split_once(' ').unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let mut expected = [TRACE, body].concat();
        if !expected.ends_with(b"\n") {
            expected.push(b'\n');
        }
        assert_eq!(
            String::from_utf8_lossy(&unquote(&bytes)),
            String::from_utf8_lossy(&expected)
        );
        assert!(from.starts_with("s@x.org "), "{from}");
    }
}

// ---------------------------------------------------------------------------------------
// Locking.

#[test]
fn fresh_foreign_dotlock_gives_450_after_timeout_and_mbox_untouched() {
    let dir = TempDir::new().unwrap();
    let st = store_with(
        dir.path(),
        &[LockKind::Fcntl, LockKind::Dotlock],
        Duration::from_millis(300),
    );
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    let path = mbox(&dir, "alice");
    let before = fs::read(&path).unwrap();
    let lockfile = lock::dotlock_path(&path);
    fs::write(&lockfile, b"12345\n").unwrap();
    let res = deliver(&st, &[rcpt("alice"), rcpt("bob")]);
    assert_eq!(code(&res[0]), BUSY);
    assert!(res[1].is_ok(), "only the locked recipient fails");
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(
        fs::read(&lockfile).unwrap(),
        b"12345\n",
        "foreign lock kept"
    );
}

#[test]
fn stale_dotlock_is_removed_and_delivery_succeeds() {
    let dir = TempDir::new().unwrap();
    let mut st = store_with(dir.path(), &[LockKind::Dotlock], Duration::from_secs(5));
    assert_eq!(st.stale_after, DOTLOCK_STALE);
    st.stale_after = Duration::from_millis(100);
    let path = mbox(&dir, "alice");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let lockfile = lock::dotlock_path(&path);
    fs::write(&lockfile, b"999999\n").unwrap();
    std::thread::sleep(Duration::from_millis(250));
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    assert!(!lockfile.exists());
    assert_eq!(parse(&fs::read(&path).unwrap()).len(), 1);
}

#[test]
fn foreign_fcntl_lock_held_by_child_process_gives_450_and_mbox_untouched() {
    if !python3() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let st = store_with(
        dir.path(),
        &[LockKind::Fcntl, LockKind::Dotlock],
        Duration::from_millis(300),
    );
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    let path = mbox(&dir, "alice");
    let before = fs::read(&path).unwrap();
    {
        let _holder = LockHolder::start(&path, "fcntl.lockf");
        let res = deliver(&st, &[rcpt("alice")]);
        assert_eq!(code(&res[0]), BUSY);
        assert_eq!(fs::read(&path).unwrap(), before);
        assert!(
            !lock::dotlock_path(&path).exists(),
            "our dotlock is not left behind"
        );
    }
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    assert_eq!(parse(&fs::read(&path).unwrap()).len(), 2);
}

#[test]
fn foreign_flock_held_by_child_process_gives_450_when_flock_is_configured() {
    if !python3() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let st = store_with(
        dir.path(),
        &[LockKind::Flock, LockKind::Dotlock],
        Duration::from_millis(300),
    );
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    let path = mbox(&dir, "alice");
    let before = fs::read(&path).unwrap();
    {
        let _holder = LockHolder::start(&path, "fcntl.flock");
        let res = deliver(&st, &[rcpt("alice")]);
        assert_eq!(code(&res[0]), BUSY);
        assert_eq!(fs::read(&path).unwrap(), before);
        // An fcntl-only store does not see the flock (they are independent on Linux).
        if cfg!(target_os = "linux") {
            let fcntl_only = store_with(dir.path(), &[LockKind::Fcntl], Duration::from_secs(1));
            assert!(deliver(&fcntl_only, &[rcpt("alice")])[0].is_ok());
        }
    }
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
}

#[test]
fn locks_are_held_during_delivery_and_released_after() {
    if !python3() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let st = Arc::new(store_with(
        dir.path(),
        &[LockKind::Fcntl, LockKind::Dotlock],
        Duration::from_secs(10),
    ));
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    let path = mbox(&dir, "alice");
    let lockfile = lock::dotlock_path(&path);
    assert!(!lockfile.exists());
    assert!(fcntl_lock_is_free(&path));

    let (inside_tx, inside_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let body = Arc::new(PausingBody {
        data: b"Subject: slow\n\nslow body\n".to_vec(),
        inside: Mutex::new(Some(inside_tx)),
        go: Mutex::new(Some(go_rx)),
    });
    let worker = {
        let st = Arc::clone(&st);
        let body = Arc::clone(&body);
        std::thread::spawn(move || deliver_body(&st, &*body, &[rcpt("alice")]))
    };
    inside_rx.recv().unwrap();
    assert!(lockfile.exists(), "dotlock exists during the delivery");
    assert!(
        !fcntl_lock_is_free(&path),
        "fcntl lock held during the delivery"
    );
    go_tx.send(()).unwrap();
    let res = worker.join().unwrap();
    assert!(res[0].is_ok(), "{res:?}");
    assert!(!lockfile.exists(), "dotlock removed afterwards");
    assert!(fcntl_lock_is_free(&path), "fcntl lock released afterwards");
    assert_eq!(parse(&fs::read(&path).unwrap()).len(), 2);
}

#[test]
fn locks_are_taken_in_configured_order_and_released_in_reverse() {
    let dir = TempDir::new().unwrap();
    for locks in [
        vec![LockKind::Fcntl, LockKind::Dotlock],
        vec![LockKind::Dotlock, LockKind::Flock, LockKind::Fcntl],
    ] {
        let st = store_with(dir.path(), &locks, Duration::from_secs(5));
        lock::EVENTS.with(|e| e.borrow_mut().clear());
        assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
        let events = lock::EVENTS.with(|e| e.borrow().clone());
        let mut expected: Vec<String> =
            locks.iter().map(|k| format!("take {}", k.name())).collect();
        expected.extend(locks.iter().rev().map(|k| format!("release {}", k.name())));
        assert_eq!(events, expected);
    }
}

// ---------------------------------------------------------------------------------------
// Safety.

#[test]
fn symlinked_mbox_is_refused_and_target_untouched() {
    let dir = TempDir::new().unwrap();
    let target = dir.path().join("elsewhere");
    fs::write(&target, b"precious").unwrap();
    let path = mbox(&dir, "alice");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    symlink(&target, &path).unwrap();
    let st = store(dir.path());
    assert_eq!(code(&deliver(&st, &[rcpt("alice")])[0]), UNUSABLE);
    assert_eq!(fs::read(&target).unwrap(), b"precious");
    assert_eq!(st.check(&rcpt("alice")).map_err(|e| e.code), Err(550));
    // A dangling symlink is not followed to create a file either.
    let dangling = dir.path().join("nowhere");
    fs::remove_file(&path).unwrap();
    symlink(&dangling, &path).unwrap();
    assert_eq!(code(&deliver(&st, &[rcpt("alice")])[0]), UNUSABLE);
    assert!(!dangling.exists());
}

#[test]
fn hard_linked_mbox_is_refused_and_target_untouched() {
    let dir = TempDir::new().unwrap();
    let target = dir.path().join("elsewhere");
    fs::write(&target, b"precious").unwrap();
    let path = mbox(&dir, "alice");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::hard_link(&target, &path).unwrap();
    let st = store(dir.path());
    assert_eq!(code(&deliver(&st, &[rcpt("alice")])[0]), UNUSABLE);
    assert_eq!(fs::read(&target).unwrap(), b"precious");
    assert_eq!(st.check(&rcpt("alice")).map_err(|e| e.code), Err(550));
}

#[test]
fn mbox_that_is_a_directory_is_refused() {
    let dir = TempDir::new().unwrap();
    fs::create_dir_all(mbox(&dir, "alice")).unwrap();
    let st = store(dir.path());
    assert_eq!(code(&deliver(&st, &[rcpt("alice")])[0]), UNUSABLE);
}

#[test]
fn read_failure_midway_truncates_back_to_previous_size() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    let path = mbox(&dir, "alice");
    let before = fs::read(&path).unwrap();
    // Far more than the 64 KiB write buffer, so part of it reached the file.
    let data: Vec<u8> = b"Subject: big\n\n"
        .iter()
        .copied()
        .chain((0..400_000).map(|i| if i % 70 == 69 { b'\n' } else { b'x' }))
        .collect();
    let body = FailingBody {
        data,
        fail_after: 300_000,
    };
    let res = deliver_body(&st, &body, &[rcpt("alice"), rcpt("bob")]);
    assert_eq!(code(&res[0]), LOCAL_ERROR);
    assert_eq!(code(&res[1]), LOCAL_ERROR);
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(fs::metadata(mbox(&dir, "bob")).unwrap().len(), 0);
    assert!(!lock::dotlock_path(&path).exists());
}

/// Run by `file_size_limit_failure_truncates_back_with_452` in a child process with a
/// file-size limit; does nothing when run directly.
#[test]
#[ignore = "helper run in a child process"]
fn helper_deliver_under_file_size_limit() {
    let Ok(dir) = std::env::var("LMTPD_MBOX_FSIZE_DIR") else {
        return;
    };
    let st = store(Path::new(&dir));
    let body: Vec<u8> = (0..200_000)
        .map(|i| if i % 70 == 69 { b'\n' } else { b'y' })
        .collect();
    let res = deliver_body(&st, &MemoryBody(body), &[rcpt("alice")]);
    assert_eq!(code(&res[0]), STORAGE_FULL, "{res:?}");
    println!("helper-ok");
}

#[test]
fn file_size_limit_failure_truncates_back_with_452() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    for _ in 0..3 {
        assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    }
    let path = mbox(&dir, "alice");
    let before = fs::read(&path).unwrap();
    let exe = std::env::current_exe().unwrap();
    // ulimit -f counts 512-byte blocks in sh (POSIX); 128 blocks = 64 KiB; SIGXFSZ ignored
    // so write() fails with EFBIG instead of killing the child.
    let out = Command::new("sh")
        .args([
            "-c",
            "trap '' XFSZ; ulimit -f 128 && exec \"$0\" --exact \
             tests::helper_deliver_under_file_size_limit --ignored --nocapture --test-threads=1",
        ])
        .arg(&exe)
        .env("LMTPD_MBOX_FSIZE_DIR", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("helper-ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read(&path).unwrap(), before);
}

/// A body whose first read blocks until the test lets it go, signalling when it started.
struct GatedBody {
    data: Vec<u8>,
    started: Mutex<Option<mpsc::Sender<()>>>,
    go: Mutex<mpsc::Receiver<()>>,
}

impl Body for GatedBody {
    fn len(&self) -> u64 {
        self.data.len() as u64
    }
    fn open(&self) -> io::Result<Box<dyn Read + Send + '_>> {
        if let Some(tx) = self.started.lock().unwrap().take() {
            tx.send(()).unwrap();
            self.go.lock().unwrap().recv().unwrap();
        }
        Ok(Box::new(io::Cursor::new(self.data.clone())))
    }
    fn lines(&self) -> u64 {
        self.data.iter().filter(|&&b| b == b'\n').count() as u64
    }
}

/// A delivery to alice holding the mailbox's turn and locks, blocked inside its append until
/// [`HeldLeader::release`]; deliveries queued meanwhile join its batch.
struct HeldLeader {
    handle: std::thread::JoinHandle<Result<String, crate::error::Failure>>,
    go: mpsc::Sender<()>,
    key: PathBuf,
}

impl HeldLeader {
    fn start(st: &Arc<MboxStore>, dir: &TempDir) -> HeldLeader {
        let (started_tx, started_rx) = mpsc::channel();
        let (go, go_rx) = mpsc::channel();
        let body = GatedBody {
            data: b"Subject: leader\n\nfirst\n".to_vec(),
            started: Mutex::new(Some(started_tx)),
            go: Mutex::new(go_rx),
        };
        let handle = spawn_delivery(st, body);
        started_rx.recv().unwrap();
        HeldLeader {
            handle,
            go,
            key: crate::mailbox::queue_key(&mbox(dir, "alice")),
        }
    }

    /// Waits until `n` deliveries are queued behind the leader.
    fn wait_queued(&self, n: usize) {
        let t0 = Instant::now();
        while queue::waiting(&self.key) < n {
            assert!(t0.elapsed() < Duration::from_secs(10), "{n} never queued");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn release(self) -> Result<String, crate::error::Failure> {
        self.go.send(()).unwrap();
        self.handle.join().unwrap()
    }
}

/// Delivers `body` to alice on a new thread; the store's description of what it stored.
fn spawn_delivery(
    st: &Arc<MboxStore>,
    body: impl Body + 'static,
) -> std::thread::JoinHandle<Result<String, crate::error::Failure>> {
    let st = Arc::clone(st);
    std::thread::spawn(move || {
        let env = env_from(Some("s@x.org"));
        let alice = rcpt("alice");
        let d = Delivery::new(&alice, TRACE.to_vec(), vec![Target::inbox()]);
        st.deliver_target(&Message::new(&env, &body), &d, &Target::inbox())
    })
}

/// The Subject line of every message in alice's mbox, in file order.
fn subjects(dir: &TempDir) -> Vec<String> {
    parse(&fs::read(mbox(dir, "alice")).unwrap())
        .iter()
        .map(|m| {
            let text = String::from_utf8(unquote(&m.content)).unwrap();
            text.lines().nth(2).unwrap().to_string()
        })
        .collect()
}

#[test]
fn copies_queued_behind_a_delivery_share_its_locks_and_fsync() {
    let dir = TempDir::new().unwrap();
    let st = Arc::new(store(dir.path()));
    let leader = HeldLeader::start(&st, &dir);
    let followers: Vec<_> = (0..3)
        .map(|i| {
            spawn_delivery(
                &st,
                MemoryBody(format!("Subject: f{i}\n\nFrom f{i}\n").into_bytes()),
            )
        })
        .collect();
    leader.wait_queued(3);
    let led = leader.release().unwrap();
    assert!(!led.contains("batched"), "{led}");
    for f in followers {
        let done = f.join().unwrap().unwrap();
        assert!(
            done.ends_with("(batched)"),
            "appended under the leader's locks: {done}"
        );
    }
    let subjects = subjects(&dir);
    assert_eq!(subjects.len(), 4);
    assert_eq!(subjects[0], "Subject: leader");
    let mut rest = subjects[1..].to_vec();
    rest.sort();
    assert_eq!(rest, ["Subject: f0", "Subject: f1", "Subject: f2"]);
    assert!(
        !lock::dotlock_path(&mbox(&dir, "alice")).exists(),
        "unlocked"
    );
    // The mailbox is free again: a later delivery takes the locks itself.
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    assert_eq!(parse(&fs::read(mbox(&dir, "alice")).unwrap()).len(), 5);
}

/// A body that yields some bytes and then a read error (a spool file that went bad).
struct BrokenBody;

impl Body for BrokenBody {
    fn len(&self) -> u64 {
        4096
    }
    fn open(&self) -> io::Result<Box<dyn Read + Send + '_>> {
        let head = io::Cursor::new(b"Subject: broken\n\nhalf a mess".to_vec());
        Ok(Box::new(head.chain(FailingReader)))
    }
    fn lines(&self) -> u64 {
        2
    }
}

struct FailingReader;

impl Read for FailingReader {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::other("spool read failed"))
    }
}

#[test]
fn a_member_whose_append_fails_is_cut_out_of_the_batch_alone() {
    let dir = TempDir::new().unwrap();
    let st = Arc::new(store(dir.path()));
    let leader = HeldLeader::start(&st, &dir);
    // Queue three members in a known order: good, broken, good.
    let good = |i: usize| MemoryBody(format!("Subject: f{i}\n\nbody {i}\n").into_bytes());
    let first = spawn_delivery(&st, good(0));
    leader.wait_queued(1);
    let broken = spawn_delivery(&st, BrokenBody);
    leader.wait_queued(2);
    let last = spawn_delivery(&st, good(2));
    leader.wait_queued(3);
    assert!(leader.release().is_ok());
    assert!(first.join().unwrap().unwrap().ends_with("(batched)"));
    let failed = broken.join().unwrap();
    assert!(failed.is_err(), "{failed:?}");
    assert!(last.join().unwrap().unwrap().ends_with("(batched)"));
    assert_eq!(
        subjects(&dir),
        ["Subject: leader", "Subject: f0", "Subject: f2"]
    );
    let data = fs::read(mbox(&dir, "alice")).unwrap();
    assert!(!String::from_utf8_lossy(&data).contains("half a mess"));
}

/// Batches form and end under heavy contention with every lock method: a delivery that
/// found the mailbox locked by a batch leader but no batch open would wait for its own
/// locks until the timeout (450) while the leader waits for it.
#[test]
fn batches_under_contention_never_leave_a_delivery_waiting_for_the_timeout() {
    let dir = TempDir::new().unwrap();
    let st = Arc::new(store_with(
        dir.path(),
        &[LockKind::Fcntl, LockKind::Flock, LockKind::Dotlock],
        Duration::from_secs(5),
    ));
    let threads: Vec<_> = (0..12)
        .map(|t| {
            let st = Arc::clone(&st);
            std::thread::spawn(move || {
                for i in 0..60 {
                    let body = MemoryBody(format!("Subject: t{t} m{i}\n\nx\n").into_bytes());
                    let who = if i % 3 == 0 { "bob" } else { "alice" };
                    let res = deliver_body(&st, &body, &[rcpt(who), rcpt("alice")]);
                    assert!(res.iter().all(Result::is_ok), "t{t} m{i}: {res:?}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let alice = parse(&fs::read(mbox(&dir, "alice")).unwrap()).len();
    let bob = parse(&fs::read(mbox(&dir, "bob")).unwrap()).len();
    assert_eq!((alice, bob), (12 * 60 + 12 * 40, 12 * 20));
}

#[test]
fn eight_threads_fifty_deliveries_each_give_400_whole_messages() {
    let dir = TempDir::new().unwrap();
    let st = Arc::new(store(dir.path()));
    let t0 = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let st = Arc::clone(&st);
            std::thread::spawn(move || {
                for i in 0..50 {
                    // Bodies of different sizes, with lines that need quoting.
                    let mut body = format!("Subject: t{t} m{i}\n\nmarker t{t} m{i}\n").into_bytes();
                    for k in 0..(i * 37 % 200) {
                        body.extend_from_slice(format!("From line {k} of t{t} m{i}\n").as_bytes());
                    }
                    body.extend_from_slice(format!("end t{t} m{i}\n").as_bytes());
                    let res = deliver_body(&st, &MemoryBody(body), &[rcpt("alice")]);
                    assert!(res[0].is_ok(), "{res:?}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "mbox: 400 deliveries from 8 threads into one mbox in {secs:.2} s ({:.0}/s)",
        400.0 / secs
    );
    let data = fs::read(mbox(&dir, "alice")).unwrap();
    let msgs = parse(&data);
    assert_eq!(msgs.len(), 400);
    let mut seen = std::collections::HashSet::new();
    for m in &msgs {
        let content = unquote(&m.content);
        let text = String::from_utf8(content).unwrap();
        let body = text
            .strip_prefix(std::str::from_utf8(TRACE).unwrap())
            .unwrap();
        let subject = body.lines().next().unwrap();
        let id = subject.strip_prefix("Subject: ").unwrap();
        let (t, i) = id.split_once(' ').unwrap();
        let i: usize = i[1..].parse().unwrap();
        let mut expected = format!("Subject: {id}\n\nmarker {id}\n");
        for k in 0..(i * 37 % 200) {
            expected.push_str(&format!("From line {k} of {t} {}\n", &id[t.len() + 1..]));
        }
        expected.push_str(&format!("end {id}\n"));
        assert_eq!(body, expected, "message {id} is whole and not interleaved");
        assert!(seen.insert(id.to_string()), "{id} twice");
    }
    assert_eq!(seen.len(), 400);
}

// ---------------------------------------------------------------------------------------
// Quota.

#[test]
fn byte_quota_exceeded_gives_452_and_file_unchanged() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    let path = mbox(&dir, "alice");
    let before = fs::read(&path).unwrap();
    let size = before.len() as u64;
    // Room for less than one more copy.
    let r = with_quota("alice", Some(size + 20), None);
    assert!(st.check(&r).is_ok(), "not full yet");
    assert_eq!(code(&deliver(&st, &[r])[0]), OVER_QUOTA);
    assert_eq!(fs::read(&path).unwrap(), before);
    // Room for exactly one more: accepted, then full at RCPT time.
    let r = with_quota("alice", Some(2 * size), None);
    assert!(deliver(&st, std::slice::from_ref(&r))[0].is_ok());
    assert_eq!(fs::metadata(&path).unwrap().len(), 2 * size);
    let err = st.check(&r).unwrap_err();
    assert_eq!((err.code, err.enhanced), (452, Enhanced(4, 2, 2)));
    // quota_permfail turns it into 552 5.2.2.
    let perm = MboxStore::new(MboxConfig {
        quota_permfail: true,
        ..st.config().clone()
    });
    let err = perm.check(&r).unwrap_err();
    assert_eq!((err.code, err.enhanced), (552, Enhanced(5, 2, 2)));
}

#[test]
fn message_count_quota_uses_the_sidecar_and_recounts_when_stale() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    let path = mbox(&dir, "alice");
    let r = with_quota("alice", None, Some(4));
    for _ in 0..3 {
        assert!(deliver(&st, std::slice::from_ref(&r))[0].is_ok());
    }
    let side = quota::sidecar_path(&path);
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(quota::cached(&path, &meta), Some(3));
    let text = fs::read_to_string(&side).unwrap();
    assert!(text.contains(&format!(" 3 {} ", meta.len())), "{text}");
    assert_eq!(fs::metadata(&side).unwrap().mode() & 0o077, 0);
    // A foreign append (unlimited recipient: sidecar not updated) makes it stale.
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(quota::cached(&path, &meta), None);
    assert_eq!(quota::count(&File::open(&path).unwrap()).unwrap(), 4);
    // RCPT-time check recounts (4 of 4: full) and refreshes the sidecar.
    assert_eq!(st.check(&r).map_err(|e| e.code), Err(452));
    assert_eq!(quota::cached(&path, &meta), Some(4));
    let before = fs::read(&path).unwrap();
    assert_eq!(code(&deliver(&st, std::slice::from_ref(&r))[0]), OVER_QUOTA);
    assert_eq!(fs::read(&path).unwrap(), before);
    // A forged sidecar for a different size is not trusted.
    fs::write(&side, "lmtpd-mbox-count-1 0 1 1 1 1\n").unwrap();
    assert_eq!(quota::cached(&path, &meta), None);
    assert_eq!(st.check(&r).map_err(|e| e.code), Err(452));
}

#[test]
fn message_counter_counts_separators_not_quoted_or_inner_from_lines() {
    let data = b"From a x\nSubject: 1\n\n>From b\nFrom c\n\nFrom d x\n\n\nFrom e x\nz\n\n";
    for chunk in [1usize, 2, 3, data.len()] {
        let mut c = quota::Counter::default();
        for part in data.chunks(chunk) {
            c.feed(part);
        }
        assert_eq!(c.count, 3, "chunk {chunk}");
    }
}

#[test]
fn unlimited_recipient_touches_no_sidecar() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    assert!(!quota::sidecar_path(&mbox(&dir, "alice")).exists());
}

// ---------------------------------------------------------------------------------------
// Layout, +detail, configuration.

#[test]
fn new_mailbox_is_created_0600_in_a_new_0700_directory() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    assert!(st.check(&rcpt("alice")).is_ok(), "missing mailbox is fine");
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    let path = mbox(&dir, "alice");
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let parent = path.parent().unwrap();
    assert_eq!(
        fs::metadata(parent).unwrap().permissions().mode() & 0o077,
        0
    );
}

fn detail_store(dir: &Path, mode: DetailMailbox) -> Modal<MboxStore> {
    let st = MboxStore::new(config(format!("{}/%d/%n/INBOX", dir.display())));
    Modal { st, mode }
}

fn count_in(path: &Path) -> usize {
    fs::read(path).map(|d| parse(&d).len()).unwrap_or(0)
}

#[test]
fn detail_selects_existing_folder_file_else_inbox() {
    let dir = TempDir::new().unwrap();
    let st = detail_store(dir.path(), DetailMailbox::Yes);
    let home = dir.path().join("example.org").join("alice");
    let inbox = home.join("INBOX");
    fs::create_dir_all(&home).unwrap();
    fs::write(home.join("lists"), b"").unwrap();
    fs::create_dir(home.join("adir")).unwrap();
    let cases = [
        ("lists", "lists"),
        ("missing", "INBOX"),
        ("adir", "INBOX"),
        (".hidden", "INBOX"),
        ("a..b", "INBOX"),
        ("INBOX.lock", "INBOX"),
        ("INBOX.lmtpd-count", "INBOX"),
        ("x\u{7}y", "INBOX"),
    ];
    for (detail, _) in cases {
        assert!(
            st.check(&with_detail("alice", detail)).is_ok(),
            "{detail:?}"
        );
        assert!(
            deliver(&st, &[with_detail("alice", detail)])[0].is_ok(),
            "{detail:?}"
        );
    }
    assert_eq!(count_in(&home.join("lists")), 1);
    assert_eq!(count_in(&inbox), cases.len() - 1);
    assert!(!home.join("missing").exists());
    let mut names: Vec<_> = fs::read_dir(&home)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["INBOX", "adir", "lists"]);
    // DetailMailbox::No ignores even an existing folder.
    let no = detail_store(dir.path(), DetailMailbox::No);
    assert!(deliver(&no, &[with_detail("alice", "lists")])[0].is_ok());
    assert_eq!(count_in(&home.join("lists")), 1);
}

#[test]
fn detail_create_makes_a_private_folder_file() {
    let dir = TempDir::new().unwrap();
    let st = detail_store(dir.path(), DetailMailbox::Create);
    assert!(deliver(&st, &[with_detail("alice", "news")])[0].is_ok());
    let folder = dir.path().join("example.org").join("alice").join("news");
    assert_eq!(count_in(&folder), 1);
    assert_eq!(fs::metadata(&folder).unwrap().mode() & 0o777, 0o600);
    assert!(!dir.path().join("example.org/alice/INBOX").exists());
}

#[test]
fn detail_is_ignored_with_a_shared_spool_template() {
    let dir = TempDir::new().unwrap();
    let st = Modal {
        st: MboxStore::new(config(format!("{}/%d/%n", dir.path().display()))),
        mode: DetailMailbox::Create,
    };
    // In <dir>/example.org/ the "folder" bob would be bob's inbox.
    assert!(deliver(&st, &[rcpt("bob")])[0].is_ok());
    assert!(deliver(&st, &[with_detail("alice", "bob")])[0].is_ok());
    assert_eq!(count_in(&mbox(&dir, "bob")), 1);
    assert_eq!(count_in(&mbox(&dir, "alice")), 1);
    assert!(!crate::template::dir_is_per_user("/var/mail/%n"));
    assert!(!crate::template::dir_is_per_user("run/mail/%d/%n.mbox"));
    assert!(!crate::template::dir_is_per_user("mbox-%n"));
    assert!(!crate::template::dir_is_per_user("/m/%%n/x"));
    assert!(crate::template::dir_is_per_user("/home/%n/mail/inbox"));
    assert!(crate::template::dir_is_per_user("/m/%d/%u/INBOX"));
}

#[test]
fn unsafe_template_values_are_refused_and_nothing_created() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    for bad in ["", "..", ".hidden", "a/b", "a\0b", "a\nb"] {
        let r = rcpt(bad);
        let err = st.mbox_path(&r).unwrap_err();
        assert_eq!(
            (err.code, err.enhanced),
            (451, Enhanced(4, 3, 0)),
            "{bad:?}"
        );
        assert_eq!(
            code(&deliver(&st, std::slice::from_ref(&r))[0]),
            LOCAL_ERROR
        );
        assert_eq!(st.check(&r).map_err(|e| e.code), Err(451));
    }
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn failing_recipient_does_not_change_other_outcomes() {
    let dir = TempDir::new().unwrap();
    fs::create_dir_all(mbox(&dir, "broken")).unwrap();
    let st = store(dir.path());
    let res = deliver(
        &st,
        &[rcpt("alice"), rcpt("broken"), rcpt("bob"), rcpt("..")],
    );
    assert!(res[0].is_ok());
    assert_eq!(code(&res[1]), UNUSABLE);
    assert!(res[2].is_ok());
    assert_eq!(code(&res[3]), LOCAL_ERROR);
    assert_eq!(count_in(&mbox(&dir, "alice")), 1);
    assert_eq!(count_in(&mbox(&dir, "bob")), 1);
}

#[test]
fn config_lock_words_and_validation() {
    assert_eq!(LockKind::parse("fcntl"), Ok(LockKind::Fcntl));
    assert_eq!(LockKind::parse("FLOCK"), Ok(LockKind::Flock));
    assert_eq!(LockKind::parse(" dotlock "), Ok(LockKind::Dotlock));
    assert!(LockKind::parse("lockf").is_err());
    for k in [LockKind::Fcntl, LockKind::Flock, LockKind::Dotlock] {
        assert_eq!(LockKind::parse(k.name()), Ok(k));
    }
    if cfg!(target_os = "linux") {
        assert_eq!(default_locks(), [LockKind::Fcntl, LockKind::Dotlock]);
    }
    let ok = config("/var/mail/%n".into());
    assert!(ok.validate().is_ok());
    assert_eq!(ok.lock_timeout, Duration::from_secs(10));
    assert_eq!(crate::DEFAULT_LOCK_TIMEOUT, Duration::from_secs(30));
    for bad in [
        MboxConfig {
            template: "/m/%x".into(),
            ..ok.clone()
        },
        MboxConfig {
            template: "".into(),
            ..ok.clone()
        },
        MboxConfig {
            template: "/m/%n/".into(),
            ..ok.clone()
        },
        MboxConfig {
            locks: vec![],
            ..ok.clone()
        },
        MboxConfig {
            locks: vec![LockKind::Fcntl, LockKind::Dotlock, LockKind::Fcntl],
            ..ok.clone()
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
    assert_eq!(MboxStore::new(ok).name(), "mbox");
}

#[test]
fn in_process_queue_times_out_and_is_first_come_first_served() {
    let key = PathBuf::from("/nonexistent/lmtpd-mbox-test-queue");
    let first = queue::queue(&key, Instant::now() + Duration::from_secs(1)).unwrap();
    // The first turn is held: a second queuer gets none once its deadline has passed.
    assert!(queue::queue(&key, Instant::now() + Duration::from_millis(100)).is_none());
    let order = Arc::new(Mutex::new(Vec::new()));
    let waiters: Vec<_> = (0..4)
        .map(|n| {
            let key = key.clone();
            let order = Arc::clone(&order);
            let h = std::thread::spawn(move || {
                let _turn = queue::queue(&key, Instant::now() + Duration::from_secs(10)).unwrap();
                order.lock().unwrap().push(n);
            });
            std::thread::sleep(Duration::from_millis(30)); // enqueue in order
            h
        })
        .collect();
    drop(first);
    for w in waiters {
        w.join().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3]);
}

#[test]
fn write_through_file_reaches_disk_unbuffered_after_finish() {
    // The filter writes through to the file and flushes on finish.
    let dir = TempDir::new().unwrap();
    let p = dir.path().join("f");
    let file = File::create(&p).unwrap();
    let mut f = Filter::new(&file);
    f.feed(b"a\nFrom b").unwrap();
    let (mut w, n) = f.finish().unwrap();
    w.flush().unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"a\n>From b\n\n");
    assert_eq!(n, 11);
}

/// Throughput of 8 threads × 100 deliveries of a ~4 KB message into one mbox and into
/// eight mboxes (run with `--ignored --nocapture`, preferably `--release`).
#[test]
#[ignore = "benchmark"]
fn bench_deliveries_per_second() {
    let body: Vec<u8> = b"Subject: bench\n\n"
        .iter()
        .copied()
        .chain((0..4000).map(|i| if i % 72 == 71 { b'\n' } else { b'b' }))
        .collect();
    let body = Arc::new(body);
    for shared in [true, false] {
        let dir = TempDir::new().unwrap();
        let st = Arc::new(store(dir.path()));
        let t0 = Instant::now();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let st = Arc::clone(&st);
                let body = Arc::clone(&body);
                std::thread::spawn(move || {
                    let who = if shared {
                        "alice".to_string()
                    } else {
                        format!("user{t}")
                    };
                    for _ in 0..100 {
                        let res = deliver_body(&st, &MemoryBody(body.to_vec()), &[rcpt(&who)]);
                        assert!(res[0].is_ok(), "{res:?}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let secs = t0.elapsed().as_secs_f64();
        eprintln!(
            "mbox bench: 800 deliveries, 8 threads, {}: {secs:.2} s = {:.0}/s",
            if shared { "one mbox" } else { "eight mboxes" },
            800.0 / secs
        );
    }
}

#[test]
fn dotlock_of_a_dead_process_is_broken_but_a_live_ones_is_kept() {
    let dir = TempDir::new().unwrap();
    let st = store_with(dir.path(), &[LockKind::Dotlock], Duration::from_millis(300));
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    let path = mbox(&dir, "alice");
    let lockfile = lock::dotlock_path(&path);

    // A live owner (a child process) keeps its lock even after the 2 s grace.
    let mut live = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    fs::write(&lockfile, format!("{}\n", live.id())).unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(code(&deliver(&st, &[rcpt("alice")])[0]), BUSY);
    assert!(lockfile.exists(), "a live owner's lock is kept");
    live.kill().unwrap();
    live.wait().unwrap();

    // The same lock once its owner is gone (killed, never cleaned up) is broken at once,
    // instead of blocking the mailbox until the 300 s stale limit.
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    assert!(!lockfile.exists());
}

// ---- the store contract suite --------------------------------------------------------------

/// The contract suite's view of an mbox store with a per-user directory
/// (`<dir>/<domain>/<local>/INBOX`, folders beside it).
struct Harness {
    dir: TempDir,
    st: MboxStore,
}

fn harness() -> Harness {
    let dir = TempDir::new().unwrap();
    let st = MboxStore::new(config(format!("{}/%d/%n/INBOX", dir.path().display())));
    Harness { dir, st }
}

impl Harness {
    fn path(&self, r: &Recipient, folder: Option<&str>) -> PathBuf {
        let home = self.dir.path().join(&r.domain).join(&r.local);
        home.join(folder.unwrap_or("INBOX"))
    }
}

/// Splits the flag lines our store writes after the separator off a message's content.
fn split_flags(mut content: &[u8]) -> (Flags, &[u8]) {
    let mut flags = Flags::NONE;
    loop {
        if let Some(rest) = content.strip_prefix(b"Status: R\n".as_slice()) {
            flags.insert(Flag::Seen);
            content = rest;
        } else if let Some(rest) = content.strip_prefix(b"X-Status: ".as_slice()) {
            let end = rest.iter().position(|&b| b == b'\n').unwrap();
            for c in &rest[..end] {
                flags.insert(match c {
                    b'A' => Flag::Answered,
                    b'F' => Flag::Flagged,
                    b'T' => Flag::Draft,
                    b'D' => Flag::Deleted,
                    other => panic!("unknown X-Status letter {other}"),
                });
            }
            content = &rest[end + 1..];
        } else {
            return (flags, content);
        }
    }
}

impl testing::Harness for Harness {
    fn store(&self) -> &dyn MailStore {
        &self.st
    }

    fn read(&self, r: &Recipient, folder: Option<&str>) -> Vec<testing::Visible> {
        let path = self.path(r, folder);
        // A delivery in progress holds the dotlock: a reader honouring it sees nothing yet.
        let mut lock = path.clone().into_os_string();
        lock.push(".lock");
        if Path::new(&lock).exists() {
            return Vec::new();
        }
        let Ok(data) = fs::read(&path) else {
            return Vec::new();
        };
        parse(&data)
            .iter()
            .map(|m| {
                let (flags, content) = split_flags(&m.content);
                testing::Visible {
                    bytes: unquote(content),
                    flags: flags.imap_list(),
                }
            })
            .collect()
    }

    fn break_mailbox(&self, r: &Recipient) {
        // The inbox is a symlink: refused (550 5.2.0), and nothing is written through it.
        let path = self.path(r, None);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let elsewhere = self.dir.path().join("elsewhere");
        fs::write(&elsewhere, b"").unwrap();
        symlink(&elsewhere, path).unwrap();
    }
}

lmtpd_store::contract_suite!(harness);

#[test]
fn flags_are_written_as_status_lines_after_the_separator() {
    let dir = TempDir::new().unwrap();
    let st = store(dir.path());
    let r = rcpt("alice");
    let env = env_from(Some("s@x.org"));
    let body = MemoryBody(b"Status: RO\nSubject: hi\n\nhello\n".to_vec());
    let flags = Flags::of(&[Flag::Seen, Flag::Flagged, Flag::Answered]);
    let d = Delivery::new(&r, TRACE.to_vec(), vec![Target::inbox().with_flags(flags)]);
    assert!(testing::deliver(&st, &Message::new(&env, &body), &[d])[0].is_ok());
    let msgs = parse(&fs::read(mbox(&dir, "alice")).unwrap());
    assert_eq!(msgs.len(), 1);
    // Our own lines first; the message's own Status field is removed as always.
    let want = [
        b"Status: R\nX-Status: AF\n".as_slice(),
        TRACE,
        b"Subject: hi\n\nhello\n",
    ]
    .concat();
    assert_eq!(msgs[0].content, want);
}

#[test]
fn usage_is_the_size_and_cached_count_and_recalc_recounts_an_mbox_edited_by_hand() {
    let tmp = TempDir::new().unwrap();
    let st = store(tmp.path());
    let a = with_quota("alice", Some(1 << 20), None);
    assert_eq!(st.usage(&a).unwrap(), Some(lmtpd_store::Usage::default()));
    for _ in 0..3 {
        assert!(deliver(&st, std::slice::from_ref(&a))[0].is_ok());
    }
    let path = mbox(&tmp, "alice");
    let len = |p: &Path| fs::metadata(p).unwrap().len();
    assert_eq!(
        st.usage(&a).unwrap(),
        Some(lmtpd_store::Usage {
            bytes: len(&path),
            messages: 3
        })
    );

    // Rewritten by hand without its last message: the size changed, so the cached count is
    // not trusted and usage() counts again.
    let data = fs::read(&path).unwrap();
    let starts: Vec<usize> = (0..data.len())
        .filter(|&i| data[i..].starts_with(b"From ") && (i == 0 || data[i - 1] == b'\n'))
        .collect();
    assert_eq!(starts.len(), 3);
    fs::write(&path, &data[..starts[2]]).unwrap();
    let two = lmtpd_store::Usage {
        bytes: starts[2] as u64,
        messages: 2,
    };
    assert_eq!(st.usage(&a).unwrap(), Some(two));

    // Edited in place with the size and modification time kept (the second separator
    // spoiled): the cache still matches the file and its count is stale...
    let before = fs::metadata(&path).unwrap().modified().unwrap();
    let mut edited = data[..starts[2]].to_vec();
    edited[starts[1]] = b'X';
    fs::write(&path, &edited).unwrap();
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(before)
        .unwrap();
    assert_eq!(
        st.usage(&a).unwrap(),
        Some(two),
        "the cheap figure is stale"
    );
    // ...until recalc counts the separators again and refreshes the cache.
    let one = lmtpd_store::Usage {
        bytes: starts[2] as u64,
        messages: 1,
    };
    assert_eq!(st.recalc(&a).unwrap(), Some(one));
    assert_eq!(st.usage(&a).unwrap(), Some(one));
    let unlimited = rcpt("alice");
    assert_eq!(st.usage(&unlimited).unwrap(), Some(one));
}
