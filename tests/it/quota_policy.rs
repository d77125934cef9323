//! End-to-end tests of the quota policy and the retry journal through a real server, each
//! run against Maildir, mbox and SQLite: per-user and per-domain `quota_full`, the grace at
//! the limit, `SIZE=` above the whole quota at RCPT, warnings once per crossing and re-armed,
//! `quota_tempfail_max` turning a retried refusal permanent, and a retry after a dropped
//! connection answered `250` without a second copy.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{list, Client, TestServer, BIN, GREETING};
use lmtpd::config::Config;

const READ_TIMEOUT: Duration = Duration::from_secs(60);
const STORES: [&str; 3] = ["maildir", "mbox", "sqlite"];

fn server(users: &str, tune: impl FnOnce(&mut Config, &Path)) -> TestServer {
    TestServer::with_users(users, |cfg, dir| {
        cfg.mbox.template = format!("{}/mbox/%d/%n", dir.display());
        cfg.sqlite.path = dir.join("db/mail.db");
        tune(cfg, dir);
    })
}

fn client(srv: &TestServer) -> Client {
    let mut c = Client::connect_unix(&srv.sock, Some(READ_TIMEOUT))
        .expect("connect")
        .greeted(GREETING);
    c.lhlo();
    c
}

/// A message of about `size` bytes whose text starts with `tag` (so two tags differ).
fn message(tag: &str, size: usize) -> String {
    let mut m = format!("Subject: {tag}\r\nMessage-ID: <{tag}@test>\r\n\r\n");
    while m.len() < size {
        m.push_str("0123456789012345678901234567890123456789012345678901234567890123456789\r\n");
    }
    m
}

/// One pipelined transaction: (replies at RCPT, replies after the dot).
fn send(c: &mut Client, mail_args: &str, rcpts: &[&str], msg: &str) -> (Vec<String>, Vec<String>) {
    let mut batch = format!("MAIL FROM:<sender@example.net>{mail_args}\r\n");
    for r in rcpts {
        batch.push_str(&format!("RCPT TO:<{r}>\r\n"));
    }
    batch.push_str("DATA\r\n");
    c.send(batch.as_bytes());
    let mail = c.reply();
    assert!(mail.starts_with("250"), "MAIL -> {mail}");
    let at_rcpt: Vec<String> = rcpts.iter().map(|_| c.reply()).collect();
    let accepted = at_rcpt.iter().filter(|r| r.starts_with("250")).count();
    let data = c.reply();
    if accepted == 0 {
        assert!(data.starts_with("503") || data.starts_with("554"), "{data}");
        c.expect("RSET", "250");
        return (at_rcpt, Vec::new());
    }
    assert!(data.starts_with("354"), "DATA -> {data}");
    c.send(format!("{msg}.\r\n").as_bytes());
    let after = (0..accepted).map(|_| c.reply()).collect();
    (at_rcpt, after)
}

/// Messages in `local@domain`'s INBOX in `store` (SQLite through `lmtpd export`).
fn count(srv: &TestServer, store: &str, local: &str, domain: &str) -> usize {
    match store {
        "maildir" => {
            let root = srv.path(&format!("mail/{domain}/{local}/Maildir"));
            list(&root.join("new")).len() + list(&root.join("cur")).len()
        }
        "mbox" => {
            let text = fs::read(srv.path(&format!("mbox/{domain}/{local}"))).unwrap_or_default();
            String::from_utf8_lossy(&text)
                .split('\n')
                .filter(|l| l.starts_with("From "))
                .count()
        }
        _ => export(srv, local, domain).len(),
    }
}

/// `lmtpd export` of `local@domain`'s SQLite mailbox: one file per message (none when the
/// mailbox has no row yet).
fn export(srv: &TestServer, local: &str, domain: &str) -> Vec<PathBuf> {
    let db = srv.path("db/mail.db");
    if !db.exists() {
        return Vec::new();
    }
    let out = srv.path(&format!("export-{local}-{}", unique()));
    let st = Command::new(BIN)
        .args(["export", "--db"])
        .arg(&db)
        .args(["--mailbox", &format!("{local}@{domain}"), "--eml-dir"])
        .arg(&out)
        .output()
        .expect("lmtpd export");
    if st.status.success() {
        list(&out)
    } else {
        Vec::new()
    }
}

