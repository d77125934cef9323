//! Schema migrations (`migrations/postgres/NNNN_name.sql`, embedded in the binary, applied
//! in order under an advisory lock, each in its own transaction with its `lmtpd_schema`
//! row), the schema state for `lmtpd -t`, and the server settings lmtpd's durability rests
//! on.

use lmtpd_store::open::{OpenError, OpenErrorKind};
use postgres::Client;

/// One embedded migration.
struct Migration {
    /// File name without `.sql`; its number is its position (1-based).
    name: &'static str,
    sql: &'static str,
}

/// Every migration, in order.
const MIGRATIONS: &[Migration] = &[Migration {
    name: "0001_init",
    sql: include_str!("../../../migrations/postgres/0001_init.sql"),
}];

/// The advisory lock key that serialises migrations between nodes (`'lmtp'`).
const LOCK_KEY: i64 = 0x6C6D_7470;

fn refused(text: String) -> OpenError {
    OpenError::new(OpenErrorKind::Refused, text)
}

fn unavailable(what: &str, err: &postgres::Error) -> OpenError {
    let text = match err.as_db_error() {
        Some(db) => format!("postgres: {what}: {}", db.message()),
        None => format!("postgres: {what}: {err}"),
    };
    OpenError::new(OpenErrorKind::Unavailable, text)
}

/// The schema state of a database, for `lmtpd -t`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Migrations applied.
    pub version: u32,
    /// Migrations this binary knows.
    pub known: u32,
    /// `fsync` of the server.
    pub fsync: String,
    /// `synchronous_commit` for our role.
    pub synchronous_commit: String,
}

impl std::fmt::Display for SchemaStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pending = self.known.saturating_sub(self.version);
        write!(f, "schema version {} of {}", self.version, self.known)?;
        if pending == 0 {
            write!(f, " (up to date)")?;
        } else {
            write!(f, " ({pending} migrations pending)")?;
        }
        write!(
            f,
            "; fsync = {}, synchronous_commit = {}",
            self.fsync, self.synchronous_commit
        )
    }
}

fn known() -> u32 {
    u32::try_from(MIGRATIONS.len()).unwrap_or(u32::MAX)
}

fn setting(conn: &mut Client, name: &str) -> Result<String, OpenError> {
    let row = conn
        .query_one(&format!("SHOW {name}"), &[])
        .map_err(|e| unavailable("read settings", &e))?;
    Ok(row.get(0))
}

/// Refuses a server with `fsync = off` (a committed delivery could vanish in a crash) and
/// warns on `synchronous_commit = off` (a crash may lose the last commits: lmtpd would have
/// answered `250` for mail that is gone).
pub(crate) fn check_settings(conn: &mut Client) -> Result<(), OpenError> {
    if setting(conn, "fsync")? == "off" {
        return Err(refused(
            "postgres: the server runs with fsync = off, so a committed delivery can be lost \
             in a crash; lmtpd refuses to deliver into it"
                .into(),
        ));
    }
    if setting(conn, "synchronous_commit")? == "off" {
        log::warn!(
            "postgres: synchronous_commit is off for this role: a crash of the database \
             server can lose deliveries lmtpd already answered 250 for"
        );
    }
    Ok(())
}

/// Applied migrations (0 when the database has none), refusing a database that has lmtpd's
/// tables without its version table (not made by lmtpd).
fn version(conn: &mut Client) -> Result<u32, OpenError> {
    let has_table = |conn: &mut Client, name: &str| -> Result<bool, OpenError> {
        conn.query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
            .map(|r| r.get(0))
            .map_err(|e| unavailable("read the schema", &e))
    };
    if !has_table(conn, "lmtpd_schema")? {
        if has_table(conn, "mailboxes")? || has_table(conn, "deliveries")? {
            return Err(refused(
                "postgres: the database has mailboxes/deliveries tables but no lmtpd_schema: \
                 not an lmtpd database"
                    .into(),
            ));
        }
        return Ok(0);
    }
    let v: Option<i32> = conn
        .query_one("SELECT max(version) FROM lmtpd_schema", &[])
        .map_err(|e| unavailable("read the schema version", &e))?
        .get(0);
    Ok(u32::try_from(v.unwrap_or(0)).unwrap_or(0))
}

/// Applies the missing migrations in order while holding the migration lock, so nodes
/// starting at once apply each exactly once. A database newer than this binary is refused.
pub(crate) fn migrate(conn: &mut Client) -> Result<(), OpenError> {
    conn.execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .map_err(|e| unavailable("take the migration lock", &e))?;
    let result = apply(conn);
    let _ = conn.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY]);
    result
}

fn apply(conn: &mut Client) -> Result<(), OpenError> {
    let current = version(conn)?;
    if current > known() {
        return Err(refused(format!(
            "postgres: the database has schema version {current}, newer than the {} this \
             lmtpd knows: upgrade lmtpd",
            known()
        )));
    }
    for (n, m) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let number = i32::try_from(n + 1).unwrap_or(i32::MAX);
        let mut tx = conn
            .transaction()
            .map_err(|e| unavailable("begin a migration", &e))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS lmtpd_schema (\
               version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied BIGINT NOT NULL)",
        )
        .map_err(|e| unavailable("create lmtpd_schema", &e))?;
        tx.batch_execute(m.sql)
            .map_err(|e| unavailable(&format!("migration {}", m.name), &e))?;
        tx.execute(
            "INSERT INTO lmtpd_schema (version, name, applied) VALUES ($1, $2, $3)",
            &[&number, &m.name, &crate::unix_now()],
        )
        .map_err(|e| unavailable("record the migration", &e))?;
        tx.commit()
            .map_err(|e| unavailable(&format!("commit migration {}", m.name), &e))?;
        log::info!("postgres: applied migration {}", m.name);
    }
    Ok(())
}

/// Connects with `conninfo` and reports the schema state and settings without changing
/// anything (`lmtpd -t`).
pub fn schema_status(conninfo: &str) -> Result<SchemaStatus, OpenError> {
    let cfg = crate::PostgresConfig::new(conninfo).client()?;
    let mut conn = cfg
        .connect(postgres::NoTls)
        .map_err(|e| unavailable("connect", &e))?;
    schema_status_of(&mut conn)
}

/// [`schema_status`] on an open connection.
pub(crate) fn schema_status_of(conn: &mut Client) -> Result<SchemaStatus, OpenError> {
    Ok(SchemaStatus {
        version: version(conn)?,
        known: known(),
        fsync: setting(conn, "fsync")?,
        synchronous_commit: setting(conn, "synchronous_commit")?,
    })
}

#[cfg(test)]
pub(crate) fn migration_names() -> Vec<&'static str> {
    MIGRATIONS.iter().map(|m| m.name).collect()
}
