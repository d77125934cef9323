//! Hardening tests (issue 8): deterministic fuzzing of the protocol core, crash consistency
//! and fault injection for every store, resource exhaustion, hostile addresses and content
//! over a real socket, and shutdown under load.
//!
//! The fuzz part drives `lmtpd::proto` in-process with a seeded xorshift generator (no
//! crates, same cases on every run). Everything else spawns the real `lmtpd` binary through
//! `sh -c` (so a test can add `ulimit` and ignore SIGXFSZ), talks LMTP over its Unix socket,
//! and inspects the mailboxes on disk afterwards: Maildir files directly, mbox files with our
//! own mboxrd split plus Python's `mailbox` module, SQLite with Python's `sqlite3` module
//! (`PRAGMA integrity_check`). python3 (and promtool for /metrics) are required: a missing
//! tool fails the test unless `LMTPD_TEST_SKIP` allows it outside CI (`common::require`).
//!
//! The long coverage-guided fuzz run lives in `tests/fuzz/` (cargo-fuzz, see
//! `contrib/fuzz.sh`).

use crate::common;

use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead};
use std::os::unix::fs::{symlink, FileTypeExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use common::{have_python, hex, list, python, python_holder, Client, Scratch, BIN};
use lmtpd::proto::address::{parse_path, PathKind, MAX_DOMAIN, MAX_LOCAL_PART};
use lmtpd::proto::command::{parse, ParseContext};
use lmtpd::proto::testing::{decode_chunked, fuzz_drive, reference_decode};
use lmtpd::proto::{BareNewline, Command as LmtpCommand, SessionConfig};

// =========================================================================================
// Seeded random numbers
// =========================================================================================

// xorshift64 (shared with the session unit tests): deterministic, no crates.
use lmtpd::proto::testing::XorShift;

fn seed_of(s: &str) -> u64 {
    // FNV-1a
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

// =========================================================================================
// Deterministic fuzzing of the sans-IO core
// =========================================================================================

const LOCALS: &[&str] = &[
    "a",
    "b",
    "c",
    "d",
    "alice",
    "bob",
    "e+x",
    "\"q r\"",
    "Postmaster",
    "f.g",
    "\u{e9}t\u{e9}",
];

/// A valid LMTP conversation: LHLO, some transactions (with dot-stuffed content), QUIT.
fn valid_conversation(rng: &mut XorShift) -> Vec<u8> {
    let mut v = b"LHLO fuzz.test\r\n".to_vec();
    for _ in 0..1 + rng.below(3) {
        let utf8 = rng.below(3) == 0;
        v.extend_from_slice(
            format!(
                "MAIL FROM:<s@x>{}{}{}\r\n",
                if rng.below(3) == 0 { " SIZE=300" } else { "" },
                if rng.below(3) == 0 {
                    " BODY=8BITMIME"
                } else {
                    ""
                },
                if utf8 { " SMTPUTF8" } else { "" }
            )
            .as_bytes(),
        );
        for _ in 0..1 + rng.below(4) {
            let local = rng.pick(LOCALS);
            let rcpt = if *local == "Postmaster" {
                "<Postmaster>".to_string()
            } else {
                format!("<{local}@x.test>")
            };
            v.extend_from_slice(format!("RCPT TO:{rcpt}\r\n").as_bytes());
        }
        v.extend_from_slice(b"DATA\r\n");
        for _ in 0..rng.below(12) {
            let mut line: Vec<u8> = Vec::new();
            match rng.below(6) {
                0 => line.push(b'.'),
                1 => line.extend_from_slice(b"From x"),
                _ => {}
            }
            for _ in 0..rng.below(80) {
                line.push(b"abc xyz.,:;-\t"[rng.below(13)]);
            }
            if line.first() == Some(&b'.') {
                v.push(b'.');
            }
            v.extend_from_slice(&line);
            v.extend_from_slice(b"\r\n");
        }
        v.extend_from_slice(b".\r\n");
        if rng.below(3) == 0 {
            v.extend_from_slice(rng.pick::<&[u8]>(&[b"RSET\r\n", b"NOOP\r\n", b"VRFY x\r\n"]));
        }
    }
    v.extend_from_slice(b"QUIT\r\n");
    v
}

/// Mutations: insert CR/LF/dots/NUL/8-bit/end-of-data, duplicate or delete a line, insert
/// an overlong line, truncate.
fn mutate(rng: &mut XorShift, v: &mut Vec<u8>) {
    for _ in 0..rng.below(5) {
        let at = rng.below(v.len() + 1);
        match rng.below(9) {
            0 => v.insert(at, b'\r'),
            1 => v.insert(at, b'\n'),
            2 => v.insert(at, b'.'),
            3 => v.insert(at, 0),
            4 => v.insert(at, 0x80 | rng.byte()),
            5 => {
                let piece = *rng.pick(&[
                    &b"\r\n.\r\n"[..],
                    b"\n.\n",
                    b"\r.\r",
                    b"\n.\r\n",
                    b"\r\n.\n",
                    b"\r\n.\r\r\n",
                    b"\r\n",
                ]);
                v.splice(at..at, piece.iter().copied());
            }
            6 => {
                // Duplicate the line that starts at or after `at`.
                let start = v[..at]
                    .windows(2)
                    .rposition(|w| w == b"\r\n")
                    .map_or(0, |i| i + 2);
                let end = v[start..]
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .map_or(v.len(), |i| start + i + 2);
                let line = v[start..end].to_vec();
                v.splice(start..start, line);
            }
            7 => {
                let n = 500 + rng.below(1500);
                v.splice(at..at, std::iter::repeat_n(b'x', n));
            }
            _ => {
                let end = (at + rng.below(20)).min(v.len());
                v.drain(at..end);
            }
        }
    }
    if rng.below(10) == 0 {
        let keep = rng.below(v.len() + 1);
        v.truncate(keep);
    }
}

fn random_session_config(rng: &mut XorShift) -> SessionConfig {
    SessionConfig {
        max_message_size: *rng.pick(&[0, 10, 300, 5000]),
        max_recipients: 1 + rng.below(4),
        max_errors: *rng.pick(&[0, 3, 20]),
        bare_newline: if rng.below(2) == 0 {
            BareNewline::Normalize
        } else {
            BareNewline::Reject
        },
        ..SessionConfig::default()
    }
}

#[test]
fn fuzz_session_same_replies_whatever_the_chunking_one_reply_per_rcpt() {
    let mut rng = XorShift::new(0x5EED_0001);
    let mut messages = 0usize;
    for case in 0..6000 {
        let cfg = random_session_config(&mut rng);
        let mut input = valid_conversation(&mut rng);
        if case % 8 != 0 {
            mutate(&mut rng, &mut input);
        }
        if case % 16 == 1 {
            // Pure noise now and then.
            input = (0..rng.below(600)).map(|_| rng.byte()).collect();
        }
        let whole = fuzz_drive(&cfg, &input, &[input.len().max(1)]);
        let small: Vec<usize> = (0..64).map(|_| 1 + rng.below(7)).collect();
        let large: Vec<usize> = (0..64).map(|_| 1 + rng.below(700)).collect();
        assert_eq!(
            whole,
            fuzz_drive(&cfg, &input, &small),
            "case {case}: small chunks differ; input {:?}",
            String::from_utf8_lossy(&input)
        );
        assert_eq!(
            whole,
            fuzz_drive(&cfg, &input, &large),
            "case {case}: large chunks differ; input {:?}",
            String::from_utf8_lossy(&input)
        );
        messages += whole.windows(7).filter(|w| w == b"\n[end]\n").count();
    }
    // The generator must really reach DATA, not just bounce off syntax errors.
    assert!(messages > 3000, "only {messages} messages delivered");
}

#[test]
fn fuzz_session_one_byte_chunks_match_whole_input() {
    let mut rng = XorShift::new(0x5EED_0002);
    for case in 0..800 {
        let cfg = random_session_config(&mut rng);
        let mut input = valid_conversation(&mut rng);
        mutate(&mut rng, &mut input);
        let whole = fuzz_drive(&cfg, &input, &[input.len().max(1)]);
        assert_eq!(whole, fuzz_drive(&cfg, &input, &[1]), "case {case}");
    }
}

/// Interesting address material.
const ADDR_PIECES: &[&str] = &[
    "<",
    ">",
    "@",
    ".",
    "..",
    "\"",
    "\\",
    "[",
    "]",
    ":",
    ",",
    "a",
    "b",
    "postmaster",
    "/",
    "%2f",
    "+",
    "-",
    " ",
    "\u{2024}",
    "\u{ff0e}",
    "\u{e9}",
    "1.2.3.4",
    "IPv6:",
    "x.y",
    "\u{85}",
    "\0",
    "\r",
    "\n",
    "\"\"",
    "@r.s,@t:",
];

fn random_address(rng: &mut XorShift) -> Vec<u8> {
    let mut v = Vec::new();
    match rng.below(4) {
        0 => {
            for _ in 0..rng.below(40) {
                v.push(rng.byte());
            }
        }
        _ => {
            v.push(b'<');
            for _ in 0..rng.below(12) {
                v.extend_from_slice(rng.pick(ADDR_PIECES).as_bytes());
            }
            if rng.below(3) == 0 {
                v.extend(std::iter::repeat_n(b'a', rng.below(300)));
            }
            v.extend_from_slice(
                rng.pick(&["@x.test>", ">", "@[1.2.3.4]>", "@x>rest", ""])
                    .as_bytes(),
            );
        }
    }
    v
}

#[test]
fn fuzz_address_parser_bounds_and_round_trips() {
    let mut rng = XorShift::new(0x5EED_0003);
    let mut accepted = 0;
    for case in 0..12000 {
        let input = random_address(&mut rng);
        for kind in [PathKind::Reverse, PathKind::Forward] {
            let Ok((m, rest)) = parse_path(&input, kind) else {
                continue;
            };
            assert!(input.ends_with(rest), "case {case}");
            let Some(m) = m else {
                assert_eq!(kind, PathKind::Reverse, "case {case}: <> as a forward path");
                continue;
            };
            accepted += 1;
            assert!(
                !m.local.is_empty() && m.local.len() <= MAX_LOCAL_PART,
                "{m:?}"
            );
            assert!(m.domain.as_ref().is_none_or(|d| d.len() <= MAX_DOMAIN));
            assert!(!m.local.chars().any(char::is_control), "{m:?}");
            let again = format!("<{m}>");
            match parse_path(again.as_bytes(), kind) {
                Ok((Some(m2), b"")) => assert_eq!(m2, m, "case {case}: {again:?}"),
                other => panic!("case {case}: {again:?} does not parse back: {other:?}"),
            }
        }
    }
    assert!(accepted > 500, "only {accepted} addresses accepted");
}

#[test]
fn fuzz_command_parser_errors_are_well_formed_replies() {
    let mut rng = XorShift::new(0x5EED_0004);
    let verbs = [
        "LHLO ",
        "MAIL FROM:",
        "RCPT TO:",
        "DATA",
        "RSET",
        "NOOP",
        "VRFY ",
        "HELP",
        "QUIT",
        "mail from:",
        "EHLO ",
        "",
    ];
    for case in 0..6000 {
        let mut line = rng.pick(&verbs).as_bytes().to_vec();
        line.extend_from_slice(&random_address(&mut rng));
        if rng.below(2) == 0 {
            line.extend_from_slice(
                rng.pick(&[
                    " SIZE=10",
                    " SIZE=99999999999999999999",
                    " BODY=8BITMIME",
                    " SMTPUTF8",
                    " X=Y",
                    "  ",
                    "\t",
                ])
                .as_bytes(),
            );
        }
        let ctx = ParseContext {
            max_message_size: *rng.pick(&[0, 1, 1000]),
            smtputf8: rng.below(2) == 0,
        };
        match parse(&line, &ctx) {
            Err(r) => {
                assert!((400..600).contains(&r.code), "case {case}: {r:?}");
                if let Some(e) = r.enhanced {
                    assert_eq!(u16::from(e.0), r.code / 100, "case {case}: {r:?}");
                }
                let wire = r.to_bytes();
                assert!(wire.ends_with(b"\r\n") && wire.len() <= 512, "{r:?}");
                assert_eq!(wire.iter().filter(|&&b| b == b'\n').count(), 1, "{r:?}");
            }
            Ok(LmtpCommand::Rcpt(m, _)) => {
                let again = format!("RCPT TO:<{m}>");
                assert_eq!(
                    parse(again.as_bytes(), &ctx),
                    Ok(LmtpCommand::Rcpt(m, Default::default())),
                    "case {case}: {again:?}"
                );
            }
            Ok(_) => {}
        }
    }
}

#[test]
fn fuzz_data_decoder_matches_reference_in_any_chunking() {
    let mut rng = XorShift::new(0x5EED_0005);
    let pieces: &[&[u8]] = &[
        b"\r\n",
        b"\r",
        b"\n",
        b".",
        b"..",
        b"\r\n.\r\n",
        b"\n.\n",
        b"\r.\r",
        b"\r\n.\r\r\n",
        b"\n.\r\n",
        b"\r\n.\n",
        b"text",
        b"From x",
        b"\0",
        b"\xff\xfe",
    ];
    for case in 0..8000 {
        let mut input = Vec::new();
        for _ in 0..rng.below(30) {
            if rng.below(4) == 0 {
                input.push(rng.byte());
            } else {
                input.extend_from_slice(rng.pick::<&[u8]>(pieces));
            }
        }
        let max = *rng.pick(&[0u64, 0, 5, 64]);
        let whole = decode_chunked(max, &input, &[input.len().max(1)]);
        let chunks: Vec<usize> = (0..16).map(|_| 1 + rng.below(9)).collect();
        let chunked = decode_chunked(max, &input, &chunks);
        if whole.over {
            // Over the limit only size and position are defined, not the partial output.
            assert!(chunked.over, "case {case}");
            assert_eq!(
                (whole.consumed, whole.done, whole.size),
                (chunked.consumed, chunked.done, chunked.size),
                "case {case}"
            );
        } else {
            assert_eq!(whole, chunked, "case {case}: {input:?}");
        }
        match reference_decode(&input) {
            Some((content, end)) => {
                assert!(whole.done, "case {case}: end not found in {input:?}");
                assert_eq!(whole.consumed, end, "case {case}: {input:?}");
                if !whole.over {
                    assert_eq!(whole.out, content, "case {case}: {input:?}");
                }
            }
            None => {
                assert!(!whole.done, "case {case}: false end of data in {input:?}");
                assert_eq!(whole.consumed, input.len());
            }
        }
    }
}

// =========================================================================================
// The real binary: set-up, clients, process inspection
// =========================================================================================

/// A scratch directory with a configuration and a users file.
type Env = Scratch;

impl Env {
    fn new(users: &str, extra: &str) -> Env {
        let env = Scratch::with(users, |d| {
            format!(
                "listen = unix:{d}/lmtp.sock\nusers = {d}/users\n\
                 maildir = {d}/mail/%d/%n/Maildir\nmbox = {d}/mail/%d/%n/mbox\n\
                 sqlite = {d}/mail.db\nspool_dir = {d}/spool\nhostname = hard.test\n\
                 retry_journal = {d}/retry.db\n\
                 allow_root = yes\nlog_level = warn\n{extra}"
            )
        });
        fs::create_dir_all(env.path("mail/example.org")).expect("mail dir");
        env
    }

    fn sock(&self) -> PathBuf {
        self.path("lmtp.sock")
    }

    fn user_dir(&self, user: &str) -> PathBuf {
        self.path("mail/example.org").join(user)
    }

    fn maildir(&self, user: &str) -> PathBuf {
        self.user_dir(user).join("Maildir")
    }

    fn mbox(&self, user: &str) -> PathBuf {
        self.user_dir(user).join("mbox")
    }

    fn spawn(&self) -> Srv {
        self.spawn_with("")
    }

    /// Starts lmtpd through `sh -c`, running `shell` first (e.g. `ulimit -f 192`). SIGXFSZ is
    /// ignored so that a write over RLIMIT_FSIZE fails with EFBIG instead of killing lmtpd.
    fn spawn_with(&self, shell: &str) -> Srv {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("stderr.log"))
            .expect("open stderr log");
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("trap '' XFSZ; {shell}\nexec \"$0\" -c \"$1\""))
            .arg(BIN)
            .arg(self.path("lmtpd.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn lmtpd");
        let mut srv = Srv {
            child: Some(child),
            log: self.path("stderr.log"),
        };
        srv.wait_ready(&self.sock());
        srv
    }

    fn connect(&self) -> Client {
        Client::connect(&self.sock()).expect("connect to lmtpd")
    }
}

/// A running lmtpd; killed when dropped.
struct Srv {
    child: Option<Child>,
    log: PathBuf,
}

impl Srv {
    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until a connection gets the greeting (a stale socket file left by a killed
    /// server refuses connections until the new one has replaced it).
    fn wait_ready(&mut self, sock: &Path) {
        let start = Instant::now();
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("lmtpd exited at start-up: {st:?}\n{}", self.log_text());
                }
            }
            if let Ok(mut c) = Client::connect(sock) {
                let _ = c.try_cmd("QUIT");
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "lmtpd never answered\n{}",
                self.log_text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap.
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` (`-HUP`, `-TERM`, ...) to process `pid`.
    fn kill(signal: &str, pid: u32) {
        let _ = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status();
    }

    /// SIGTERM; waits up to `limit` for the exit.
    fn term(&mut self, limit: Duration) -> ExitStatus {
        let Some(mut c) = self.child.take() else {
            panic!("server already stopped");
        };
        Srv::kill("-TERM", c.id());
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st;
            }
            if start.elapsed() > limit {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "lmtpd did not exit within {limit:?} of SIGTERM\n{}",
                    self.log_text()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and require exit status 0.
    fn stop(&mut self) {
        let st = self.term(Duration::from_secs(30));
        assert!(st.success(), "lmtpd exit {st:?}\n{}", self.log_text());
    }

    /// `VmRSS` / `VmHWM` etc. from /proc, in KiB.
    fn status_kib(&self, key: &str) -> u64 {
        let text = fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim_start_matches(':').split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("status field")
    }

    fn fd_count(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("fd dir")
            .count()
    }

    /// `Max file size` soft limit in bytes (None = unlimited).
    fn fsize_limit(&self) -> Option<u64> {
        let text = fs::read_to_string(format!("/proc/{}/limits", self.pid())).expect("limits");
        let line = text.lines().find(|l| l.starts_with("Max file size"))?;
        line.split_whitespace().nth(3)?.parse().ok()
    }
}

impl Drop for Srv {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The shared client over lmtpd's Unix socket, with 30 s read and write timeouts.
impl Client {
    fn connect(sock: &Path) -> io::Result<Client> {
        Client::raw(sock)?.try_greeted("220 ")
    }

    fn raw(sock: &Path) -> io::Result<Client> {
        Client::connect_unix(sock, Some(Duration::from_secs(30)))
    }

    fn cmd_bytes(&mut self, line: &[u8]) -> String {
        self.try_send(line).expect("send");
        self.try_reply().expect("reply")
    }

    /// One transaction; returns, per recipient, the RCPT reply when it was refused, else
    /// the post-dot reply.
    fn send_mail(&mut self, rcpts: &[&str], wire: &[u8]) -> Vec<String> {
        self.expect("MAIL FROM:<sender@example.net>", "250");
        let mut replies: Vec<Option<String>> = Vec::new();
        for r in rcpts {
            let rep = self.try_cmd(&format!("RCPT TO:<{r}>")).expect("RCPT");
            replies.push(if rep.starts_with("250") {
                None
            } else {
                Some(rep)
            });
        }
        if replies.iter().all(Option::is_some) {
            self.expect("RSET", "250");
        } else {
            self.expect("DATA", "354");
            self.try_send(wire).expect("send content");
            for slot in replies.iter_mut().filter(|s| s.is_none()) {
                *slot = Some(self.try_reply().expect("post-dot reply"));
            }
        }
        replies.into_iter().map(Option::unwrap_or_default).collect()
    }
}

/// True when the server has sent `c` nothing (not even EOF) so far: a read that would block.
/// Leaves the client's 30 s timeouts as they were.
fn nothing_sent_yet(c: &mut Client) -> bool {
    c.r.get_ref()
        .set_read_timeout(Some(Duration::from_millis(1)))
        .expect("timeout");
    let quiet = matches!(
        c.r.fill_buf(),
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
    );
    c.r.get_ref()
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    quiet
}

// =========================================================================================
// Messages and what the stores hold
// =========================================================================================

/// The message with unique id `id` as it must be stored (LF line ends, no trace headers).
/// Deterministic in `id`; sizes vary, about one in 40 is above the 128 KiB spool bound.
fn logical_message(id: &str) -> Vec<u8> {
    let mut rng = XorShift::new(seed_of(id));
    let size = if rng.below(40) == 0 {
        150_000 + rng.below(100_000)
    } else {
        50 + rng.below(6000)
    };
    let mut m = format!(
        "From: <load@example.net>\nTo: <rcpt@example.org>\nSubject: hard {id}\n\
         Message-ID: <{id}@hard.test>\n\nid={id}\n"
    )
    .into_bytes();
    const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789   .,-";
    while m.len() < size {
        let len = rng.below(120);
        if rng.below(8) == 0 {
            m.push(b'.');
        } else {
            m.push(b'x');
        }
        for _ in 0..len {
            m.push(ALPHA[rng.below(ALPHA.len())]);
        }
        m.push(b'\n');
    }
    m
}

/// LF text → LMTP DATA content: CRLF line ends, dot-stuffing, the final dot.
fn wire(logical: &[u8]) -> Vec<u8> {
    let mut w = Vec::with_capacity(logical.len() + logical.len() / 20 + 8);
    let mut at_line_start = true;
    for &b in logical {
        if at_line_start && b == b'.' {
            w.push(b'.');
        }
        if b == b'\n' {
            w.extend_from_slice(b"\r\n");
            at_line_start = true;
        } else {
            w.push(b);
            at_line_start = false;
        }
    }
    if !at_line_start {
        w.extend_from_slice(b"\r\n");
    }
    w.extend_from_slice(b".\r\n");
    w
}

/// Removes the trace block the server prepends (Return-Path, Delivered-To, Received with
/// its continuation line).
fn strip_trace(mut b: &[u8]) -> &[u8] {
    loop {
        let trace = [
            &b"Return-Path:"[..],
            b"Delivered-To:",
            b"Received:",
            b"\t",
            b" ",
        ]
        .iter()
        .any(|p| b.starts_with(p));
        if !trace {
            return b;
        }
        match b.iter().position(|&c| c == b'\n') {
            Some(i) => b = &b[i + 1..],
            None => return &[],
        }
    }
}

fn id_of(msg: &[u8]) -> Option<String> {
    let at = msg.windows(14).position(|w| w == b"Subject: hard ")?;
    let rest = &msg[at + 14..];
    let end = rest.iter().position(|&c| c == b'\n')?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// Splits an mbox (mboxrd, LF) into its messages: a `From ` line at the start of the file
/// or after an empty line begins a message; the empty line before the next one (or at the
/// end) belongs to no message. A message missing its final empty line is returned as is,
/// so a torn append shows up as a message that matches nothing.
fn split_mbox(data: &[u8]) -> Vec<Vec<u8>> {
    let mut msgs: Vec<Vec<u8>> = Vec::new();
    let mut cur: Option<Vec<u8>> = None;
    let mut prev_empty = true;
    for line in data.split_inclusive(|&b| b == b'\n') {
        if prev_empty && line.starts_with(b"From ") {
            if let Some(mut m) = cur.take() {
                if m.ends_with(b"\n\n") {
                    m.pop();
                }
                msgs.push(m);
            }
            cur = Some(Vec::new());
        } else if let Some(m) = cur.as_mut() {
            m.extend_from_slice(line);
        } else {
            // Content before the first separator: garbage.
            msgs.push(line.to_vec());
        }
        prev_empty = line == b"\n";
    }
    if let Some(mut m) = cur {
        if m.ends_with(b"\n\n") {
            m.pop();
        } else {
            m.extend_from_slice(b"[no final empty line]");
        }
        msgs.push(m);
    }
    msgs
}

/// Python's opinion of an mbox: the Subject of every message it finds.
fn python_mbox_subjects(path: &Path) -> Vec<String> {
    const SCRIPT: &str = "\
import mailbox, sys
for m in mailbox.mbox(sys.argv[1], create=False):
    print(m['Subject'])
";
    python(SCRIPT, &[path.to_str().expect("UTF-8 path")])
        .lines()
        .map(str::to_string)
        .collect()
}

/// `PRAGMA integrity_check` and every delivery as (user address, body).
fn sqlite_dump(db: &Path) -> (String, Vec<(String, Vec<u8>)>) {
    const SCRIPT: &str = "\
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print(c.execute('PRAGMA integrity_check').fetchone()[0])
q = 'SELECT b.address, m.body FROM deliveries d JOIN messages m ON m.id = d.message_id JOIN mailboxes b ON b.id = d.mailbox_id'
for a, body in c.execute(q):
    print(a, bytes(body).hex())
";
    let text = python(SCRIPT, &[db.to_str().expect("UTF-8 path")]);
    let mut lines = text.lines();
    let check = lines.next().unwrap_or_default().to_string();
    let rows = lines
        .filter_map(|l| {
            let (a, body) = l.split_once(' ')?;
            Some((a.to_string(), hex(body)))
        })
        .collect();
    (check, rows)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Store {
    Maildir,
    Mbox,
    Sqlite,
    Postgres,
}

impl Store {
    fn name(self) -> &'static str {
        match self {
            Store::Maildir => "maildir",
            Store::Mbox => "mbox",
            Store::Sqlite => "sqlite",
            Store::Postgres => "postgres",
        }
    }
}

/// Every stored copy of `user` (trace headers removed), or None when it cannot be read
/// (SQLite without python3). Checks store integrity on the way.
fn stored(env: &Env, store: Store, user: &str) -> Option<Vec<Vec<u8>>> {
    match store {
        Store::Maildir => {
            let md = env.maildir(user);
            let mut out = Vec::new();
            for sub in ["new", "cur"] {
                for f in list(&md.join(sub)) {
                    let b = fs::read(&f).expect("read maildir file");
                    out.push(strip_trace(&b).to_vec());
                }
            }
            Some(out)
        }
        Store::Mbox => {
            let path = env.mbox(user);
            let data = fs::read(&path).unwrap_or_default();
            let msgs: Vec<Vec<u8>> = split_mbox(&data)
                .iter()
                .map(|m| strip_trace(m).to_vec())
                .collect();
            if have_python() && !data.is_empty() {
                let subjects = python_mbox_subjects(&path);
                assert_eq!(subjects.len(), msgs.len(), "python's mbox count differs");
            }
            Some(msgs)
        }
        Store::Sqlite => {
            if !have_python() {
                return None;
            }
            let db = env.path("mail.db");
            if !db.exists() {
                return Some(Vec::new());
            }
            let (check, rows) = sqlite_dump(&db);
            assert_eq!(check, "ok", "PRAGMA integrity_check");
            let addr = format!("{user}@example.org");
            Some(
                rows.into_iter()
                    .filter(|(a, _)| *a == addr)
                    .map(|(_, b)| b)
                    .collect(),
            )
        }
        Store::Postgres => {
            let conninfo = fs::read_to_string(env.path("postgres.conninfo")).expect("conninfo");
            let mut db = postgres::Client::connect(&conninfo, postgres::NoTls).expect("connect");
            let addr = format!("{user}@example.org");
            // The counters hold what is stored, whatever was killed mid-way.
            if let Some(row) = db
                .query_opt(
                    "SELECT used_messages, used_bytes, \
                     (SELECT count(*) FROM deliveries WHERE mailbox_id = b.id), \
                     (SELECT coalesce(sum(size), 0) FROM deliveries WHERE mailbox_id = b.id)::BIGINT \
                     FROM mailboxes b WHERE address = $1",
                    &[&addr],
                )
                .expect("counters")
            {
                let (m, b, n, s): (i64, i64, i64, i64) =
                    (row.get(0), row.get(1), row.get(2), row.get(3));
                assert_eq!((m, b), (n, s), "postgres {user}: counters against the rows");
            }
            let rows = db
                .query(
                    "SELECT d.trace, d.message_id FROM deliveries d \
                     JOIN mailboxes b ON b.id = d.mailbox_id WHERE b.address = $1",
                    &[&addr],
                )
                .expect("deliveries");
            let mut out = Vec::new();
            for row in rows {
                let mut copy: Vec<u8> = row.get(0);
                let id: i64 = row.get(1);
                for chunk in db
                    .query(
                        "SELECT data FROM message_chunks WHERE message_id = $1 ORDER BY seq",
                        &[&id],
                    )
                    .expect("chunks")
                {
                    copy.extend_from_slice(chunk.get::<_, &[u8]>(0));
                }
                out.push(strip_trace(&copy).to_vec());
            }
            Some(out)
        }
    }
}

/// What a client knows about one recipient of one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Got 250 after the dot: must be stored, exactly once, intact.
    Acked,
    /// Refused at RCPT or after the dot, or the dot was never sent: must not be stored.
    NotDelivered,
    /// The dot was sent but no reply came (server killed/closing): stored intact or absent.
    InFlight,
}

/// (message id, user, fate)
type Record = (String, String, Fate);

/// Sends one message; returns each recipient's fate and whether the connection is usable.
fn send_tracked(c: &mut Client, id: &str, users: &[&str], pause: bool) -> (Vec<Record>, bool) {
    let mut rec: Vec<Record> = users
        .iter()
        .map(|u| (id.to_string(), u.to_string(), Fate::NotDelivered))
        .collect();
    let ok = |r: &io::Result<String>, code: &str| r.as_ref().is_ok_and(|s| s.starts_with(code));
    let r = c.try_cmd("MAIL FROM:<load@example.net>");
    if !ok(&r, "250") {
        return (rec, false);
    }
    let mut accepted = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let r = c.try_cmd(&format!("RCPT TO:<{u}@example.org>"));
        if r.is_err() {
            return (rec, false);
        }
        if ok(&r, "250") {
            accepted.push(i);
        }
    }
    if accepted.is_empty() {
        let r = c.try_cmd("RSET");
        return (rec, ok(&r, "250"));
    }
    let r = c.try_cmd("DATA");
    if !ok(&r, "354") {
        return (rec, r.is_ok());
    }
    let w = wire(&logical_message(id));
    let (a, b) = w.split_at(w.len() / 2);
    if c.try_send(a).is_err() {
        return (rec, false);
    }
    if pause {
        thread::sleep(Duration::from_millis(20));
    }
    for &i in &accepted {
        rec[i].2 = Fate::InFlight;
    }
    if c.try_send(b).is_err() {
        return (rec, false);
    }
    for &i in &accepted {
        match c.try_reply() {
            Ok(r) if r.starts_with("250") => rec[i].2 = Fate::Acked,
            Ok(_) => rec[i].2 = Fate::NotDelivered,
            Err(_) => return (rec, false),
        }
    }
    (rec, true)
}

/// One load thread: messages `from..to` of thread `t`, recipients chosen by `rcpts(n)`.
/// Stops at the first broken connection. Returns the records and the next message number.
fn load_thread(
    sock: PathBuf,
    t: usize,
    from: usize,
    to: usize,
    rcpts: fn(usize) -> Vec<&'static str>,
    pause: bool,
    acked: Arc<AtomicUsize>,
) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let Ok(mut c) = Client::connect(&sock) else {
        return (records, from);
    };
    if !c
        .try_cmd("LHLO load.test")
        .is_ok_and(|r| r.starts_with("250"))
    {
        return (records, from);
    }
    for n in from..to {
        let id = format!("t{t}n{n}");
        let users = rcpts(n);
        let (rec, alive) = send_tracked(&mut c, &id, &users, pause);
        acked.fetch_add(
            rec.iter().filter(|r| r.2 == Fate::Acked).count(),
            Ordering::SeqCst,
        );
        records.extend(rec);
        if !alive {
            return (records, n + 1);
        }
    }
    let _ = c.try_cmd("QUIT");
    (records, to)
}

/// Checks the stores against the client records: every Acked copy present once and
/// byte-identical, nothing NotDelivered present, InFlight at most once and then intact,
/// nothing present that matches no record (a torn or foreign message).
fn verify(env: &Env, users: &[(&str, Store)], records: &[Record]) -> String {
    let mut summary = String::new();
    for &(user, store) in users {
        let Some(msgs) = stored(env, store, user) else {
            continue;
        };
        let mut count: HashMap<String, usize> = HashMap::new();
        for m in &msgs {
            let Some(id) = id_of(m) else {
                panic!(
                    "{} {user}: stored message without id (partial?): {:?}",
                    store.name(),
                    String::from_utf8_lossy(&m[..m.len().min(300)])
                );
            };
            assert!(
                m[..] == logical_message(&id)[..],
                "{} {user}: message {id} is not byte-identical ({} vs {} bytes)",
                store.name(),
                m.len(),
                logical_message(&id).len()
            );
            *count.entry(id).or_default() += 1;
        }
        let mut acked = 0;
        let mut in_flight_present = 0;
        let mut known = HashSet::new();
        for (id, u, fate) in records.iter().filter(|r| r.1 == user) {
            known.insert(id.clone());
            let n = count.get(id).copied().unwrap_or(0);
            match fate {
                Fate::Acked => {
                    acked += 1;
                    assert_eq!(
                        n,
                        1,
                        "{} {u}: acknowledged {id} stored {n} times",
                        store.name()
                    );
                }
                Fate::NotDelivered => {
                    assert_eq!(
                        n,
                        0,
                        "{} {u}: {id} was never acknowledged but is stored",
                        store.name()
                    );
                }
                Fate::InFlight => {
                    assert!(
                        n <= 1,
                        "{} {u}: in-flight {id} stored {n} times",
                        store.name()
                    );
                    in_flight_present += n;
                }
            }
        }
        for id in count.keys() {
            assert!(
                known.contains(id),
                "{} {user}: {id} stored but never sent to {user}",
                store.name()
            );
        }
        summary.push_str(&format!(
            "{} {user}: {} stored, {acked} acked, {in_flight_present} in flight and complete; ",
            store.name(),
            msgs.len()
        ));
    }
    summary
}

/// Every file under the scratch directory is either one of the server's own files or lies
/// inside `mail/example.org/<user>/` for a user of the users file; no symlinks inside mail/.
fn assert_nothing_outside_mailboxes(env: &Env, users: &[&str]) {
    let root = env.dir.path();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for p in list(&dir) {
            let rel = p.strip_prefix(root).expect("under root").to_path_buf();
            let meta = fs::symlink_metadata(&p).expect("lstat");
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let top_ok = parts.len() == 1
                && ([
                    "users",
                    "lmtpd.conf",
                    "lmtp.sock",
                    "stderr.log",
                    "mail",
                    "spool",
                ]
                .contains(&parts[0].as_str())
                    || parts[0].starts_with("mail.db")
                    || parts[0].starts_with("retry.db"));
            let in_mail = parts.first().map(String::as_str) == Some("mail")
                && (parts.len() == 1
                    || (parts[1] == "example.org"
                        && (parts.len() == 2 || users.contains(&parts[2].as_str()))));
            assert!(
                top_ok || in_mail,
                "{} lies outside the mailbox root",
                rel.display()
            );
            if parts.first().map(String::as_str) == Some("mail") {
                assert!(!meta.file_type().is_symlink(), "symlink {}", rel.display());
            }
            if parts.len() > 1 && parts[0] == "spool" {
                panic!("spool file left behind: {}", rel.display());
            }
            if meta.is_dir() {
                stack.push(p);
            } else {
                assert!(
                    meta.is_file() || meta.file_type().is_socket(),
                    "odd file {}",
                    rel.display()
                );
            }
        }
    }
}

fn age(path: &Path, hours: u64) {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open to age");
    f.set_modified(SystemTime::now() - Duration::from_secs(hours * 3600))
        .expect("set mtime");
}

// =========================================================================================
// Crash consistency: SIGKILL mid-load, restart, check every store
// =========================================================================================

const THREADS: usize = 4;
const PER_THREAD: usize = 250; // 4 × 250 = 1000 messages

fn crash_rcpts(n: usize) -> Vec<&'static str> {
    match n % 5 {
        0 => vec!["u0", "u1"],
        1 | 3 => vec!["u0"],
        _ => vec!["u1"],
    }
}

fn crash_consistency(store: Store) {
    let users = format!(
        "u0@example.org store={0}\nu1@example.org store={0}\n",
        store.name()
    );
    // fcntl + flock only: a dotlock left behind by the SIGKILL would (by design, like
    // liblockfile) block the mbox until it is 5 minutes old; see
    // `a_young_dotlock_is_450_4_2_0_for_that_mbox_only`.
    let env = Env::new(&users, "mbox_locks = fcntl flock\n");
    let mut srv = env.spawn();
    let acked = Arc::new(AtomicUsize::new(0));
    let start = |from: &[usize]| {
        (0..THREADS)
            .map(|t| {
                let sock = env.sock();
                let acked = Arc::clone(&acked);
                let from = from[t];
                thread::spawn(move || {
                    load_thread(sock, t, from, PER_THREAD, crash_rcpts, false, acked)
                })
            })
            .collect::<Vec<_>>()
    };
    // Phase 1: load, SIGKILL once ~350 copies are acknowledged.
    let handles = start(&[0; THREADS]);
    let t0 = Instant::now();
    while acked.load(Ordering::SeqCst) < 350 && t0.elapsed() < Duration::from_secs(60) {
        if handles.iter().all(|h| h.is_finished()) {
            break;
        }
        thread::sleep(Duration::from_millis(2));
    }
    srv.kill9();
    let mut records = Vec::new();
    let mut next = [0usize; THREADS];
    for (t, h) in handles.into_iter().enumerate() {
        let (rec, n) = h.join().expect("load thread");
        records.extend(rec);
        next[t] = n;
    }
    let killed_at = acked.load(Ordering::SeqCst);
    assert!(
        next.iter().any(|&n| n < PER_THREAD),
        "the load finished before the kill"
    );
    // A stale tmp/ file (40 h old) must be swept on the first delivery after the restart;
    // a young one (a delivery that may still be running elsewhere) must stay.
    if store == Store::Maildir {
        let tmp = env.maildir("u0").join("tmp");
        fs::write(tmp.join("1.stale.hard.test"), b"half a message").expect("stale tmp");
        age(&tmp.join("1.stale.hard.test"), 40);
        fs::write(tmp.join("2.young.hard.test"), b"young").expect("young tmp");
    }
    // Phase 2: restart, send the rest.
    let mut srv = env.spawn();
    let handles = start(&next);
    for h in handles {
        let (rec, n) = h.join().expect("load thread");
        assert_eq!(n, PER_THREAD, "phase 2 broke off\n{}", srv.log_text());
        let refused: Vec<&Record> = rec.iter().filter(|r| r.2 != Fate::Acked).collect();
        assert!(refused.is_empty(), "refused after the restart: {refused:?}");
        records.extend(rec);
    }
    srv.stop();
    let sent: HashSet<&str> = records.iter().map(|r| r.0.as_str()).collect();
    assert!(sent.len() >= 1000, "only {} messages sent", sent.len());
    let in_flight = records.iter().filter(|r| r.2 == Fate::InFlight).count();
    assert!(
        in_flight <= 2 * THREADS,
        "{in_flight} copies in flight at the kill"
    );
    let summary = verify(&env, &[("u0", store), ("u1", store)], &records);
    if store == Store::Maildir {
        let tmp = env.maildir("u0").join("tmp");
        assert!(
            !tmp.join("1.stale.hard.test").exists(),
            "stale tmp file not swept"
        );
        assert!(
            tmp.join("2.young.hard.test").exists(),
            "young tmp file swept"
        );
    }
    eprintln!("killed after {killed_at} acks; {in_flight} in flight; {summary}");
}

/// A node of the two-node test: its own directory and socket, the shared database.
fn postgres_node(conninfo: &str) -> Env {
    let env = Env::new(
        "u0@example.org store=postgres\nu1@example.org store=postgres\n",
        &format!("postgres = {conninfo}\nworkers = 8\n"),
    );
    fs::write(env.path("postgres.conninfo"), conninfo).expect("conninfo");
    env
}

/// Two lmtpd nodes on one PostgreSQL database, the threads of the load spread over both;
/// the database server is restarted mid-load, then one node is SIGKILLed while the other
/// keeps delivering, and restarted for the rest: every acknowledged copy is stored exactly
/// once and byte-identical (also through `lmtpd export`), a refused one at most once (a
/// commit whose answer the restart lost), and the quota counters equal what is stored.
#[test]
fn crash_consistency_postgres_two_nodes_one_sigkilled() {
    let Some(cluster) = lmtpd_postgres::testing::cluster() else {
        return;
    };
    let conninfo = cluster.database();
    let nodes = [postgres_node(&conninfo), postgres_node(&conninfo)];
    let mut a = nodes[0].spawn();
    let mut b = nodes[1].spawn();
    let acked = Arc::new(AtomicUsize::new(0));
    let start = |from: &[usize], which: &[usize]| {
        which
            .iter()
            .map(|&t| {
                let sock = nodes[t % 2].sock();
                let acked = Arc::clone(&acked);
                let from = from[t];
                (
                    t,
                    thread::spawn(move || {
                        load_thread(sock, t, from, PER_THREAD, crash_rcpts, false, acked)
                    }),
                )
            })
            .collect::<Vec<_>>()
    };
    let all: Vec<usize> = (0..THREADS).collect();
    let handles = start(&[0; THREADS], &all);
    let t0 = Instant::now();
    while acked.load(Ordering::SeqCst) < 150 && t0.elapsed() < Duration::from_secs(60) {
        thread::sleep(Duration::from_millis(2));
    }
    // The database server restarts under both nodes (open transactions are rolled back and
    // their recipients get 451; the pools reconnect).
    cluster.restart();
    let restarted_at = acked.load(Ordering::SeqCst);
    while acked.load(Ordering::SeqCst) < restarted_at + 200
        && t0.elapsed() < Duration::from_secs(90)
    {
        thread::sleep(Duration::from_millis(2));
    }
    a.kill9();
    let mut records = Vec::new();
    let mut next = [0usize; THREADS];
    for (t, h) in handles {
        let (rec, n) = h.join().expect("load thread");
        records.extend(rec);
        next[t] = n;
        if t % 2 == 1 {
            assert_eq!(n, PER_THREAD, "node b kept delivering\n{}", b.log_text());
        }
    }
    assert!(
        (0..THREADS).any(|t| t % 2 == 0 && next[t] < PER_THREAD),
        "node a finished before the kill"
    );
    let mut a = nodes[0].spawn();
    let rest: Vec<usize> = (0..THREADS).filter(|t| t % 2 == 0).collect();
    for (_, h) in start(&next, &rest) {
        let (rec, n) = h.join().expect("load thread");
        assert_eq!(n, PER_THREAD, "node a after its restart\n{}", a.log_text());
        records.extend(rec);
    }
    a.stop();
    b.stop();
    // A COMMIT the server performed while its answer was lost in the restart is in doubt:
    // lmtpd answered 451 (the MTA will retry) although the copy is stored. Such copies may
    // be there, once and intact, like the ones in flight at the kill; every acknowledged
    // copy must be there exactly once.
    let records: Vec<Record> = records
        .into_iter()
        .map(|(id, u, fate)| match fate {
            Fate::NotDelivered => (id, u, Fate::InFlight),
            other => (id, u, other),
        })
        .collect();
    let summary = verify(
        &nodes[0],
        &[("u0", Store::Postgres), ("u1", Store::Postgres)],
        &records,
    );
    // What is stored reads back byte-identical through `lmtpd export`.
    let out = nodes[0].path("export");
    let st = Command::new(BIN)
        .args([
            "export",
            "--postgres",
            &conninfo,
            "--mailbox",
            "u0@example.org",
            "--eml-dir",
        ])
        .arg(&out)
        .output()
        .expect("lmtpd export");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let files = list(&out);
    let stored_u0 = stored(&nodes[0], Store::Postgres, "u0").expect("stored");
    assert_eq!(files.len(), stored_u0.len(), "every message exported");
    for f in &files {
        let b = fs::read(f).expect("eml");
        let m = strip_trace(&b);
        let id = id_of(m).expect("id");
        assert!(m == &logical_message(&id)[..], "{} differs", f.display());
    }
    eprintln!("postgres, two nodes: {summary}; {} exported", files.len());
}

#[test]
fn crash_consistency_maildir_sigkill_mid_load() {
    crash_consistency(Store::Maildir);
}

#[test]
fn crash_consistency_mbox_sigkill_mid_load() {
    crash_consistency(Store::Mbox);
}

#[test]
fn crash_consistency_sqlite_sigkill_mid_load() {
    crash_consistency(Store::Sqlite);
}

// =========================================================================================
// Fault injection
// =========================================================================================

const FAULT_USERS: &str = "md@example.org\nmd2@example.org\nmb@example.org store=mbox\n\
                           mb2@example.org store=mbox\nsq@example.org store=sqlite\n";

fn small_wire(id: &str) -> Vec<u8> {
    wire(format!("Subject: hard {id}\n\nsmall message {id}\n").as_bytes())
}

/// Mechanism: RLIMIT_FSIZE (`ulimit -f`, SIGXFSZ ignored) so that writes past the limit
/// fail with EFBIG. All stores share the limit, so the mbox of `mb` is filled to just
/// below it beforehand: appending a small message crosses the limit for `mb` only, while
/// the same message fits as a new Maildir file and in the SQLite database.
#[test]
fn efbig_on_one_mbox_is_452_4_3_1_for_it_and_250_for_the_others() {
    let env = Env::new(FAULT_USERS, "");
    let mut srv = env.spawn_with("ulimit -f 2048");
    let limit = srv.fsize_limit().expect("a file size limit");
    assert!((512 * 1024..=4 << 20).contains(&limit), "limit {limit}");
    fs::create_dir_all(env.user_dir("mb")).expect("mkdir");
    let mut filler = b"From x@y Thu Jan  1 00:00:00 1970\nSubject: filler\n\n".to_vec();
    while (filler.len() as u64) < limit - 600 {
        filler.extend_from_slice(b"filler line of text\n");
    }
    filler.extend_from_slice(b"\n");
    fs::write(env.mbox("mb"), &filler).expect("fill mbox");
    let mut c = env.connect();
    c.expect("LHLO fault.test", "250");
    let msg = wire(format!("Subject: hard efbig\n\n{}\n", "y".repeat(2000)).as_bytes());
    let r = c.send_mail(
        &["md@example.org", "mb@example.org", "sq@example.org"],
        &msg,
    );
    assert!(r[0].starts_with("250 2.0.0"), "{r:?}");
    assert!(r[1].starts_with("452 4.3.1"), "{r:?}");
    assert!(r[2].starts_with("250 2.0.0"), "{r:?}");
    // Nothing partial: the mbox was truncated back to exactly what it was.
    assert_eq!(fs::read(env.mbox("mb")).expect("mbox"), filler);
    assert_eq!(list(&env.maildir("md").join("new")).len(), 1);
    assert!(list(&env.maildir("md").join("tmp")).is_empty());
    srv.stop();
    if let Some(sq) = stored(&env, Store::Sqlite, "sq") {
        assert_eq!(sq.len(), 1);
    }
}

/// Mechanism: RLIMIT_FSIZE below the size of one copy (`ulimit -f 192`: 96 KiB with dash's
/// 512-octet blocks) and a ~110 KiB message, which stays in memory (spool bound 128 KiB), so
/// the failure happens in the stores: the Maildir copy and the SQLite body both exceed it.
/// Every recipient gets 452 4.3.1 (or another 4xx for SQLite), nothing partial is left, and
/// a small message afterwards is delivered to all of them.
#[test]
fn efbig_in_maildir_and_sqlite_leaves_nothing_partial() {
    let env = Env::new(FAULT_USERS, "");
    let mut srv = env.spawn_with("ulimit -f 192");
    let limit = srv.fsize_limit().expect("a file size limit");
    // POSIX `ulimit -f` counts 512-octet blocks (dash, bash as sh); a shell counting KiB
    // would put the limit above the spool bound, and the test would check nothing.
    assert!(
        limit < 120 * 1024,
        "sh's ulimit -f 192 gives {limit} octets: not below the spool bound"
    );
    let mut c = env.connect();
    c.expect("LHLO fault.test", "250");
    let big = wire(format!("Subject: hard big\n\n{}\n", "z".repeat(110 * 1024)).as_bytes());
    let r = c.send_mail(
        &["md@example.org", "sq@example.org", "mb@example.org"],
        &big,
    );
    assert!(r[0].starts_with("452 4.3.1"), "{r:?}");
    assert!(r[1].starts_with('4'), "{r:?}");
    assert!(r[2].starts_with("452 4.3.1"), "{r:?}");
    assert!(list(&env.maildir("md").join("new")).is_empty());
    assert!(list(&env.maildir("md").join("tmp")).is_empty());
    assert_eq!(fs::read(env.mbox("mb")).unwrap_or_default().len(), 0);
    let r = c.send_mail(
        &["md@example.org", "sq@example.org", "mb@example.org"],
        &small_wire("after"),
    );
    assert!(r.iter().all(|r| r.starts_with("250 2.0.0")), "{r:?}");
    srv.stop();
    if let Some(sq) = stored(&env, Store::Sqlite, "sq") {
        assert_eq!(sq.len(), 1, "only the small message is in SQLite");
    }
    assert_eq!(stored(&env, Store::Mbox, "mb").map(|m| m.len()), Some(1));
}

/// Mechanism (the tests run as root, where chmod 000 does not stop writes): md's Maildir
/// has a regular FILE where `tmp/` should be; mb's mbox lives under a path whose parent is
/// a regular file. Those two get 4xx (451 4.3.0 at RCPT or after the dot); md2, mb2 and sq
/// in the same transaction get 250; nothing is written anywhere for the broken two.
#[test]
fn unwritable_mailboxes_get_4xx_and_the_others_250_in_the_same_transaction() {
    let env = Env::new(FAULT_USERS, "");
    let md = env.maildir("md");
    fs::create_dir_all(md.join("new")).expect("mkdir");
    fs::create_dir_all(md.join("cur")).expect("mkdir");
    fs::write(md.join("tmp"), b"not a directory").expect("tmp file");
    fs::write(env.user_dir("mb"), b"not a directory").expect("file as dir");
    let mut srv = env.spawn();
    let mut c = env.connect();
    c.expect("LHLO fault.test", "250");
    let r = c.send_mail(
        &[
            "md@example.org",
            "md2@example.org",
            "mb@example.org",
            "mb2@example.org",
            "sq@example.org",
        ],
        &small_wire("unwritable"),
    );
    assert!(r[0].starts_with("451 4.3.0"), "{r:?}");
    assert!(r[1].starts_with("250 2.0.0"), "{r:?}");
    assert!(r[2].starts_with("451 4.3.0"), "{r:?}");
    assert!(r[3].starts_with("250 2.0.0"), "{r:?}");
    assert!(r[4].starts_with("250 2.0.0"), "{r:?}");
    assert!(list(&md.join("new")).is_empty());
    assert_eq!(fs::read(md.join("tmp")).expect("tmp"), b"not a directory");
    assert_eq!(
        fs::read(env.user_dir("mb")).expect("file"),
        b"not a directory"
    );
    srv.stop();
    assert_eq!(
        stored(&env, Store::Maildir, "md2").map(|m| m.len()),
        Some(1)
    );
    assert_eq!(stored(&env, Store::Mbox, "mb2").map(|m| m.len()), Some(1));
}

/// Mechanism for SQLite (one database for every user, so "one unwritable mailbox" does not
/// exist there): another process holds the write lock (`BEGIN EXCLUSIVE` from python3) and
/// `sqlite_busy_timeout = 1`: the SQLite recipient gets 451 4.3.0, the Maildir and mbox
/// recipients 250, and no row is added.
#[test]
fn sqlite_locked_by_another_writer_is_451_and_the_others_250() {
    if !have_python() {
        return;
    }
    let env = Env::new(FAULT_USERS, "sqlite_busy_timeout = 1\n");
    let mut srv = env.spawn();
    let (mut locker, line) = python_holder(
        "import sqlite3, sys\n\
         c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
         c.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\nsys.stdin.read()",
        &env.path("mail.db"),
    );
    assert_eq!(line.trim(), "locked");
    let mut c = env.connect();
    c.expect("LHLO fault.test", "250");
    let r = c.send_mail(
        &["md@example.org", "sq@example.org", "mb@example.org"],
        &small_wire("locked"),
    );
    drop(locker.stdin.take());
    let _ = locker.wait();
    assert!(r[0].starts_with("250 2.0.0"), "{r:?}");
    assert!(r[1].starts_with("451 4.3.0"), "{r:?}");
    assert!(r[2].starts_with("250 2.0.0"), "{r:?}");
    srv.stop();
    assert_eq!(stored(&env, Store::Sqlite, "sq").map(|m| m.len()), Some(0));
}

/// A Maildir replaced by a symlink to another (valid) maildir → 451 4.3.0 for that
/// recipient, the symlink target untouched, the other recipient 250.
#[test]
fn symlinked_maildir_is_451_and_its_target_untouched() {
    let env = Env::new(FAULT_USERS, "");
    let target = env.path("elsewhere/Maildir");
    for sub in ["new", "cur", "tmp"] {
        fs::create_dir_all(target.join(sub)).expect("mkdir");
    }
    fs::create_dir_all(env.user_dir("md")).expect("mkdir");
    symlink(&target, env.maildir("md")).expect("symlink");
    let mut srv = env.spawn();
    let mut c = env.connect();
    c.expect("LHLO fault.test", "250");
    let r = c.send_mail(
        &["md@example.org", "md2@example.org"],
        &small_wire("symlink"),
    );
    assert!(r[0].starts_with("451 4.3.0"), "{r:?}");
    assert!(r[1].starts_with("250 2.0.0"), "{r:?}");
    for sub in ["new", "cur", "tmp"] {
        assert!(
            list(&target.join(sub)).is_empty(),
            "{sub} written through symlink"
        );
    }
    srv.stop();
}

/// An mbox that is a symlink, and one that is a hard link (link count 2) → 550 5.2.0 for
/// each, both targets unchanged, the third recipient 250.
#[test]
fn mbox_symlink_or_hard_link_is_550_5_2_0() {
    let env = Env::new(FAULT_USERS, "");
    fs::create_dir_all(env.path("elsewhere")).expect("mkdir");
    let t1 = env.path("elsewhere/one");
    let t2 = env.path("elsewhere/two");
    fs::write(&t1, b"").expect("target");
    fs::write(&t2, b"").expect("target");
    fs::create_dir_all(env.user_dir("mb")).expect("mkdir");
    fs::create_dir_all(env.user_dir("mb2")).expect("mkdir");
    symlink(&t1, env.mbox("mb")).expect("symlink");
    fs::hard_link(&t2, env.mbox("mb2")).expect("hard link");
    let mut srv = env.spawn();
    let mut c = env.connect();
    c.expect("LHLO fault.test", "250");
    let r = c.send_mail(
        &["mb@example.org", "mb2@example.org", "md@example.org"],
        &small_wire("links"),
    );
    assert!(r[0].starts_with("550 5.2.0"), "{r:?}");
    assert!(r[1].starts_with("550 5.2.0"), "{r:?}");
    assert!(r[2].starts_with("250 2.0.0"), "{r:?}");
    assert!(fs::read(&t1).expect("t1").is_empty());
    assert!(fs::read(&t2).expect("t2").is_empty());
    srv.stop();
}

/// A dotlock as a SIGKILLed writer leaves it (fresh, so not yet stale) → that mbox gets
/// 450 4.2.0 after `mbox_lock_timeout`, the other recipients 250, the mbox untouched.
#[test]
fn a_young_dotlock_is_450_4_2_0_for_that_mbox_only() {
    let env = Env::new(FAULT_USERS, "mbox_lock_timeout = 1\n");
    fs::create_dir_all(env.user_dir("mb")).expect("mkdir");
    fs::write(env.mbox("mb"), b"").expect("mbox");
    fs::write(env.user_dir("mb").join("mbox.lock"), b"12345\n").expect("dotlock");
    let mut srv = env.spawn();
    let mut c = env.connect();
    c.expect("LHLO fault.test", "250");
    let r = c.send_mail(
        &["mb@example.org", "mb2@example.org", "md@example.org"],
        &small_wire("dotlock"),
    );
    assert!(r[0].starts_with("450 4.2.0"), "{r:?}");
    assert!(r[1].starts_with("250 2.0.0"), "{r:?}");
    assert!(r[2].starts_with("250 2.0.0"), "{r:?}");
    assert!(fs::read(env.mbox("mb")).expect("mbox").is_empty());
    assert!(
        env.user_dir("mb").join("mbox.lock").exists(),
        "a live lock was removed"
    );
    srv.stop();
}

// =========================================================================================
// Resource exhaustion
// =========================================================================================

#[test]
fn full_pool_refuses_extra_clients_at_once_and_recovers_after_the_idle_timeout() {
    let env = Env::new("u0@example.org\n", "workers = 4\ntimeout = 2\n");
    let mut srv = env.spawn();
    // wait_ready's probe connection must be gone before the pool is counted.
    thread::sleep(Duration::from_millis(300));
    let mut idle: Vec<Client> = (0..4).map(|_| env.connect()).collect();
    for i in 0..50 {
        let mut c = Client::raw(&env.sock()).expect("connect");
        let r = c.try_reply().expect("a reply, not a hang");
        assert!(r.starts_with("421 4.3.2"), "extra client {i}: {r}");
        assert!(c.closed(), "extra client {i} not closed");
    }
    // "At once" as an order of events: all 50 were refused while every idle session still
    // held its worker, before any of them timed out (a refusal that waited for a worker
    // would come after the first timeout, or be a 220).
    for (i, c) in idle.iter_mut().enumerate() {
        assert!(
            nothing_sent_yet(c),
            "idle session {i} timed out before the refusals ended"
        );
    }
    // The idle sessions then time out (timeout = 2; each read waits up to 30 s)…
    for c in &mut idle {
        let r = c.try_reply().expect("timeout reply");
        assert!(r.starts_with("421 4.4.2"), "{r}");
    }
    // …and service resumes.
    thread::sleep(Duration::from_millis(200));
    let mut c = env.connect();
    c.expect("LHLO pool.test", "250");
    let r = c.send_mail(&["u0@example.org"], &small_wire("resumed"));
    assert!(r[0].starts_with("250 2.0.0"), "{r:?}");
    srv.stop();
}

#[test]
fn a_thousand_dropped_connections_leak_no_fds_and_no_memory() {
    let env = Env::new("u0@example.org\n", "workers = 4\n");
    let mut srv = env.spawn();
    let churn = |n: usize| {
        for i in 0..n {
            let Ok(mut c) = Client::raw(&env.sock()) else {
                continue;
            };
            match i % 4 {
                0 => {}
                1 => {
                    let _ = c.try_reply();
                }
                2 => {
                    let _ = c.try_reply();
                    let _ = c.try_send(b"LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u0@example.org>\r\nDATA\r\npartial body");
                    let _ = c.try_reply();
                }
                _ => {
                    let _ = c.try_send(b"LHLO half a comm");
                }
            }
        }
    };
    let settle = |want: Option<usize>| {
        let t0 = Instant::now();
        loop {
            let n = srv.fd_count();
            if want.is_some_and(|w| n <= w) || t0.elapsed() > Duration::from_secs(5) {
                return n;
            }
            if want.is_none() && t0.elapsed() > Duration::from_millis(500) {
                return n;
            }
            thread::sleep(Duration::from_millis(50));
        }
    };
    churn(100); // warm-up: thread stacks, allocator arenas
    let fds = settle(None);
    let rss = srv.status_kib("VmRSS");
    churn(1000);
    let fds_after = settle(Some(fds));
    let rss_after = srv.status_kib("VmRSS");
    assert!(fds_after <= fds, "fds {fds} -> {fds_after}");
    assert!(
        rss_after <= rss + 2048,
        "VmRSS {rss} KiB -> {rss_after} KiB after 1000 connections"
    );
    assert!(list(&env.maildir("u0").join("new")).is_empty());
    assert!(list(&env.path("spool")).is_empty());
    srv.stop();
}

/// Regression test for the trickle finding (fixed in 55011da, "Idle timeout counts from the
/// last progress, not the last byte"): before, `last_input` in src/server/conn.rs restarted
/// with every byte read, so a client sending one byte per second held a worker forever.
/// Now a client trickling a command line, or trickling DATA content, gets `421 4.4.2`
/// within about `timeout` (2 s here) and the worker is free again.
#[test]
fn a_trickling_client_cannot_hold_a_worker_past_the_timeout() {
    let env = Env::new("u0@example.org\n", "workers = 1\ntimeout = 2\n");
    let mut srv = env.spawn();
    thread::sleep(Duration::from_millis(300));
    for in_data in [false, true] {
        // The only worker may still be returning from the previous round's session.
        let t1 = Instant::now();
        let mut c = loop {
            match Client::connect(&env.sock()) {
                Ok(c) => break c,
                Err(e) if t1.elapsed() < Duration::from_secs(3) => {
                    let _ = e;
                    thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("worker not free: {e}"),
            }
        };
        if in_data {
            c.expect("LHLO trickle.test", "250");
            c.expect("MAIL FROM:<t@example.net>", "250");
            c.expect("RCPT TO:<u0@example.org>", "250");
            c.expect("DATA", "354");
        }
        c.r.get_mut()
            .set_read_timeout(Some(Duration::from_millis(10)))
            .expect("timeout");
        // One byte a second, eight at most: the 421 must come while the client is still
        // trickling (an idle timer restarted by every byte would never fire).
        let mut got = String::new();
        let mut sent = 0;
        while sent < 8 {
            // Read first: the 421 may already be waiting when the next send fails.
            let mut line = String::new();
            if c.r.read_line(&mut line).is_ok() && !line.is_empty() {
                got = line;
                break;
            }
            let _ = c.try_send(b"x");
            sent += 1;
            thread::sleep(Duration::from_millis(1000));
        }
        assert!(
            got.starts_with("421 4.4.2"),
            "in_data={in_data}: {sent} bytes one a second held the only worker \
             (timeout = 2 s); reply {got:?}"
        );
        // The worker is free again (once the closing session has returned it).
        let t1 = Instant::now();
        let mut next = loop {
            match Client::connect(&env.sock()) {
                Ok(c) => break c,
                Err(e) if t1.elapsed() < Duration::from_secs(3) => {
                    let _ = e;
                    thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("worker not freed: {e}"),
            }
        };
        next.expect("NOOP", "250");
        let _ = next.try_cmd("QUIT");
    }
    assert!(list(&env.maildir("u0").join("new")).is_empty());
    srv.stop();
}

// =========================================================================================
// Hostile addresses and content
// =========================================================================================

const HOSTILE_USERS: &str = "alice@example.org\nbob@example.org\nvictim@example.org\n\
                             mb@example.org store=mbox\n";

#[test]
fn hostile_addresses_get_clear_replies_and_nothing_lands_outside_the_mailboxes() {
    let env = Env::new(HOSTILE_USERS, "detail_mailbox = create\n");
    let mut srv = env.spawn();
    let mut c = env.connect();
    c.expect("LHLO hostile.test", "250");
    c.expect("MAIL FROM:<\"../../etc\"@example.net> SMTPUTF8", "250");
    let long_local = "a".repeat(1100); // past MAX_COMMAND_LINE (1064)
    let long_detail = format!("alice+{}", "x".repeat(200));
    let cases: Vec<(Vec<u8>, &[&str])> = vec![
        (b"<alice+a/b@example.org>".to_vec(), &["550 5.1.3"]),
        (
            b"<alice/../bob@example.org>".to_vec(),
            &["501", "550 5.1.3"],
        ),
        (
            b"<alice+../../etc@example.org>".to_vec(),
            &["501", "550 5.1.3"],
        ),
        (
            b"<\"alice+../../etc\"@example.org>".to_vec(),
            &["550 5.1.3"],
        ),
        (b"<\"../alice\"@example.org>".to_vec(), &["550 5.1.3"]),
        (b"<\"alice+\\/x\"@example.org>".to_vec(), &["550 5.1.3"]),
        (b"<\"alice+\\\\x\"@example.org>".to_vec(), &["550 5.1.3"]),
        (b"<alice+.hidden@example.org>".to_vec(), &["550 5.1.3"]),
        (
            b"<alice+%2f..%2fx@example.org>".to_vec(),
            &["501", "550 5.1.3"],
        ),
        (
            b"<alice+%2fetc%2fpasswd@example.org>".to_vec(),
            &["250", "550"],
        ),
        (b"<%2e%2e%2falice@example.org>".to_vec(), &["550"]),
        (b"<alice@example.org/../../x>".to_vec(), &["501"]),
        (b"<alice@..>".to_vec(), &["501"]),
        (b"<alice@[127.0.0.1/../x]>".to_vec(), &["550"]),
        (b"<alice@[..]>".to_vec(), &["550"]),
        (b"<alice\0@example.org>".to_vec(), &["501", "500"]),
        (b"<\"al\0ice\"@example.org>".to_vec(), &["501", "500"]),
        (b"<alice+\0@example.org>".to_vec(), &["501", "500"]),
        (b"<alice\r@example.org>".to_vec(), &["500 5.5.2"]),
        (b"<ali\nce@example.org>".to_vec(), &["500 5.5.2"]),
        (
            format!("<{long_local}@example.org>").into_bytes(),
            &["500 5.5.2"],
        ),
        (
            format!("<{long_detail}@example.org>").into_bytes(),
            &["501", "553"],
        ),
        (
            format!("<{}@example.org>", "b".repeat(65)).into_bytes(),
            &["501", "553"],
        ),
        (
            "<alice+\u{2024}\u{2024}\u{2215}x@example.org>"
                .as_bytes()
                .to_vec(),
            &["250", "550"],
        ),
        (
            "<alice+\u{ff0e}\u{ff0e}@example.org>".as_bytes().to_vec(),
            &["250", "550"],
        ),
        (
            "<\u{2024}\u{2024}@example.org>".as_bytes().to_vec(),
            &["550 5.1.1"],
        ),
        (
            "<alice\u{ff0e}\u{ff0e}@example.org>".as_bytes().to_vec(),
            &["550 5.1.1"],
        ),
        ("<alice+\u{85}x@example.org>".as_bytes().to_vec(), &["501"]),
        (b"<\"\"@example.org>".to_vec(), &["501"]),
        (b"<\"\"@>".to_vec(), &["501"]),
        (b"<@example.org>".to_vec(), &["501"]),
    ];
    let mut accepted = 0;
    let mut wrong = Vec::new();
    for (addr, allowed) in &cases {
        let mut line = b"RCPT TO:".to_vec();
        line.extend_from_slice(addr);
        line.extend_from_slice(b"\r\n");
        let r = c.cmd_bytes(&line);
        eprintln!("{:?} -> {}", String::from_utf8_lossy(addr), r.trim_end());
        if !allowed.iter().any(|a| r.starts_with(a)) {
            wrong.push(format!("{:?} -> {r}", String::from_utf8_lossy(addr)));
        }
        // A clear reply: one line with an enhanced status code of the same class.
        let class = &r[..1];
        assert!(
            r[4..].starts_with(class) && r.matches("\r\n").count() == 1,
            "{r}"
        );
        if r.starts_with("250") {
            accepted += 1;
        }
        // Reset the consecutive-error counter so the session stays usable.
        c.expect("NOOP", "250");
    }
    assert!(wrong.is_empty(), "unexpected replies:\n{}", wrong.join(""));
    if accepted > 0 {
        c.expect("DATA", "354");
        c.try_send(&small_wire("hostile")).expect("content");
        for _ in 0..accepted {
            let r = c.try_reply().expect("post-dot");
            assert!(r.starts_with("250 2.0.0"), "{r}");
        }
    }
    c.expect("QUIT", "221");
    srv.stop();
    assert!(list(&env.maildir("victim").join("new")).is_empty());
    assert_nothing_outside_mailboxes(&env, &["alice", "bob", "victim", "mb"]);
}

#[test]
fn hostile_content_big_header_only_dots_and_every_smuggling_variant() {
    let env = Env::new(HOSTILE_USERS, "");
    let mut srv = env.spawn();
    let mut c = env.connect();
    c.expect("LHLO hostile.test", "250");
    let mut expected: Vec<Vec<u8>> = Vec::new();

    // A header line of 1 MiB.
    let mut big = format!(
        "Subject: hard big-header\nX-Long: {}\n\nbody\n",
        "h".repeat(1 << 20)
    )
    .into_bytes();
    let r = c.send_mail(&["alice@example.org"], &wire(&big));
    assert!(r[0].starts_with("250 2.0.0"), "{r:?}");
    expected.push(std::mem::take(&mut big));

    // A message of only dots.
    let dots = format!(
        "Subject: hard dots\n\n.\n..\n...\n{}\n.\n",
        ".".repeat(5000)
    )
    .into_bytes();
    let r = c.send_mail(&["alice@example.org"], &wire(&dots));
    assert!(r[0].starts_with("250 2.0.0"), "{r:?}");
    expected.push(dots);
    // Only dots on the wire (no header): `..` lines and the final dot.
    let r = c.send_mail(&["alice@example.org"], b"..\r\n...\r\n..\r\n.\r\n");
    assert!(r[0].starts_with("250 2.0.0"), "{r:?}");
    expected.push(b".\n..\n.\n".to_vec());

    // Standards §10.6 item 43 and the item 44 variants (plus LF.LF and CR.CRLF): none of
    // them ends the data; exactly one post-dot reply per recipient; no second transaction.
    for (i, eot) in [
        &b"\n.\n"[..],
        b"\n.\r\n",
        b"\r\n.\n",
        b"\r.\r",
        b"\r\n.\r\r\n",
        b"\r.\r\n",
    ]
    .iter()
    .enumerate()
    {
        let mut content = format!("Subject: hard smuggle{i}\r\n\r\nbody").into_bytes();
        content.extend_from_slice(eot);
        content.extend_from_slice(
            b"MAIL FROM:<evil@x>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nforged\r\n.\r\n",
        );
        c.expect("MAIL FROM:<sender@example.net>", "250");
        c.expect("RCPT TO:<alice@example.org>", "250");
        c.expect("RCPT TO:<bob@example.org>", "250");
        c.expect("DATA", "354");
        c.try_send(&content).expect("content");
        for _ in 0..2 {
            let r = c.try_reply().expect("post-dot");
            assert!(r.starts_with("250 2.0.0"), "variant {eot:?}: {r}");
        }
        // The next reply must be NOOP's: nothing else was queued.
        let r = c.try_cmd("NOOP").expect("NOOP");
        assert_eq!(r, "250 2.0.0 Ok\r\n", "variant {eot:?}");
    }
    // Item 45: `a\nFrom x` in content is stored in mbox with the From line quoted.
    let r = c.send_mail(
        &["mb@example.org"],
        b"Subject: hard from\r\n\r\na\nFrom x\r\nFrom y\r\n>From z\r\n.\r\n",
    );
    assert!(r[0].starts_with("250 2.0.0"), "{r:?}");
    c.expect("QUIT", "221");
    srv.stop();

    assert!(
        list(&env.maildir("victim").join("new")).is_empty(),
        "victim got mail"
    );
    let alice = stored(&env, Store::Maildir, "alice").expect("alice");
    for want in &expected {
        assert!(
            alice.iter().any(|m| m == want),
            "missing or altered: {:?}",
            String::from_utf8_lossy(&want[..want.len().min(60)])
        );
    }
    let smuggled: Vec<&Vec<u8>> = alice
        .iter()
        .filter(|m| m.windows(18).any(|w| w == b"MAIL FROM:<evil@x>"))
        .collect();
    assert_eq!(
        smuggled.len(),
        6,
        "each smuggling attempt is one message's content"
    );
    assert_eq!(
        stored(&env, Store::Maildir, "bob").map(|m| m.len()),
        Some(6)
    );
    let mbox = fs::read_to_string(env.mbox("mb")).expect("mbox");
    for l in mbox.lines() {
        assert!(
            !l.starts_with("From x") && !l.starts_with("From y"),
            "unquoted {l:?}"
        );
    }
    assert!(mbox.contains("\n>From x\n") && mbox.contains("\n>From y\n"));
    assert!(mbox.contains("\n>>From z\n"));
    if have_python() {
        assert_eq!(python_mbox_subjects(&env.mbox("mb")), ["hard from"]);
    }
    assert_nothing_outside_mailboxes(&env, &["alice", "bob", "victim", "mb"]);
}

// =========================================================================================
// Shutdown under load
// =========================================================================================

fn mixed_rcpts(n: usize) -> Vec<&'static str> {
    match n % 3 {
        0 => vec!["u0", "u1", "u2"],
        1 => vec!["u1"],
        _ => vec!["u2", "u0"],
    }
}

#[test]
fn sigterm_under_load_finishes_or_refuses_cleanly_and_exits_0() {
    let env = Env::new(
        "u0@example.org\nu1@example.org store=mbox\nu2@example.org store=sqlite\n",
        "shutdown_timeout = 10\n",
    );
    let mut srv = env.spawn();
    let acked = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let sock = env.sock();
            let acked = Arc::clone(&acked);
            // pause = true: each DATA is sent in two halves 20 ms apart, so SIGTERM
            // catches transactions mid-DATA.
            thread::spawn(move || load_thread(sock, t, 0, 10_000, mixed_rcpts, true, acked))
        })
        .collect();
    let t0 = Instant::now();
    while acked.load(Ordering::SeqCst) < 60 && t0.elapsed() < Duration::from_secs(30) {
        thread::sleep(Duration::from_millis(5));
    }
    let status = srv.term(Duration::from_secs(20));
    assert!(status.success(), "exit {status:?}\n{}", srv.log_text());
    let mut records = Vec::new();
    for h in handles {
        let (rec, n) = h.join().expect("load thread");
        assert!(n < 10_000, "a client kept going after shutdown");
        records.extend(rec);
    }
    let summary = verify(
        &env,
        &[
            ("u0", Store::Maildir),
            ("u1", Store::Mbox),
            ("u2", Store::Sqlite),
        ],
        &records,
    );
    assert!(
        list(&env.maildir("u0").join("tmp")).is_empty(),
        "tmp/ not clean"
    );
    assert!(list(&env.path("spool")).is_empty(), "spool not clean");
    assert!(!env.sock().exists(), "socket file left");
    eprintln!("{summary}");
}

// =========================================================================================
// Capacity and observability (issue 12)
// =========================================================================================

/// Reads one reply line within `limit`; `None` when nothing (or no full line) came.
fn reply_within(c: &mut Client, limit: Duration) -> Option<String> {
    c.r.get_ref().set_read_timeout(Some(limit)).ok()?;
    c.try_reply().ok()
}

/// The time stamp of an env_logger line (`[2026-12-03T08:11:19.123Z WARN ...`) in
/// milliseconds, counted so that later is larger (a month counts 31 days: only differences
/// within a day are exact, which is all a test run needs).
fn log_millis(line: &str) -> Option<u64> {
    let ts = line.strip_prefix('[')?.split(' ').next()?;
    let n = |r: std::ops::Range<usize>| ts.get(r)?.parse::<u64>().ok();
    let (y, mo, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (h, mi, s, ms) = (n(11..13)?, n(14..16)?, n(17..19)?, n(20..23)?);
    let days = (y * 12 + mo) * 31 + d;
    Some((((days * 24 + h) * 60 + mi) * 60 + s) * 1000 + ms)
}

/// CPU seconds (user + system) the process has used, from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().expect("utime") + f[12].parse::<f64>().expect("stime");
    ticks / 100.0 // USER_HZ is 100 on Linux
}

#[test]
fn the_default_configuration_serves_256_simultaneous_connections() {
    // No `workers` line: the shipped default must greet and serve them all at once.
    let env = Env::new("u0@example.org\n", "");
    let mut srv = env.spawn();
    let mut clients: Vec<Client> = (0..256)
        .map(|i| Client::raw(&env.sock()).unwrap_or_else(|e| panic!("connect {i}: {e}")))
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let r = reply_within(c, Duration::from_secs(10)).unwrap_or_default();
        assert!(r.starts_with("220 "), "client {i} of 256: {r:?}");
    }
    // All open at once, each is a live session: every one delivers a message.
    for (i, c) in clients.iter_mut().enumerate() {
        c.r.get_ref()
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        c.expect("LHLO many.test", "250");
        let r = c.send_mail(&["u0@example.org"], &small_wire(&format!("c{i}")));
        assert!(r[0].starts_with("250 2.0.0"), "client {i}: {r:?}");
    }
    assert_eq!(list(&env.maildir("u0").join("new")).len(), 256);
    drop(clients);
    let log = srv.log_text();
    assert!(!log.contains("refused with 421"), "{log}");
    srv.stop();
}

#[test]
fn with_every_worker_busy_a_new_client_gets_421_within_two_seconds() {
    let env = Env::new("u0@example.org\n", "workers = 3\n");
    let mut srv = env.spawn();
    thread::sleep(Duration::from_millis(300)); // wait_ready's probe session ends
    let mut busy: Vec<Client> = (0..3).map(|_| env.connect()).collect();
    for (i, c) in busy.iter_mut().enumerate() {
        c.expect("LHLO busy.test", "250");
        // One of them sits in the middle of a transaction.
        if i == 0 {
            c.expect("MAIL FROM:<s@example.net>", "250");
            c.expect("RCPT TO:<u0@example.org>", "250");
        }
    }
    // The refusal does not wait for a worker: each extra client gets its 421 while all three
    // workers are still held (they are released only below), so any reply at all proves it;
    // the 10 s read timeout only bounds a hang. (How fast it comes is for make bench.)
    for i in 0..10 {
        let mut c = Client::raw(&env.sock()).expect("connect");
        let r = reply_within(&mut c, Duration::from_secs(10));
        assert!(
            r.as_deref().is_some_and(|r| r.starts_with("421 4.3.2")),
            "extra client {i}: {r:?}"
        );
        assert!(c.closed(), "extra client {i} left open");
    }
    assert!(
        busy.iter_mut().all(nothing_sent_yet),
        "a busy session was ended by the refusals"
    );
    // A session that ends frees its worker for the next client (once the closing session
    // has returned it: a refusal right after the 221 is allowed, within a 10 s deadline).
    busy.pop().expect("a client").expect("QUIT", "221");
    let t0 = Instant::now();
    let greeted = loop {
        let mut c = Client::raw(&env.sock()).expect("connect");
        match reply_within(&mut c, Duration::from_secs(10)) {
            Some(r) if r.starts_with("220 ") => break c,
            r => assert!(
                t0.elapsed() < Duration::from_secs(10),
                "worker not free again: {r:?}"
            ),
        }
        thread::sleep(Duration::from_millis(20));
    };
    drop(greeted);
    drop(busy);
    // Ten refusals, one right after the other: one log line, or two should they straddle
    // a second (at most one a second), never one each.
    let lines = srv
        .log_text()
        .lines()
        .filter(|l| l.contains("refused with 421"))
        .count();
    assert!((1..=2).contains(&lines), "{}", srv.log_text());
    srv.stop();
}

#[test]
fn out_of_descriptors_the_accept_loop_refuses_backs_off_and_recovers() {
    // A hard limit of 40 descriptors: about 30 sessions fit beside the server's own.
    let env = Env::new("u0@example.org\n", "log_level = info\n");
    let mut srv = env.spawn_with("ulimit -n 40");
    let limits = fs::read_to_string(format!("/proc/{}/limits", srv.pid())).expect("limits");
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(" 40 ")),
        "{limits}"
    );
    assert!(
        srv.log_text().contains("RLIMIT_NOFILE allows 40"),
        "the shortfall is logged at start:\n{}",
        srv.log_text()
    );
    let mut held = Vec::new();
    let (mut greeted, mut refused) = (0, 0);
    for i in 0..60 {
        let Ok(mut c) = Client::raw(&env.sock()) else {
            continue;
        };
        // Every client is answered, not left in the backlog; 10 s only bounds a hang.
        match reply_within(&mut c, Duration::from_secs(10)) {
            Some(r) if r.starts_with("220 ") => {
                greeted += 1;
                held.push(c);
            }
            Some(r) if r.starts_with("421 4.3.2") => refused += 1,
            r => panic!("client {i}: neither greeted nor refused: {r:?}"),
        }
    }
    assert!(greeted >= 20, "greeted {greeted}");
    assert!(refused >= 10, "refused {refused}");
    // While out of descriptors, the loop must not spin on the readable listener: over two
    // quiet seconds (nothing to do but back off) a spinning loop burns about two seconds of
    // CPU, a backing-off one next to none.
    let cpu0 = cpu_seconds(srv.pid());
    thread::sleep(Duration::from_secs(2));
    let cpu = cpu_seconds(srv.pid()) - cpu0;
    assert!(cpu < 1.0, "{cpu:.2} s of CPU in 2 quiet seconds: spinning");
    // At most one accept warning a second, by the log's own timestamps (stamped a moment
    // after the check and truncated to the millisecond, hence 900).
    let log = srv.log_text();
    let stamps: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("accept on"))
        .map(|l| log_millis(l).unwrap_or_else(|| panic!("no timestamp: {l}")))
        .collect();
    assert!(!stamps.is_empty(), "the shortage is logged:\n{log}");
    for w in stamps.windows(2) {
        assert!(
            w[1] >= w[0] + 900,
            "two accept warnings {} ms apart:\n{log}",
            w[1].saturating_sub(w[0])
        );
    }
    // Descriptors free up: service resumes, a whole delivery included.
    drop(held);
    let t1 = Instant::now();
    let mut c = loop {
        match Client::connect(&env.sock()) {
            Ok(c) => break c,
            Err(e) => assert!(t1.elapsed() < Duration::from_secs(5), "no recovery: {e}"),
        }
        thread::sleep(Duration::from_millis(50));
    };
    c.expect("LHLO back.test", "250");
    let r = c.send_mail(&["u0@example.org"], &small_wire("after-emfile"));
    assert!(r[0].starts_with("250 2.0.0"), "{r:?}");
    drop(c);
    srv.stop();
}

#[test]
fn a_panicking_session_gets_421_4_3_0_and_the_pool_keeps_its_capacity() {
    lmtpd::server::conn::arm_test_panic("lmtpd-test-panic");
    let dir = tempfile::tempdir().expect("tmp");
    let users = dir.path().join("users");
    fs::write(&users, "u0@example.org\n").expect("users");
    let sock = dir.path().join("lmtp.sock");
    let mut cfg = lmtpd::config::Config::default();
    cfg.listeners.listen = vec![lmtpd::config::Listen::Unix(sock.clone())];
    cfg.delivery.hostname = "panic.test".into();
    cfg.recipients.users = users;
    cfg.maildir.template = format!("{}/mail/%d/%n/Maildir", dir.path().display());
    cfg.delivery.spool_dir = dir.path().join("spool");
    cfg.delivery.retry_journal = dir.path().join("retry.db");
    cfg.process.workers = 2;
    let directory = lmtpd::directory::Directory::load(&cfg).expect("users");
    let server =
        lmtpd::server::Server::bind(lmtpd::server::Context::new(cfg, directory).expect("context"))
            .expect("bind");
    let shutdown = Arc::clone(&server.context().shutdown);
    let handle = thread::spawn(move || server.run().expect("run"));
    // Twice as many panics as workers: a leaked slot would refuse the clients below.
    for i in 0..4 {
        let mut c = Client::connect(&sock).expect("greeted");
        c.expect("LHLO p.test", "250");
        c.expect("MAIL FROM:<s@example.net>", "250");
        let r = c.try_cmd("RCPT TO:<lmtpd-test-panic@example.org>");
        let r = r.unwrap_or_default();
        assert!(r.starts_with("421 4.3.0"), "panic {i}: {r}");
        assert!(c.closed(), "closed after the panic");
    }
    let mut a = Client::connect(&sock).expect("a greeted");
    let mut b = Client::connect(&sock).expect("b greeted");
    for (n, c) in [&mut a, &mut b].into_iter().enumerate() {
        c.expect("LHLO p.test", "250");
        let r = c.send_mail(&["u0@example.org"], &small_wire(&format!("after-{n}")));
        assert!(r[0].starts_with("250 2.0.0"), "{r:?}");
    }
    // Still exactly two: a third is refused while both are open.
    let mut third = Client::raw(&sock).expect("connect");
    let r = reply_within(&mut third, Duration::from_secs(10)).unwrap_or_default();
    assert!(r.starts_with("421 4.3.2"), "{r}");
    drop((a, b));
    shutdown.trigger();
    handle.join().expect("server thread");
}

#[test]
fn a_sighup_between_rcpt_and_the_final_dot_does_not_split_the_transaction() {
    let env = Env::new("u0@example.org\n", "");
    let conf = env.path("lmtpd.conf");
    let first = fs::read_to_string(&conf).expect("conf");
    let mut srv = env.spawn();
    let mut c = env.connect();
    c.expect("LHLO hup.test", "250");
    c.expect("MAIL FROM:<s@example.net>", "250");
    c.expect("RCPT TO:<u0@example.org>", "250");
    // New settings: another Maildir location, and a marker user that shows the reload.
    let d = env.dir.path().display().to_string();
    fs::write(
        &conf,
        first.replace(
            &format!("maildir = {d}/mail/%d/%n/Maildir"),
            &format!("maildir = {d}/moved/%d/%n/Maildir"),
        ),
    )
    .expect("conf");
    fs::write(env.path("users"), "u0@example.org\nmarker@example.org\n").expect("users");
    Srv::kill("-HUP", srv.pid());
    let t0 = Instant::now();
    loop {
        let mut p = env.connect();
        p.expect("LHLO probe.test", "250");
        p.expect("MAIL FROM:<s@example.net>", "250");
        let r = p.try_cmd("RCPT TO:<marker@example.org>").expect("RCPT");
        if r.starts_with("250") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "never reloaded");
        thread::sleep(Duration::from_millis(50));
    }
    // The open transaction finishes with the settings it started with…
    c.expect("DATA", "354");
    c.try_send(&small_wire("begun-before-hup")).expect("send");
    let r = c.try_reply().expect("reply");
    assert!(r.starts_with("250 2.0.0"), "{r}");
    assert_eq!(
        list(&env.maildir("u0").join("new")).len(),
        1,
        "old location"
    );
    let moved = env.path("moved/example.org/u0/Maildir/new");
    assert!(list(&moved).is_empty(), "nothing at the new location yet");
    // …and the next transaction of the same session uses the new ones.
    let r = c.send_mail(&["u0@example.org"], &small_wire("after-hup"));
    assert!(r[0].starts_with("250 2.0.0"), "{r:?}");
    assert_eq!(list(&moved).len(), 1, "new location");
    assert_eq!(list(&env.maildir("u0").join("new")).len(), 1);
    drop(c);
    srv.stop();
}

/// One HTTP request over the metrics Unix socket; the whole response.
fn http(sock: &Path, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(sock).expect("metrics socket");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    out
}

/// The value of one sample (`name{labels}` exactly as written), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

/// Checks the exposition text with the real parsers: `promtool check metrics` (Debian
/// package prometheus), required (.ci/run installs it; see `common::require`), and Python's
/// prometheus_client as well when it is installed.
fn check_with_real_parsers(text: &str) {
    use std::io::Write;
    let promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    if common::require("promtool", promtool.is_ok()) {
        let mut p = promtool.expect("promtool started");
        p.stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
        let out = p.wait_with_output().expect("promtool");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "promtool check metrics: {said}");
        assert!(said.trim().is_empty(), "promtool lint findings: {said}");
    }
    let have_client = Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if have_client {
        let tmp = tempfile::NamedTempFile::new().expect("tmp");
        fs::write(tmp.path(), text).expect("write");
        let n = python(
            "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as f\n\
             print(sum(len(m.samples) for m in f(open(sys.argv[1]).read())))\n",
            &[&tmp.path().display().to_string()],
        );
        assert!(n.trim().parse::<usize>().expect("count") > 40, "{n}");
    }
}

#[test]
fn metrics_endpoint_counts_what_was_sent_in_the_prometheus_format() {
    let env = Env::new(
        "u0@example.org\nmb@example.org store=mbox\n",
        "metrics = unix:METRICS\n",
    );
    let msock = env.path("metrics.sock");
    let conf = env.path("lmtpd.conf");
    let text = fs::read_to_string(&conf).expect("conf");
    fs::write(&conf, text.replace("METRICS", &msock.display().to_string())).expect("conf");
    let mut srv = env.spawn();
    let mut c = env.connect();
    c.expect("LHLO metrics.test", "250");
    let wire = small_wire("counted");
    let content = wire.len() - 3; // minus the final ".\r\n"
    for _ in 0..3 {
        let r = c.send_mail(&["u0@example.org"], &wire);
        assert!(r[0].starts_with("250 2.0.0"), "{r:?}");
    }
    let r = c.send_mail(
        &["mb@example.org", "nobody@example.org", "u0@example.org"],
        &wire,
    );
    assert!(
        r[0].starts_with("250 2.0.0") && r[1].starts_with("550") && r[2].starts_with("250"),
        "{r:?}"
    );
    c.expect("QUIT", "221");
    // The pool frees the slot before the client sees the end: nothing is active after it.
    assert!(c.closed());
    drop(c);

    let resp = http(&msock, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let (head, body) = resp.split_once("\r\n\r\n").expect("head and body");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{head}"
    );
    let get = |s: &str| sample(body, s).unwrap_or_else(|| panic!("no {s} in\n{body}"));
    assert_eq!(
        get("lmtpd_deliveries_total{store=\"maildir\",status=\"2.0.0\"}"),
        4.0
    );
    assert_eq!(
        get("lmtpd_deliveries_total{store=\"mbox\",status=\"2.0.0\"}"),
        1.0
    );
    assert_eq!(get("lmtpd_recipients_total{code=\"250\"}"), 5.0);
    assert_eq!(get("lmtpd_recipients_total{code=\"550\"}"), 1.0);
    assert_eq!(get("lmtpd_transactions_total{result=\"delivered\"}"), 4.0);
    assert_eq!(
        get("lmtpd_delivery_duration_seconds_count{store=\"maildir\"}"),
        4.0
    );
    assert_eq!(
        get("lmtpd_delivery_duration_seconds_bucket{store=\"mbox\",le=\"+Inf\"}"),
        1.0
    );
    assert_eq!(
        get("lmtpd_delivery_duration_seconds_count{store=\"sqlite\"}"),
        0.0
    );
    // Content after unstuffing and CRLF -> LF, four messages.
    let received = get("lmtpd_received_bytes_total");
    assert!(
        received >= 4.0 * (content as f64 * 0.9) && received <= 4.0 * content as f64,
        "{received} vs {content}"
    );
    assert_eq!(
        get("lmtpd_spool_bytes"),
        0.0,
        "nothing spooled once delivered"
    );
    // wait_ready's probe, the session above; scrapes are not LMTP connections.
    assert_eq!(get("lmtpd_connections_total{listener=\"unix\"}"), 2.0);
    assert_eq!(get("lmtpd_sessions_refused_total{reason=\"busy\"}"), 0.0);
    assert_eq!(get("lmtpd_workers_max"), 512.0);
    assert_eq!(get("lmtpd_sessions_active"), 0.0);
    assert_eq!(get("lmtpd_sessions_queued"), 0.0);
    assert_eq!(
        get("lmtpd_worker_threads"),
        2.0,
        "the two kept idle, nothing more"
    );
    check_with_real_parsers(body);

    // Nothing but that path.
    assert!(http(&msock, "GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(http(
        &msock,
        "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
    )
    .starts_with("HTTP/1.1 405"));
    assert!(http(&msock, "hello\r\n\r\n").starts_with("HTTP/1.1 400"));
    let head_only = http(&msock, "HEAD /metrics HTTP/1.0\r\n\r\n");
    assert!(
        head_only.starts_with("HTTP/1.1 200") && head_only.ends_with("\r\n\r\n"),
        "{head_only}"
    );
    srv.stop();
}
