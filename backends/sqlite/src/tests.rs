//! Unit tests of the SQLite backend, one per rule (design §5, standards §8 and §10.12).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::HashMap;
use std::fs;
use std::io::{self, Cursor, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use lmtpd_store::testing::{Modal, Under};
use lmtpd_store::{
    testing, Body, Delivery, DeliveryError, DetailMailbox, Enhanced, Envelope, ErrorKind, Flag,
    Flags, MailStore, MemoryBody, Message, Quota, Recipient, Target,
};
use rusqlite::Connection;
use tempfile::TempDir;

use crate::error::Failure;
use crate::migrate::{self, MIGRATIONS};
use crate::{export, schema_status, ExportFormat, SqliteConfig, SqliteStore};
use lmtpd_store::headers::{self, Meta};

const BODY: &[u8] = b"Message-ID: <m1@x.org>\nSubject: hi\n there\n\nhello\n";

fn db_in(dir: &TempDir) -> PathBuf {
    dir.path().join("mail.db")
}

fn config(path: &Path) -> SqliteConfig {
    SqliteConfig {
        pool_size: 4,
        ..SqliteConfig::new(path)
    }
}

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(config(path)).unwrap()
}

fn rcpt(local: &str) -> Recipient {
    Recipient::new(local, "example.org")
}

/// The trace block the tests deliver `r`'s copies with.
fn trace_of(r: &Recipient) -> Vec<u8> {
    format!(
        "Return-Path: <s@x.org>\nDelivered-To: {}@example.org\n",
        r.local
    )
    .into_bytes()
}

impl Under for SqliteStore {
    fn parts(&self) -> (&dyn MailStore, DetailMailbox) {
        (self, DetailMailbox::Yes)
    }
}

fn with_detail(local: &str, detail: &str) -> Recipient {
    Recipient {
        address: format!("{local}+{detail}@example.org"),
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

fn envelope(sender: Option<&str>) -> Envelope {
    Envelope {
        sender: sender.map(str::to_string),
        id: "TX1".into(),
        ..Envelope::default()
    }
}

/// Delivers through the real path (`MailStore::deliver` and a reporter), each copy starting
/// with [`trace_of`] its recipient, each `+detail` turned into its target as the server does.
fn deliver_env(
    st: &impl Under,
    env: &Envelope,
    body: &dyn Body,
    rcpts: &[Recipient],
) -> Vec<Result<(), DeliveryError>> {
    testing::deliver_recipients(st, env, body, rcpts, trace_of)
}

fn deliver_body(
    st: &impl Under,
    body: &[u8],
    rcpts: &[Recipient],
) -> Vec<Result<(), DeliveryError>> {
    deliver_env(
        st,
        &envelope(Some("s@x.org")),
        &MemoryBody(body.to_vec()),
        rcpts,
    )
}

fn deliver(st: &impl Under, rcpts: &[Recipient]) -> Vec<Result<(), DeliveryError>> {
    deliver_body(st, BODY, rcpts)
}

fn code(r: &Result<(), DeliveryError>) -> Option<(u16, Enhanced)> {
    r.as_ref().err().map(|e| (e.code, e.enhanced))
}

/// A second, independent connection (as a webmail or script would open).
fn raw(path: &Path) -> Connection {
    Connection::open(path).unwrap()
}

fn count(path: &Path, sql: &str) -> i64 {
    raw(path).query_row(sql, [], |r| r.get(0)).unwrap()
}

fn assert_integrity(path: &Path) {
    let ok: String = raw(path)
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let fk: Option<i64> = raw(path)
        .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
        .ok();
    assert_eq!(fk, None, "foreign key violations");
}

fn copy(rcpt: &Recipient, body: &[u8]) -> Vec<u8> {
    [&trace_of(rcpt)[..], body].concat()
}

/// Exports `addr` as .eml files and returns them by uid.
fn export_eml(db: &Path, addr: &str, folder: Option<&str>) -> Vec<(i64, Vec<u8>)> {
    let out = TempDir::new().unwrap();
    let dir = out.path().join("eml");
    let n = export(db, addr, folder, ExportFormat::Eml, &dir).unwrap();
    let mut files: Vec<(i64, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let uid = p.file_stem().unwrap().to_str().unwrap().parse().unwrap();
            assert_eq!(p.extension().unwrap(), "eml");
            (uid, fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    assert_eq!(files.len(), n);
    files
}

fn uids(db: &Path, addr: &str) -> Vec<i64> {
    let c = raw(db);
    let mut stmt = c
        .prepare(
            "SELECT d.uid FROM deliveries d JOIN mailboxes m ON m.id = d.mailbox_id \
             WHERE m.address = ?1 ORDER BY d.uid",
        )
        .unwrap();
    let v = stmt
        .query_map([addr], |r| r.get(0))
        .unwrap()
        .collect::<Result<Vec<i64>, _>>()
        .unwrap();
    v
}

/// Undoes mboxrd quoting and splits an mbox into (From_ line, message) pairs.
fn parse_mboxrd(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut prev_blank = true;
    for line in data.split_inclusive(|&b| b == b'\n') {
        if prev_blank && line.starts_with(b"From ") {
            if let Some((_, m)) = out.last_mut() {
                assert_eq!(m.pop(), Some(b'\n'), "separator blank line");
            }
            out.push((String::from_utf8(line.to_vec()).unwrap(), Vec::new()));
        } else {
            let m = &mut out.last_mut().unwrap().1;
            let gts = line.iter().take_while(|&&b| b == b'>').count();
            if gts > 0 && line[gts..].starts_with(b"From ") {
                m.extend_from_slice(&line[1..]);
            } else {
                m.extend_from_slice(line);
            }
        }
        prev_blank = line == b"\n";
    }
    if let Some((_, m)) = out.last_mut() {
        assert_eq!(m.pop(), Some(b'\n'), "final separator blank line");
    }
    out
}

// ---------------------------------------------------------------------------------------
// Migrations and schema status

#[test]
fn migrations_from_empty_create_the_schema() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let _st = open(&db);
    let c = raw(&db);
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, migrate::latest());
    let app: i32 = c
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .unwrap();
    assert_eq!(app, migrate::APPLICATION_ID);
    for table in ["mailboxes", "messages", "deliveries", "folders"] {
        let n: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "{table}");
    }
    let mode = fs::metadata(&db).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_integrity(&db);
}

#[test]
fn migration_files_are_numbered_in_order_and_all_embedded() {
    for (i, m) in MIGRATIONS.iter().enumerate() {
        assert!(m.name.starts_with(&format!("{:04}_", i + 1)), "{}", m.name);
        assert!(
            !m.sql.to_ascii_lowercase().contains("pragma user_version"),
            "{} sets user_version",
            m.name
        );
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/sqlite");
    let mut files: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".sql").map(str::to_string)
        })
        .collect();
    files.sort();
    let embedded: Vec<String> = MIGRATIONS.iter().map(|m| m.name.to_string()).collect();
    assert_eq!(
        files, embedded,
        "every migrations/sqlite/*.sql must be in MIGRATIONS"
    );
}

#[test]
fn rerun_of_migrations_is_a_no_op() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let schema = |db: &Path| -> Vec<String> {
        let c = raw(db);
        let mut s = c
            .prepare("SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY name")
            .unwrap();
        let v = s
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<Vec<String>, _>>()
            .unwrap();
        v
    };
    {
        let st = open(&db);
        assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    }
    let before = schema(&db);
    {
        let st = open(&db);
        assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    }
    assert_eq!(schema(&db), before);
    let mut c = raw(&db);
    assert_eq!(migrate::migrate(&mut c, &db), Ok(0));
    assert_eq!(uids(&db, "alice@example.org"), vec![1, 2]);
    assert_integrity(&db);
}

