//! The retry journal (`retry_journal`, one SQLite file): each stored copy under a key only a
//! retry of the same queued message can produce, so that a retry after a lost reply is
//! answered `250` without a second copy; the first over-quota refusal of a message for a
//! recipient (`quota_tempfail_max`); and each user's last quota-warning level.
//!
//! A record is made after the copy it names is durable (seen by lookups at once, committed
//! by a maintenance thread within milliseconds in a WAL commit that is not itself synced,
//! `synchronous = NORMAL`): a crash can lose the newest records (the MTA's retry is then
//! stored again, as without the journal), never leave a record without its copy, so no mail
//! is ever lost to this file. Records older than `retry_window` are pruned;
//! at most [`MAX_RECORDS`] deliveries are kept (about 100 bytes each).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

/// Deliveries kept at most; beyond it the oldest are pruned first (with about 100 bytes per
/// record on disk the file stays near 100 MB).
pub const MAX_RECORDS: u64 = 1_000_000;

/// What identifies one queued message for one recipient: the MTA's queue id (XFORWARD
/// `IDENT`) when it gave one, the envelope sender, the recipient and a SHA-256 of the
/// message as received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key(pub [u8; 32]);

impl Key {
    /// The key of one recipient's copy. Each field is length-prefixed, so no two
    /// different envelopes can produce the same input.
    pub fn new(ident: Option<&str>, sender: &str, recipient: &str, body: &[u8; 32]) -> Key {
        let mut h = Sha256::new();
        for field in [ident.unwrap_or(""), sender, recipient] {
            h.update((field.len() as u64).to_be_bytes());
            h.update(field.as_bytes());
        }
        h.update(u8::from(ident.is_some()).to_be_bytes());
        h.update(body);
        Key(h.finalize().into())
    }

    /// The first 8 bytes in hex, for log lines.
    pub fn short(&self) -> String {
        let mut s = String::with_capacity(16);
        for b in &self.0[..8] {
            let _ = write!(s, "{b:02x}");
        }
        s
    }
}

/// A running SHA-256 of a message body as it is spooled.
#[derive(Clone, Debug, Default)]
pub struct BodyHash(Sha256);

impl BodyHash {
    /// Adds the next bytes of the body.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest of everything added.
    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// An earlier delivery of the same key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Earlier {
    /// When it was stored.
    pub at: SystemTime,
    /// Its transaction id (in that delivery's log line and `Received:` field).
    pub id: String,
}

/// Whether an over-quota refusal first made at `first` has been temporary for long enough
/// (`quota_tempfail_max`, 0: never) to become permanent at `now`.
pub fn tempfail_expired(first: SystemTime, now: SystemTime, max: Duration) -> bool {
    !max.is_zero() && now.duration_since(first).is_ok_and(|age| age >= max)
}

#[cfg(feature = "sqlite")]
pub use with_sqlite::Journal;
#[cfg(not(feature = "sqlite"))]
pub use without_sqlite::Journal;

