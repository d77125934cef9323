//! End-to-end Sieve sending and tracking: a real server, a sendmail stand-in that records
//! each run (its arguments and the message), and the replies and copies checked: `redirect`
//! with and without `:copy`, the envelope sender choice, a failing sendmail (the message
//! lands in INBOX, `250`), a forwarding loop stopped by `Delivered-To`, vacation once per
//! sender and never to lists or bounces, `duplicate` discarding a second copy, and a
//! SIGKILL during a vacation load that must not make anybody get a second reply.

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{list, Client, Scratch, TestServer, GREETING};
use lmtpd::config::{Config, RedirectFrom};

const USERS: &str = "\
alice@example.org
bob@example.org
carol@example.org
";

/// A sendmail stand-in under `dir`: each run writes `out/N.args` (its arguments, one per
/// line) and `out/N.msg` (its standard input), then exits with `status`.
fn fake_sendmail(dir: &Path, status: u8) -> PathBuf {
    let out = dir.join("sent");
    fs::create_dir_all(&out).expect("sent dir");
    let path = dir.join("sendmail");
    fs::write(
        &path,
        format!(
            "#!/bin/sh\nn=$$.$(date +%s%N)\nprintf '%s\\n' \"$@\" > {0}/$n.args.tmp\ncat > {0}/$n.msg\nmv {0}/$n.args.tmp {0}/$n.args\nexit {status}\n",
            out.display()
        ),
    )
    .expect("write sendmail");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// What the stand-in was given: (arguments, message), in no particular order.
fn sent(srv: &TestServer) -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    for f in list(&srv.path("sent")) {
        let name = f.display().to_string();
        if let Some(stem) = name.strip_suffix(".args") {
            let args = fs::read_to_string(&f).expect("args");
            let msg = fs::read_to_string(format!("{stem}.msg")).unwrap_or_default();
            out.push((args.lines().map(str::to_string).collect(), msg));
        }
    }
    out
}

/// A server whose users' scripts are `DIR/home/%n/.dovecot.sieve`, sending through the
/// stand-in (exit `status`), after `tune`.
fn server(status: u8, tune: impl FnOnce(&mut Config, &Path)) -> TestServer {
    TestServer::with_users(USERS, |cfg, dir| {
        cfg.sieve.script = format!("{}/home/%n/.dovecot.sieve", dir.display());
        cfg.sieve.dir = format!("{}/home/%n/sieve", dir.display());
        cfg.sieve.state_dir = dir.join("state");
        cfg.sieve.sendmail = fake_sendmail(dir, status);
        cfg.sieve.sendmail_timeout = Duration::from_secs(20);
        tune(cfg, dir);
    })
}

fn script(srv: &TestServer, user: &str, text: &str) {
    let home = srv.path("home").join(user);
    fs::create_dir_all(&home).expect("home");
    fs::write(home.join(".dovecot.sieve"), text).expect("script");
}

/// The messages in `user`'s INBOX (`new/` and `cur/`).
fn inbox(srv: &TestServer, user: &str) -> Vec<String> {
    let root = srv.path("mail/example.org").join(user).join("Maildir");
    ["new", "cur"]
        .iter()
        .flat_map(|d| list(&root.join(d)))
        .map(|f| fs::read_to_string(f).expect("copy"))
        .collect()
}

/// Sends one message from `from` to `rcpts` in one transaction; the post-DATA replies.
fn deliver(srv: &TestServer, from: &str, rcpts: &[&str], message: &str) -> Vec<String> {
    let mut c = Client::connect_tcp(srv.tcp, Some(Duration::from_secs(60)))
        .expect("connect")
        .greeted(GREETING);
    c.lhlo();
    c.expect(&format!("MAIL FROM:<{from}>"), "250");
    for r in rcpts {
        c.expect(&format!("RCPT TO:<{r}>"), "250");
    }
    c.expect("DATA", "354");
    c.send(message.replace('\n', "\r\n").as_bytes());
    c.send(b".\r\n");
    let replies = rcpts.iter().map(|_| c.reply()).collect();
    c.expect("QUIT", "221");
    replies
}

