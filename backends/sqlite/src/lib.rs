//! SQLite delivery backend for lmtpd: the [`SqliteStore`] `MailStore`, schema migrations
//! ([`schema_status`]) and mailbox export ([`export`]).
//!
//! Every delivery lands in one database file whose schema is documented in `SCHEMA.md`
//! (mailboxes, messages, deliveries, folders). The schema lives in `migrations/sqlite/NNNN_*.sql`,
//! embedded in the binary and applied in order at [`SqliteStore::open`], tracked with
//! `PRAGMA user_version`; a database newer than the binary is refused.
//!
//! Durability: every pooled connection runs with `journal_mode=WAL`, `synchronous=FULL`,
//! `foreign_keys=ON` and a busy timeout. Deliveries are written by one writer connection
//! with group commit (`group`): each recipient's copy (quota check, mailbox row, delivery
//! row, counters) is one `SAVEPOINT` inside a shared `BEGIN IMMEDIATE` transaction, a failing
//! recipient rolls back only its own savepoint, and one `COMMIT` (one WAL fsync) makes every
//! copy staged by concurrent deliveries durable before any of their `Ok`s is returned. The
//! body is stored once per [`MailStore::deliver`] call, in the first recipient's step that
//! gets that far, streamed into the BLOB with incremental BLOB I/O. The pool serves reads
//! (the RCPT-time quota check, [`MailStore::usage`]) and [`MailStore::recalc`]'s short
//! transaction, which recounts a mailbox's counters from its `deliveries` rows.
//!
//! Layout of this crate: `conn` (opening and pragmas), `migrate` (migrations, schema status),
//! `group` (group commit), `deliver` (one recipient's
//! step), `export`
//! (mbox / .eml), `error` (internal failure → [`DeliveryError`]).

mod bodies;
mod conn;
mod deliver;
mod error;
mod export;
mod group;
mod migrate;
mod open_error;

#[cfg(test)]
mod tests;

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lmtpd_store::open::{OpenError, OpenErrorKind};
use lmtpd_store::{combine, DeliveryError, MailStore, Recipient, Reporter, Request, Usage};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::bodies::BodyDir;
use crate::deliver::Shared;
use crate::error::Failure;
use crate::group::Writer;
use lmtpd_store::headers;

pub use crate::export::{export, ExportFormat};
pub use crate::migrate::schema_status;

/// Default `busy_timeout`: how long a writer waits for SQLite's write lock.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Default [`SqliteConfig::body_files`]: bodies of 256 KiB or more are kept as files.
pub const DEFAULT_BODY_FILES: u64 = 256 << 10;

/// Configuration of a [`SqliteStore`].
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    /// The database file (created with mode 0600 when missing).
    pub path: PathBuf,
    /// Number of pooled connections for reads (the worker count); deliveries are written by
    /// one more, the group-commit writer.
    pub pool_size: u32,
    /// How long a connection waits for a lock before the delivery fails with 451 4.3.0
    /// (also how long a delivery waits for a free pooled connection).
    pub busy_timeout: Duration,
    /// Over quota is `552 5.2.2` (permanent) instead of `452 4.2.2`.
    pub quota_permfail: bool,
    /// Bodies of at least this many bytes are stored as files in `<path>.bodies/` (written
    /// and fsync'd before the row naming them commits) instead of in the database; 0 keeps
    /// every body in the database.
    pub body_files: u64,
}

impl SqliteConfig {
    /// A configuration with the defaults: pool of 4, 30 s busy timeout, temporary
    /// over-quota replies, bodies of 256 KiB or more in body files.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteConfig {
            path: path.into(),
            pool_size: 4,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            quota_permfail: false,
            body_files: DEFAULT_BODY_FILES,
        }
    }
}

/// The SQLite backend: one writer connection with group commit and a pool of connections
/// for reads, all to one database. `Send + Sync`.
pub struct SqliteStore {
    cfg: SqliteConfig,
    pool: r2d2::Pool<SqliteConnectionManager>,
    writer: Writer,
    /// The body-file directory: opened when `body_files` is on or the directory exists
    /// (rows of an earlier configuration may name files in it).
    bodies: Option<Arc<BodyDir>>,
    /// Unix time of the last body-file sweep (0: none yet; the first delivery starts one).
    swept: AtomicU64,
    /// Files younger than this are never swept ([`bodies::SWEEP_MIN_AGE`]).
    sweep_min_age: Duration,
}

