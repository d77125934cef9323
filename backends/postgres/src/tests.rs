//! Tests against a real PostgreSQL: the private cluster of [`crate::testing`], a database
//! of its own for each test.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use lmtpd_store::testing::{self, Harness as _};
use lmtpd_store::{Delivery, Envelope, MailStore, MemoryBody, Message, Quota, Recipient, Target};

use crate::testing::{cluster, Cluster};
use crate::{PostgresConfig, PostgresStore};

fn open(conninfo: &str) -> PostgresStore {
    PostgresStore::try_open(PostgresConfig::new(conninfo)).unwrap()
}

fn rcpt(local: &str) -> Recipient {
    testing::rcpt(local)
}

/// The contract suite's view of a store on its own database; reads go through a second
/// connection, as a mail reader's would.
struct Harness {
    conninfo: String,
    st: PostgresStore,
}

fn harness() -> Harness {
    let Some(c) = cluster() else {
        panic!("postgresql is missing (see lmtpd_store::testing::require)");
    };
    let conninfo = c.database();
    let st = open(&conninfo);
    Harness { conninfo, st }
}

impl testing::Harness for Harness {
    fn store(&self) -> &dyn MailStore {
        &self.st
    }

    fn read(&self, r: &Recipient, folder: Option<&str>) -> Vec<testing::Visible> {
        let mut c = postgres::Client::connect(&self.conninfo, postgres::NoTls).unwrap();
        let rows = c
            .query(
                "SELECT d.trace, d.flags, d.message_id FROM deliveries d \
                 JOIN mailboxes b ON b.id = d.mailbox_id \
                 WHERE b.address = $1 AND d.folder = $2",
                &[&r.user, &folder.unwrap_or("INBOX")],
            )
            .unwrap();
        rows.iter()
            .map(|row| {
                let mut bytes: Vec<u8> = row.get(0);
                let id: i64 = row.get(2);
                for chunk in c
                    .query(
                        "SELECT data FROM message_chunks WHERE message_id = $1 ORDER BY seq",
                        &[&id],
                    )
                    .unwrap()
                {
                    bytes.extend_from_slice(chunk.get::<_, &[u8]>(0));
                }
                testing::Visible {
                    bytes,
                    flags: row.get(1),
                }
            })
            .collect()
    }

    fn break_mailbox(&self, r: &Recipient) {
        let mut c = postgres::Client::connect(&self.conninfo, postgres::NoTls).unwrap();
        c.batch_execute(&format!(
            "CREATE FUNCTION break_{0}() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.recipient = '{1}' THEN RAISE EXCEPTION 'injected'; END IF; \
             RETURN NEW; END $$; \
             CREATE TRIGGER break_{0} BEFORE INSERT ON deliveries \
             FOR EACH ROW EXECUTE FUNCTION break_{0}()",
            r.local, r.address
        ))
        .unwrap();
    }
}

lmtpd_store::contract_suite!(harness);

fn envelope() -> Envelope {
    Envelope {
        sender: Some("s@example.net".into()),
        lhlo: "client.test".into(),
        peer: None,
        smtputf8: false,
        eight_bit: false,
        id: "T1".into(),
    }
}

fn deliver_to(st: &PostgresStore, body: &[u8], rcpts: &[Recipient]) -> Vec<bool> {
    let env = envelope();
    let body = MemoryBody(body.to_vec());
    let ds: Vec<Delivery<'_>> = rcpts
        .iter()
        .map(|r| Delivery::new(r, testing::trace(r), vec![Target::inbox()]))
        .collect();
    testing::deliver(st, &Message::new(&env, &body), &ds)
        .into_iter()
        .map(|o| o.is_ok())
        .collect()
}

#[test]
fn every_migration_file_is_embedded() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/postgres");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".sql").map(str::to_string)
        })
        .collect();
    files.sort();
    assert_eq!(files, crate::migrate::migration_names());
}

#[test]
fn two_nodes_starting_at_once_migrate_once() {
    let Some(c) = cluster() else { return };
    let conninfo = Arc::new(c.database());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let conninfo = Arc::clone(&conninfo);
            thread::spawn(move || PostgresStore::try_open(PostgresConfig::new(&*conninfo)).is_ok())
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap());
    }
    let mut db = postgres::Client::connect(&conninfo, postgres::NoTls).unwrap();
    let n: i64 = db
        .query_one("SELECT count(*) FROM lmtpd_schema", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let status = crate::schema_status(&conninfo).unwrap();
    assert_eq!((status.version, status.known), (1, 1));
    assert!(status.to_string().contains("up to date"), "{status}");
}