#[test]
fn newer_user_version_is_refused() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    drop(open(&db));
    raw(&db)
        .pragma_update(None, "user_version", migrate::latest() + 1)
        .unwrap();
    let err = SqliteStore::open(config(&db)).unwrap_err();
    assert!(err.contains("newer than this lmtpd"), "{err}");
    let err = schema_status(&db).unwrap_err();
    assert!(err.contains("newer"), "{err}");
    let out = dir.path().join("x.mbox");
    let err = export(&db, "a@b", None, ExportFormat::Mbox, &out).unwrap_err();
    assert!(err.contains("newer"), "{err}");
    assert!(!out.exists());
    let v: i64 = raw(&db)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        v,
        migrate::latest() + 1,
        "a refused database is not touched"
    );
}

#[test]
fn foreign_database_is_refused() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    raw(&db)
        .execute_batch("CREATE TABLE notes (x TEXT)")
        .unwrap();
    let err = SqliteStore::open(config(&db)).unwrap_err();
    assert!(err.contains("not an lmtpd mail database"), "{err}");
    assert!(schema_status(&db).is_err());
}

#[test]
fn schema_status_strings() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    assert_eq!(
        schema_status(&db).unwrap(),
        "schema version 0 of 2 (2 migrations pending; database file does not exist yet)"
    );
    assert!(!db.exists(), "status never creates the file");

    fs::write(&db, b"").unwrap();
    assert_eq!(
        schema_status(&db).unwrap(),
        "schema version 0 of 2 (2 migrations pending)"
    );

    drop(open(&db));
    let side = |ext: &str| dir.path().join(format!("mail.db-{ext}")).exists();
    // r2d2 closes the pooled connections shortly after the pool is dropped; the last close
    // checkpoints and removes the WAL.
    for _ in 0..100 {
        if !side("wal") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!side("wal"), "WAL removed after the store closed");
    let before = fs::read(&db).unwrap();
    assert_eq!(
        schema_status(&db).unwrap(),
        "schema version 2 of 2 (up to date)"
    );
    assert_eq!(
        fs::read(&db).unwrap(),
        before,
        "status must not modify the db"
    );
    assert!(
        !side("wal") && !side("shm"),
        "status creates no WAL or shm file"
    );
    // With a server running (WAL present), status reads through the WAL.
    let st = open(&db);
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    assert!(side("wal"));
    assert_eq!(
        schema_status(&db).unwrap(),
        "schema version 2 of 2 (up to date)"
    );
    drop(st);

    let junk = dir.path().join("junk.db");
    fs::write(&junk, vec![b'x'; 4096]).unwrap();
    assert!(schema_status(&junk).is_err());
    assert!(schema_status(dir.path()).is_err(), "a directory");
}

#[test]
fn pragmas_are_set_on_every_pooled_connection() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = SqliteStore::open(SqliteConfig {
        pool_size: 3,
        busy_timeout: Duration::from_millis(1234),
        ..config(&db)
    })
    .unwrap();
    let check = |c: &Connection| {
        let q = |p: &str| -> String {
            c.query_row(&format!("PRAGMA {p}"), [], |r| {
                r.get::<_, rusqlite::types::Value>(0)
            })
            .map(|v| format!("{v:?}"))
            .unwrap()
        };
        assert_eq!(q("journal_mode"), "Text(\"wal\")");
        assert_eq!(q("synchronous"), "Integer(2)"); // FULL
        assert_eq!(q("foreign_keys"), "Integer(1)");
        assert_eq!(q("busy_timeout"), "Integer(1234)");
    };
    let conns: Vec<_> = (0..3).map(|_| st.pool.get().unwrap()).collect();
    for c in &conns {
        check(c);
    }
    st.writer.with_conn(check);
}

// ---------------------------------------------------------------------------------------
// Delivery

#[test]
fn one_delivery_is_visible_from_a_second_connection_with_exact_bytes() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = open(&db);
    let alice = rcpt("alice");
    assert!(deliver(&st, std::slice::from_ref(&alice))[0].is_ok());

    // Committed before Ok: a fresh connection sees the rows.
    assert_eq!(count(&db, "SELECT count(*) FROM deliveries"), 1);
    let (sender, txid, size, mid, subject): (String, String, i64, String, String) = raw(&db)
        .query_row(
            "SELECT sender, transaction_id, size, message_id, subject FROM messages",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(sender, "s@x.org");
    assert_eq!(txid, "TX1");
    assert_eq!(size, BODY.len() as i64);
    assert_eq!(mid, "<m1@x.org>");
    assert_eq!(subject, "hi there");
    let (folder, recipient, dsize, flags): (String, String, i64, String) = raw(&db)
        .query_row(
            "SELECT folder, recipient, size, flags FROM deliveries",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(folder, "INBOX");
    assert_eq!(recipient, "alice@example.org");
    assert_eq!(dsize, (trace_of(&alice).len() + BODY.len()) as i64);
    assert_eq!(flags, "");
    let (used_b, used_m): (i64, i64) = raw(&db)
        .query_row("SELECT used_bytes, used_messages FROM mailboxes", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((used_b, used_m), (dsize, 1));

    assert_eq!(
        export_eml(&db, "alice@example.org", None),
        vec![(1, copy(&alice, BODY))]
    );
    assert_integrity(&db);
}

#[test]
fn one_body_row_for_a_multi_recipient_deliver_call() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = open(&db);
    let rcpts = [rcpt("alice"), rcpt("bob"), rcpt("carol")];
    assert!(deliver(&st, &rcpts).iter().all(Result::is_ok));
    assert_eq!(count(&db, "SELECT count(*) FROM messages"), 1);
    assert_eq!(count(&db, "SELECT count(*) FROM deliveries"), 3);
    assert_eq!(count(&db, "SELECT count(*) FROM mailboxes"), 3);
    for r in &rcpts {
        assert_eq!(export_eml(&db, &r.user, None), vec![(1, copy(r, BODY))]);
    }
    // A second call for the same message stores a second body (documented).
    assert!(deliver(&st, &rcpts[..1])[0].is_ok());
    assert_eq!(count(&db, "SELECT count(*) FROM messages"), 2);
    assert_integrity(&db);
}

#[test]
fn recipients_are_independent_one_over_quota_in_the_same_call() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = open(&db);
    let rcpts = [
        rcpt("alice"),
        with_quota("bob", Some(10), None),
        rcpt("carol"),
    ];
    let out = deliver(&st, &rcpts);
    assert!(out[0].is_ok());
    assert_eq!(code(&out[1]), Some((452, Enhanced(4, 2, 2))));
    assert!(out[2].is_ok());
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM mailboxes WHERE address = 'bob@example.org'"
        ),
        0,
        "the failing recipient's rows are rolled back"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM deliveries"), 2);
    assert_eq!(count(&db, "SELECT count(*) FROM messages"), 1);

    // The first recipient fails: the body goes with the next one's transaction.
    let out = deliver(&st, &[with_quota("bob", Some(10), None), rcpt("alice")]);
    assert!(out[0].is_err() && out[1].is_ok());
    assert_eq!(count(&db, "SELECT count(*) FROM messages"), 2);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM messages WHERE id NOT IN (SELECT message_id FROM deliveries)"
        ),
        0
    );
    assert_integrity(&db);
}

#[test]
fn all_recipients_failing_leave_no_orphan_body() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = open(&db);
    let out = deliver(
        &st,
        &[
            with_quota("bob", Some(10), None),
            with_quota("carol", None, Some(0)),
        ],
    );
    assert!(out.iter().all(Result::is_err));
    assert_eq!(count(&db, "SELECT count(*) FROM messages"), 0);
    assert_eq!(count(&db, "SELECT count(*) FROM mailboxes"), 0);
}

