//! The crate-internal failure type and its single mapping to a client-facing `DeliveryError`.

use std::fmt;
use std::io;
use std::path::Path;

use lmtpd_store::DeliveryError;

/// What went wrong inside the backend; turned into a [`DeliveryError`] once, at the edge.
#[derive(Debug)]
pub(crate) enum Failure {
    /// An I/O error while doing `what`; classified with [`DeliveryError::from_io`].
    Io {
        /// The step and path, for the log.
        what: String,
        /// The OS error.
        err: io::Error,
    },
    /// A local problem that is not an I/O error (unsafe value, bad template): `451 4.3.0`.
    Local(String),
    /// The mailbox exists but must not be written (symlink, hard link, not a regular file,
    /// replaced while opening): `550 5.2.0`.
    Unusable(String),
    /// The locks could not be taken within the lock timeout: `450 4.2.0`.
    Busy(String),
    /// The recipient is over quota.
    OverQuota(String),
}

impl Failure {
    /// Converts to the client-facing error, with this failure as the logged source.
    pub(crate) fn into_delivery(self, quota_permfail: bool) -> DeliveryError {
        match self {
            Failure::Io { what, err } => DeliveryError::from_io(&err, quota_permfail)
                .with_source(format_args!("{what}: {err}")),
            Failure::Local(why) => DeliveryError::local_error().with_source(why),
            Failure::Unusable(why) => DeliveryError::mailbox_unusable().with_source(why),
            Failure::Busy(why) => DeliveryError::mailbox_busy().with_source(why),
            Failure::OverQuota(why) => DeliveryError::over_quota(quota_permfail).with_source(why),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Io { what, err } => write!(f, "{what}: {err}"),
            Failure::Local(why)
            | Failure::Unusable(why)
            | Failure::Busy(why)
            | Failure::OverQuota(why) => f.write_str(why),
        }
    }
}

/// `map_err` helper: wraps an I/O error with the step and the path it concerned.
pub(crate) fn io_at<'a>(step: &'a str, path: &'a Path) -> impl FnOnce(io::Error) -> Failure + 'a {
    move |err| Failure::Io {
        what: format!("{step} {}", path.display()),
        err,
    }
}