fn message(id: &str, extra: &str) -> String {
    format!(
        "From: Bob <bob@example.net>\nTo: alice@example.org, bob@example.org, carol@example.org\nSubject: lunch\nMessage-ID: <{id}@example.net>\n{extra}\nShall we?\n"
    )
}

#[test]
fn rfc5228_4_2_redirect_sends_the_message_on_and_keeps_no_copy() {
    let srv = server(0, |_, _| {});
    script(&srv, "alice", "redirect \"fwd@example.net\";\n");
    let replies = deliver(
        &srv,
        "bob@example.net",
        &["alice@example.org"],
        &message("r1", ""),
    );
    assert!(replies[0].starts_with("250 2.0.0"), "{replies:?}");
    assert!(
        inbox(&srv, "alice").is_empty(),
        "redirect without :copy keeps nothing"
    );
    let s = sent(&srv);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(
        s[0].0,
        ["-i", "-f", "bob@example.net", "--", "fwd@example.net"]
    );
    let msg = &s[0].1;
    assert!(
        msg.starts_with("Delivered-To: alice@example.org\nReceived: from client.test"),
        "our loop marker and trace come first: {msg}"
    );
    assert!(!msg.contains("Return-Path:"), "{msg}");
    assert!(msg.contains("Message-ID: <r1@example.net>\n"), "{msg}");
    assert!(msg.ends_with("\nShall we?\n"), "{msg}");
}

#[test]
fn rfc3894_redirect_copy_also_keeps_the_copy_and_the_sender_is_configurable() {
    let srv = server(0, |cfg, _| {
        cfg.sieve.redirect_from = RedirectFrom::Recipient
    });
    script(
        &srv,
        "alice",
        "require \"copy\";\nredirect :copy \"fwd@example.net\";\n",
    );
    let replies = deliver(
        &srv,
        "bob@example.net",
        &["alice@example.org"],
        &message("r2", ""),
    );
    assert!(replies[0].starts_with("250 2.0.0"), "{replies:?}");
    assert_eq!(inbox(&srv, "alice").len(), 1);
    let s = sent(&srv);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(
        s[0].0,
        ["-i", "-f", "alice@example.org", "--", "fwd@example.net"],
        "redirect_envelope_from = recipient"
    );
    // A bounce stays a bounce: redirected from <>.
    deliver(&srv, "", &["alice@example.org"], &message("r3", ""));
    let s = sent(&srv);
    assert!(
        s.iter().any(|(a, _)| a[2] == "<>"),
        "a message from <> is redirected from <>: {s:?}"
    );
}

#[test]
fn a_failed_redirect_keeps_the_message_in_inbox_and_still_answers_250() {
    let srv = server(75, |_, _| {});
    script(&srv, "alice", "redirect \"fwd@example.net\";\n");
    let replies = deliver(
        &srv,
        "bob@example.net",
        &["alice@example.org"],
        &message("f1", ""),
    );
    assert!(replies[0].starts_with("250 2.0.0"), "{replies:?}");
    let copies = inbox(&srv, "alice");
    assert_eq!(copies.len(), 1, "the message is kept instead");
    assert!(copies[0].contains("Message-ID: <f1@example.net>"));
}

#[test]
fn a_message_that_already_went_through_this_mailbox_is_not_redirected_again() {
    let srv = server(0, |_, _| {});
    script(&srv, "alice", "redirect \"fwd@example.net\";\n");
    let looped = message("l1", "Delivered-To: alice@example.org\n");
    let looped = format!("{}{}", "Delivered-To: fwd@example.net\n", looped);
    let replies = deliver(&srv, "bob@example.net", &["alice@example.org"], &looped);
    assert!(replies[0].starts_with("250 2.0.0"), "{replies:?}");
    assert!(sent(&srv).is_empty(), "the loop is stopped");
    assert_eq!(inbox(&srv, "alice").len(), 1, "and the message kept");
}

const VACATION: &str =
    "require \"vacation\";\nvacation :days 1 :subject \"Away\" \"I am away.\";\n";