#[test]
fn quota_check_at_rcpt_and_at_delivery() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = open(&db);
    let r = with_quota("alice", None, Some(2));
    assert!(st.check(&r).is_ok(), "no mailbox row yet = empty");
    assert!(deliver(&st, std::slice::from_ref(&r))[0].is_ok());
    assert!(st.check(&r).is_ok());
    assert!(deliver(&st, std::slice::from_ref(&r))[0].is_ok());
    let err = st.check(&r).unwrap_err();
    assert_eq!((err.code, err.enhanced), (452, Enhanced(4, 2, 2)));
    assert_eq!(err.kind, ErrorKind::Temporary);
    assert_eq!(
        code(&deliver(&st, std::slice::from_ref(&r))[0]),
        Some((452, Enhanced(4, 2, 2)))
    );

    // Bytes: check passes while not full, delivery refuses a copy that would exceed.
    let size = (trace_of(&rcpt("bob")).len() + BODY.len()) as u64;
    let b = with_quota("bob", Some(size + 10), None);
    assert!(deliver(&st, std::slice::from_ref(&b))[0].is_ok());
    assert!(st.check(&b).is_ok());
    assert_eq!(
        code(&deliver(&st, std::slice::from_ref(&b))[0]),
        Some((452, Enhanced(4, 2, 2)))
    );
    let exact = with_quota("bob", Some(2 * size), None);
    assert!(deliver(&st, std::slice::from_ref(&exact))[0].is_ok());
    assert!(st.check(&exact).is_err(), "exactly full");

    // quota_permfail turns both into 552 5.2.2.
    drop(st);
    let st = SqliteStore::open(SqliteConfig {
        quota_permfail: true,
        ..config(&db)
    })
    .unwrap();
    let err = st.check(&r).unwrap_err();
    assert_eq!((err.code, err.enhanced), (552, Enhanced(5, 2, 2)));
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert_eq!(
        code(&deliver(&st, std::slice::from_ref(&r))[0]),
        Some((552, Enhanced(5, 2, 2)))
    );
    assert!(st.check(&rcpt("alice")).is_ok(), "unlimited");
}

#[test]
fn uid_increases_per_mailbox() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = open(&db);
    for _ in 0..3 {
        assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    }
    assert!(deliver(&st, &[rcpt("bob"), rcpt("alice")])
        .iter()
        .all(Result::is_ok));
    assert_eq!(uids(&db, "alice@example.org"), vec![1, 2, 3, 4]);
    assert_eq!(uids(&db, "bob@example.org"), vec![1]);
    // Expunging the newest message does not let its uid be reused.
    raw(&db)
        .execute(
            "DELETE FROM deliveries WHERE uid = 4 AND mailbox_id = \
             (SELECT id FROM mailboxes WHERE address = 'alice@example.org')",
            [],
        )
        .unwrap();
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    assert_eq!(uids(&db, "alice@example.org"), vec![1, 2, 3, 5]);
}

#[test]
fn expunge_by_sql_keeps_counters_and_removes_orphan_bodies() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = open(&db);
    assert!(deliver(&st, &[rcpt("alice"), rcpt("bob")])
        .iter()
        .all(Result::is_ok));
    let c = raw(&db);
    c.execute_batch("PRAGMA foreign_keys = ON").unwrap();
    c.execute(
        "DELETE FROM deliveries WHERE mailbox_id = \
         (SELECT id FROM mailboxes WHERE address = 'alice@example.org')",
        [],
    )
    .unwrap();
    let used = |addr: &str| -> (i64, i64) {
        c.query_row(
            "SELECT used_bytes, used_messages FROM mailboxes WHERE address = ?1",
            [addr],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    assert_eq!(used("alice@example.org"), (0, 0));
    assert_eq!(used("bob@example.org").1, 1);
    assert_eq!(
        count(&db, "SELECT count(*) FROM messages"),
        1,
        "bob still has it"
    );
    c.execute(
        "DELETE FROM mailboxes WHERE address = 'bob@example.org'",
        [],
    )
    .unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM deliveries"), 0);
    assert_eq!(count(&db, "SELECT count(*) FROM messages"), 0, "no orphan");
    assert_integrity(&db);
}

#[test]
fn folder_from_detail_no_yes_create() {
    let folder_of = |db: &Path, uid: i64| -> String {
        raw(db)
            .query_row("SELECT folder FROM deliveries WHERE uid = ?1", [uid], |r| {
                r.get(0)
            })
            .unwrap()
    };
    let dir = TempDir::new().unwrap();

    // No: the detail is ignored.
    let db = dir.path().join("no.db");
    let st = Modal {
        st: open(&db),
        mode: DetailMailbox::No,
    };
    assert!(deliver(&st, &[with_detail("alice", "lists")])[0].is_ok());
    assert_eq!(folder_of(&db, 1), "INBOX");

    // Yes: INBOX until the folder exists (a folders row or a message in it).
    let db = dir.path().join("yes.db");
    let st = Modal {
        st: open(&db),
        mode: DetailMailbox::Yes,
    };
    assert!(deliver(&st, &[with_detail("alice", "lists")])[0].is_ok());
    assert_eq!(folder_of(&db, 1), "INBOX");
    raw(&db)
        .execute(
            "INSERT INTO folders (mailbox_id, name, created) VALUES (1, 'lists', 0)",
            [],
        )
        .unwrap();
    assert!(deliver(&st, &[with_detail("alice", "lists")])[0].is_ok());
    assert_eq!(folder_of(&db, 2), "lists");
    raw(&db)
        .execute("UPDATE deliveries SET folder = 'news' WHERE uid = 1", [])
        .unwrap();
    assert!(deliver(&st, &[with_detail("alice", "news")])[0].is_ok());
    assert_eq!(folder_of(&db, 3), "news", "a message in it makes it exist");
    assert!(deliver(&st, &[with_detail("alice", "inbox")])[0].is_ok());
    assert_eq!(folder_of(&db, 4), "INBOX");

    // Create: always the detail's folder, recorded in folders.
    let db = dir.path().join("create.db");
    let st = Modal {
        st: open(&db),
        mode: DetailMailbox::Create,
    };
    assert!(
        deliver(&st, &[with_detail("alice", "lists"), rcpt("alice")])
            .iter()
            .all(Result::is_ok)
    );
    assert_eq!(folder_of(&db, 1), "lists");
    assert_eq!(folder_of(&db, 2), "INBOX");
    assert_eq!(
        count(&db, "SELECT count(*) FROM folders WHERE name = 'lists'"),
        1
    );
    let only = export_eml(&db, "alice@example.org", Some("lists"));
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].0, 1);
    assert_eq!(export_eml(&db, "alice@example.org", Some("inbox")).len(), 1);
}

