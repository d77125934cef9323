//! Mailbox path templates shared by the file-based stores: expands `%u`, `%n`, `%d` and `%%`
//! with checked recipient values.

use std::path::PathBuf;

use crate::Recipient;

/// Why a value may not become a path component, or `Ok` when it may.
pub fn check_component(value: &str) -> Result<(), &'static str> {
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

/// Checks the template's escapes without a recipient (for configuration checks). `kind`
/// names the store in messages (`maildir`, `mbox`).
pub fn validate(template: &str, kind: &str) -> Result<(), String> {
    if template.is_empty() {
        return Err(format!("{kind} template is empty"));
    }
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('%' | 'u' | 'n' | 'd') => {}
                Some(other) => return Err(format!("unknown escape %{other} in {kind} template")),
                None => return Err(format!("{kind} template ends with a lone '%'")),
            }
        }
    }
    Ok(())
}

/// Expands `template` for `rcpt`. Every substituted value is checked with
/// [`check_component`] first; the error text is for the log.
pub fn expand(template: &str, kind: &str, rcpt: &Recipient) -> Result<PathBuf, String> {
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
            Some(other) => return Err(format!("unknown escape %{other} in {kind} template")),
            None => return Err(format!("{kind} template ends with a lone '%'")),
        };
        check_component(value).map_err(|why| format!("unsafe {what} {value:?}: {why}"))?;
        out.push_str(value);
    }
    if out.is_empty() {
        return Err(format!("{kind} template expands to an empty path"));
    }
    Ok(PathBuf::from(out))
}

/// Longest `+detail` (in bytes) that may name a folder; longer ones go to the inbox.
pub const MAX_DETAIL: usize = 200;

/// Why a `+detail` may not name a folder (in any store), or `Ok` when it may: empty, longer
/// than [`MAX_DETAIL`], a leading dot, `..`, `/`, NUL or control characters. Stores add
/// their own rules on top.
pub fn check_detail(detail: &str) -> Result<(), &'static str> {
    if detail.is_empty() {
        Err("empty")
    } else if detail.len() > MAX_DETAIL {
        Err("too long")
    } else if detail.starts_with('.') {
        Err("starts with '.'")
    } else if detail.contains("..") {
        Err("contains \"..\"")
    } else if detail.contains('/') {
        Err("contains '/'")
    } else if detail.chars().any(|c| c == '\0' || c.is_control()) {
        Err("contains a NUL or control character")
    } else {
        Ok(())
    }
}