/// How often the daemon sweeps body files no row names.
const SWEEP_EVERY: Duration = Duration::from_secs(24 * 3600);

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Creates the database file (mode 0600, parent directories 0700) unless it exists, and
/// syncs its directory so the new entry is durable.
fn create_file(path: &Path) -> Result<(), OpenError> {
    let at = |err: io::Error| OpenError::io(&err, format!("{}: {err}", path.display()));
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|err| {
                let text = format!("{}: cannot create directory: {err}", parent.display());
                OpenError::io(&err, text)
            })?;
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(file) => {
            file.sync_all().map_err(at)?;
            File::open(parent)
                .and_then(|dir| dir.sync_all())
                .map_err(|err| OpenError::io(&err, format!("{}: {err}", parent.display())))?;
            Ok(())
        }
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            let meta = fs::metadata(path).map_err(at)?;
            if meta.is_file() {
                Ok(())
            } else {
                Err(OpenError::new(
                    OpenErrorKind::Refused,
                    format!("{}: not a regular file", path.display()),
                ))
            }
        }
        Err(err) => Err(at(err)),
    }
}

/// Opens the body-file directory when body files are on (creating it) or it exists. A
/// directory that cannot be used (a symlink, not a directory, writable by others, not
/// writable by us) is logged and body files stay off: mail keeps flowing into the database.
fn open_bodies(cfg: &SqliteConfig) -> Option<Arc<BodyDir>> {
    let dir = bodies::dir_of(&cfg.path);
    if cfg.body_files == 0 && fs::symlink_metadata(&dir).is_err() {
        return None;
    }
    match BodyDir::open(&cfg.path) {
        Ok(b) => Some(Arc::new(b)),
        Err(e) => {
            log::warn!(
                "sqlite: {}: {e}; every body is kept in the database",
                dir.display()
            );
            None
        }
    }
}

/// Sweeps `bodies` of files no row names that are older than `min_age` at `now`, on a
/// connection of `pool`, and logs the outcome.
fn sweep_bodies(
    bodies: &BodyDir,
    pool: &r2d2::Pool<SqliteConnectionManager>,
    min_age: Duration,
    now: SystemTime,
) -> usize {
    let conn = match pool.get() {
        Ok(c) => c,
        Err(e) => {
            log::warn!("sqlite: body file sweep: no connection: {e}");
            return 0;
        }
    };
    match bodies.sweep(&conn, min_age, now) {
        Ok(0) => 0,
        Ok(n) => {
            log::info!("sqlite: removed {n} body file(s) no message names");
            n
        }
        Err(e) => {
            log::warn!("sqlite: cannot sweep body files: {e}");
            0
        }
    }
}

impl SqliteStore {
    /// Opens (creating if missing, mode 0600) the database, applies pending migrations and
    /// builds the connection pool, every connection initialised with the pragmas. Refuses a
    /// database whose schema is newer than this binary, or that is not an lmtpd database.
    /// The same as [`SqliteStore::try_open`] with the error as its message.
    pub fn open(cfg: SqliteConfig) -> Result<SqliteStore, String> {
        SqliteStore::try_open(cfg).map_err(|e| e.to_string())
    }