#[test]
fn concurrent_deliveries_8_threads_x_50_on_one_db() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = Arc::new(
        SqliteStore::open(SqliteConfig {
            pool_size: 8,
            ..config(&db)
        })
        .unwrap(),
    );
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let st = Arc::clone(&st);
            std::thread::spawn(move || {
                for i in 0..50 {
                    let who = ["alice", "bob", "carol", "dave"][(t + i) % 4];
                    let body = format!("Subject: t{t} i{i}\n\nbody {t}/{i}\n");
                    let out = deliver_body(&st, body.as_bytes(), &[rcpt(who)]);
                    assert!(out[0].is_ok(), "{:?}", out[0]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(count(&db, "SELECT count(*) FROM deliveries"), 400);
    assert_eq!(count(&db, "SELECT count(*) FROM messages"), 400);
    let mut total = 0;
    for who in ["alice", "bob", "carol", "dave"] {
        let addr = format!("{who}@example.org");
        let u = uids(&db, &addr);
        let expect: Vec<i64> = (1..=u.len() as i64).collect();
        assert_eq!(u, expect, "uids of {addr} unique and gap-free");
        total += u.len();
        let (used_b, used_m, sum, next): (i64, i64, i64, i64) = raw(&db)
            .query_row(
                "SELECT used_bytes, used_messages, \
                 (SELECT sum(size) FROM deliveries WHERE mailbox_id = m.id), next_uid \
                 FROM mailboxes m WHERE address = ?1",
                [&addr],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(
            (used_b, used_m, next),
            (sum, u.len() as i64, u.len() as i64 + 1)
        );
    }
    assert_eq!(total, 400);
    assert_integrity(&db);
}

// ---------------------------------------------------------------------------------------
// Group commit

/// A step that inserts one mailbox row named `name`, then fails when `fail` is set.
fn insert_mailbox(conn: &Connection, name: &str, fail: bool) -> Result<(), Failure> {
    conn.execute(
        "INSERT INTO mailboxes (address, created) VALUES (?1, 0)",
        [name],
    )
    .map_err(Failure::sql("insert"))?;
    if fail {
        return Err(Failure::Local("step failed after its insert".into()));
    }
    Ok(())
}

fn mailbox_names(db: &Path) -> Vec<String> {
    let c = raw(db);
    let mut stmt = c
        .prepare("SELECT address FROM mailboxes ORDER BY address")
        .unwrap();
    let names = stmt.query_map([], |r| r.get(0)).unwrap();
    names.map(Result::unwrap).collect()
}

#[test]
fn group_commit_two_deliveries_share_one_commit_and_nothing_is_visible_before_it() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = open(&db);
    let w = &st.writer;
    // Two deliveries stage before either waits: both land in one transaction.
    let mut a = w.stage(["a"], |c, n| insert_mailbox(c, n, false));
    let mut b = w.stage(["b"], |c, n| insert_mailbox(c, n, false));
    let (ra, ea) = a.pop().unwrap();
    let (rb, eb) = b.pop().unwrap();
    assert!(ra.is_ok() && rb.is_ok());
    let (ea, eb) = (ea.unwrap(), eb.unwrap());
    assert!(Arc::ptr_eq(&ea, &eb), "one group transaction");
    assert!(mailbox_names(&db).is_empty(), "staged rows are not visible");
    assert_eq!(w.commits(), 0);
    w.wait(&ea).unwrap();
    assert_eq!(w.commits(), 1);
    assert_eq!(mailbox_names(&db), ["a", "b"]);
    // The second waiter finds its epoch committed by the first: no second COMMIT.
    w.wait(&eb).unwrap();
    assert_eq!(w.commits(), 1);
    // The next delivery opens a new transaction.
    let (r, e) = w
        .stage(["c"], |c, n| insert_mailbox(c, n, false))
        .pop()
        .unwrap();
    assert!(r.is_ok());
    assert!(!Arc::ptr_eq(e.as_ref().unwrap(), &ea));
    w.wait(e.as_ref().unwrap()).unwrap();
    assert_eq!(w.commits(), 2);
}

#[test]
fn group_commit_a_failing_step_rolls_back_only_its_own_savepoint() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = open(&db);
    let w = &st.writer;
    let out = w.stage([("a", false), ("bad", true), ("c", false)], |c, (n, f)| {
        insert_mailbox(c, n, f)
    });
    let other = w.stage(["d"], |c, n| insert_mailbox(c, n, false));
    assert!(out[0].0.is_ok() && out[2].0.is_ok());
    assert!(out[1].0.is_err());
    assert!(out[1].1.is_none(), "a failed step has nothing to wait for");
    for (r, e) in out.iter().chain(other.iter()) {
        if r.is_ok() {
            w.wait(e.as_ref().unwrap()).unwrap();
        }
    }
    assert_eq!(mailbox_names(&db), ["a", "c", "d"]);
    assert_eq!(w.commits(), 1);
}

#[test]
fn group_commit_a_call_whose_every_step_failed_leaves_no_transaction_open() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = SqliteStore::open(SqliteConfig {
        busy_timeout: Duration::from_millis(200),
        ..config(&db)
    })
    .unwrap();
    let out = st.writer.stage(["bad"], |c, n| insert_mailbox(c, n, true));
    assert!(out[0].0.is_err() && out[0].1.is_none());
    assert!(
        st.writer.with_conn(Connection::is_autocommit),
        "no open transaction"
    );
    // Another program can take the write lock at once.
    let other = raw(&db);
    other.execute_batch("BEGIN IMMEDIATE; ROLLBACK").unwrap();
    // Over quota through the store: same.
    let out = deliver(&st, &[with_quota("alice", Some(1), None)]);
    assert!(out[0].is_err());
    assert!(st.writer.with_conn(Connection::is_autocommit));
}

#[test]
fn group_commit_a_transaction_lost_mid_group_fails_everything_staged_in_it() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = open(&db);
    let w = &st.writer;
    let first = w.stage(["a"], |c, n| insert_mailbox(c, n, false));
    // A step whose error made SQLite roll the whole transaction back (as after SQLITE_FULL
    // or an I/O error); simulated with an explicit ROLLBACK.
    let lost = w.stage(["x"], |c, _| {
        c.execute_batch("ROLLBACK").unwrap();
        Err::<(), _>(Failure::Local("disk error".into()))
    });
    let after = w.stage(["b"], |c, n| insert_mailbox(c, n, false));
    assert!(lost[0].0.is_err());
    let (r, e) = &first[0];
    assert!(r.is_ok(), "the step itself succeeded");
    let err = w.wait(e.as_ref().unwrap()).unwrap_err();
    assert!(err.text.contains("rolled back"), "{err:?}");
    let (r, e) = &after[0];
    assert!(r.is_ok());
    w.wait(e.as_ref().unwrap()).unwrap();
    assert_eq!(
        mailbox_names(&db),
        ["b"],
        "only the later transaction committed"
    );
    // Through the store, such a failure is a temporary 451 4.3.0.
    let d = Failure::Group(err).into_delivery(false);
    assert_eq!((d.code, d.enhanced), (451, Enhanced(4, 3, 0)));
}

#[test]
fn group_commit_concurrent_deliveries_share_commits() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = Arc::new(open(&db));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let st = Arc::clone(&st);
            std::thread::spawn(move || {
                for i in 0..25 {
                    let who = ["alice", "bob", "carol"][(t + i) % 3];
                    let out = deliver(&st, &[rcpt(who), rcpt("dave")]);
                    assert!(out.iter().all(Result::is_ok), "{out:?}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(count(&db, "SELECT count(*) FROM deliveries"), 400);
    assert_eq!(count(&db, "SELECT count(*) FROM messages"), 200);
    let commits = st.writer.commits();
    assert!(
        (1..=200).contains(&commits),
        "at most one COMMIT per delivery call, got {commits}"
    );
    assert_integrity(&db);
}

// ---------------------------------------------------------------------------------------
// Errors

#[test]
fn busy_past_the_timeout_gives_451_4_3_0() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = SqliteStore::open(SqliteConfig {
        pool_size: 1,
        busy_timeout: Duration::from_millis(200),
        ..config(&db)
    })
    .unwrap();
    let holder = raw(&db);
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let out = deliver(&st, &[rcpt("alice")]);
    assert_eq!(code(&out[0]), Some((451, Enhanced(4, 3, 0))));
    let err = out[0].as_ref().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Temporary);
    assert!(!err.text.to_lowercase().contains("sql"), "{}", err.text);
    assert!(
        err.source.as_deref().unwrap_or("").contains("locked"),
        "{err}"
    );
    holder.execute_batch("ROLLBACK").unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM messages"), 0);
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());

    // Several recipients wait out the timeout once, not once each: after the first BEGIN
    // failed, the others get its failure without trying again.
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let out = deliver(&st, &[rcpt("a"), rcpt("b"), rcpt("c"), rcpt("d")]);
    for o in &out {
        assert_eq!(code(o), Some((451, Enhanced(4, 3, 0))), "{o:?}");
    }
    let sources: Vec<&str> = out
        .iter()
        .map(|o| {
            o.as_ref()
                .err()
                .and_then(|e| e.source.as_deref())
                .unwrap_or("")
        })
        .collect();
    assert!(!sources[0].contains("not retried"), "{sources:?}");
    assert!(
        sources[1..].iter().all(|s| s.contains("not retried")),
        "{sources:?}"
    );
    holder.execute_batch("ROLLBACK").unwrap();
}