#[cfg(feature = "sqlite")]
mod with_sqlite {
    use std::collections::HashMap;
    use std::fs::{DirBuilder, OpenOptions};
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
    use std::path::Path;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex, MutexGuard};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

    use super::{Earlier, Key, MAX_RECORDS};

    /// Records between two prunings.
    const PRUNE_EVERY: u64 = 1000;
    /// How long a first over-quota refusal is remembered: the longest `quota_tempfail_max`
    /// (365 days) plus a week, so a reload that raises it never finds refusals pruned early.
    const REFUSAL_KEEP: Duration = Duration::from_secs(372 * 86_400);
    /// Most records waiting for their commit (a journal whose commits keep failing drops
    /// new ones beyond this rather than grow).
    const MAX_PENDING: usize = 100_000;
    /// How long the maintenance thread gathers new records before it commits them.
    const BATCH_DELAY: Duration = Duration::from_millis(20);
    /// How often it moves the WAL into the database (the journal's only fsync, kept rare so
    /// that it does not compete with the mailboxes' own).
    const CHECKPOINT_EVERY: Duration = Duration::from_secs(10);

    fn secs(t: SystemTime) -> i64 {
        t.duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }

    fn time(secs: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
    }

    fn secs_of(d: Duration) -> i64 {
        i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
    }

    const SCHEMA: &str = "
        CREATE TABLE IF NOT EXISTS delivered (
            key BLOB PRIMARY KEY, at INTEGER NOT NULL, id TEXT NOT NULL) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS delivered_at ON delivered (at);
        CREATE TABLE IF NOT EXISTS refused (
            key BLOB PRIMARY KEY, first INTEGER NOT NULL) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS warned (
            user TEXT PRIMARY KEY, level INTEGER NOT NULL) WITHOUT ROWID;";

    /// Deliveries recorded and not yet committed, by key (looked up before the database).
    type Pending = Arc<Mutex<HashMap<Key, (i64, String)>>>;

    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The open journal, shared by every session. A delivery's record goes into an
    /// in-memory set that lookups see at once; a maintenance thread commits the set every
    /// few milliseconds in one transaction (a WAL append, not synced), checkpoints the WAL
    /// once a second and prunes, so a session never waits for the journal's disk. Dropping
    /// the journal commits what is left and ends the thread.
    pub struct Journal {
        db: Arc<Mutex<Connection>>,
        pending: Pending,
        window: Duration,
        refusal_keep: Duration,
        /// `quota_tempfail_max` is set: refusals are recorded, so a delivery forgets them.
        tracks_refusals: bool,
        writes: AtomicU64,
        /// Wakes the maintenance thread (`true`: prune too); dropped with the journal.
        maintenance: Option<crossbeam_channel::Sender<bool>>,
    }

    impl std::fmt::Debug for Journal {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Journal")
                .field("window", &self.window)
                .finish()
        }
    }

    impl Journal {
        /// Opens (creating when missing, mode 0600, its directory 0750) the journal at
        /// `path`, keeping deliveries for `window`. A symbolic link is refused; an existing
        /// file readable by others is made 0600.
        pub fn open(
            path: &Path,
            window: Duration,
            tempfail_max: Duration,
        ) -> Result<Journal, String> {
            let shown = path.display();
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o750)
                    .create(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
                .map_err(|e| format!("cannot open {shown}: {e}"))?;
            let meta = file
                .metadata()
                .map_err(|e| format!("cannot stat {shown}: {e}"))?;
            if !meta.is_file() {
                return Err(format!("{shown} is not a regular file"));
            }
            if meta.mode() & 0o077 != 0 {
                file.set_permissions(std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| format!("cannot make {shown} 0600: {e}"))?;
            }
            let flags = OpenFlags::default() | OpenFlags::SQLITE_OPEN_NOFOLLOW;
            let db = Connection::open_with_flags(path, flags)
                .map_err(|e| format!("cannot open {shown}: {e}"))?;
            db.busy_timeout(Duration::from_secs(5))
                .and_then(|_| db.pragma_update(None, "journal_mode", "WAL"))
                .and_then(|_| db.pragma_update(None, "synchronous", "NORMAL"))
                .and_then(|_| db.pragma_update(None, "wal_autocheckpoint", 0))
                .and_then(|_| db.execute_batch(SCHEMA))
                .map_err(|e| format!("{shown}: {e}"))?;
            let mut j = Journal {
                db: Arc::new(Mutex::new(db)),
                pending: Pending::default(),
                window,
                refusal_keep: REFUSAL_KEEP,
                tracks_refusals: !tempfail_max.is_zero(),
                writes: AtomicU64::new(0),
                maintenance: None,
            };
            j.maintenance = j.start_maintenance(path);
            Ok(j)
        }

        fn db(&self) -> MutexGuard<'_, Connection> {
            lock(&self.db)
        }

        /// The earlier delivery of `key` inside the window, if there is one.
        pub fn delivered(&self, key: &Key, now: SystemTime) -> Result<Option<Earlier>, String> {
            let since = secs(now).saturating_sub(secs_of(self.window));
            if let Some((at, id)) = lock(&self.pending).get(key) {
                return Ok((*at >= since).then(|| Earlier {
                    at: time(*at),
                    id: id.clone(),
                }));
            }
            let db = self.db();
            let mut st = db
                .prepare_cached("SELECT at, id FROM delivered WHERE key = ?1 AND at >= ?2")
                .map_err(|e| e.to_string())?;
            st.query_row(params![&key.0[..], since], |row| {
                Ok(Earlier {
                    at: time(row.get(0)?),
                    id: row.get(1)?,
                })
            })
            .optional()
            .map_err(|e| e.to_string())
        }

        /// Records that the copy of `key` (transaction `id`) is durable, and forgets its
        /// over-quota refusal: seen by lookups at once, committed within milliseconds.
        pub fn record(&self, key: &Key, id: &str, now: SystemTime) -> Result<(), String> {
            let first = {
                let mut p = lock(&self.pending);
                if p.len() >= MAX_PENDING {
                    // Commits keep failing: the record is dropped (at worst, a duplicate
                    // later), memory stays bounded.
                    return Err(format!("{MAX_PENDING} records not yet committed"));
                }
                p.insert(*key, (secs(now), id.to_string()));
                p.len() == 1
            };
            let prune =
                self.writes.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1;
            // The thread is woken by the first record of a batch (it then gathers the rest
            // for BATCH_DELAY) and for a pruning; the others only join the set.
            let woken = self
                .maintenance
                .as_ref()
                .is_some_and(|m| !(first || prune) || m.try_send(prune).is_ok());
            if self.maintenance.is_none() || (prune && !woken) {
                // No maintenance thread: commit (and prune) here.
                self.flush()?;
                if prune {
                    self.prune(now, MAX_RECORDS)?;
                }
            }
            Ok(())
        }

        /// Commits the records not yet in the database, in one transaction.
        pub fn flush(&self) -> Result<(), String> {
            flush(&self.db, &self.pending, self.tracks_refusals)
        }

        /// When `key` was first refused over quota (now, when this is the first time).
        pub fn first_refusal(&self, key: &Key, now: SystemTime) -> Result<SystemTime, String> {
            // A delivery recorded and not yet committed must have forgotten its refusal.
            self.flush()?;
            let db = self.db();
            db.execute(
                "INSERT OR IGNORE INTO refused (key, first) VALUES (?1, ?2)",
                params![&key.0[..], secs(now)],
            )
            .and_then(|_| {
                db.query_row(
                    "SELECT first FROM refused WHERE key = ?1",
                    [&key.0[..]],
                    |row| row.get::<_, i64>(0),
                )
            })
            .map(time)
            .map_err(|e| e.to_string())
        }

        /// The last quota-warning level `user` was sent (0: none, or fallen below).
        pub fn warned(&self, user: &str) -> Result<u8, String> {
            self.db()
                .query_row("SELECT level FROM warned WHERE user = ?1", [user], |row| {
                    row.get::<_, i64>(0)
                })
                .optional()
                .map(|l| l.and_then(|l| u8::try_from(l).ok()).unwrap_or(0))
                .map_err(|e| e.to_string())
        }

        /// Moves `user`'s last warning level from `last` to `level`; false (nothing changed)
        /// when another session moved it first, so only one of them sends the notice.
        pub fn set_warned(&self, user: &str, last: u8, level: u8) -> Result<bool, String> {
            let db = self.db();
            let (last, level) = (i64::from(last), i64::from(level));
            let changed = if last == 0 {
                db.execute(
                    "INSERT OR IGNORE INTO warned (user, level) VALUES (?1, ?2)",
                    params![user, level],
                )
            } else if level == 0 {
                db.execute(
                    "DELETE FROM warned WHERE user = ?1 AND level = ?2",
                    params![user, last],
                )
            } else {
                db.execute(
                    "UPDATE warned SET level = ?3 WHERE user = ?1 AND level = ?2",
                    params![user, last, level],
                )
            };
            changed.map(|n| n == 1).map_err(|e| e.to_string())
        }

        /// Number of deliveries recorded (for tests and `lmtpd -t`).
        pub fn len(&self) -> Result<u64, String> {
            self.flush()?;
            self.db()
                .query_row("SELECT count(*) FROM delivered", [], |row| {
                    row.get::<_, i64>(0)
                })
                .map(|n| u64::try_from(n).unwrap_or(0))
                .map_err(|e| e.to_string())
        }

        /// True when no delivery is recorded.
        pub fn is_empty(&self) -> Result<bool, String> {
            self.len().map(|n| n == 0)
        }

        /// Removes deliveries older than the window, refusals older than their keep time,
        /// and beyond `max` deliveries the oldest. Returns the deliveries removed.
        pub fn prune(&self, now: SystemTime, max: u64) -> Result<u64, String> {
            self.flush()?;
            prune_on(&self.db(), now, self.window, self.refusal_keep, max)
        }

        /// The maintenance thread, on its own connection to `path` for checkpoints; `None`
        /// (with a warning: records are then committed by the session that makes them) when
        /// it cannot start.
        fn start_maintenance(&self, path: &Path) -> Option<crossbeam_channel::Sender<bool>> {
            let checkpointer = Connection::open_with_flags(
                path,
                OpenFlags::default() | OpenFlags::SQLITE_OPEN_NOFOLLOW,
            )
            .and_then(|c| c.busy_timeout(Duration::from_secs(5)).map(|_| c))
            .map_err(|e| log::warn!("retry journal: no maintenance connection: {e}"))
            .ok()?;
            let (tx, rx) = crossbeam_channel::bounded::<bool>(64);
            let (db, pending, refusals) = (
                Arc::clone(&self.db),
                Arc::clone(&self.pending),
                self.tracks_refusals,
            );
            let (window, keep) = (self.window, self.refusal_keep);
            let started = std::thread::Builder::new()
                .name("lmtpd-journal".into())
                .spawn(move || {
                    let mut checkpointed = std::time::Instant::now();
                    loop {
                        let prune = match rx.recv_timeout(CHECKPOINT_EVERY) {
                            Ok(prune) => {
                                // Gather what the other sessions record meanwhile.
                                std::thread::sleep(BATCH_DELAY);
                                prune || rx.try_iter().any(|p| p)
                            }
                            Err(crossbeam_channel::RecvTimeoutError::Timeout) => false,
                            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                        };
                        // Records made during a commit wake nobody (the set was not
                        // empty): they go in the next round, until the set is empty.
                        loop {
                            if let Err(e) = flush(&db, &pending, refusals) {
                                log::warn!("retry journal: cannot commit records: {e}");
                                break;
                            }
                            if lock(&pending).is_empty() {
                                break;
                            }
                            std::thread::sleep(BATCH_DELAY);
                        }
                        if prune {
                            let now = SystemTime::now();
                            if let Err(e) = prune_on(&lock(&db), now, window, keep, MAX_RECORDS) {
                                log::warn!("retry journal: pruning failed: {e}");
                            }
                        }
                        if checkpointed.elapsed() >= CHECKPOINT_EVERY {
                            checkpointed = std::time::Instant::now();
                            if let Err(e) =
                                checkpointer.execute_batch("PRAGMA wal_checkpoint(PASSIVE)")
                            {
                                log::debug!("retry journal: checkpoint: {e}");
                            }
                        }
                    }
                });
            match started {
                Ok(_) => Some(tx),
                Err(e) => {
                    log::warn!("retry journal: no maintenance thread: {e}");
                    None
                }
            }
        }
    }

    impl Drop for Journal {
        fn drop(&mut self) {
            if let Err(e) = self.flush() {
                log::warn!("retry journal: cannot commit records: {e}");
            }
            let _ = self.db().execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
        }
    }

    /// Commits the pending records in one transaction, then drops them from the set (so a
    /// lookup always finds a record in one place or the other).
    fn flush(
        db: &Mutex<Connection>,
        pending: &Mutex<HashMap<Key, (i64, String)>>,
        refusals: bool,
    ) -> Result<(), String> {
        let batch: Vec<(Key, (i64, String))> =
            lock(pending).iter().map(|(k, v)| (*k, v.clone())).collect();
        if batch.is_empty() {
            return Ok(());
        }
        {
            let mut db = lock(db);
            let tx = db.transaction().map_err(|e| e.to_string())?;
            {
                let mut ins = tx
                    .prepare_cached(
                        "INSERT OR REPLACE INTO delivered (key, at, id) VALUES (?1, ?2, ?3)",
                    )
                    .map_err(|e| e.to_string())?;
                for (k, (at, id)) in &batch {
                    ins.execute(params![&k.0[..], at, id])
                        .map_err(|e| e.to_string())?;
                }
                if refusals {
                    let mut del = tx
                        .prepare_cached("DELETE FROM refused WHERE key = ?1")
                        .map_err(|e| e.to_string())?;
                    for (k, _) in &batch {
                        del.execute([&k.0[..]]).map_err(|e| e.to_string())?;
                    }
                }
            }
            tx.commit().map_err(|e| e.to_string())?;
        }
        let mut p = lock(pending);
        for (k, (at, _)) in &batch {
            // A newer record of the same key made meanwhile stays for the next batch.
            if p.get(k).is_some_and(|(a, _)| a == at) {
                p.remove(k);
            }
        }
        Ok(())
    }

    fn prune_on(
        db: &Connection,
        now: SystemTime,
        window: Duration,
        keep: Duration,
        max: u64,
    ) -> Result<u64, String> {
        let old = secs(now).saturating_sub(secs_of(window));
        let mut gone = db
            .execute("DELETE FROM delivered WHERE at < ?1", [old])
            .map_err(|e| e.to_string())?;
        db.execute(
            "DELETE FROM refused WHERE first < ?1",
            [secs(now).saturating_sub(secs_of(keep))],
        )
        .map_err(|e| e.to_string())?;
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        gone += db
            .execute(
                "DELETE FROM delivered WHERE key IN (SELECT key FROM delivered ORDER BY at \
                 LIMIT max(0, (SELECT count(*) FROM delivered) - ?1))",
                [max],
            )
            .map_err(|e| e.to_string())?;
        Ok(gone as u64)
    }
}