    /// [`SqliteStore::open`] with the failure classified: [`OpenErrorKind::Refused`] for a
    /// database that is not ours or too new (and a pool size of 0),
    /// [`OpenErrorKind::Busy`] for a lock held past the busy timeout,
    /// [`OpenErrorKind::Unavailable`] for the system's refusals and I/O errors.
    pub fn try_open(cfg: SqliteConfig) -> Result<SqliteStore, OpenError> {
        if cfg.pool_size == 0 {
            return Err(OpenError::new(
                OpenErrorKind::Refused,
                "sqlite: pool size must be at least 1",
            ));
        }
        let path = cfg.path.clone();
        create_file(&path)?;
        let busy = cfg.busy_timeout;
        let mut setup = Connection::open_with_flags(&path, conn::rw_flags()).map_err(|err| {
            open_error::sqlite(&err, format!("{}: cannot open: {err}", path.display()))
        })?;
        conn::init(&mut setup, busy)
            .map_err(|err| open_error::sqlite(&err, format!("{}: {err}", path.display())))?;
        migrate::migrate(&mut setup, &path).map_err(|e| open_error::migration(&path, e))?;
        let bodies = open_bodies(&cfg);
        let manager = SqliteConnectionManager::file(&path)
            .with_flags(conn::rw_flags())
            .with_init(move |c| conn::init(c, busy));
        let pool = r2d2::Pool::builder()
            .max_size(cfg.pool_size)
            .connection_timeout(busy.max(Duration::from_secs(1)))
            .build(manager)
            .map_err(|err| {
                OpenError::new(
                    OpenErrorKind::Unavailable,
                    format!("{}: cannot build connection pool: {err}", path.display()),
                )
            })?;
        Ok(SqliteStore {
            cfg,
            pool,
            writer: Writer::new(setup),
            bodies,
            swept: AtomicU64::new(0),
            sweep_min_age: bodies::SWEEP_MIN_AGE,
        })
    }

    /// The configuration this store was built with.
    pub fn config(&self) -> &SqliteConfig {
        &self.cfg
    }

    /// Sweeps the body files on this thread as if it were `now`; returns how many were
    /// removed.
    #[cfg(test)]
    pub(crate) fn sweep_at(&self, now: SystemTime) -> usize {
        self.bodies
            .as_ref()
            .map_or(0, |b| sweep_bodies(b, &self.pool, self.sweep_min_age, now))
    }

    /// The same store sweeping files from `age` on (tests of the background sweep).
    #[cfg(test)]
    pub(crate) fn with_sweep_min_age(mut self, age: Duration) -> Self {
        self.sweep_min_age = age;
        self
    }

    /// Starts a sweep of the body files on a thread of its own when none ran in the last
    /// [`SWEEP_EVERY`] (deliveries only: tools that open the store never sweep).
    fn sweep_if_due(&self) {
        let Some(bodies) = &self.bodies else { return };
        let now = u64::try_from(unix_now()).unwrap_or(0).max(1);
        let last = self.swept.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < SWEEP_EVERY.as_secs() {
            return;
        }
        // One delivery wins the turn; the others go on without waiting.
        if self
            .swept
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let (bodies, pool, age) = (Arc::clone(bodies), self.pool.clone(), self.sweep_min_age);
        let spawned = std::thread::Builder::new()
            .name("sqlite-sweep".into())
            .spawn(move || sweep_bodies(&bodies, &pool, age, SystemTime::now()));
        if let Err(e) = spawned {
            log::warn!("sqlite: cannot start the body file sweep: {e}");
        }
    }