#[test]
fn sqlite_full_gives_452_4_3_1_and_leaves_no_rows() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = SqliteStore::open(SqliteConfig {
        pool_size: 1,
        body_files: 0, // the 1 MiB body goes into the database, which is full
        ..config(&db)
    })
    .unwrap();
    {
        // Cap the writer connection's database size: the next big insert fails with
        // SQLITE_FULL exactly as a full disk would.
        st.writer.with_conn(|c| {
            let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
            c.query_row(
                &format!("PRAGMA max_page_count = {}", pages + 4),
                [],
                |_| Ok(()),
            )
            .unwrap();
        });
    }
    let big = vec![b'a'; 1 << 20];
    let out = deliver_body(&st, &big, &[rcpt("alice"), rcpt("bob")]);
    for o in &out {
        assert_eq!(code(o), Some((452, Enhanced(4, 3, 1))));
    }
    assert_eq!(count(&db, "SELECT count(*) FROM messages"), 0);
    assert_eq!(count(&db, "SELECT count(*) FROM deliveries"), 0);
    assert!(
        deliver(&st, &[rcpt("carol")])[0].is_ok(),
        "small still fits"
    );
    assert_integrity(&db);
}

/// A body whose reader yields more bytes than `len()` claims (a changed spool file).
struct LyingBody;

impl Body for LyingBody {
    fn len(&self) -> u64 {
        10
    }
    fn open(&self) -> io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(Cursor::new(vec![b'x'; 20])))
    }
    fn lines(&self) -> u64 {
        0
    }
}

#[test]
fn a_body_of_the_wrong_size_fails_with_451_and_no_rows() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = open(&db);
    let out = deliver_env(&st, &envelope(None), &LyingBody, &[rcpt("alice")]);
    assert_eq!(code(&out[0]), Some((451, Enhanced(4, 3, 0))));
    assert_eq!(count(&db, "SELECT count(*) FROM messages"), 0);
    assert_eq!(count(&db, "SELECT count(*) FROM mailboxes"), 0);
}

// ---------------------------------------------------------------------------------------
// Export

const FROM_BODY: &[u8] = b"Subject: quoting\n\nFrom the start\n>From one\n>>From two\nFrom\nFromage\n\nFrom \n>\n>>Fro\nno newline at end";

#[test]
fn export_to_mbox_quotes_from_lines_and_round_trips() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = open(&db);
    let alice = rcpt("alice");
    assert!(deliver_body(&st, FROM_BODY, std::slice::from_ref(&alice))[0].is_ok());
    let bounce = MemoryBody(BODY.to_vec());
    assert!(deliver_env(&st, &envelope(None), &bounce, std::slice::from_ref(&alice))[0].is_ok());
    let received: i64 = count(&db, "SELECT received FROM messages WHERE id = 2");

    let mbox = dir.path().join("alice.mbox");
    let n = export(&db, "alice@example.org", None, ExportFormat::Mbox, &mbox).unwrap();
    assert_eq!(n, 2);
    let data = fs::read(&mbox).unwrap();
    assert_eq!(
        fs::metadata(&mbox).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = String::from_utf8_lossy(&data);
    assert!(text.contains("\n>From the start\n>>From one\n>>>From two\nFrom\nFromage\n"));
    assert!(text.contains("\n>From \n>\n>>Fro\nno newline at end\n\nFrom MAILER-DAEMON "));
    let msgs = parse_mboxrd(&data);
    assert_eq!(msgs.len(), 2);
    assert!(msgs[0].0.starts_with("From s@x.org "));
    let at = std::time::UNIX_EPOCH + Duration::from_secs(received as u64);
    assert_eq!(msgs[1].0, lmtpd_store::mboxrd::from_line(None, at));
    let mut first = copy(&alice, FROM_BODY);
    first.push(b'\n'); // an mbox message always ends with a line end
    assert_eq!(msgs[0].1, first);
    assert_eq!(msgs[1].1, copy(&alice, BODY));

    // An existing output file is refused and left alone.
    let err = export(&db, "alice@example.org", None, ExportFormat::Mbox, &mbox).unwrap_err();
    assert!(err.contains("cannot create"), "{err}");
    assert_eq!(fs::read(&mbox).unwrap(), data);
    // An unknown mailbox is an error, and no file is left behind.
    let other = dir.path().join("nobody.mbox");
    assert!(export(&db, "nobody@example.org", None, ExportFormat::Mbox, &other).is_err());
    assert!(!other.exists());

    python_reads_mbox(&mbox, &[first, copy(&alice, BODY)]);
}

/// Parses the mbox with python3's `mailbox` module (mboxo reading, so we undo the mboxrd
/// quoting there); without python3 the test fails unless it may skip
/// ([`testing::require`]).
fn python_reads_mbox(mbox: &Path, expect: &[Vec<u8>]) {
    if !testing::have_python3() {
        return;
    }
    let outdir = TempDir::new().unwrap();
    let script = r#"
import mailbox, re, sys, os
box = mailbox.mbox(sys.argv[1], create=False)
for i, key in enumerate(box.keys()):
    raw = box.get_bytes(key, from_=False)
    raw = re.sub(rb'(?m)^>(>*From )', rb'\1', raw)
    with open(os.path.join(sys.argv[2], str(i)), 'wb') as f:
        f.write(raw)
    msg = box[key]
    print(msg.get_from().split(' ')[0], msg['Subject'])
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(mbox)
        .arg(outdir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8(out.stdout).unwrap();
    assert_eq!(listing, "s@x.org quoting\nMAILER-DAEMON hi\n there\n");
    for (i, want) in expect.iter().enumerate() {
        let got = fs::read(outdir.path().join(i.to_string())).unwrap();
        assert_eq!(&got, want, "message {i} through python's mailbox");
    }
}

#[test]
fn export_to_eml_dir_round_trips_bytes() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = open(&db);
    let alice = rcpt("alice");
    let bodies: [&[u8]; 3] = [BODY, FROM_BODY, b"\0binary\xff\n"];
    for b in bodies {
        assert!(deliver_body(&st, b, std::slice::from_ref(&alice))[0].is_ok());
    }
    let files = export_eml(&db, "alice@example.org", None);
    let want: Vec<(i64, Vec<u8>)> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| (i as i64 + 1, copy(&alice, b)))
        .collect();
    assert_eq!(files, want);
}

#[test]
fn large_body_streams_in_and_out_intact() {
    // Inline (body files off) and as a body file (the default for 5 MiB).
    for body_files in [0, crate::DEFAULT_BODY_FILES] {
        large_body_round_trip(body_files);
    }
}

