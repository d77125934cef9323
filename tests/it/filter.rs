//! End-to-end Sieve at delivery: a real server, scripts on disk, one LMTP transaction with
//! several recipients, and the replies and stored copies checked: reject as that
//! recipient's own `550 5.7.1` after DATA, `fileinto` with flags into `cur/`, `discard`,
//! `editheader` on one recipient's copy only, global scripts, a broken script kept in INBOX,
//! and the ManageSieve symlink rule.

use crate::common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use common::{list, Client, TestServer, GREETING};
use lmtpd::config::Config;

const USERS: &str = "\
alice@example.org
bob@example.org
carol@example.org
dave@example.org sieve=none
";

const MESSAGE: &str = "From: Sender <sender@example.net>\r\n\
To: alice@example.org\r\n\
Subject: quarterly report\r\n\
X-Spam-Flag: NO\r\n\
Message-ID: <filter-1@example.net>\r\n\
\r\n\
Hello.\r\n\
.\r\n";

/// A server whose users' scripts are `DIR/home/%n/.dovecot.sieve`, after `tune`.
fn server(tune: impl FnOnce(&mut Config, &Path)) -> TestServer {
    TestServer::with_users(USERS, |cfg, dir| {
        cfg.sieve.script = format!("{}/home/%n/.dovecot.sieve", dir.display());
        cfg.sieve.dir = format!("{}/home/%n/sieve", dir.display());
        tune(cfg, dir);
    })
}

fn script(srv: &TestServer, user: &str, text: &str) -> PathBuf {
    let home = srv.path("home").join(user);
    fs::create_dir_all(&home).expect("home");
    let path = home.join(".dovecot.sieve");
    fs::write(&path, text).expect("script");
    path
}

fn maildir(srv: &TestServer, user: &str) -> PathBuf {
    srv.path("mail/example.org").join(user).join("Maildir")
}

/// Sends MESSAGE to `rcpts` in one transaction; the post-DATA replies in RCPT order.
fn deliver(srv: &TestServer, rcpts: &[&str]) -> Vec<String> {
    let mut c = Client::connect_tcp(srv.tcp, None)
        .expect("connect")
        .greeted(GREETING);
    c.lhlo();
    c.expect("MAIL FROM:<sender@example.net>", "250");
    for r in rcpts {
        c.expect(&format!("RCPT TO:<{r}>"), "250");
    }
    c.expect("DATA", "354");
    c.send(MESSAGE.as_bytes());
    let replies = rcpts.iter().map(|_| c.reply()).collect();
    c.expect("QUIT", "221");
    replies
}