    /// Writes `body` into a new, durable body file when it is at least `body_files` bytes
    /// and body files are on. `None` means the body goes into the database: it is smaller,
    /// or the file could not be written (logged; each recipient then gets its own outcome
    /// from the database, as without body files).
    fn write_body_file(&self, body: &dyn lmtpd_store::Body) -> Option<(&BodyDir, String)> {
        let dir = self.bodies.as_deref()?;
        if self.cfg.body_files == 0 || body.len() < self.cfg.body_files {
            return None;
        }
        match dir.write(body) {
            Ok(name) => Some((dir, name)),
            Err(failure) => {
                log::warn!(
                    "sqlite: cannot write a body file ({failure}); this body goes into the \
                     database"
                );
                None
            }
        }
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<SqliteConnectionManager>, Failure> {
        self.pool
            .get()
            .map_err(|err| Failure::Pool(format!("no free database connection: {err}")))
    }

    fn check_inner(&self, rcpt: &Recipient) -> Result<(), Failure> {
        if !rcpt.quota.is_limited() {
            return Ok(());
        }
        let conn = self.conn()?;
        let used: Option<(i64, i64)> = conn
            .query_row(
                "SELECT used_bytes, used_messages FROM mailboxes WHERE address = ?1",
                [&rcpt.user],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(Failure::sql("read mailbox usage"))?;
        let (bytes, messages) = used.map_or((0, 0), |(b, m)| {
            (u64::try_from(b).unwrap_or(0), u64::try_from(m).unwrap_or(0))
        });
        if rcpt.quota.is_full(bytes, messages) {
            return Err(Failure::OverQuota(format!(
                "mailbox {} is full ({bytes} bytes, {messages} messages; limits {:?} bytes, \
                 {:?} messages)",
                rcpt.user, rcpt.quota.bytes, rcpt.quota.messages
            )));
        }
        Ok(())
    }

    /// The mailbox counters of `rcpt` (no row yet: nothing used).
    fn usage_inner(&self, rcpt: &Recipient) -> Result<Usage, Failure> {
        let conn = self.conn()?;
        read_usage(&conn, &rcpt.user)
    }

    /// Sets the counters of `rcpt`'s mailbox to the sum and number of its `deliveries` rows,
    /// in one `BEGIN IMMEDIATE` transaction (so no delivery lands between the count and the
    /// update); a mailbox without a row is left without one.
    fn recalc_inner(&self, rcpt: &Recipient) -> Result<Usage, Failure> {
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(Failure::sql("begin recount"))?;
        tx.execute(
            "UPDATE mailboxes SET \
               used_bytes = (SELECT COALESCE(SUM(size), 0) FROM deliveries \
                             WHERE mailbox_id = mailboxes.id), \
               used_messages = (SELECT COUNT(*) FROM deliveries \
                                WHERE mailbox_id = mailboxes.id) \
             WHERE address = ?1",
            [&rcpt.user],
        )
        .map_err(Failure::sql("recount mailbox"))?;
        let usage = read_usage(&tx, &rcpt.user)?;
        tx.commit().map_err(Failure::sql("commit recount"))?;
        Ok(usage)
    }

    /// Does `rcpt` have the folder `name` (a `folders` row, or a delivery in it)?
    fn folder_exists(&self, rcpt: &Recipient, name: &str) -> Result<bool, Failure> {
        let conn = self.conn()?;
        conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM folders f JOIN mailboxes m ON m.id = f.mailbox_id \
               WHERE m.address = ?1 AND f.name = ?2) \
             OR EXISTS (SELECT 1 FROM deliveries d JOIN mailboxes m ON m.id = d.mailbox_id \
               WHERE m.address = ?1 AND d.folder = ?2)",
            rusqlite::params![rcpt.user, name],
            |r| r.get(0),
        )
        .map_err(Failure::sql("look up folder"))
    }

    fn fail(&self, rcpt: &Recipient, stage: &str, failure: Failure) -> DeliveryError {
        if failure.is_quota() {
            log::info!("sqlite: {}: {stage}: {failure}", rcpt.user);
        } else {
            log::warn!("sqlite: {}: {stage}: {failure}", rcpt.user);
        }
        failure.into_delivery(self.cfg.quota_permfail)
    }
}