fn large_body_round_trip(body_files: u64) {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = SqliteStore::open(SqliteConfig {
        body_files,
        ..config(&db)
    })
    .unwrap();
    // 5 MiB of pseudo-random lines, some of them `From ` lines, no header-section end
    // within the 64 KiB header limit.
    let mut body = b"Subject: big\nMessage-ID: <big@x>\n\n".to_vec();
    let mut x: u32 = 12345;
    while body.len() < 5 << 20 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        match x % 7 {
            0 => body.extend_from_slice(b"From here\n"),
            1 => body.extend_from_slice(b">>From there\n"),
            _ => body.extend_from_slice(format!("{x:08x} {}\n", x % 97).as_bytes()),
        }
    }
    let alice = rcpt("alice");
    let bob = rcpt("bob");
    assert!(deliver_body(&st, &body, &[alice.clone(), bob.clone()])
        .iter()
        .all(Result::is_ok));
    assert_eq!(count(&db, "SELECT count(*) FROM messages"), 1);
    let in_blob = if body_files == 0 { body.len() } else { 0 };
    assert_eq!(
        count(&db, "SELECT length(body) FROM messages"),
        in_blob as i64
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM messages WHERE body_file IS NOT NULL"
        ),
        i64::from(body_files != 0)
    );
    let files = export_eml(&db, "bob@example.org", None);
    assert_eq!(files.len(), 1);
    assert!(files[0].1 == copy(&bob, &body), "eml export differs");

    let mbox = dir.path().join("big.mbox");
    export(&db, "alice@example.org", None, ExportFormat::Mbox, &mbox).unwrap();
    let msgs = parse_mboxrd(&fs::read(&mbox).unwrap());
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].1 == copy(&alice, &body), "mbox export differs");
    assert_integrity(&db);
}

#[test]
fn export_to_mbox_drops_reader_trusted_fields_as_the_mbox_store_does() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = open(&db);
    let alice = rcpt("alice");
    let body: &[u8] = b"Subject: s\nStatus: RO\nX-UID: 7\n\nStatus: stays in the body\n";
    assert!(deliver_body(&st, body, std::slice::from_ref(&alice))[0].is_ok());
    let mbox = dir.path().join("alice.mbox");
    export(&db, "alice@example.org", None, ExportFormat::Mbox, &mbox).unwrap();
    let msgs = parse_mboxrd(&fs::read(&mbox).unwrap());
    assert_eq!(msgs.len(), 1);
    let want = copy(&alice, b"Subject: s\n\nStatus: stays in the body\n");
    assert_eq!(msgs[0].1, want);
    // The .eml export keeps the stored bytes.
    let eml = export_eml(&db, "alice@example.org", None);
    assert_eq!(eml[0].1, copy(&alice, body));
}

#[test]
fn headers_are_read_from_the_header_section_only() {
    let meta = headers::parse(
        b"subject: one\n\ttwo\nMESSAGE-ID:  <a@b> \nSubject: second\n\nMessage-ID: <body@x>\n",
        true,
    );
    assert_eq!(
        meta,
        Meta {
            message_id: Some("<a@b>".into()),
            subject: Some("one\ttwo".into()),
        }
    );
    assert_eq!(headers::parse(b"\nSubject: x\n", true), Meta::default());
    // Cut at the limit: the partial last line is ignored.
    assert_eq!(headers::parse(b"X: 1\nSubject: trunc", false).subject, None);
    let long = [
        b"X: ".to_vec(),
        vec![b'a'; 70_000],
        b"\nSubject: late\n".to_vec(),
    ]
    .concat();
    assert_eq!(
        headers::extract(&MemoryBody(long)).unwrap(),
        Meta::default()
    );
}

#[test]
fn export_reads_a_live_database_with_a_writer_active() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = open(&db);
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    let holder = raw(&db);
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    // WAL: a reader is not blocked by the writer.
    assert_eq!(export_eml(&db, "alice@example.org", None).len(), 1);
    holder.execute_batch("ROLLBACK").unwrap();
    let by_uid: HashMap<i64, Vec<u8>> = export_eml(&db, "alice@example.org", None)
        .into_iter()
        .collect();
    assert_eq!(by_uid[&1], copy(&rcpt("alice"), BODY));
}

