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
