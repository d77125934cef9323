//! PostgreSQL delivery backend for lmtpd: the [`PostgresStore`] `MailStore`, shared by any
//! number of lmtpd nodes delivering into one database, and its schema migrations.
//!
//! The data model is the SQLite store's (`SCHEMA.md`): mailboxes with usage counters,
//! folders, one `messages` row per stored body (its bytes in `message_chunks` rows of at
//! most [`CHUNK`] octets, so no statement carries a whole large message and memory stays
//! bounded), one `deliveries` row per recipient copy. The schema lives in
//! `migrations/postgres/NNNN_*.sql`, embedded in the binary and applied in order at
//! [`PostgresStore::try_open`] under an advisory lock (two nodes starting at once do not
//! both migrate), tracked in `lmtpd_schema`; a database newer than the binary is refused.
//!
//! Durability: one transaction per [`MailStore::deliver`] call; each recipient copy is a
//! `SAVEPOINT` (a failing copy rolls back alone); the outcomes are reported after `COMMIT`
//! returned, and PostgreSQL's own commit grouping shares the WAL flush of concurrent
//! sessions. The quota check and the counter update are one conditional `UPDATE` of the
//! mailbox row, which holds under concurrency from several nodes; [`MailStore::usage`]
//! reads those counters and [`MailStore::recalc`] recounts them from the `deliveries` rows
//! (nothing else keeps them right when rows are deleted by hand). A server running with
//! `fsync = off` is refused at start-up; `synchronous_commit = off` is warned about.
//!
//! Threads and memory: the `postgres` crate's synchronous client drives a single-threaded
//! Tokio runtime inside each connection on the caller's thread (no thread of its own); each
//! pooled connection costs one socket and a few hundred KiB.

mod deliver;
mod export;
mod migrate;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lmtpd_store::open::{OpenError, OpenErrorKind};
use lmtpd_store::{
    combine, headers, DeliveryError, Enhanced, MailStore, Recipient, Reporter, Request, Usage,
};
use postgres::error::SqlState;
use postgres::NoTls;
use r2d2_postgres::PostgresConnectionManager;

pub use crate::export::export;
pub use crate::migrate::{schema_status, SchemaStatus};
pub use lmtpd_store::export::ExportFormat;

/// Largest piece of a body in one `message_chunks` row (and one statement).
pub const CHUNK: usize = 256 * 1024;

/// Configuration of a [`PostgresStore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresConfig {
    /// A libpq-style connection string (`host=/run/postgresql dbname=mail user=lmtpd`).
    pub conninfo: String,
    /// Most pooled connections (one per concurrent delivery or RCPT check).
    pub pool_size: u32,
    /// How long connecting (and waiting for a free pooled connection) may take.
    pub connect_timeout: Duration,
    /// `statement_timeout` of every connection: no statement runs longer.
    pub statement_timeout: Duration,
    /// Over quota is `552 5.2.2` (permanent) instead of `452 4.2.2`.
    pub quota_permfail: bool,
}

impl PostgresConfig {
    /// A configuration with the defaults: pool of 8, 10 s to connect, 30 s per statement,
    /// temporary over-quota replies.
    pub fn new(conninfo: impl Into<String>) -> Self {
        PostgresConfig {
            conninfo: conninfo.into(),
            pool_size: 8,
            connect_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
            quota_permfail: false,
        }
    }

    /// The client configuration: the connection string with our timeouts.
    pub(crate) fn client(&self) -> Result<postgres::Config, OpenError> {
        let mut c: postgres::Config = self.conninfo.parse().map_err(|e| {
            OpenError::new(
                OpenErrorKind::Refused,
                format!("postgres: the connection string does not parse: {e}"),
            )
        })?;
        c.connect_timeout(self.connect_timeout);
        let ms = self.statement_timeout.as_millis().max(1);
        c.options(&format!("-c statement_timeout={ms} -c lock_timeout={ms}"));
        if c.get_application_name().is_none() {
            c.application_name("lmtpd");
        }
        Ok(c)
    }
}

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

/// The PostgreSQL backend: a pool of connections to one database. `Send + Sync`.
pub struct PostgresStore {
    cfg: PostgresConfig,
    pool: Pool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("pool_size", &self.cfg.pool_size)
            .finish_non_exhaustive()
    }
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Why one delivery step failed (internal; becomes a [`DeliveryError`]).
#[derive(Debug)]
pub(crate) enum Failure {
    /// A statement failed.
    Sql {
        what: &'static str,
        err: postgres::Error,
    },
    /// No connection could be had.
    Pool(String),
    /// Reading the spooled body failed.
    Io {
        what: &'static str,
        err: std::io::Error,
    },
    /// The copy does not fit the recipient's quota.
    OverQuota(String),
    /// The database server is out of disk space (or memory).
    Full(String),
    /// Something that should not happen (a body of the wrong length).
    Local(String),
}

