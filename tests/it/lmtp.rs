//! Integration tests: a real lmtpd server in-process on TCP and a Unix socket, driven by a
//! scripted LMTP client, with the Maildir on disk inspected after each conversation.

use crate::common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use common::{list, Client, TestServer, GREETING};
use lmtpd::config::{Config, Listen};
use lmtpd::directory::Directory;
use lmtpd::server::{Context, Server};

const USERS: &str = "alice@example.org\nbob@example.org\nfull@example.org quota=1K\n";

impl TestServer {
    fn start_lmtp() -> TestServer {
        Self::start_with(|_| {})
    }

    fn start_with(tune: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::with_users(USERS, |cfg, _| tune(cfg))
    }

    fn maildir(&self, user: &str) -> PathBuf {
        self.dir
            .path()
            .join("mail/example.org")
            .join(user)
            .join("Maildir")
    }

    fn files(&self, user: &str, sub: &str) -> Vec<PathBuf> {
        list(&self.maildir(user).join(sub))
    }

    fn greeted_tcp(&self) -> Client {
        Client::connect_tcp(self.tcp, None)
            .expect("connect")
            .greeted(GREETING)
    }

    fn greeted_unix(&self) -> Client {
        Client::connect_unix(&self.sock, None)
            .expect("connect unix")
            .greeted(GREETING)
    }
}

fn message(subject: &str, body: &str) -> String {
    format!("From: sender@example.net\r\nSubject: {subject}\r\n\r\n{body}\r\n.\r\n")
}

#[test]
fn mixed_recipient_outcomes_over_tcp_land_on_disk() {
    let mut srv = TestServer::start_lmtp();
    // Fill full@'s mailbox past its 1K quota.
    let full = srv.maildir("full");
    for d in ["new", "cur", "tmp"] {
        fs::create_dir_all(full.join(d)).expect("mkdir");
    }
    fs::write(full.join("new/1.M1P1.x,S=2000"), vec![b'x'; 2000]).expect("fill");

    let mut c = srv.greeted_tcp();
    c.lhlo();
    c.expect("MAIL FROM:<sender@example.net>", "250 2.1.0");
    c.expect("RCPT TO:<alice@example.org>", "250 2.1.5");
    c.expect("RCPT TO:<nobody@example.org>", "550 5.1.1");
    c.expect("RCPT TO:<full@example.org>", "452 4.2.2");
    c.expect("RCPT TO:<bob@example.org>", "250 2.1.5");
    c.expect("DATA", "354");
    c.send(message("mixed", "hello").as_bytes());
    let a = c.reply();
    let b = c.reply();
    assert!(a.starts_with("250 2.0.0 <alice@example.org>"), "{a}");
    assert!(b.starts_with("250 2.0.0 <bob@example.org>"), "{b}");
    c.expect("QUIT", "221 2.0.0");
    assert!(c.closed());

    let files = srv.files("alice", "new");
    assert_eq!(files.len(), 1);
    let content = fs::read_to_string(&files[0]).expect("read");
    assert!(content.starts_with("Return-Path: <sender@example.net>\nDelivered-To: alice@example.org\nReceived: from client.test ([127.0.0.1]) by lmtpd.test with LMTP id "), "{content}");
    assert!(
        content.ends_with("\nFrom: sender@example.net\nSubject: mixed\n\nhello\n"),
        "{content}"
    );
    assert_eq!(srv.files("bob", "new").len(), 1);
    assert_eq!(
        srv.files("full", "new").len(),
        1,
        "only the pre-existing file"
    );
    assert!(srv.files("alice", "tmp").is_empty());
    srv.stop();
}

#[test]
fn message_over_quota_fails_after_data_for_that_recipient_only() {
    let srv = TestServer::start_lmtp();
    let mut c = srv.greeted_unix();
    c.lhlo();
    c.expect("MAIL FROM:<>", "250");
    c.expect("RCPT TO:<full@example.org>", "250 2.1.5");
    c.expect("RCPT TO:<alice@example.org>", "250 2.1.5");
    c.expect("DATA", "354");
    let big = "x".repeat(2000);
    c.send(message("big", &big).as_bytes());
    let r1 = c.reply();
    let r2 = c.reply();
    assert!(r1.starts_with("452 4.2.2"), "{r1}");
    assert!(r2.starts_with("250 2.0.0"), "{r2}");
    assert!(srv.files("full", "new").is_empty());
    let files = srv.files("alice", "new");
    assert_eq!(files.len(), 1);
    let content = fs::read_to_string(&files[0]).expect("read");
    // Over a Unix socket no address is invented; the null sender is <>.
    assert!(content.starts_with("Return-Path: <>\n"), "{content}");
    assert!(
        content.contains("Received: from client.test by lmtpd.test with LMTP"),
        "{content}"
    );
}