#[test]
fn a_database_newer_than_the_binary_or_not_ours_is_refused() {
    let Some(c) = cluster() else { return };
    let newer = c.database();
    open(&newer);
    let mut db = postgres::Client::connect(&newer, postgres::NoTls).unwrap();
    db.execute(
        "INSERT INTO lmtpd_schema (version, name, applied) VALUES (99, 'future', 0)",
        &[],
    )
    .unwrap();
    let e = PostgresStore::try_open(PostgresConfig::new(&newer)).unwrap_err();
    assert!(e.to_string().contains("newer"), "{e}");
    let foreign = c.database();
    let mut db = postgres::Client::connect(&foreign, postgres::NoTls).unwrap();
    db.batch_execute("CREATE TABLE mailboxes (x int)").unwrap();
    let e = PostgresStore::try_open(PostgresConfig::new(&foreign)).unwrap_err();
    assert!(e.to_string().contains("not an lmtpd database"), "{e}");
}

#[test]
fn a_database_that_went_away_is_451_at_rcpt_for_every_recipient() {
    let Some(c) = Cluster::start("gone", 54_323, &[]) else {
        return;
    };
    let conninfo = c.database();
    let mut cfg = PostgresConfig::new(&conninfo);
    cfg.connect_timeout = Duration::from_secs(2);
    let st = PostgresStore::try_open(cfg).unwrap();
    assert!(st.check(&rcpt("a")).is_ok());
    let mut db = postgres::Client::connect(&c.conninfo("postgres"), postgres::NoTls).unwrap();
    let name = conninfo.rsplit('=').next().unwrap().to_string();
    db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
        &[&name],
    )
    .unwrap();
    db.batch_execute(&format!(
        "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false"
    ))
    .unwrap();
    let e = st.check(&rcpt("a")).unwrap_err();
    assert_eq!(
        (e.code, e.enhanced.to_string()),
        (451, "4.3.0".to_string()),
        "{e:?}"
    );
}

#[test]
fn an_unreachable_server_is_unavailable_within_the_timeout() {
    let mut cfg = PostgresConfig::new("host=/nonexistent-lmtpd-test port=1 user=x dbname=x");
    cfg.connect_timeout = Duration::from_secs(2);
    let e = PostgresStore::try_open(cfg).unwrap_err();
    assert_eq!(
        e.kind(),
        lmtpd_store::open::OpenErrorKind::Unavailable,
        "{e}"
    );
}

#[test]
fn quota_holds_under_concurrent_deliveries() {
    let Some(c) = cluster() else { return };
    let conninfo = c.database();
    let st = Arc::new(open(&conninfo));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let st = Arc::clone(&st);
            thread::spawn(move || {
                let mut r = rcpt("q");
                r.quota = Quota {
                    bytes: None,
                    messages: Some(10),
                    grace: 0,
                };
                (0..5)
                    .filter(|_| deliver_to(&st, b"Subject: q\n\nbody\n", &[r.clone()])[0])
                    .count()
            })
        })
        .collect();
    let stored: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(stored, 10, "exactly the quota, never more");
    let mut db = postgres::Client::connect(&conninfo, postgres::NoTls).unwrap();
    let row = db
        .query_one(
            "SELECT used_messages, used_bytes, \
             (SELECT count(*) FROM deliveries), (SELECT sum(size) FROM deliveries)::BIGINT \
             FROM mailboxes",
            &[],
        )
        .unwrap();
    let (m, b, n, s): (i64, i64, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!((m, b), (n, s), "the counters equal what is stored");
}