/// The count of `local@example.org`'s messages once it is `want`, or after 10 s: a quota
/// warning is stored after the reply that caused it has gone out.
fn settled(srv: &TestServer, store: &str, local: &str, want: usize) -> usize {
    let t = Instant::now();
    loop {
        let n = count(srv, store, local, "example.org");
        if n == want || t.elapsed() > Duration::from_secs(10) {
            // A little longer, so that a second, wrong notice would be seen too.
            thread::sleep(Duration::from_millis(100));
            return count(srv, store, local, "example.org");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The text of every message in a Maildir or mbox INBOX, joined.
fn texts(srv: &TestServer, store: &str, local: &str, domain: &str) -> String {
    match store {
        "maildir" => {
            let root = srv.path(&format!("mail/{domain}/{local}/Maildir"));
            let mut all = String::new();
            for p in list(&root.join("new"))
                .into_iter()
                .chain(list(&root.join("cur")))
            {
                all.push_str(&fs::read_to_string(p).unwrap_or_default());
            }
            all
        }
        "mbox" => {
            fs::read_to_string(srv.path(&format!("mbox/{domain}/{local}"))).unwrap_or_default()
        }
        _ => export(srv, local, domain)
            .into_iter()
            .map(|p| fs::read_to_string(p).unwrap_or_default())
            .collect(),
    }
}

fn code(reply: &str) -> &str {
    reply.get(..9).unwrap_or(reply)
}

#[test]
fn quota_full_is_chosen_per_user_then_per_domain_then_globally_in_every_store() {
    for store in STORES {
        let users = format!(
            "@perm.example quota=1K quota_full=permfail\n\
             a@perm.example store={store}\n\
             b@perm.example store={store} quota_full=tempfail\n\
             c@temp.example store={store} quota=1K\n\
             d@temp.example store={store} quota=1K quota_full=permfail\n"
        );
        let srv = server(&users, |_, _| {});
        let mut c = client(&srv);
        let rcpts = [
            "a@perm.example",
            "b@perm.example",
            "c@temp.example",
            "d@temp.example",
        ];
        let (at_rcpt, after) = send(&mut c, "", &rcpts, &message("big", 3000));
        assert!(
            at_rcpt.iter().all(|r| r.starts_with("250")),
            "{store}: {at_rcpt:?}"
        );
        let codes: Vec<&str> = after.iter().map(|r| code(r)).collect();
        assert_eq!(
            codes,
            ["552 5.2.2", "452 4.2.2", "452 4.2.2", "552 5.2.2"],
            "{store}: {after:?}"
        );
        for (local, domain) in [
            ("a", "perm.example"),
            ("b", "perm.example"),
            ("c", "temp.example"),
        ] {
            assert_eq!(
                count(&srv, store, local, domain),
                0,
                "{store} {local}: nothing stored"
            );
        }
    }
}

#[test]
fn grace_lets_a_message_that_starts_below_the_limit_end_above_it_in_every_store() {
    for store in STORES {
        let users = format!(
            "graced@example.org store={store} quota=10K quota_grace=50%\n\
             strict@example.org store={store} quota=10K\n"
        );
        let srv = server(&users, |_, _| {});
        let mut c = client(&srv);
        for (i, rcpt) in ["graced@example.org", "strict@example.org"]
            .iter()
            .enumerate()
        {
            let (_, first) = send(&mut c, "", &[rcpt], &message(&format!("first{i}"), 8000));
            assert!(first[0].starts_with("250"), "{store} {rcpt}: {first:?}");
            // Starts at ~8 KiB (below 10K) and ends at ~14 KiB: inside a 5K grace only.
            let (_, second) = send(&mut c, "", &[rcpt], &message(&format!("second{i}"), 6000));
            if i == 0 {
                assert!(second[0].starts_with("250"), "{store} graced: {second:?}");
                // Now above the limit: nothing more, however small (refused at RCPT).
                let (third, _) = send(&mut c, "", &[rcpt], &message("tiny", 10));
                assert_eq!(
                    code(&third[0]),
                    "452 4.2.2",
                    "{store} graced full: {third:?}"
                );
            } else {
                assert_eq!(code(&second[0]), "452 4.2.2", "{store} strict: {second:?}");
            }
        }
        assert_eq!(count(&srv, store, "graced", "example.org"), 2, "{store}");
        assert_eq!(count(&srv, store, "strict", "example.org"), 1, "{store}");
    }
}

#[test]
fn a_declared_size_above_the_whole_quota_is_552_at_rcpt_for_that_recipient_only() {
    for store in STORES {
        let users = format!(
            "small@example.org store={store} quota=1K\n\
             graced@example.org store={store} quota=4K quota_grace=2K\n\
             big@example.org store={store}\n"
        );
        let srv = server(&users, |_, _| {});
        let mut c = client(&srv);
        let rcpts = ["small@example.org", "graced@example.org", "big@example.org"];
        let (at_rcpt, after) = send(&mut c, " SIZE=5000", &rcpts, &message("sized", 4900));
        assert_eq!(code(&at_rcpt[0]), "552 5.2.2", "{store}: {at_rcpt:?}");
        assert!(at_rcpt[0].contains("whole quota"), "{at_rcpt:?}");
        assert!(
            at_rcpt[1].starts_with("250"),
            "5000 fits 4K + 2K grace: {at_rcpt:?}"
        );
        assert!(at_rcpt[2].starts_with("250"), "{at_rcpt:?}");
        assert_eq!(after.len(), 2);
        assert!(
            after.iter().all(|r| r.starts_with("250")),
            "{store}: {after:?}"
        );
        assert_eq!(count(&srv, store, "big", "example.org"), 1, "{store}");
    }
}

#[test]
fn a_warning_is_delivered_once_per_crossing_in_every_store() {
    for store in STORES {
        let users = format!("w@example.org store={store} quota=20K quota_warning=50%,90%\n");
        let srv = server(&users, |_, _| {});
        let mut c = client(&srv);
        let mut deliver = |tag: &str, size: usize| {
            let (_, r) = send(&mut c, "", &["w@example.org"], &message(tag, size));
            assert!(r[0].starts_with("250"), "{store} {tag}: {r:?}");
        };
        deliver("m1", 4000);
        assert_eq!(settled(&srv, store, "w", 1), 1, "{store}: below 50%");
        deliver("m2", 7000);
        // ~11 KiB of 20K: the 50% warning, once.
        assert_eq!(
            settled(&srv, store, "w", 3),
            3,
            "{store}: m2 and the warning"
        );
        let all = texts(&srv, store, "w", "example.org");
        assert_eq!(
            all.matches("Subject: Your mailbox is 50% full").count(),
            1,
            "{store}: {all}"
        );
        assert!(
            all.contains("Auto-Submitted: auto-generated (quota warning)"),
            "{store}"
        );
        deliver("m3", 1000);
        assert_eq!(
            settled(&srv, store, "w", 4),
            4,
            "{store}: no second 50% warning"
        );
        deliver("m4", 6000);
        // ~18.5 KiB: the 90% warning.
        assert_eq!(settled(&srv, store, "w", 6), 6, "{store}");
        let all = texts(&srv, store, "w", "example.org");
        assert_eq!(
            all.matches("Subject: Your mailbox is 90% full").count(),
            1,
            "{store}"
        );
        assert_eq!(
            all.matches("Subject: Your mailbox is 50% full").count(),
            1,
            "{store}"
        );
    }
}

/// Empties a Maildir or mbox INBOX by hand, as a mail reader would, and makes the store
/// count again (Maildir: the stale `maildirsize` goes too).
fn empty_by_hand(srv: &TestServer, store: &str, local: &str) {
    match store {
        "maildir" => {
            let root = srv.path(&format!("mail/example.org/{local}/Maildir"));
            for p in list(&root.join("new"))
                .into_iter()
                .chain(list(&root.join("cur")))
            {
                fs::remove_file(p).expect("rm");
            }
            let _ = fs::remove_file(root.join("maildirsize"));
        }
        _ => fs::write(srv.path(&format!("mbox/example.org/{local}")), b"").expect("truncate"),
    }
}

#[test]
fn a_warning_is_re_armed_when_usage_falls_below_and_sent_again_on_the_next_crossing() {
    for store in ["maildir", "mbox"] {
        let users = format!("w@example.org store={store} quota=10K quota_warning=80%\n");
        let srv = server(&users, |_, _| {});
        let mut c = client(&srv);
        let (_, r) = send(&mut c, "", &["w@example.org"], &message("a", 8500));
        assert!(r[0].starts_with("250"));
        assert_eq!(settled(&srv, store, "w", 2), 2, "{store}: copy and warning");
        empty_by_hand(&srv, store, "w");
        let (_, r) = send(&mut c, "", &["w@example.org"], &message("b", 1000));
        assert!(r[0].starts_with("250"));
        assert_eq!(
            settled(&srv, store, "w", 1),
            1,
            "{store}: below 80%, re-armed"
        );
        let (_, r) = send(&mut c, "", &["w@example.org"], &message("c", 7500));
        assert!(r[0].starts_with("250"));
        assert_eq!(settled(&srv, store, "w", 3), 3, "{store}: warned again");
    }
}

#[test]
fn quota_tempfail_max_turns_the_retried_refusal_permanent_in_every_store() {
    for store in STORES {
        let users = format!("full@example.org store={store} quota_messages=1\n");
        let srv = server(&users, |cfg, _| {
            cfg.delivery.quota_tempfail_max = Duration::from_secs(1);
        });
        let mut c = client(&srv);
        let (_, r) = send(&mut c, "", &["full@example.org"], &message("fills", 100));
        assert!(r[0].starts_with("250"), "{store}: {r:?}");
        let held = message("held", 100);
        let (at_rcpt, r) = send(&mut c, "", &["full@example.org"], &held);
        assert!(
            at_rcpt[0].starts_with("250"),
            "decided after DATA: {at_rcpt:?}"
        );
        assert_eq!(
            code(&r[0]),
            "452 4.2.2",
            "{store}: first refusal is temporary"
        );
        thread::sleep(Duration::from_millis(1200));
        let (_, r) = send(&mut c, "", &["full@example.org"], &held);
        assert_eq!(
            code(&r[0]),
            "552 5.2.2",
            "{store}: the retry after 1s is permanent"
        );
        // Another message has its own clock.
        let (_, r) = send(&mut c, "", &["full@example.org"], &message("other", 100));
        assert_eq!(code(&r[0]), "452 4.2.2", "{store}: {r:?}");
        assert_eq!(count(&srv, store, "full", "example.org"), 1, "{store}");
    }
}

/// Waits until `done` holds or 10 s have passed.
fn wait_until(mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() && t.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_retry_after_a_dropped_connection_is_answered_250_without_a_second_copy() {
    for store in STORES {
        let users = format!(
            "r1@example.org store={store}\nr2@example.org store={store}\nr3@example.org store={store}\n"
        );
        let srv = server(&users, |_, _| {});
        let rcpts = ["r1@example.org", "r2@example.org", "r3@example.org"];
        let msg = message("once", 3000);
        // The client sends the whole transaction and the final dot, then goes away without
        // reading a single reply.
        {
            let mut c = client(&srv);
            let mut batch =
                "XFORWARD IDENT=4QxAbC123\r\nMAIL FROM:<sender@example.net>\r\n".to_string();
            for r in rcpts {
                batch.push_str(&format!("RCPT TO:<{r}>\r\n"));
            }
            batch.push_str(&format!("DATA\r\n{msg}.\r\n"));
            c.send(batch.as_bytes());
        }
        let stored = || {
            rcpts
                .iter()
                .map(|r| {
                    count(
                        &srv,
                        store,
                        r.split('@').next().unwrap_or(""),
                        "example.org",
                    )
                })
                .sum::<usize>()
        };
        // Until the server has stored what it stores (it starts no further copy once it
        // finds the client gone), and a little longer.
        wait_until(|| stored() >= 1);
        let mut last = stored();
        let mut stable = Instant::now();
        while stable.elapsed() < Duration::from_millis(500) {
            thread::sleep(Duration::from_millis(50));
            let now = stored();
            if now != last {
                (last, stable) = (now, Instant::now());
            }
        }
        // The MTA retries the same queued message.
        let mut c = client(&srv);
        c.expect("XFORWARD IDENT=4QxAbC123", "250");
        let (at_rcpt, after) = send(&mut c, "", &rcpts, &msg);
        assert!(at_rcpt.iter().all(|r| r.starts_with("250")), "{at_rcpt:?}");
        assert!(
            after.iter().all(|r| r.starts_with("250")),
            "{store}: {after:?}"
        );
        let before = after.iter().filter(|r| r.contains("Saved before")).count();
        assert!(
            before >= 1,
            "{store}: the copies stored before are recognised: {after:?}"
        );
        for r in rcpts {
            let local = r.split('@').next().unwrap_or("");
            assert_eq!(
                count(&srv, store, local, "example.org"),
                1,
                "{store} {r}: one copy"
            );
        }
        // A new queued message with the same text (another queue id) is stored.
        c.expect("XFORWARD IDENT=4QxAbC999", "250");
        let (_, after) = send(&mut c, "", &["r1@example.org"], &msg);
        assert!(!after[0].contains("Saved before"), "{after:?}");
        assert_eq!(count(&srv, store, "r1", "example.org"), 2, "{store}");
    }
}

#[test]
fn a_queued_retry_into_the_mailbox_its_first_copy_filled_gets_250_in_every_store() {
    for store in STORES {
        let users = format!("one@example.org store={store} quota_messages=1\n");
        let srv = server(&users, |_, _| {});
        let mut c = client(&srv);
        let msg = message("filler", 500);
        c.expect("XFORWARD IDENT=4QfirST", "250");
        let (_, r) = send(&mut c, "", &["one@example.org"], &msg);
        assert!(
            r[0].starts_with("250") && !r[0].contains("Saved before"),
            "{r:?}"
        );
        // The MTA did not see that 250 and retries: the mailbox is full now, so the decision
        // waits for the message, which is a retry.
        c.expect("XFORWARD IDENT=4QfirST", "250");
        let (at_rcpt, r) = send(&mut c, "", &["one@example.org"], &msg);
        assert!(at_rcpt[0].starts_with("250"), "{store}: {at_rcpt:?}");
        assert!(r[0].contains("Saved before"), "{store}: {r:?}");
        // Another queued message is refused after DATA; one without a queue id at RCPT.
        c.expect("XFORWARD IDENT=4QsecOND", "250");
        let (at_rcpt, r) = send(&mut c, "", &["one@example.org"], &message("other", 500));
        assert!(at_rcpt[0].starts_with("250"), "{at_rcpt:?}");
        assert_eq!(code(&r[0]), "452 4.2.2", "{store}: {r:?}");
        let mut c = client(&srv);
        let (at_rcpt, _) = send(&mut c, "", &["one@example.org"], &message("third", 500));
        assert_eq!(code(&at_rcpt[0]), "452 4.2.2", "{store}: {at_rcpt:?}");
        assert_eq!(count(&srv, store, "one", "example.org"), 1, "{store}");
    }
}

#[test]
fn with_retry_window_0_a_retry_is_stored_again() {
    let srv = server("r@example.org\n", |cfg, _| {
        cfg.delivery.retry_window = Duration::ZERO
    });
    let mut c = client(&srv);
    let msg = message("twice", 500);
    for _ in 0..2 {
        let (_, r) = send(&mut c, "", &["r@example.org"], &msg);
        assert!(
            r[0].starts_with("250") && !r[0].contains("Saved before"),
            "{r:?}"
        );
    }
    assert_eq!(count(&srv, "maildir", "r", "example.org"), 2);
}

#[test]
fn the_journal_is_a_0600_file_of_the_configured_path() {
    let srv = server("r@example.org\n", |_, _| {});
    let mut c = client(&srv);
    let (_, r) = send(&mut c, "", &["r@example.org"], &message("j", 100));
    assert!(r[0].starts_with("250"));
    use std::os::unix::fs::PermissionsExt;
    let p: PathBuf = srv.path("state/retry.db");
    let mode = fs::metadata(&p).expect("journal").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}