#[test]
fn bdat_chunks_over_tcp_are_one_message_and_failed_chunks_stay_in_sync() {
    let srv = TestServer::start_lmtp();
    let mut c = srv.greeted_tcp();
    c.lhlo();
    let part1 = "From: s@example.net\r\nSubject: bdat\r\n\r\nline one\r";
    let part2 = "\nQUIT\r\n.\r\n";
    let mut batch = format!(
        "MAIL FROM:<s@example.net>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<x@nowhere>\r\n\
         RCPT TO:<bob@example.org>\r\nBDAT {}\r\n{part1}BDAT {} LAST\r\n{part2}",
        part1.len(),
        part2.len()
    );
    // BDAT outside a transaction: 503, and its octets (a QUIT) are not executed.
    batch.push_str("BDAT 6\r\nQUIT\r\nNOOP\r\n");
    c.send(batch.as_bytes());
    for want in [
        "250 2.1.0",
        "250 2.1.5",
        "550 5.1.1",
        "250 2.1.5",
        "250 2.0.0",
        "250 2.0.0 <alice@example.org>",
        "250 2.0.0 <bob@example.org>",
        "503 5.5.1",
        "250 2.0.0 Ok",
    ] {
        let r = c.reply();
        assert!(r.starts_with(want), "want {want}, got {r}");
    }
    let files = srv.files("alice", "new");
    assert_eq!(files.len(), 1);
    let got = fs::read_to_string(&files[0]).expect("read");
    assert!(
        got.ends_with("Subject: bdat\n\nline one\nQUIT\n.\n"),
        "{got}"
    );
    assert_eq!(srv.files("bob", "new").len(), 1);
}

#[test]
fn whole_pipelined_transactions_in_one_write() {
    let srv = TestServer::start_lmtp();
    let mut c = srv.greeted_unix();
    c.lhlo();
    let mut batch = String::new();
    for i in 0..3 {
        batch.push_str("MAIL FROM:<s@example.net>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<x@nowhere>\r\nDATA\r\n");
        batch.push_str(&message(&format!("p{i}"), "pipelined"));
    }
    batch.push_str("QUIT\r\n");
    c.send(batch.as_bytes());
    for _ in 0..3 {
        for want in [
            "250 2.1.0",
            "250 2.1.5",
            "250 2.1.5",
            "550 5.1.1",
            "354",
            "250 2.0.0",
            "250 2.0.0",
        ] {
            let r = c.reply();
            assert!(r.starts_with(want), "want {want}, got {r}");
        }
    }
    assert!(c.reply().starts_with("221"));
    assert_eq!(srv.files("alice", "new").len(), 3);
    assert_eq!(srv.files("bob", "new").len(), 3);
}

#[test]
fn dot_stuffing_round_trips_and_smuggling_does_not_end_data() {
    let srv = TestServer::start_lmtp();
    let mut c = srv.greeted_tcp();
    c.lhlo();
    c.expect("MAIL FROM:<s@example.net>", "250");
    c.expect("RCPT TO:<alice@example.org>", "250");
    c.expect("DATA", "354");
    c.send(b"Subject: dots\r\n\r\n..leading\r\n..\r\n.x\r\nbody\n.\nMAIL FROM:<evil@x>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nforged\r\n.\r\n");
    assert!(c.reply().starts_with("250 2.0.0"));
    c.expect("NOOP", "250");
    assert!(
        srv.files("bob", "new").is_empty(),
        "no smuggled second transaction"
    );
    let files = srv.files("alice", "new");
    assert_eq!(files.len(), 1);
    let content = fs::read_to_string(&files[0]).expect("read");
    let body = content.split_once("\n\n").expect("header end").1;
    assert_eq!(
        body,
        ".leading\n.\nx\nbody\n.\nMAIL FROM:<evil@x>\nRCPT TO:<bob@example.org>\nDATA\nforged\n"
    );
}

#[test]
fn dropped_connection_mid_data_delivers_nothing() {
    let srv = TestServer::start_lmtp();
    {
        let mut c = srv.greeted_tcp();
        c.lhlo();
        c.expect("MAIL FROM:<s@example.net>", "250");
        c.expect("RCPT TO:<alice@example.org>", "250");
        c.expect("DATA", "354");
        // Big enough to overflow the in-memory spool into a file.
        let chunk = "y".repeat(1000) + "\r\n";
        for _ in 0..300 {
            c.send(chunk.as_bytes());
        }
    } // dropped here
      // Another session proves the server is alive, and gives the first one time to end.
    let mut c = srv.greeted_tcp();
    c.lhlo();
    thread::sleep(Duration::from_millis(300));
    assert!(srv.files("alice", "new").is_empty());
    assert!(srv.files("alice", "tmp").is_empty());
    assert!(list(&srv.dir.path().join("spool")).is_empty());
}