#[cfg(not(feature = "sqlite"))]
mod without_sqlite {
    use std::path::Path;
    use std::time::{Duration, SystemTime};

    use super::{Earlier, Key};

    /// Without SQLite there is no journal: [`Journal::open`] always says so.
    #[derive(Debug)]
    pub struct Journal {
        never: std::convert::Infallible,
    }

    impl Journal {
        /// Always fails: this build has no SQLite.
        pub fn open(_: &Path, _: Duration, _: Duration) -> Result<Journal, String> {
            Err("this lmtpd was built without SQLite, which the retry journal needs".into())
        }
        /// Never called (no journal can be opened).
        pub fn delivered(&self, _: &Key, _: SystemTime) -> Result<Option<Earlier>, String> {
            match self.never {}
        }
        /// Never called.
        pub fn record(&self, _: &Key, _: &str, _: SystemTime) -> Result<(), String> {
            match self.never {}
        }
        /// Never called.
        pub fn first_refusal(&self, _: &Key, _: SystemTime) -> Result<SystemTime, String> {
            match self.never {}
        }
        /// Never called.
        pub fn warned(&self, _: &str) -> Result<u8, String> {
            match self.never {}
        }
        /// Never called.
        pub fn set_warned(&self, _: &str, _: u8, _: u8) -> Result<bool, String> {
            match self.never {}
        }
    }
}

