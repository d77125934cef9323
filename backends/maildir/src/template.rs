//! Maildir path templates: the shared expansion of `lmtpd_store::template`, named `maildir`
//! in messages.

use std::path::PathBuf;

use lmtpd_store::{template, Recipient};

/// Checks the template's escapes without a recipient (for configuration checks).
pub(crate) fn validate(t: &str) -> Result<(), String> {
    template::validate(t, "maildir")
}

/// Expands `t` for `rcpt`, refusing unsafe substituted values.
pub(crate) fn expand(t: &str, rcpt: &Recipient) -> Result<PathBuf, String> {
    template::expand(t, "maildir", rcpt)
}
