//! Mailbox path templates shared by the file-based stores: expands `%u`, `%n`, `%d` and `%%`
//! with checked recipient values.

use std::path::PathBuf;

use crate::Recipient;

// The component and `+detail` rules live in `crate::path`; they are re-exported here
// because the backends reach them through this module.
pub use crate::path::{check_component, check_detail, MAX_DETAIL};

/// Copies `template`, turning `%%` into `%` and every other `%c` into what `escape(Some(c),
/// out)` appends to `out`; a lone `%` at the end calls `escape(None, out)`. The one escape
/// walker behind the mailbox path templates here and lmtpd's text templates.
pub fn substitute<E>(
    template: &str,
    mut escape: impl FnMut(Option<char>, &mut String) -> Result<(), E>,
) -> Result<String, E> {
    let mut out = String::with_capacity(template.len() + 64);
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            next => escape(next, &mut out)?,
        }
    }
    Ok(out)
}

/// The refusal of an escape a path template cannot have (`kind` names the store).
fn bad_escape(kind: &str, c: Option<char>) -> String {
    match c {
        Some(other) => format!("unknown escape %{other} in {kind} template"),
        None => format!("{kind} template ends with a lone '%'"),
    }
}

/// Checks the template's escapes without a recipient (for configuration checks). `kind`
/// names the store in messages (`maildir`, `mbox`).
pub fn validate(template: &str, kind: &str) -> Result<(), String> {
    if template.is_empty() {
        return Err(format!("{kind} template is empty"));
    }
    substitute(template, |c, _| match c {
        Some('u' | 'n' | 'd') => Ok(()),
        other => Err(bad_escape(kind, other)),
    })
    .map(|_| ())
}

/// Expands `template` for `rcpt`. Every substituted value is checked with
/// [`check_component`] first; the error text is for the log.
pub fn expand(template: &str, kind: &str, rcpt: &Recipient) -> Result<PathBuf, String> {
    let out = substitute(template, |c, out| {
        let (what, value) = match c {
            Some('u') => ("user (%u)", &rcpt.user),
            Some('n') => ("local part (%n)", &rcpt.local),
            Some('d') => ("domain (%d)", &rcpt.domain),
            other => return Err(bad_escape(kind, other)),
        };
        check_component(value).map_err(|why| format!("unsafe {what} {value:?}: {why}"))?;
        out.push_str(value);
        Ok(())
    })?;
    if out.is_empty() {
        return Err(format!("{kind} template expands to an empty path"));
    }
    Ok(PathBuf::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcpt(local: &str, domain: &str) -> Recipient {
        Recipient::new(local, domain)
    }

    #[test]
    fn expansion_substitutes_checked_values() {
        let p = expand("/m/%d/%n/%u%%", "maildir", &rcpt("alice", "example.org"));
        assert_eq!(
            p,
            Ok(PathBuf::from("/m/example.org/alice/alice@example.org%"))
        );
    }

    #[test]
    fn expansion_refuses_what_the_component_rule_refuses() {
        for local in ["", ".x", "..", "a..b", "a/b", "a\\b", "a\0b", "a\nb"] {
            let r = expand("/m/%n", "mbox", &rcpt(local, "example.org"));
            let err = r.expect_err(local);
            assert!(err.starts_with("unsafe local part (%n)"), "{err}");
            assert!(check_component(local).is_err(), "{local:?}");
        }
        assert!(expand("/m/%d", "mbox", &rcpt("a", "ex..org")).is_err());
    }
}
