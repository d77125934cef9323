//! Why a store could not be opened (at start-up or on a reload), classified by what the
//! operator can do about it, so the daemon can choose its exit status.

use std::fmt;
use std::io;

/// What kind of failure kept a store from opening.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenErrorKind {
    /// The configuration names something the store will not use: not its database, a schema
    /// newer than this build, not a regular file, a setting out of range. Retrying cannot
    /// help; the configuration must change.
    Refused,
    /// Someone else holds it right now (a database lock): trying again later may work.
    Busy,
    /// The system refused or failed: permission denied, a directory that cannot be created
    /// or written, an I/O error, a full disk.
    Unavailable,
}

/// A store that cannot be opened: the kind of failure and a message for the log (which may
/// name paths; it is never shown to an LMTP client).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenError {
    kind: OpenErrorKind,
    message: String,
}

impl OpenError {
    /// An error of `kind` with a log message.
    pub fn new(kind: OpenErrorKind, message: impl Into<String>) -> OpenError {
        OpenError {
            kind,
            message: message.into(),
        }
    }

    /// An operating-system error: a lock that would block is [`OpenErrorKind::Busy`],
    /// anything else [`OpenErrorKind::Unavailable`].
    pub fn io(err: &io::Error, message: impl Into<String>) -> OpenError {
        let kind = match err.kind() {
            io::ErrorKind::WouldBlock => OpenErrorKind::Busy,
            _ => OpenErrorKind::Unavailable,
        };
        OpenError::new(kind, message)
    }

    /// The kind of failure.
    pub fn kind(&self) -> OpenErrorKind {
        self.kind
    }

    /// The message, as the log shows it.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error with `prefix: ` put in front of its message.
    pub fn context(self, prefix: impl fmt::Display) -> OpenError {
        OpenError {
            kind: self.kind,
            message: format!("{prefix}: {}", self.message),
        }
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OpenError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_busy_only_when_they_would_block() {
        let busy = io::Error::from(io::ErrorKind::WouldBlock);
        assert_eq!(OpenError::io(&busy, "x").kind(), OpenErrorKind::Busy);
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        assert_eq!(
            OpenError::io(&denied, "x").kind(),
            OpenErrorKind::Unavailable
        );
    }

    #[test]
    fn context_prefixes_the_message_and_keeps_the_kind() {
        let e = OpenError::new(OpenErrorKind::Refused, "not ours").context("/db");
        assert_eq!(e.to_string(), "/db: not ours");
        assert_eq!(e.kind(), OpenErrorKind::Refused);
    }
}