impl Failure {
    pub(crate) fn sql(what: &'static str) -> impl Fn(postgres::Error) -> Failure {
        move |err| Failure::Sql { what, err }
    }

    fn into_delivery(self, quota_permfail: bool) -> DeliveryError {
        let base = match &self {
            Failure::Sql { err, .. } => match err.code() {
                Some(c) if *c == SqlState::DISK_FULL || *c == SqlState::OUT_OF_MEMORY => {
                    DeliveryError::storage_full()
                }
                Some(c) if *c == SqlState::PROGRAM_LIMIT_EXCEEDED => {
                    DeliveryError::new(552, Enhanced(5, 3, 4), "Message too big for system")
                }
                _ => DeliveryError::local_error(),
            },
            Failure::Io { err, .. } => DeliveryError::from_io(err, quota_permfail),
            Failure::Pool(_) | Failure::Local(_) => DeliveryError::local_error(),
            Failure::OverQuota(_) => DeliveryError::over_quota(quota_permfail),
            Failure::Full(_) => DeliveryError::storage_full(),
        };
        base.with_source(&self)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Sql { what, err } => match err.as_db_error() {
                Some(db) => write!(f, "{what}: {} ({})", db.message(), db.code().code()),
                None => write!(f, "{what}: {err}"),
            },
            Failure::Io { what, err } => write!(f, "{what}: {err}"),
            Failure::Pool(why)
            | Failure::OverQuota(why)
            | Failure::Local(why)
            | Failure::Full(why) => f.write_str(why),
        }
    }
}

impl PostgresStore {
    /// Connects, checks the server's durability settings, applies the missing migrations
    /// (under the migration lock) and builds the pool. Fails with `Unavailable` when the
    /// server cannot be reached, `Refused` for a server with `fsync = off`, a database
    /// newer than this binary or one that is not an lmtpd database.
    pub fn try_open(cfg: PostgresConfig) -> Result<PostgresStore, OpenError> {
        let client_cfg = cfg.client()?;
        let manager = PostgresConnectionManager::new(client_cfg, NoTls);
        let pool = r2d2::Pool::builder()
            .max_size(cfg.pool_size.max(1))
            .min_idle(Some(0))
            .connection_timeout(cfg.connect_timeout)
            .build_unchecked(manager);
        let store = PostgresStore { cfg, pool };
        let mut conn = store
            .conn()
            .map_err(|f| OpenError::new(OpenErrorKind::Unavailable, format!("postgres: {f}")))?;
        migrate::check_settings(&mut conn)?;
        migrate::migrate(&mut conn)?;
        Ok(store)
    }

    /// The configuration this store was built with.
    pub fn config(&self) -> &PostgresConfig {
        &self.cfg
    }

    pub(crate) fn conn(
        &self,
    ) -> Result<r2d2::PooledConnection<PostgresConnectionManager<NoTls>>, Failure> {
        self.pool
            .get()
            .map_err(|err| Failure::Pool(format!("no database connection: {err}")))
    }

    fn check_inner(&self, rcpt: &Recipient) -> Result<(), Failure> {
        // A pooled connection is checked before it is handed out (one round trip), so an
        // unreachable database is a 451 at RCPT, before the client sends the body.
        let mut conn = self.conn()?;
        if !rcpt.quota.is_limited() {
            return Ok(());
        }
        let row = conn
            .query_opt(
                "SELECT used_bytes, used_messages FROM mailboxes WHERE address = $1",
                &[&rcpt.user],
            )
            .map_err(Failure::sql("read mailbox usage"))?;
        let (bytes, messages) = row.map_or((0, 0), |r| {
            let b: i64 = r.get(0);
            let m: i64 = r.get(1);
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
        let mut conn = self.conn()?;
        let row = conn
            .query_opt(
                "SELECT used_bytes, used_messages FROM mailboxes WHERE address = $1",
                &[&rcpt.user],
            )
            .map_err(Failure::sql("read mailbox usage"))?;
        Ok(row.map_or(Usage::default(), |r| usage_of(r.get(0), r.get(1))))
    }

    /// Sets the counters of `rcpt`'s mailbox to the sum and number of its `deliveries` rows.
    /// The mailbox row is locked first, as every delivery locks it before adding a row, so
    /// the recount (a later statement, a later snapshot) sees every committed copy and none
    /// can land before the update. A mailbox without a row is left without one.
    fn recalc_inner(&self, rcpt: &Recipient) -> Result<Usage, Failure> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(Failure::sql("begin recount"))?;
        let Some(row) = tx
            .query_opt(
                "SELECT id FROM mailboxes WHERE address = $1 FOR UPDATE",
                &[&rcpt.user],
            )
            .map_err(Failure::sql("lock mailbox"))?
        else {
            return Ok(Usage::default());
        };
        let id: i64 = row.get(0);
        let row = tx
            .query_one(
                "UPDATE mailboxes SET \
                   used_bytes = (SELECT COALESCE(SUM(size), 0)::BIGINT FROM deliveries \
                                 WHERE mailbox_id = $1), \
                   used_messages = (SELECT COUNT(*) FROM deliveries WHERE mailbox_id = $1) \
                 WHERE id = $1 RETURNING used_bytes, used_messages",
                &[&id],
            )
            .map_err(Failure::sql("recount mailbox"))?;
        let usage = usage_of(row.get(0), row.get(1));
        tx.commit().map_err(Failure::sql("commit recount"))?;
        Ok(usage)
    }

    fn folder_exists(&self, rcpt: &Recipient, name: &str) -> Result<bool, Failure> {
        let mut conn = self.conn()?;
        let row = conn
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM folders f JOIN mailboxes m ON m.id = f.mailbox_id \
                   WHERE m.address = $1 AND f.name = $2) \
                 OR EXISTS (SELECT 1 FROM deliveries d JOIN mailboxes m ON m.id = d.mailbox_id \
                   WHERE m.address = $1 AND d.folder = $2)",
                &[&rcpt.user, &name],
            )
            .map_err(Failure::sql("look up folder"))?;
        Ok(row.get(0))
    }

    fn fail(&self, rcpt: &Recipient, stage: &str, failure: Failure) -> DeliveryError {
        if matches!(failure, Failure::OverQuota(_)) {
            log::info!("postgres: {}: {stage}: {failure}", rcpt.user);
        } else {
            log::warn!("postgres: {}: {stage}: {failure}", rcpt.user);
        }
        failure.into_delivery(self.cfg.quota_permfail)
    }
}