#[test]
fn rfc5230_vacation_replies_once_per_sender_per_period_from_the_null_sender() {
    let srv = server(0, |_, _| {});
    script(&srv, "alice", VACATION);
    let r = deliver(
        &srv,
        "bob@example.net",
        &["alice@example.org"],
        &message("v1", ""),
    );
    assert!(r[0].starts_with("250 2.0.0"), "{r:?}");
    assert_eq!(inbox(&srv, "alice").len(), 1, "vacation keeps the message");
    let s = sent(&srv);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].0, ["-i", "-f", "<>", "--", "bob@example.net"]);
    let reply = &s[0].1;
    for field in [
        "From: alice@example.org\n",
        "To: <bob@example.net>\n",
        "Subject: Away\n",
        "Auto-Submitted: auto-replied",
        "In-Reply-To: <v1@example.net>\n",
        "MIME-Version: 1.0\n",
    ] {
        assert!(reply.contains(field), "{field:?} missing from\n{reply}");
    }
    assert!(reply.ends_with("\n\nI am away.\n"), "{reply}");
    // A second message inside the period: no second reply.
    deliver(
        &srv,
        "bob@example.net",
        &["alice@example.org"],
        &message("v2", ""),
    );
    assert_eq!(sent(&srv).len(), 1, "one reply per sender per period");
    // Another sender gets one.
    deliver(
        &srv,
        "dan@example.net",
        &["alice@example.org"],
        &message("v3", ""),
    );
    assert_eq!(sent(&srv).len(), 2);
    assert_eq!(inbox(&srv, "alice").len(), 3);
}

#[test]
fn rfc5230_4_6_vacation_never_answers_lists_bounces_or_mail_not_addressed_to_the_user() {
    let srv = server(0, |_, _| {});
    script(&srv, "alice", VACATION);
    deliver(
        &srv,
        "dev-bounces@lists.example.net",
        &["alice@example.org"],
        &message("n1", "List-Id: <dev.lists.example.net>\n"),
    );
    deliver(&srv, "", &["alice@example.org"], &message("n2", ""));
    deliver(
        &srv,
        "mailer-daemon@example.net",
        &["alice@example.org"],
        &message("n3", ""),
    );
    deliver(
        &srv,
        "bob@example.net",
        &["alice@example.org"],
        &message("n4", "Auto-Submitted: auto-replied\n"),
    );
    deliver(
        &srv,
        "bob@example.net",
        &["alice@example.org"],
        "From: bob@example.net\nTo: someone-else@example.net\nSubject: bcc\n\nhi\n",
    );
    assert!(sent(&srv).is_empty(), "{:?}", sent(&srv));
    assert_eq!(
        inbox(&srv, "alice").len(),
        5,
        "every message is still delivered"
    );
}

#[test]
fn rfc7352_duplicate_discards_the_second_copy_of_a_message_id() {
    let srv = server(0, |cfg, dir| {
        let global = dir.join("global-after.sieve");
        fs::write(
            &global,
            "require \"duplicate\";\nif duplicate { discard; stop; }\n",
        )
        .expect("global script");
        cfg.sieve.after = vec![global];
    });
    let r = deliver(
        &srv,
        "bob@example.net",
        &["alice@example.org", "bob@example.org"],
        &message("d1", ""),
    );
    assert!(r.iter().all(|r| r.starts_with("250 2.0.0")), "{r:?}");
    let r = deliver(
        &srv,
        "bob@example.net",
        &["alice@example.org"],
        &message("d1", ""),
    );
    assert!(
        r[0].starts_with("250 2.0.0"),
        "a duplicate is answered 250: {r:?}"
    );
    assert_eq!(
        inbox(&srv, "alice").len(),
        1,
        "the second copy is discarded"
    );
    let r = deliver(
        &srv,
        "bob@example.net",
        &["alice@example.org", "carol@example.org"],
        &message("d2", ""),
    );
    assert!(r.iter().all(|r| r.starts_with("250 2.0.0")), "{r:?}");
    assert_eq!(
        inbox(&srv, "alice").len(),
        2,
        "another Message-ID is delivered"
    );
    assert_eq!(inbox(&srv, "bob").len(), 1);
    assert_eq!(
        inbox(&srv, "carol").len(),
        1,
        "each user has a list of their own"
    );
    let state = fs::read_to_string(srv.path("state/alice@example.org")).expect("state");
    assert!(state.starts_with("lmtpd-tracking 1\n"), "{state}");
    let ids: std::collections::HashSet<&str> = state
        .lines()
        .filter(|l| l.starts_with("d ") || l.starts_with("D "))
        .filter_map(|l| l.rsplit(' ').next())
        .collect();
    assert_eq!(ids.len(), 2, "two Message-IDs tracked: {state}");
}