/// Opens the journal the configuration names: `None` when `retry_journal` is empty, or
/// (with a warning: delivery goes on without retry recognition, bounded tempfail and quota
/// warnings) when it cannot be opened. `retry_window = 0` keeps the journal for the quota
/// rules but recognises no retry.
pub fn open_configured(cfg: &crate::config::Config) -> Option<Journal> {
    let d = &cfg.delivery;
    if d.retry_journal.as_os_str().is_empty() {
        return None;
    }
    match Journal::open(&d.retry_journal, d.retry_window, d.quota_tempfail_max) {
        Ok(j) => Some(j),
        Err(e) => {
            log::warn!("retry journal off: {e}");
            None
        }
    }
}

#[cfg(all(test, feature = "sqlite"))]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const DAY: Duration = Duration::from_secs(86_400);

    fn at(days: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000) + DAY * days as u32
    }

    fn journal(dir: &tempfile::TempDir) -> Journal {
        Journal::open(&dir.path().join("j/retry.db"), 2 * DAY, DAY).unwrap()
    }

    #[test]
    fn the_key_changes_with_every_field_and_only_with_them() {
        let body = [7u8; 32];
        let k = Key::new(Some("4Qx1"), "a@x", "b@y", &body);
        assert_eq!(k, Key::new(Some("4Qx1"), "a@x", "b@y", &body));
        assert_ne!(k, Key::new(Some("4Qx2"), "a@x", "b@y", &body));
        assert_ne!(k, Key::new(None, "a@x", "b@y", &body));
        assert_ne!(k, Key::new(Some("4Qx1"), "a@x", "c@y", &body));
        assert_ne!(k, Key::new(Some("4Qx1"), "", "b@y", &body));
        assert_ne!(k, Key::new(Some("4Qx1"), "a@x", "b@y", &[8u8; 32]));
        // Length prefixes: moving a character from one field to the next is another key.
        assert_ne!(
            Key::new(None, "ab", "c", &body),
            Key::new(None, "a", "bc", &body)
        );
        assert_eq!(k.short().len(), 16);
    }

    #[test]
    fn a_recorded_delivery_is_found_inside_the_window_only() {
        let dir = tempfile::tempdir().unwrap();
        let j = journal(&dir);
        let k = Key([1; 32]);
        assert_eq!(j.delivered(&k, at(0)).unwrap(), None);
        j.record(&k, "T-1-1", at(0)).unwrap();
        let e = j.delivered(&k, at(1)).unwrap().unwrap();
        assert_eq!((e.id.as_str(), e.at), ("T-1-1", at(0)));
        assert_eq!(
            j.delivered(&k, at(3)).unwrap(),
            None,
            "outside the 2-day window"
        );
        assert_eq!(j.delivered(&Key([2; 32]), at(0)).unwrap(), None);
        // Survives closing and opening again.
        drop(j);
        let j = journal(&dir);
        assert!(j.delivered(&k, at(1)).unwrap().is_some());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("j/retry.db"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn the_first_refusal_is_kept_and_a_delivery_forgets_it() {
        let dir = tempfile::tempdir().unwrap();
        let j = journal(&dir);
        let k = Key([3; 32]);
        assert_eq!(j.first_refusal(&k, at(0)).unwrap(), at(0));
        assert_eq!(j.first_refusal(&k, at(2)).unwrap(), at(0));
        assert!(tempfail_expired(at(0), at(2), DAY));
        assert!(!tempfail_expired(at(0), at(0) + DAY / 2, DAY));
        assert!(!tempfail_expired(at(0), at(9), Duration::ZERO));
        j.record(&k, "T-1-2", at(2)).unwrap();
        assert_eq!(j.first_refusal(&k, at(3)).unwrap(), at(3));
    }

    #[test]
    fn pruning_removes_old_records_and_keeps_at_most_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let j = journal(&dir);
        for i in 0..10u8 {
            j.record(&Key([i; 32]), "id", at(u64::from(i) / 5)).unwrap();
        }
        assert_eq!(
            j.prune(at(3), MAX_RECORDS).unwrap(),
            5,
            "day 0 is past the window"
        );
        assert_eq!(j.len().unwrap(), 5);
        assert_eq!(j.prune(at(3), 2).unwrap(), 3);
        assert_eq!(j.len().unwrap(), 2);
    }

    #[test]
    fn warning_levels_are_remembered_per_user() {
        let dir = tempfile::tempdir().unwrap();
        let j = journal(&dir);
        assert_eq!(j.warned("a@x").unwrap(), 0);
        assert!(j.set_warned("a@x", 0, 80).unwrap());
        // A second session that also saw 0 loses: it sends no second notice.
        assert!(!j.set_warned("a@x", 0, 80).unwrap());
        assert_eq!(j.warned("a@x").unwrap(), 80);
        assert_eq!(j.warned("b@x").unwrap(), 0);
        assert!(j.set_warned("a@x", 80, 95).unwrap());
        assert!(!j.set_warned("a@x", 80, 95).unwrap());
        assert!(j.set_warned("a@x", 95, 0).unwrap());
        assert_eq!(j.warned("a@x").unwrap(), 0);
    }

    #[test]
    fn a_record_is_seen_at_once_and_committed_by_the_maintenance_thread() {
        let dir = tempfile::tempdir().unwrap();
        let j = journal(&dir);
        j.record(&Key([9; 32]), "T-1-9", at(0)).unwrap();
        assert_eq!(
            j.delivered(&Key([9; 32]), at(0)).unwrap().unwrap().id,
            "T-1-9"
        );
        // Another connection (another lmtpd process) sees it once the thread committed it.
        let other = rusqlite::Connection::open(dir.path().join("j/retry.db")).unwrap();
        let committed = || {
            other
                .query_row("SELECT count(*) FROM delivered", [], |r| r.get::<_, i64>(0))
                .unwrap()
        };
        let t = std::time::Instant::now();
        while committed() == 0 && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(committed(), 1);
    }

    #[test]
    fn a_symlinked_journal_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, b"").unwrap();
        let link = dir.path().join("retry.db");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(Journal::open(&link, DAY, DAY).is_err());
    }
}