#[test]
fn twenty_mib_message_is_delivered_intact() {
    let srv = TestServer::start_lmtp();
    let mut c = srv.greeted_unix();
    c.lhlo();
    c.expect("MAIL FROM:<s@example.net> SIZE=21000000", "250");
    c.expect("RCPT TO:<alice@example.org>", "250");
    c.expect("DATA", "354");
    c.send(b"Subject: big\r\n\r\n");
    let line = format!("{}\r\n", "z".repeat(1022));
    let mut sent_lines = 0usize;
    let mut block = String::new();
    for _ in 0..64 {
        block.push_str(&line);
    }
    while sent_lines < 20 * 1024 {
        c.send(block.as_bytes());
        sent_lines += 64;
    }
    c.send(b".\r\n");
    let r = c.reply();
    assert!(r.starts_with("250 2.0.0"), "{r}");
    let files = srv.files("alice", "new");
    assert_eq!(files.len(), 1);
    let len = fs::metadata(&files[0]).expect("stat").len();
    let name = files[0]
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string();
    assert!(name.contains(&format!(",S={len}")), "{name} vs {len}");
    assert!(len > 20 * 1024 * 1023, "{len}");
}

#[test]
fn fifty_concurrent_clients_ten_messages_each() {
    // Issue 12: with the default workers all 500 messages are accepted (16 workers and a
    // queue of 16 took 320 and answered the rest 421).
    let srv = TestServer::start_lmtp();
    let addr = srv.tcp;
    let sock = srv.sock.clone();
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let sock = sock.clone();
            thread::spawn(move || {
                let c = if i % 2 == 0 {
                    Client::connect_tcp(addr, None)
                } else {
                    Client::connect_unix(&sock, None)
                };
                let mut c = c.expect("connect").greeted(GREETING);
                c.lhlo();
                for m in 0..10 {
                    c.expect("MAIL FROM:<s@example.net>", "250");
                    c.expect("RCPT TO:<alice@example.org>", "250");
                    c.expect("DATA", "354");
                    c.send(message(&format!("c{i} m{m}"), "load").as_bytes());
                    let r = c.reply();
                    assert!(r.starts_with("250 2.0.0"), "{r}");
                }
                c.expect("QUIT", "221");
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client");
    }
    let files = srv.files("alice", "new");
    assert_eq!(files.len(), 500);
    let mut names: Vec<_> = files.iter().map(|f| f.file_name()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 500, "unique names");
}

#[test]
fn idle_client_gets_421_4_4_2() {
    let srv = TestServer::start_with(|c| c.limits.timeout = Duration::from_secs(1));
    let mut c = srv.greeted_tcp();
    c.lhlo();
    let r = c.reply();
    assert!(r.starts_with("421 4.4.2"), "{r}");
    assert!(c.closed());
}

#[test]
fn full_pool_answers_421_4_3_2_at_once() {
    let srv = TestServer::start_with(|c| c.process.workers = 1);
    let mut first = srv.greeted_tcp();
    first.lhlo();
    let mut s = TcpStream::connect(srv.tcp).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut got = String::new();
    s.read_to_string(&mut got).expect("read");
    assert!(got.starts_with("421 4.3.2"), "{got}");
    first.expect("QUIT", "221");
}

#[test]
fn shutdown_tells_idle_sessions_421_4_3_2() {
    let mut srv = TestServer::start_lmtp();
    let mut c = srv.greeted_unix();
    c.lhlo();
    srv.stop();
    let r = c.reply();
    assert!(r.starts_with("421 4.3.2"), "{r}");
    assert!(!srv.sock.exists(), "socket file removed at shutdown");
}

#[test]
fn stale_unix_socket_is_replaced_but_a_live_one_is_not() {
    let srv = TestServer::start_lmtp();
    // A second server on the same live socket path must refuse to start.
    let mut cfg = Config::default();
    cfg.listeners.listen = vec![Listen::Unix(srv.sock.clone())];
    cfg.recipients.users = srv.dir.path().join("users");
    cfg.delivery.retry_journal = srv.dir.path().join("state/retry2.db");
    let d = Directory::load(&cfg).expect("users");
    assert!(Server::bind(Context::new(cfg.clone(), d).expect("context")).is_err());
    // A leftover socket file with nobody behind it is replaced.
    let stale = srv.dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
    cfg.listeners.listen = vec![Listen::Unix(stale.clone())];
    let d = Directory::load(&cfg).expect("users");
    let s = Server::bind(Context::new(cfg, d).expect("context")).expect("stale socket replaced");
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(&stale).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    drop(s);
}

#[test]
fn a_client_trickling_bytes_cannot_hold_a_worker_past_the_timeout() {
    let srv = TestServer::start_with(|c| c.limits.timeout = Duration::from_secs(2));
    let mut s = TcpStream::connect(srv.tcp).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let mut got = Vec::new();
    // One byte every 200 ms of a command line that never ends (21 s in all); the 421 must
    // come while the client is still sending: an idle timer restarted by every byte would
    // not fire before the client stops.
    let line: Vec<u8> = b"NOOP ".iter().chain([b'x'; 100].iter()).copied().collect();
    let mut sent = 0;
    for b in &line {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        sent += 1;
        thread::sleep(Duration::from_millis(200));
        let mut buf = [0u8; 512];
        if let Ok(n) = s.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
            if n == 0 || String::from_utf8_lossy(&got).contains("421") {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("421 4.4.2"), "{text}");
    assert!(
        sent < line.len(),
        "the 421 came only after the client had sent all {sent} bytes"
    );
}