// SIGKILL during a vacation load
// =========================================================================================

const SENDERS: usize = 120;

/// Delivers one message from `s{i}@example.net` to alice over the Unix socket; true when
/// it was answered 250.
fn vacation_message(sock: &Path, i: usize) -> bool {
    let Ok(c) = Client::connect_unix(sock, Some(Duration::from_secs(30))) else {
        return false;
    };
    let Ok(mut c) = c.try_greeted("220") else {
        return false;
    };
    let body = format!(
        "From: s{i}@example.net\r\nTo: alice@example.org\r\nSubject: m{i}\r\nMessage-ID: <m{i}@example.net>\r\n\r\nhello\r\n.\r\n"
    );
    let steps = [
        "LHLO client.test".to_string(),
        format!("MAIL FROM:<s{i}@example.net>"),
        "RCPT TO:<alice@example.org>".into(),
        "DATA".into(),
    ];
    for s in &steps {
        match c.try_cmd(s) {
            Ok(r) if r.starts_with('2') || r.starts_with('3') => {}
            _ => return false,
        }
    }
    if c.try_send(body.as_bytes()).is_err() {
        return false;
    }
    matches!(c.try_reply(), Ok(r) if r.starts_with("250"))
}

#[test]
fn a_sigkill_during_a_vacation_load_sends_nobody_a_second_reply() {
    // The vacation list's own crash safety: with retry_window = 0 every message sent again
    // after the restart runs the script again (the retry journal would answer the copies it
    // recorded before the kill without running it).
    let env = Scratch::with("alice@example.org\n", |d| {
        format!(
            "listen = unix:{d}/lmtp.sock\nusers = {d}/users\nhostname = lmtpd.test\nmaildir = {d}/mail/%d/%n/Maildir\nspool_dir = {d}\nsieve = {d}/home/%n/.dovecot.sieve\nsieve_state_dir = {d}/state\nretry_window = 0\nretry_journal = {d}/retry.db\nsendmail = {d}/sendmail\nallow_root = yes\nlog_level = warn\n"
        )
    });
    let d = env.dir.path();
    fs::create_dir_all(d.join("home/alice")).expect("home");
    fs::write(d.join("home/alice/.dovecot.sieve"), VACATION).expect("script");
    // This stand-in appends the reply's recipient to one log, one short line per run.
    let log = d.join("replies.log");
    fs::write(
        d.join("sendmail"),
        format!(
            "#!/bin/sh\ncat > /dev/null\necho \"$5\" >> {}\n",
            log.display()
        ),
    )
    .expect("sendmail");
    fs::set_permissions(d.join("sendmail"), fs::Permissions::from_mode(0o755)).expect("chmod");
    let sock = d.join("lmtp.sock");
    let start = || {
        let child = common::spawn(&env.path("lmtpd.conf"), &[]);
        let t0 = Instant::now();
        while Client::connect_unix(&sock, None).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "lmtpd never listened"
            );
            thread::sleep(Duration::from_millis(20));
        }
        child
    };
    // Phase 1: four threads send a message from each sender; SIGKILL after ~40 replies.
    let mut child = start();
    let acked = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let sock = sock.clone();
            let acked = Arc::clone(&acked);
            thread::spawn(move || {
                for i in (t..SENDERS).step_by(4) {
                    if !vacation_message(&sock, i) {
                        return;
                    }
                    acked.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let t0 = Instant::now();
    while acked.load(Ordering::SeqCst) < 40 && t0.elapsed() < Duration::from_secs(60) {
        thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
    for t in threads {
        t.join().expect("load thread");
    }
    let before = fs::read_to_string(&log).unwrap_or_default().lines().count();
    assert!(before < SENDERS, "the load finished before the kill");
    // Phase 2: restart and send every sender's message again.
    let mut child = start();
    for i in 0..SENDERS {
        assert!(vacation_message(&sock, i), "message {i} after the restart");
    }
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    let text = fs::read_to_string(&log).unwrap_or_default();
    let mut counts = std::collections::HashMap::new();
    for line in text.lines() {
        *counts.entry(line.to_string()).or_insert(0) += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "second replies: {twice:?}");
    // Only a reply claimed but not yet sent at the kill may be missing.
    assert!(
        counts.len() + 4 >= SENDERS,
        "{} of {SENDERS} senders got a reply",
        counts.len()
    );
    // The list is whole: its header, and one vacation entry per sender.
    let state = fs::read_to_string(d.join("state/alice@example.org")).expect("state");
    let mut lines = state.lines();
    assert_eq!(lines.next(), Some("lmtpd-tracking 1"));
    let entries: Vec<&str> = lines.collect();
    assert_eq!(entries.len(), SENDERS, "{state}");
    assert!(entries
        .iter()
        .all(|l| l.starts_with("v ") && l.split(' ').count() == 3));
    eprintln!(
        "replies before the kill: {before}; senders answered: {}",
        counts.len()
    );
}

#[test]
fn rfc3461_orcpt_becomes_x_original_to_and_the_sieve_original_recipient() {
    let srv = server(0, |cfg, _| {
        cfg.sieve.redirect_from = RedirectFrom::OrigRecipient;
    });
    script(
        &srv,
        "alice",
        "require [\"copy\", \"envelope\"];\nif envelope :is \"to\" \"alias@example.org\" { redirect :copy \"fwd@example.net\"; }\n",
    );
    let mut c = Client::connect_tcp(srv.tcp, Some(Duration::from_secs(60)))
        .expect("connect")
        .greeted(GREETING);
    let lhlo = c.cmd("LHLO client.test");
    assert!(lhlo.contains("DSN"), "{lhlo}");
    c.expect("MAIL FROM:<bob@example.net> RET=HDRS ENVID=x+2By", "250");
    c.expect(
        "RCPT TO:<alice@example.org> NOTIFY=FAILURE ORCPT=rfc822;alias+2Bx@example.org",
        "250",
    );
    c.expect("RCPT TO:<bob@example.org>", "250");
    c.expect("DATA", "354");
    c.send(message("o1", "").replace('\n', "\r\n").as_bytes());
    c.send(b".\r\n");
    assert!(c.reply().starts_with("250"));
    assert!(c.reply().starts_with("250"));
    c.expect("QUIT", "221");
    let alice = inbox(&srv, "alice");
    assert!(
        alice[0].starts_with(
            "Return-Path: <bob@example.net>\nX-Original-To: alias+x@example.org\nDelivered-To: alice@example.org\n"
        ),
        "{}",
        alice[0]
    );
    assert!(
        !inbox(&srv, "bob")[0].contains("X-Original-To"),
        "only the recipient that had an ORCPT"
    );
    // Sieve saw the original recipient: envelope "to" matched only with the ORCPT (the
    // script tests alias+x@… against "alias@…", so it must not match) — and with an exact
    // ORCPT it does, and the redirect goes out from it.
    assert!(sent(&srv).is_empty(), "alias+x is not alias");
    let mut c = Client::connect_tcp(srv.tcp, Some(Duration::from_secs(60)))
        .expect("connect")
        .greeted(GREETING);
    c.lhlo();
    c.expect("MAIL FROM:<bob@example.net>", "250");
    c.expect(
        "RCPT TO:<alice@example.org> ORCPT=rfc822;alias@example.org",
        "250",
    );
    c.expect("DATA", "354");
    c.send(message("o2", "").replace('\n', "\r\n").as_bytes());
    c.send(b".\r\n");
    assert!(c.reply().starts_with("250"));
    c.expect("QUIT", "221");
    let s = sent(&srv);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(
        s[0].0,
        ["-i", "-f", "alias@example.org", "--", "fwd@example.net"],
        "redirect_envelope_from = orig_recipient"
    );
    assert!(
        !s[0].1.contains("X-Original-To"),
        "the forwarded copy carries no X-Original-To of ours"
    );
}