#[test]
fn a_large_body_is_stored_in_chunks_once_per_transaction() {
    let Some(c) = cluster() else { return };
    let conninfo = c.database();
    let st = open(&conninfo);
    let mut body = b"Subject: big\n\n".to_vec();
    while body.len() < 3 * crate::CHUNK + 123 {
        body.extend_from_slice(b"0123456789abcdefghijklmnopqrstuvwxyz\n");
    }
    assert_eq!(
        deliver_to(&st, &body, &[rcpt("a"), rcpt("b")]),
        [true, true]
    );
    let h = Harness {
        conninfo: conninfo.clone(),
        st,
    };
    let got = h.read(&rcpt("a"), None);
    assert_eq!(got.len(), 1);
    assert!(got[0].bytes.ends_with(&body));
    let mut db = postgres::Client::connect(&conninfo, postgres::NoTls).unwrap();
    let row = db
        .query_one(
            "SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM message_chunks), \
             (SELECT max(length(data)) FROM message_chunks)",
            &[],
        )
        .unwrap();
    let (messages, chunks, largest): (i64, i64, i32) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(messages, 1, "one body row for both recipients");
    assert_eq!(chunks, 4);
    assert_eq!(usize::try_from(largest).unwrap(), crate::CHUNK);
}

#[test]
fn a_server_without_fsync_is_refused() {
    let Some(c) = Cluster::start("nofsync", 54_322, &["fsync=off"]) else {
        return;
    };
    let e = PostgresStore::try_open(PostgresConfig::new(c.database())).unwrap_err();
    assert!(e.to_string().contains("fsync = off"), "{e}");
}

#[test]
fn overlapping_recipients_in_any_order_wait_for_each_other_instead_of_deadlocking() {
    let Some(c) = cluster() else { return };
    let st = Arc::new(open(&c.database()));
    let names = ["a", "b", "c", "d"];
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let st = Arc::clone(&st);
            thread::spawn(move || {
                (0..20)
                    .map(|n| {
                        // Three of the four, in an order that differs between threads.
                        let rcpts: Vec<Recipient> = (0..3)
                            .map(|k| rcpt(names[(t + n + k * (1 + t % 3)) % 4]))
                            .collect();
                        deliver_to(&st, b"Subject: o\n\nbody\n", &rcpts)
                            .into_iter()
                            .filter(|ok| !ok)
                            .count()
                    })
                    .sum::<usize>()
            })
        })
        .collect();
    let failed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(failed, 0, "every copy stored");
}

#[test]
fn usage_reads_the_counters_and_recalc_recounts_them_after_a_row_is_deleted_by_hand() {
    let Some(c) = cluster() else { return };
    let conninfo = c.database();
    let st = open(&conninfo);
    let a = Recipient {
        quota: Quota {
            bytes: Some(1 << 20),
            messages: None,
            grace: 0,
        },
        ..rcpt("alice")
    };
    assert_eq!(st.usage(&a).unwrap(), Some(lmtpd_store::Usage::default()));
    for _ in 0..3 {
        assert_eq!(
            deliver_to(&st, b"Subject: u\n\nbody\n", std::slice::from_ref(&a)),
            [true]
        );
    }
    let mut sql = postgres::Client::connect(&conninfo, postgres::NoTls).unwrap();
    let mut truth = || -> lmtpd_store::Usage {
        let row = sql
            .query_one(
                "SELECT COALESCE(SUM(length(d.trace) + m.size), 0)::BIGINT, COUNT(*) \
                 FROM deliveries d JOIN messages m ON m.id = d.message_id",
                &[],
            )
            .unwrap();
        let (b, m): (i64, i64) = (row.get(0), row.get(1));
        lmtpd_store::Usage {
            bytes: u64::try_from(b).unwrap(),
            messages: u64::try_from(m).unwrap(),
        }
    };
    let three = truth();
    assert_eq!(three.messages, 3);
    assert_eq!(st.usage(&a).unwrap(), Some(three));

    // Nothing keeps the counters right when a row is deleted by SQL: usage() is stale...
    postgres::Client::connect(&conninfo, postgres::NoTls)
        .unwrap()
        .execute("DELETE FROM deliveries WHERE uid = 2", &[])
        .unwrap();
    let two = truth();
    assert_eq!(two.messages, 2);
    assert_eq!(st.usage(&a).unwrap(), Some(three));
    // ...until recalc() recounts the rows.
    assert_eq!(st.recalc(&a).unwrap(), Some(two));
    assert_eq!(st.usage(&a).unwrap(), Some(two));
    let nobody = rcpt("nobody");
    assert_eq!(
        st.recalc(&nobody).unwrap(),
        Some(lmtpd_store::Usage::default())
    );
}