/// Counters as stored (BIGINT, never negative in practice) as a [`Usage`].
fn usage_of(bytes: i64, messages: i64) -> Usage {
    Usage {
        bytes: u64::try_from(bytes).unwrap_or(0),
        messages: u64::try_from(messages).unwrap_or(0),
    }
}

impl MailStore for PostgresStore {
    fn name(&self) -> &'static str {
        "postgres"
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

    /// Every copy of a call becomes durable with the same `COMMIT`, and every outcome is
    /// reported after it: nothing to gain from a helper thread.
    fn reports_progressively(&self) -> bool {
        false
    }

    fn deliver(&self, req: &Request<'_>, reporter: &Reporter) {
        if reporter.client_gone() {
            return;
        }
        let n = req.deliveries.len();
        let fail_all = |what: &str, f: &dyn Fn() -> Failure| {
            for (i, d) in req.deliveries.iter().enumerate() {
                if !reporter.report(i, Err(self.fail(d.rcpt, what, f()))) {
                    break;
                }
            }
        };
        let meta = match headers::extract(req.message.body) {
            Ok(meta) => meta,
            Err(err) => {
                let text = err.to_string();
                fail_all("read spooled body", &|| Failure::Io {
                    what: "read spooled body",
                    err: std::io::Error::new(err.kind(), text.clone()),
                });
                return;
            }
        };
        let mut conn = match self.conn() {
            Ok(c) => c,
            Err(Failure::Pool(why)) => {
                fail_all("connect", &|| Failure::Pool(why.clone()));
                return;
            }
            Err(other) => {
                let text = other.to_string();
                fail_all("connect", &|| Failure::Local(text.clone()));
                return;
            }
        };
        let staged = deliver::stage_all(&mut conn, req, &meta, unix_now());
        let (results, commit) = match staged {
            Ok(v) => v,
            Err(failure) => {
                let text = failure.to_string();
                let full = matches!(&failure, Failure::Sql { err, .. }
                    if err.code() == Some(&SqlState::DISK_FULL));
                fail_all("transaction", &|| {
                    if full {
                        Failure::Full(text.clone())
                    } else {
                        Failure::Local(text.clone())
                    }
                });
                return;
            }
        };
        let mut per: Vec<Vec<Result<(), DeliveryError>>> = (0..n).map(|_| Vec::new()).collect();
        for (i, target, result) in results {
            let d = &req.deliveries[i];
            let result = match (result, &commit) {
                (Ok(()), Ok(())) => Ok(()),
                (Ok(()), Err(text)) => Err(Failure::Local(format!("commit failed: {text}"))),
                (Err(f), _) => Err(f),
            };
            per[i].push(
                result.map_err(|f| self.fail(d.rcpt, &format!("delivery to {target} failed"), f)),
            );
        }
        for (i, r) in per.into_iter().enumerate() {
            reporter.report(i, combine(r));
        }
    }

    fn mailbox_exists(&self, rcpt: &Recipient, folder: &str) -> Result<bool, DeliveryError> {
        if folder.eq_ignore_ascii_case(deliver::INBOX) {
            return Ok(true);
        }
        self.folder_exists(rcpt, folder)
            .map_err(|f| self.fail(rcpt, "look up folder", f))
    }
}
