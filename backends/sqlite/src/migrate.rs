//! Schema migrations: `migrations/sqlite/NNNN_name.sql`, embedded in the binary, applied in order
//! inside one transaction and tracked with `PRAGMA user_version` (= number of migrations
//! applied).

use std::io;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::conn;

/// `PRAGMA application_id` of an lmtpd database: `'lmtp'`, set by `0001_init`.
pub(crate) const APPLICATION_ID: i32 = 0x6C6D_7470;

/// One embedded migration.
pub(crate) struct Migration {
    /// File name without `.sql`, e.g. `0001_init`; its number is its position (1-based).
    pub(crate) name: &'static str,
    /// The SQL, run with `execute_batch`.
    pub(crate) sql: &'static str,
}

/// Every migration, in order. `user_version` N means the first N have been applied.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "0001_init",
        sql: include_str!("../../../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        name: "0002_body_files",
        sql: include_str!("../../../migrations/sqlite/0002_body_files.sql"),
    },
];

/// The schema version this binary creates and understands.
pub(crate) fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// What the header of a database says about it.
struct State {
    version: i64,
    application_id: i32,
    has_tables: bool,
}

fn state(conn: &Connection) -> rusqlite::Result<State> {
    Ok(State {
        version: user_version(conn)?,
        application_id: conn.query_row("PRAGMA application_id", [], |row| row.get(0))?,
        has_tables: conn
            .query_row("SELECT 1 FROM sqlite_schema LIMIT 1", [], |_| Ok(()))
            .optional()?
            .is_some(),
    })
}

/// Refuses databases this binary must not touch: newer than it knows, or not an lmtpd
/// database at all.
fn vet(path: &Path, st: &State) -> Result<(), String> {
    let latest = latest();
    if st.version > latest {
        return Err(format!(
            "{}: database schema version {} is newer than this lmtpd supports ({latest}); \
             upgrade lmtpd or use a different database",
            path.display(),
            st.version
        ));
    }
    if st.version < 0 || (st.version > 0 && st.application_id != APPLICATION_ID) {
        return Err(format!(
            "{}: not an lmtpd mail database (application_id {:#x}, user_version {})",
            path.display(),
            st.application_id,
            st.version
        ));
    }
    if st.version == 0 && st.has_tables {
        return Err(format!(
            "{}: not an lmtpd mail database (it has tables but schema version 0)",
            path.display()
        ));
    }
    Ok(())
}

/// Brings the schema up to date in one `BEGIN IMMEDIATE` transaction (so two processes
/// starting together cannot both migrate). Returns how many migrations were applied; a
/// database that is already current is left untouched.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<usize, String> {
    let at = |what: &str, err: rusqlite::Error| format!("{}: {what}: {err}", path.display());
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| at("begin migration", e))?;
    let st = state(&tx).map_err(|e| at("read schema version", e))?;
    vet(path, &st)?;
    let from = usize::try_from(st.version).unwrap_or(0);
    if from == MIGRATIONS.len() {
        return Ok(0); // dropping tx rolls back the (read-only) transaction
    }
    for m in &MIGRATIONS[from..] {
        tx.execute_batch(m.sql)
            .map_err(|e| at(&format!("migration {}", m.name), e))?;
    }
    tx.pragma_update(None, "user_version", latest())
        .map_err(|e| at("set user_version", e))?;
    tx.commit().map_err(|e| at("commit migrations", e))?;
    let applied = MIGRATIONS.len() - from;
    log::info!(
        "sqlite: {}: applied {applied} migration(s), schema version {}",
        path.display(),
        latest()
    );
    Ok(applied)
}

/// Checks that a database opened by a tool has exactly the schema this binary knows.
pub(crate) fn require_current(conn: &Connection, path: &Path) -> Result<(), String> {
    let st = state(conn).map_err(|e| format!("{}: {e}", path.display()))?;
    vet(path, &st)?;
    if st.version != latest() {
        return Err(format!(
            "{}: database schema version {} is older than {}; start lmtpd once to migrate it",
            path.display(),
            st.version,
            latest()
        ));
    }
    Ok(())
}

fn pending(n: i64) -> String {
    if n == 1 {
        "1 migration pending".to_string()
    } else {
        format!("{n} migrations pending")
    }
}

/// The schema state of the database at `path`, for `lmtpd -t`, without modifying it or
/// creating files next to it (a missing file is reported, not created):
///
/// - `schema version 2 of 2 (up to date)`
/// - `schema version 1 of 2 (1 migration pending)`
/// - `schema version 0 of 2 (2 migrations pending; database file does not exist yet)`
///
/// A database newer than this binary, a file that is not an lmtpd database, or one that
/// cannot be read is an `Err` with the reason.
pub fn schema_status(path: &Path) -> Result<String, String> {
    let latest = latest();
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => {
            return Err(format!("{}: not a regular file", path.display()))
        }
        Ok(_) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Ok(format!(
                "schema version 0 of {latest} ({}; database file does not exist yet)",
                pending(latest)
            ));
        }
        Err(err) => return Err(format!("{}: {err}", path.display())),
    }
    let conn = conn::open_for_status(path)?;
    let st = state(&conn).map_err(|e| format!("{}: {e}", path.display()))?;
    vet(path, &st)?;
    Ok(if st.version == latest {
        format!("schema version {latest} of {latest} (up to date)")
    } else {
        format!(
            "schema version {} of {latest} ({})",
            st.version,
            pending(latest - st.version)
        )
    })
}