/// Not a rule: prints deliveries/s for 8 threads × 250 single-recipient deliveries of a
/// 4 KiB message (run with `cargo test --release -p lmtpd-sqlite -- --ignored --nocapture`).
#[test]
#[ignore]
fn throughput_8_threads() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = Arc::new(
        SqliteStore::open(SqliteConfig {
            pool_size: 8,
            ..config(&db)
        })
        .unwrap(),
    );
    let body = [b"Subject: load\n\n".to_vec(), vec![b'x'; 4096]].concat();
    let start = std::time::Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let st = Arc::clone(&st);
            let body = body.clone();
            std::thread::spawn(move || {
                for i in 0..250 {
                    let who = format!("u{}", (t * 250 + i) % 16);
                    assert!(deliver_body(&st, &body, &[rcpt(&who)])[0].is_ok());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!("2000 deliveries in {secs:.2} s = {:.0}/s", 2000.0 / secs);
}

// ---- the store contract suite --------------------------------------------------------------

/// The contract suite's view of a SQLite store in a temporary directory; reads go through a
/// second, independent connection, as a mail reader's would.
struct Harness {
    _dir: TempDir,
    db: PathBuf,
    st: SqliteStore,
}

fn harness() -> Harness {
    harness_with(0)
}

/// A harness whose store keeps every body of at least `body_files` bytes as a body file
/// (0: none).
fn harness_with(body_files: u64) -> Harness {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = SqliteStore::open(SqliteConfig {
        body_files,
        ..config(&db)
    })
    .unwrap();
    Harness { _dir: dir, db, st }
}

/// A copy's bytes as a reader following SCHEMA.md sees them: `trace`, then `body`, or the
/// body file when `body_file` is set.
fn full_copy(db: &Path, trace: Vec<u8>, body: Vec<u8>, body_file: Option<String>) -> Vec<u8> {
    let body = match body_file {
        Some(name) => {
            assert!(body.is_empty(), "a row with a body file has an empty body");
            fs::read(crate::bodies::dir_of(db).join(name)).unwrap()
        }
        None => body,
    };
    [trace, body].concat()
}

impl testing::Harness for Harness {
    fn store(&self) -> &dyn MailStore {
        &self.st
    }

    fn read(&self, r: &Recipient, folder: Option<&str>) -> Vec<testing::Visible> {
        let conn = raw(&self.db);
        let mut q = conn
            .prepare(
                "SELECT d.trace, m.body, m.body_file, d.flags FROM deliveries d \
                 JOIN mailboxes b ON b.id = d.mailbox_id JOIN messages m ON m.id = d.message_id \
                 WHERE b.address = ?1 AND d.folder = ?2",
            )
            .unwrap();
        q.query_map(
            rusqlite::params![r.user, folder.unwrap_or("INBOX")],
            |row| {
                Ok(testing::Visible {
                    bytes: full_copy(&self.db, row.get(0)?, row.get(1)?, row.get(2)?),
                    flags: row.get(3)?,
                })
            },
        )
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    fn break_mailbox(&self, r: &Recipient) {
        // Every delivery row for this recipient is refused inside its savepoint.
        raw(&self.db)
            .execute_batch(&format!(
                "CREATE TRIGGER break_{0} BEFORE INSERT ON deliveries \
                 WHEN NEW.recipient = '{1}' BEGIN SELECT RAISE(ABORT, 'injected'); END",
                r.local, r.address
            ))
            .unwrap();
    }
}

lmtpd_store::contract_suite!(harness);

/// The same contract with every body in a body file.
mod with_body_files {
    use super::harness_with;

    fn harness() -> super::Harness {
        harness_with(1)
    }

    lmtpd_store::contract_suite!(harness);
}

#[test]
fn flags_are_stored_in_the_flags_column_as_imap_names() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = open(&db);
    let r = rcpt("alice");
    let env = envelope(Some("s@x.org"));
    let body = MemoryBody(BODY.to_vec());
    let flags = Flags::of(&[Flag::Seen, Flag::Flagged]);
    let d = Delivery::new(&r, trace_of(&r), vec![Target::inbox().with_flags(flags)]);
    assert!(testing::deliver(&st, &Message::new(&env, &body), &[d])[0].is_ok());
    let got: String = raw(&db)
        .query_row("SELECT flags FROM deliveries", [], |row| row.get(0))
        .unwrap();
    assert_eq!(got, "\\Flagged \\Seen");
}

#[test]
fn usage_reads_the_counters_and_recalc_recounts_them_from_the_delivery_rows() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = open(&db);
    let a = with_quota("alice", Some(1 << 20), None);
    assert_eq!(st.usage(&a).unwrap(), Some(lmtpd_store::Usage::default()));
    for _ in 0..3 {
        assert!(deliver(&st, std::slice::from_ref(&a))[0].is_ok());
    }
    let sum = |db: &Path| {
        count(
            db,
            "SELECT COALESCE(SUM(length(d.trace) + length(m.body)), 0) FROM deliveries d \
             JOIN messages m ON m.id = d.message_id",
        )
    };
    let usage = |bytes: i64, messages: u64| lmtpd_store::Usage {
        bytes: u64::try_from(bytes).unwrap(),
        messages,
    };
    assert_eq!(st.usage(&a).unwrap(), Some(usage(sum(&db), 3)));

    // A row deleted by SQL: the triggers keep the counters right at once.
    raw(&db)
        .execute("DELETE FROM deliveries WHERE uid = 2", [])
        .unwrap();
    let two = usage(sum(&db), 2);
    assert_eq!(st.usage(&a).unwrap(), Some(two));

    // Counters changed by hand (a restore, a script without the triggers): usage() reports
    // them as they are, recalc() recounts the rows.
    raw(&db)
        .execute(
            "UPDATE mailboxes SET used_bytes = 7, used_messages = 40 WHERE address = ?1",
            [&a.user],
        )
        .unwrap();
    assert_eq!(st.usage(&a).unwrap(), Some(usage(7, 40)));
    assert_eq!(st.recalc(&a).unwrap(), Some(two));
    assert_eq!(st.usage(&a).unwrap(), Some(two));
    assert_eq!(
        count(
            &db,
            "SELECT used_messages FROM mailboxes WHERE address = 'alice@example.org'"
        ),
        2
    );
    // A mailbox without a row: nothing used, and recalc creates none.
    let nobody = rcpt("nobody");
    assert_eq!(
        st.recalc(&nobody).unwrap(),
        Some(lmtpd_store::Usage::default())
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM mailboxes"), 1);
}

// ---- body files ------------------------------------------------------------------------------

/// A store keeping every body of at least `threshold` bytes as a body file.
fn open_files(db: &Path, threshold: u64) -> SqliteStore {
    SqliteStore::open(SqliteConfig {
        body_files: threshold,
        ..config(db)
    })
    .unwrap()
}

/// The body files of `db` (without `tmp/`), by name.
fn body_files(db: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(crate::bodies::dir_of(db))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "tmp")
        .collect();
    v.sort();
    v
}

#[test]
fn a_body_at_the_threshold_is_one_0600_file_named_by_its_row_shared_by_every_recipient() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = open_files(&db, BODY.len() as u64);
    let (alice, bob) = (rcpt("alice"), rcpt("bob"));
    assert!(deliver(&st, &[alice.clone(), bob.clone()])
        .iter()
        .all(Result::is_ok));
    let files = body_files(&db);
    assert_eq!(files.len(), 1, "one file for the call");
    let path = crate::bodies::dir_of(&db).join(&files[0]);
    assert_eq!(fs::read(&path).unwrap(), BODY);
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&crate::bodies::dir_of(&db)), 0o700);
    let named: String = raw(&db)
        .query_row("SELECT body_file FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(named, files[0]);
    assert_eq!(count(&db, "SELECT length(body) FROM messages"), 0);
    assert_eq!(
        count(&db, "SELECT size FROM messages"),
        BODY.len() as i64,
        "size is the body's, wherever it is kept"
    );
    assert_eq!(
        export_eml(&db, "bob@example.org", None),
        vec![(1, copy(&bob, BODY))]
    );
    assert_eq!(
        count(
            &db,
            "SELECT used_bytes FROM mailboxes WHERE address = 'alice@example.org'"
        ),
        copy(&alice, BODY).len() as i64,
        "the quota counts the copy"
    );
    assert_integrity(&db);
}

#[test]
fn a_body_below_the_threshold_stays_in_the_database() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = open_files(&db, BODY.len() as u64 + 1);
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    assert!(body_files(&db).is_empty());
    assert_eq!(
        count(&db, "SELECT count(*) FROM messages WHERE body_file IS NULL"),
        1
    );
    assert_eq!(
        count(&db, "SELECT length(body) FROM messages"),
        BODY.len() as i64
    );
}

#[test]
fn with_body_files_off_no_directory_is_made() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = open_files(&db, 0);
    assert!(deliver_body(&st, &vec![b'x'; 1 << 20], &[rcpt("alice")])[0].is_ok());
    assert!(!crate::bodies::dir_of(&db).exists());
}

#[test]
fn a_body_file_no_copy_was_stored_with_is_removed_at_once() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = open_files(&db, 1);
    let out = deliver(
        &st,
        &[
            with_quota("bob", Some(10), None),
            with_quota("carol", None, Some(0)),
        ],
    );
    assert!(out.iter().all(Result::is_err));
    assert_eq!(count(&db, "SELECT count(*) FROM messages"), 0);
    assert!(body_files(&db).is_empty(), "{:?}", body_files(&db));
    // One recipient stored: the file stays, named by its row.
    let out = deliver(&st, &[with_quota("bob", Some(10), None), rcpt("alice")]);
    assert!(out[0].is_err() && out[1].is_ok());
    assert_eq!(body_files(&db).len(), 1);
}

#[test]
fn a_body_of_the_wrong_size_leaves_no_body_file_and_no_rows() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = open_files(&db, 1);
    let out = deliver_env(&st, &envelope(None), &LyingBody, &[rcpt("a"), rcpt("b")]);
    for o in &out {
        assert_eq!(code(o), Some((451, Enhanced(4, 3, 0))));
    }
    assert!(body_files(&db).is_empty());
    let tmp = crate::bodies::dir_of(&db).join("tmp");
    assert_eq!(
        fs::read_dir(tmp).unwrap().count(),
        0,
        "nothing left in tmp/"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM messages"), 0);
}

#[test]
fn an_edited_copy_keeps_its_own_row_in_the_database_beside_the_body_file() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = open_files(&db, 1);
    testing::edited_header_is_that_copys_own(&Harness {
        _dir: TempDir::new().unwrap(),
        db: db.clone(),
        st,
    });
    assert_eq!(
        count(&db, "SELECT count(*) FROM messages WHERE body_file IS NULL"),
        1,
        "the edited copy's row"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM messages WHERE body_file IS NOT NULL"
        ),
        1
    );
}

