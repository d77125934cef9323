//! mbox path templates: expands `%u`, `%n`, `%d` and `%%` with checked recipient values.

use std::path::PathBuf;

use lmtpd_store::Recipient;

/// Why a value may not become a path component, or `Ok` when it may.
pub(crate) fn check_component(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        Err("empty")
    } else if value == ".." {
        Err("is \"..\"")
    } else if value.starts_with('.') {
        Err("starts with '.'")
    } else if value.contains('/') {
        Err("contains '/'")
    } else if value.chars().any(|c| c == '\0' || c.is_control()) {
        Err("contains a NUL or control character")
    } else {
        Ok(())
    }
}

/// Checks the template's escapes without a recipient (for configuration checks).
pub(crate) fn validate(template: &str) -> Result<(), String> {
    if template.is_empty() {
        return Err("mbox template is empty".into());
    }
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('%' | 'u' | 'n' | 'd') => {}
                Some(other) => return Err(format!("unknown escape %{other} in mbox template")),
                None => return Err("mbox template ends with a lone '%'".into()),
            }
        }
    }
    Ok(())
}

/// Expands `template` for `rcpt`. Every substituted value is checked with
/// [`check_component`] first; the error text is for the log.
pub(crate) fn expand(template: &str, rcpt: &Recipient) -> Result<PathBuf, String> {
    let mut out = String::with_capacity(template.len() + 64);
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (what, value) = match chars.next() {
            Some('%') => {
                out.push('%');
                continue;
            }
            Some('u') => ("user (%u)", &rcpt.user),
            Some('n') => ("local part (%n)", &rcpt.local),
            Some('d') => ("domain (%d)", &rcpt.domain),
            Some(other) => return Err(format!("unknown escape %{other} in mbox template")),
            None => return Err("mbox template ends with a lone '%'".into()),
        };
        check_component(value).map_err(|why| format!("unsafe {what} {value:?}: {why}"))?;
        out.push_str(value);
    }
    if out.is_empty() {
        return Err("mbox template expands to an empty path".into());
    }
    Ok(PathBuf::from(out))
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
