//! The crate-internal failure type and its single mapping to a client-facing `DeliveryError`.

use std::fmt;
use std::io;

use lmtpd_store::{DeliveryError, Enhanced};
use rusqlite::ErrorCode;

/// What went wrong inside the backend; turned into a [`DeliveryError`] once, at the edge.
#[derive(Debug)]
pub(crate) enum Failure {
    /// An SQLite error during `what`.
    Sql {
        /// The step, for the log.
        what: &'static str,
        /// The SQLite error.
        err: rusqlite::Error,
    },
    /// An I/O error during `what` (reading the spooled body, or a BLOB write, whose SQLite
    /// error rusqlite wraps in an `io::Error`).
    Io {
        /// The step, for the log.
        what: &'static str,
        /// The error.
        err: io::Error,
    },
    /// No pooled connection became free in time.
    Pool(String),
    /// The recipient is over quota.
    OverQuota(String),
    /// The body cannot be held in one SQLite BLOB.
    TooBig(String),
    /// Any other local problem (the spool changed size, a value out of range).
    Local(String),
    /// The group transaction this copy was staged in did not commit.
    Group(crate::group::GroupFailure),
}

/// How an SQLite error is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// SQLITE_BUSY / SQLITE_LOCKED past the busy timeout.
    Busy,
    /// SQLITE_FULL, or an I/O error reporting a full disk.
    Full,
    /// SQLITE_TOOBIG: the body is larger than SQLite's maximum BLOB length.
    TooBig,
    /// Anything else.
    Other,
}

/// Classifies an SQLite error. The unix VFS already reports a write that fails with ENOSPC as
/// SQLITE_FULL ("database or disk is full"); an SQLITE_IOERR whose message says the disk is
/// full is treated the same way.
pub(crate) fn classify(err: &rusqlite::Error) -> Class {
    match err {
        rusqlite::Error::SqliteFailure(e, msg) => match e.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Class::Busy,
            ErrorCode::DiskFull => Class::Full,
            ErrorCode::TooBig => Class::TooBig,
            ErrorCode::SystemIoFailure if msg.as_deref().is_some_and(says_full) => Class::Full,
            _ => Class::Other,
        },
        _ => Class::Other,
    }
}

fn says_full(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("disk is full") || m.contains("no space")
}

impl Failure {
    /// Wraps an SQLite error with the step it happened in.
    pub(crate) fn sql(what: &'static str) -> impl FnOnce(rusqlite::Error) -> Failure {
        move |err| Failure::Sql { what, err }
    }

    /// Converts to the client-facing error, with this failure as the logged source.
    pub(crate) fn into_delivery(self, quota_permfail: bool) -> DeliveryError {
        let base = match &self {
            Failure::Sql { err, .. } => by_class(classify(err)),
            Failure::Io { err, .. } => match err.get_ref().and_then(|e| e.downcast_ref()) {
                Some(sql) => by_class(classify(sql)),
                None => DeliveryError::from_io(err, quota_permfail),
            },
            Failure::Pool(_) | Failure::Local(_) => DeliveryError::local_error(),
            Failure::OverQuota(_) => DeliveryError::over_quota(quota_permfail),
            Failure::TooBig(_) => message_too_big(),
            Failure::Group(g) => by_class(g.class),
        };
        base.with_source(self)
    }

    /// True for an over-quota refusal (logged at info level, not as a warning).
    pub(crate) fn is_quota(&self) -> bool {
        matches!(self, Failure::OverQuota(_))
    }
}

fn by_class(class: Class) -> DeliveryError {
    match class {
        Class::Busy | Class::Other => DeliveryError::local_error(),
        Class::Full => DeliveryError::storage_full(),
        Class::TooBig => message_too_big(),
    }
}

/// `552 5.3.4`: the body exceeds what SQLite can hold in one BLOB (about 1 GB by default).
pub(crate) fn message_too_big() -> DeliveryError {
    DeliveryError::new(552, Enhanced(5, 3, 4), "Message too big for system")
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Sql { what, err } => write!(f, "{what}: {err}"),
            Failure::Io { what, err } => write!(f, "{what}: {err}"),
            Failure::Pool(why)
            | Failure::OverQuota(why)
            | Failure::TooBig(why)
            | Failure::Local(why) => f.write_str(why),
            Failure::Group(g) => f.write_str(&g.text),
        }
    }
}
