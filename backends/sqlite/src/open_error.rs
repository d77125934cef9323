//! Classifying why [`crate::SqliteStore::try_open`] failed: a database that is not ours is
//! refused for good, a lock is worth waiting for, anything else is the system's failure.

use std::path::Path;

use lmtpd_store::open::{OpenError, OpenErrorKind};
use rusqlite::ErrorCode;

/// An error from SQLite while opening or preparing a connection.
pub(crate) fn sqlite(err: &rusqlite::Error, message: String) -> OpenError {
    let kind = match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => OpenErrorKind::Busy,
        Some(ErrorCode::NotADatabase) => OpenErrorKind::Refused,
        _ => OpenErrorKind::Unavailable,
    };
    OpenError::new(kind, message)
}

/// A failed migration. Its message is all `migrate` returns, so the kind comes from a
/// second, read-only look at the file: when that look refuses the database too (a schema
/// newer than this build, or not an lmtpd database), so does the store; when the schema
/// looks fine, the migration failed for a passing reason (a lock held past the busy
/// timeout, an I/O error). The connection that ran the migration had already opened and
/// read the file, so a refusal here is not a read error.
pub(crate) fn migration(path: &Path, message: String) -> OpenError {
    let kind = match crate::migrate::schema_status(path) {
        Err(_) => OpenErrorKind::Refused,
        Ok(_) => OpenErrorKind::Busy,
    };
    OpenError::new(kind, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SqliteConfig, SqliteStore};
    use std::time::Duration;

    fn open_waiting(path: &Path, busy_timeout: Duration) -> Result<SqliteStore, OpenError> {
        let mut cfg = SqliteConfig::new(path);
        cfg.busy_timeout = busy_timeout;
        SqliteStore::try_open(cfg)
    }

    fn open(path: &Path) -> Result<SqliteStore, OpenError> {
        open_waiting(path, Duration::ZERO)
    }

    fn kind(path: &Path) -> OpenErrorKind {
        match open(path) {
            Ok(_) => panic!("{} opened", path.display()),
            Err(e) => e.kind(),
        }
    }

    /// As [`kind`], but waiting out a lock held for a moment by a connection of a store just
    /// dropped (r2d2 opens its connections on a thread of its own): for the cases that are
    /// not about locks.
    fn kind_unlocked(path: &Path) -> OpenErrorKind {
        match open_waiting(path, Duration::from_secs(10)) {
            Ok(_) => panic!("{} opened", path.display()),
            Err(e) => e.kind(),
        }
    }

    #[test]
    fn a_database_held_by_another_writer_is_busy() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = dir.path().join("mail.db");
        drop(open(&db).expect("create"));
        let holder = rusqlite::Connection::open(&db).expect("open");
        holder.execute_batch("BEGIN EXCLUSIVE").expect("lock");
        assert_eq!(kind(&db), OpenErrorKind::Busy);
        holder.execute_batch("COMMIT").expect("unlock");
        assert!(open(&db).is_ok());
    }

    #[test]
    fn a_database_that_is_not_ours_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = dir.path().join("notes.db");
        rusqlite::Connection::open(&db)
            .and_then(|c| c.execute_batch("CREATE TABLE notes (x TEXT)"))
            .expect("foreign database");
        assert_eq!(kind_unlocked(&db), OpenErrorKind::Refused);
        let newer = dir.path().join("newer.db");
        drop(open(&newer).expect("create"));
        rusqlite::Connection::open(&newer)
            .and_then(|c| c.pragma_update(None, "user_version", 1000))
            .expect("bump");
        assert_eq!(kind_unlocked(&newer), OpenErrorKind::Refused);
        assert_eq!(
            kind_unlocked(dir.path()),
            OpenErrorKind::Refused,
            "a directory"
        );
    }

    #[test]
    fn a_path_the_system_refuses_is_unavailable() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").expect("write");
        assert_eq!(kind(&file.join("mail.db")), OpenErrorKind::Unavailable);
    }

    #[test]
    fn locks_are_busy_and_foreign_files_refused() {
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert_eq!(sqlite(&busy, "x".into()).kind(), OpenErrorKind::Busy);
        let foreign = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_NOTADB),
            None,
        );
        assert_eq!(sqlite(&foreign, "x".into()).kind(), OpenErrorKind::Refused);
        let io = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
            None,
        );
        assert_eq!(sqlite(&io, "x".into()).kind(), OpenErrorKind::Unavailable);
    }
}