/// Every stored copy of `user` as (path relative to the Maildir, content).
fn copies(srv: &TestServer, user: &str) -> Vec<(String, String)> {
    let root = maildir(srv, user);
    let mut out = Vec::new();
    let mut dirs = vec![root.clone()];
    if let Ok(entries) = fs::read_dir(&root) {
        dirs.extend(entries.flatten().map(|e| e.path()).filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        }));
    }
    for d in dirs {
        for sub in ["new", "cur"] {
            for f in list(&d.join(sub)) {
                let rel = f
                    .strip_prefix(&root)
                    .expect("under root")
                    .display()
                    .to_string();
                out.push((rel, fs::read_to_string(&f).expect("copy")));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn rfc5429_reject_is_that_recipients_own_550_5_7_1_after_data() {
    let srv = server(|_, _| {});
    script(
        &srv,
        "alice",
        "require \"reject\";\nreject \"I do not want this.\";\n",
    );
    script(
        &srv,
        "bob",
        "require [\"fileinto\", \"imap4flags\", \"mailbox\"];\n\
         if header :contains \"subject\" \"report\" { addflag \"\\\\Seen\"; fileinto :create \"Reports\"; }\n",
    );
    let replies = deliver(
        &srv,
        &["alice@example.org", "bob@example.org", "carol@example.org"],
    );
    assert!(
        replies[0].starts_with("550 5.7.1 I do not want this."),
        "{replies:?}"
    );
    assert!(replies[1].starts_with("250 2.0.0"), "{replies:?}");
    assert!(replies[2].starts_with("250 2.0.0"), "{replies:?}");
    assert!(
        copies(&srv, "alice").is_empty(),
        "a rejected recipient stores nothing"
    );
    let bob = copies(&srv, "bob");
    assert_eq!(bob.len(), 1, "{bob:?}");
    assert!(
        bob[0].0.starts_with(".Reports/cur/") && bob[0].0.ends_with(":2,S"),
        "{bob:?}"
    );
    let carol = copies(&srv, "carol");
    assert_eq!(carol.len(), 1);
    assert!(carol[0].0.starts_with("new/"), "{carol:?}");
}

#[test]
fn a_multi_line_or_non_ascii_reason_is_a_safe_reply() {
    let srv = server(|_, _| {});
    script(
        &srv,
        "alice",
        "require \"reject\";\nreject text:\nfirst line\nsecond line\n.\n;\n",
    );
    script(&srv, "bob", "require \"ereject\";\nereject \"Grüße\";\n");
    let replies = deliver(&srv, &["alice@example.org", "bob@example.org"]);
    assert_eq!(
        replies[0], "550-5.7.1 first line\r\n550 5.7.1 second line\r\n",
        "a multi-line reason is a multi-line reply"
    );
    assert!(replies[1].starts_with("550 5.7.1 "), "{replies:?}");
    assert!(replies[1].is_ascii(), "{replies:?}");
    assert!(
        !replies[1].contains("Gr"),
        "the non-ASCII reason is replaced: {replies:?}"
    );
}

#[test]
fn discard_answers_250_and_stores_nothing() {
    let srv = server(|_, _| {});
    script(&srv, "alice", "discard;\n");
    let replies = deliver(&srv, &["alice@example.org", "bob@example.org"]);
    assert!(replies[0].starts_with("250 "), "{replies:?}");
    assert!(copies(&srv, "alice").is_empty());
    assert_eq!(copies(&srv, "bob").len(), 1);
}

#[test]
fn several_targets_are_several_copies_and_one_reply() {
    let srv = server(|_, _| {});
    script(
        &srv,
        "alice",
        "require [\"fileinto\", \"copy\", \"mailbox\"];\n\
         fileinto :copy :create \"Archive\";\nfileinto :create \"Work\";\nkeep;\n",
    );
    let replies = deliver(&srv, &["alice@example.org", "bob@example.org"]);
    assert!(replies[0].starts_with("250 "), "{replies:?}");
    assert!(replies[1].starts_with("250 "), "{replies:?}");
    let alice: Vec<String> = copies(&srv, "alice").into_iter().map(|(p, _)| p).collect();
    assert_eq!(alice.len(), 3, "{alice:?}");
    assert!(
        alice.iter().any(|p| p.starts_with(".Archive/")),
        "{alice:?}"
    );
    assert!(alice.iter().any(|p| p.starts_with(".Work/")), "{alice:?}");
    assert!(alice.iter().any(|p| p.starts_with("new/")), "{alice:?}");
}

#[test]
fn fileinto_a_missing_folder_without_create_lands_in_inbox() {
    let srv = server(|_, _| {});
    script(
        &srv,
        "alice",
        "require \"fileinto\";\nfileinto \"Nowhere\";\n",
    );
    let replies = deliver(&srv, &["alice@example.org"]);
    assert!(replies[0].starts_with("250 "), "{replies:?}");
    let alice = copies(&srv, "alice");
    assert_eq!(alice.len(), 1);
    assert!(alice[0].0.starts_with("new/"), "{alice:?}");
}

#[test]
fn a_broken_script_is_an_implicit_keep_into_inbox_never_a_tempfail() {
    let srv = server(|_, _| {});
    script(
        &srv,
        "alice",
        "require \"fileinto\";\nfileinto \"A\"\nkeep;\n",
    );
    // A run-time failure: reject together with fileinto.
    script(
        &srv,
        "bob",
        "require [\"fileinto\", \"reject\"];\nfileinto \"B\";\nreject \"no\";\n",
    );
    let replies = deliver(&srv, &["alice@example.org", "bob@example.org"]);
    assert!(replies[0].starts_with("250 "), "{replies:?}");
    assert!(replies[1].starts_with("250 "), "{replies:?}");
    for user in ["alice", "bob"] {
        let c = copies(&srv, user);
        assert_eq!(c.len(), 1, "{user}: {c:?}");
        assert!(c[0].0.starts_with("new/"), "{user}: {c:?}");
    }
}

#[test]
fn rfc5293_editheader_changes_only_that_recipients_copy() {
    let srv = server(|_, _| {});
    script(
        &srv,
        "alice",
        "require \"editheader\";\naddheader \"X-Filtered\" \"by alice's script\";\ndeleteheader \"X-Spam-Flag\";\n",
    );
    let replies = deliver(&srv, &["alice@example.org", "bob@example.org"]);
    assert!(replies.iter().all(|r| r.starts_with("250 ")), "{replies:?}");
    let alice = copies(&srv, "alice");
    let bob = copies(&srv, "bob");
    assert_eq!((alice.len(), bob.len()), (1, 1));
    let a = &alice[0].1;
    let b = &bob[0].1;
    assert!(a.contains("\nX-Filtered: by alice's script\n"), "{a}");
    assert!(!a.contains("X-Spam-Flag"), "{a}");
    assert!(a.ends_with("\nHello.\n"), "the body is unchanged: {a}");
    assert!(
        a.starts_with("Return-Path: <sender@example.net>\n"),
        "trace headers stay first: {a}"
    );
    assert!(!b.contains("X-Filtered"), "{b}");
    assert!(b.contains("X-Spam-Flag: NO"), "{b}");
}

#[test]
fn global_scripts_run_around_the_users_and_sieve_none_keeps_only_them() {
    let srv = server(|cfg, dir| {
        let g = dir.join("global");
        fs::create_dir_all(&g).expect("global dir");
        fs::write(
            g.join("before.sieve"),
            "require [\"fileinto\", \"mailbox\"];\nif header :is \"X-Spam-Flag\" \"NO\" { fileinto :create \"Checked\"; }\n",
        )
        .expect("before");
        cfg.sieve.before = vec![g.join("before.sieve")];
    });
    // The before script files into Checked (cancelling the implicit keep), so the user's
    // script does not run (Pigeonhole: the next script runs only while keep is in effect).
    script(&srv, "alice", "discard;\n");
    let replies = deliver(&srv, &["alice@example.org", "dave@example.org"]);
    assert!(replies.iter().all(|r| r.starts_with("250 ")), "{replies:?}");
    for user in ["alice", "dave"] {
        let c = copies(&srv, user);
        assert_eq!(c.len(), 1, "{user}: {c:?}");
        assert!(c[0].0.starts_with(".Checked/"), "{user}: {c:?}");
    }
}

#[test]
fn a_managesieve_symlink_is_followed_inside_the_home_only() {
    let srv = server(|_, _| {});
    let home = srv.path("home/alice");
    fs::create_dir_all(home.join("sieve")).expect("sieve dir");
    fs::write(home.join("sieve/roundcube.sieve"), "discard;\n").expect("script");
    symlink("sieve/roundcube.sieve", home.join(".dovecot.sieve")).expect("link");
    let outside = srv.path("outside.sieve");
    fs::write(&outside, "discard;\n").expect("outside");
    let bob = srv.path("home/bob");
    fs::create_dir_all(&bob).expect("bob home");
    symlink(&outside, bob.join(".dovecot.sieve")).expect("link out");
    let replies = deliver(&srv, &["alice@example.org", "bob@example.org"]);
    assert!(replies.iter().all(|r| r.starts_with("250 ")), "{replies:?}");
    assert!(
        copies(&srv, "alice").is_empty(),
        "alice's active script (discard) ran"
    );
    assert_eq!(
        copies(&srv, "bob").len(),
        1,
        "bob's link leads out of his directory: refused, implicit keep"
    );
}