/// The counters of the mailbox `user` (no row: nothing used).
fn read_usage(conn: &Connection, user: &str) -> Result<Usage, Failure> {
    let used: Option<(i64, i64)> = conn
        .query_row(
            "SELECT used_bytes, used_messages FROM mailboxes WHERE address = ?1",
            [user],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(Failure::sql("read mailbox usage"))?;
    Ok(used.map_or(Usage::default(), |(b, m)| Usage {
        bytes: u64::try_from(b).unwrap_or(0),
        messages: u64::try_from(m).unwrap_or(0),
    }))
}

impl MailStore for SqliteStore {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn mailbox_exists(&self, rcpt: &Recipient, folder: &str) -> Result<bool, DeliveryError> {
        if folder.eq_ignore_ascii_case(crate::deliver::INBOX) {
            return Ok(true);
        }
        self.folder_exists(rcpt, folder)
            .map_err(|f| self.fail(rcpt, "look up folder", f))
    }

    fn check(&self, rcpt: &Recipient) -> Result<(), DeliveryError> {
        self.check_inner(rcpt)
            .map_err(|failure| self.fail(rcpt, "check", failure))
    }

    fn usage(&self, rcpt: &Recipient) -> Result<Option<Usage>, DeliveryError> {
        self.usage_inner(rcpt)
            .map(Some)
            .map_err(|failure| self.fail(rcpt, "usage", failure))
    }

    fn recalc(&self, rcpt: &Recipient) -> Result<Option<Usage>, DeliveryError> {
        self.recalc_inner(rcpt)
            .map(Some)
            .map_err(|failure| self.fail(rcpt, "recalc", failure))
    }

    /// One body row for the whole request; every copy (one per recipient and target) in
    /// its own savepoint of the shared group transaction, so a failing copy rolls back alone.
    /// Outcomes are reported once the `COMMIT` covering them returned (the epoch of every
    /// staged copy is waited for, even if the client is gone: an open transaction must never
    /// be left holding the write lock). Nothing is staged for a client already gone.
    /// Every copy of a call becomes durable with the same `COMMIT`, and every outcome is
    /// reported after it: nothing to gain from a helper thread.
    fn reports_progressively(&self) -> bool {
        false
    }

    fn deliver(&self, req: &Request<'_>, reporter: &Reporter) {
        if reporter.client_gone() {
            return;
        }
        let msg = &req.message;
        let meta = match headers::extract(msg.body) {
            Ok(meta) => meta,
            Err(err) => {
                log::warn!("sqlite: cannot read the spooled body: {err}");
                for i in 0..req.deliveries.len() {
                    let e = DeliveryError::from_io(&err, self.cfg.quota_permfail)
                        .with_source(format_args!("read spooled body: {err}"));
                    if !reporter.report(i, Err(e)) {
                        break;
                    }
                }
                return;
            }
        };
        self.sweep_if_due();
        let file = self.write_body_file(msg.body);
        if let Some((dir, name)) = &file {
            if reporter.client_gone() {
                dir.remove(name);
                return;
            }
        }
        let mut shared = Shared {
            msg,
            meta,
            received: unix_now(),
            body_row: None,
            body_file: file.as_ref().map(|(_, name)| name.as_str()),
        };
        let copies: Vec<(usize, &lmtpd_store::Target)> = req
            .deliveries
            .iter()
            .enumerate()
            .flat_map(|(i, d)| d.targets.iter().map(move |t| (i, t)))
            .collect();
        let staged = self.writer.stage(copies.iter(), |conn, &(i, target)| {
            deliver::stage_one(conn, &mut shared, &req.deliveries[i], target, unix_now())
        });
        // A body file that no staged row names is removed now; one named by a row whose
        // commit failed is left to the sweep (the commit may have reached the disk).
        if let Some((dir, name)) = &file {
            if !staged
                .iter()
                .any(|(r, _)| r.as_ref().is_ok_and(|s| s.in_file))
            {
                dir.remove(name);
            }
        }
        let mut results: Vec<Vec<Result<(), DeliveryError>>> =
            req.deliveries.iter().map(|_| Vec::new()).collect();
        for (&(i, target), (result, epoch)) in copies.iter().zip(staged) {
            let result = match (result, epoch) {
                (Ok(stored), Some(epoch)) => self
                    .writer
                    .wait(&epoch)
                    .map(|()| stored)
                    .map_err(Failure::Group),
                (result, _) => result,
            };
            let rcpt = req.deliveries[i].rcpt;
            results[i].push(match result {
                Ok(s) => {
                    log::debug!(
                        "sqlite: {}: stored uid {} in {} (message {})",
                        rcpt.user,
                        s.uid,
                        s.folder,
                        s.message
                    );
                    Ok(())
                }
                Err(failure) => {
                    let stage = format!("delivery to {} failed", target.folder);
                    Err(self.fail(rcpt, &stage, failure))
                }
            });
        }
        // Every copy here is committed or failed: report them all, client gone or not (the
        // log and the metrics must say what happened).
        for (i, r) in results.into_iter().enumerate() {
            reporter.report(i, combine(r));
        }
    }
}