#[test]
fn the_sweep_removes_old_files_no_row_names_and_keeps_the_rest() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = open_files(&db, 1);
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    assert!(deliver(&st, &[rcpt("bob")])[0].is_ok());
    drop(st);
    let bodies = crate::bodies::dir_of(&db);
    let named = body_files(&db);
    assert_eq!(named.len(), 2);
    // bob's copy is expunged by SQL, as a mail reader would: its row goes, its file stays.
    raw(&db)
        .execute_batch(
            "DELETE FROM deliveries WHERE mailbox_id = \
             (SELECT id FROM mailboxes WHERE address = 'bob@example.org')",
        )
        .unwrap();
    let bobs = named
        .iter()
        .find(|n| {
            count(
                &db,
                &format!("SELECT count(*) FROM messages WHERE body_file = '{n}'"),
            ) == 0
        })
        .unwrap()
        .clone();
    let young_orphan = bodies.join("1.2.3.4");
    fs::write(&young_orphan, b"a crash between file and row, just now").unwrap();
    let future = bodies.join("5.6.7.9");
    fs::write(
        &future,
        b"its mtime is a day ahead (a clock that went back)",
    )
    .unwrap();
    fs::File::options()
        .write(true)
        .open(&future)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + Duration::from_secs(86_400))
        .unwrap();
    let old_tmp = bodies.join("tmp").join("5.6.7.8");
    fs::write(&old_tmp, b"half written").unwrap();
    let foreign = bodies.join("README");
    fs::write(&foreign, b"not ours").unwrap();
    // Opening the store (as `lmtpd quota` does) sweeps nothing.
    let st = open_files(&db, 1);
    assert!(body_files(&db).contains(&bobs), "no sweep at open");
    let now = std::time::SystemTime::now();
    assert_eq!(st.sweep_at(now), 0, "everything is younger than an hour");
    let later = now + Duration::from_secs(2 * 3600);
    assert_eq!(
        st.sweep_at(later),
        3,
        "bob's file, the orphan, the tmp/ leftover"
    );
    let left = body_files(&db);
    assert!(!left.contains(&bobs), "bob's unnamed old file is swept");
    assert!(
        left.iter().any(|n| *n != bobs && named.contains(n)),
        "alice's stays"
    );
    assert!(
        !young_orphan.exists(),
        "an orphan is swept once an hour old"
    );
    assert!(future.exists(), "a file from the future is never old");
    assert!(foreign.exists(), "a name lmtpd never makes is left alone");
    assert!(!old_tmp.exists(), "an old tmp/ leftover is swept");
    assert_eq!(
        export_eml(&db, "alice@example.org", None),
        vec![(1, copy(&rcpt("alice"), BODY))]
    );
    drop(st);
}

#[test]
fn export_refuses_a_body_file_that_is_a_symlink_hard_linked_or_of_the_wrong_size() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = open_files(&db, 1);
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    drop(st);
    let path = crate::bodies::dir_of(&db).join(&body_files(&db)[0]);
    let out = TempDir::new().unwrap();
    let try_export = |n: &str| {
        export(
            &db,
            "alice@example.org",
            None,
            ExportFormat::Mbox,
            &out.path().join(n),
        )
    };
    assert!(try_export("ok.mbox").is_ok());

    let link = dir.path().join("extra-link");
    fs::hard_link(&path, &link).unwrap();
    let e = try_export("linked.mbox").unwrap_err();
    assert!(e.contains("links"), "{e}");
    fs::remove_file(&link).unwrap();

    let elsewhere = dir.path().join("elsewhere");
    fs::rename(&path, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
    assert!(try_export("symlink.mbox").is_err());
    fs::remove_file(&path).unwrap();

    fs::write(&path, b"short").unwrap();
    let e = try_export("short.mbox").unwrap_err();
    assert!(e.contains("the row says"), "{e}");
    assert!(
        !out.path().join("short.mbox").exists(),
        "a failed export leaves nothing"
    );
}

#[test]
fn a_symlinked_body_directory_is_never_written_through_and_bodies_stay_in_the_database() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let target = dir.path().join("elsewhere");
    fs::create_dir(&target).unwrap();
    std::os::unix::fs::symlink(&target, crate::bodies::dir_of(&db)).unwrap();
    let st = open_files(&db, 1);
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    assert_eq!(
        fs::read_dir(&target).unwrap().count(),
        0,
        "nothing written there"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM messages WHERE body_file IS NULL"),
        1
    );
    assert_eq!(
        export_eml(&db, "alice@example.org", None),
        vec![(1, copy(&rcpt("alice"), BODY))]
    );
}

#[test]
fn a_version_1_database_migrates_and_its_inline_bodies_still_export() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    {
        let mut c = raw(&db);
        let tx = c.transaction().unwrap();
        tx.execute_batch(MIGRATIONS[0].sql).unwrap();
        tx.pragma_update(None, "user_version", 1).unwrap();
        tx.commit().unwrap();
        c.execute_batch(
            "INSERT INTO mailboxes (address, created, next_uid) VALUES ('alice@example.org', 1, 2);
             INSERT INTO messages (received, sender, transaction_id, size, body)
                  VALUES (1, 's@x.org', 'T0', 6, CAST('hello\n' AS BLOB));
             INSERT INTO deliveries (mailbox_id, message_id, uid, recipient, size, delivered, trace)
                  VALUES (1, 1, 1, 'alice@example.org', 11, 1, CAST('X: y\n' AS BLOB));",
        )
        .unwrap();
    }
    let st = open_files(&db, 1);
    assert_eq!(count(&db, "PRAGMA user_version"), migrate::latest());
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    assert_eq!(
        export_eml(&db, "alice@example.org", None),
        vec![
            (1, b"X: y\nhello\n".to_vec()),
            (2, copy(&rcpt("alice"), BODY))
        ]
    );
    assert_integrity(&db);
}

#[test]
fn the_first_delivery_starts_the_sweep_in_the_background() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    drop(open_files(&db, 1));
    let orphan = crate::bodies::dir_of(&db).join("a.b.c.d");
    fs::write(&orphan, b"left by a crash").unwrap();
    // Small bodies stay in the database here, so the sweep (from age 0) races no file.
    let st = open_files(&db, 1 << 20).with_sweep_min_age(Duration::ZERO);
    assert!(orphan.exists(), "no sweep at open");
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    for _ in 0..500 {
        if !orphan.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!orphan.exists(), "swept after the first delivery");
}

#[test]
fn a_body_file_that_cannot_be_written_puts_the_body_in_the_database() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    let st = open_files(&db, 1);
    // tmp/ turns into a file after the store checked it: every body-file write fails.
    let tmp = crate::bodies::dir_of(&db).join("tmp");
    fs::remove_dir(&tmp).unwrap();
    fs::write(&tmp, b"not a directory").unwrap();
    let out = deliver(&st, &[rcpt("alice"), with_quota("bob", Some(10), None)]);
    assert!(out[0].is_ok(), "{out:?}");
    assert_eq!(
        code(&out[1]),
        Some((452, Enhanced(4, 2, 2))),
        "bob's own over-quota reply, not the body file's failure"
    );
    assert!(body_files(&db).is_empty());
    assert_eq!(
        count(
            &db,
            "SELECT length(body) FROM messages WHERE body_file IS NULL"
        ),
        BODY.len() as i64
    );
}

#[test]
fn a_body_directory_others_may_write_into_is_not_used() {
    let dir = TempDir::new().unwrap();
    let db = db_in(&dir);
    drop(open_files(&db, 1));
    let bodies = crate::bodies::dir_of(&db);
    fs::set_permissions(&bodies, fs::Permissions::from_mode(0o777)).unwrap();
    let st = open_files(&db, 1);
    assert!(deliver(&st, &[rcpt("alice")])[0].is_ok());
    assert!(body_files(&db).is_empty());
    assert_eq!(
        count(&db, "SELECT count(*) FROM messages WHERE body_file IS NULL"),
        1
    );
}
