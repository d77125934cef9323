//! mbox path templates: the shared expansion of `lmtpd_store::template`, named `mbox` in
//! messages, plus the rule for `+detail` folder files.

use std::path::PathBuf;

use lmtpd_store::{template, Recipient};

/// Checks the template's escapes without a recipient (for configuration checks).
pub(crate) fn validate(t: &str) -> Result<(), String> {
    template::validate(t, "mbox")
}

/// Expands `t` for `rcpt`, refusing unsafe substituted values.
pub(crate) fn expand(t: &str, rcpt: &Recipient) -> Result<PathBuf, String> {
    template::expand(t, "mbox", rcpt)
}

/// True when the directory part of `template` (everything before the last `/`) contains
/// `%u` or `%n`, i.e. every user has a mail directory of their own. Only then may a
/// `+detail` name a folder file next to the inbox: in a shared spool such as `/var/mail/%n`
/// the "folder" `bob` of alice would be bob's inbox.
pub(crate) fn dir_is_per_user(template: &str) -> bool {
    let Some(slash) = template.rfind('/') else {
        return false;
    };
    let mut chars = template[..slash].chars();
    while let Some(c) = chars.next() {
        if c == '%' && matches!(chars.next(), Some('u' | 'n')) {
            return true;
        }
    }
    false
}
