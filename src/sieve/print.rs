//! Renders an [`super::Outcome`] the way Pigeonhole's `sieve-test` prints its result, for
//! `lmtpd sieve test` and the differential tests against Pigeonhole.
//!
//! Pigeonhole's layout (Dovecot 2.3 `sieve-test`, without `-e`) is two sections, the
//! explicit actions and then the implicit keep, each item a ` * ` line with its details on
//! `        + ` lines below it, and `  (none)` for an empty section:
//!
//! ```text
//!
//! Performed actions:
//!
//!  * store message in folder: Junk
//!         + create mailbox if it does not exist
//!         + add IMAP flags: \seen
//!
//! Implicit keep:
//!
//!   (none)
//!
//! ```
//!
//! Like Pigeonhole, system flags (those starting with `\`) are shown first, in lower case,
//! then the keywords as written. Details Pigeonhole does not show (the position of an
//! action, an edited header section) are left out; a `:specialuse` request, which Debian's
//! Pigeonhole does not support, is shown as one more detail line.

use super::{Action, Outcome, Store, Vacation};

/// The text `sieve-test` would print for `outcome` on its standard output: the
/// "Performed actions" section with every action but the implicit keep, then the
/// "Implicit keep" section.
pub fn render(outcome: &Outcome) -> String {
    let mut performed = String::new();
    let mut implicit = String::new();
    for action in &outcome.actions {
        match action {
            Action::Keep {
                store,
                implicit: true,
            } => store_lines(&mut implicit, store),
            Action::Keep {
                store,
                implicit: false,
            }
            | Action::FileInto(store) => store_lines(&mut performed, store),
            Action::Reject { reason, ereject } => {
                let what = if *ereject { "ereject" } else { "reject" };
                performed.push_str(&format!(
                    " * {what} message with reason: {}\n",
                    one_line(reason)
                ));
            }
            Action::Discard => performed.push_str(" * discard\n"),
            Action::Redirect(r) => {
                performed.push_str(&format!(
                    " * redirect message to: <{}>\n",
                    one_line(&r.address)
                ));
                if r.copy {
                    performed.push_str("        + preserve implicit keep\n");
                }
            }
            Action::Vacation(v) => vacation_lines(&mut performed, v),
        }
    }
    for t in &outcome.tracked {
        performed.push_str(if t.last {
            " * track last duplicate\n"
        } else {
            " * track duplicate\n"
        });
    }
    if performed.is_empty() {
        performed.push_str("  (none)\n");
    }
    if implicit.is_empty() {
        implicit.push_str("  (none)\n");
    }
    format!("\nPerformed actions:\n\n{performed}\nImplicit keep:\n\n{implicit}\n")
}

/// A vacation action as `sieve-test` shows it: the period, the subject and `:from` when
/// given, the handle, then the reason between `START MESSAGE` and `END MESSAGE`.
fn vacation_lines(out: &mut String, v: &Vacation) {
    out.push_str(" * send vacation message:\n");
    out.push_str(&format!("    => seconds : {}\n", v.seconds));
    if let Some(s) = &v.subject {
        out.push_str(&format!("    => subject : {}\n", one_line(s)));
    }
    if let Some(f) = &v.from {
        out.push_str(&format!("    => from    : {}\n", one_line(f)));
    }
    out.push_str(&format!("    => handle  : {}\n", v.handle));
    out.push_str(&format!(
        "\nSTART MESSAGE\n{}\nEND MESSAGE\n",
        v.reason.trim_end_matches(['\r', '\n'])
    ));
}

/// One store action: the folder line and its details, in Pigeonhole's order.
fn store_lines(out: &mut String, store: &Store) {
    let folder = store.mailbox.as_deref().unwrap_or("INBOX");
    out.push_str(&format!(
        " * store message in folder: {}\n",
        one_line(folder)
    ));
    if store.create {
        out.push_str("        + create mailbox if it does not exist\n");
    }
    if let Some(flag) = &store.special_use {
        out.push_str(&format!(
            "        + special-use mailbox: {}\n",
            one_line(flag)
        ));
    }
    if !store.flags.is_empty() {
        out.push_str(&format!(
            "        + add IMAP flags: {}\n",
            flags_text(&store.flags)
        ));
    }
}

/// Flags as Pigeonhole prints them: the system flags first, lower-cased and sorted, then the
/// keywords in the script's order; space-separated.
fn flags_text(flags: &[String]) -> String {
    let mut system: Vec<String> = flags
        .iter()
        .filter(|f| f.starts_with('\\'))
        .map(|f| f.to_ascii_lowercase())
        .collect();
    system.sort();
    system.dedup();
    let keywords = flags.iter().filter(|f| !f.starts_with('\\')).cloned();
    system
        .into_iter()
        .chain(keywords)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A value on one output line: line breaks become spaces so one action stays one line.
fn one_line(text: &str) -> String {
    text.replace("\r\n", " ").replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(mailbox: Option<&str>, flags: &[&str]) -> Store {
        Store {
            mailbox: mailbox.map(str::to_string),
            flags: flags.iter().map(|f| f.to_string()).collect(),
            create: false,
            special_use: None,
            header: None,
            pos: None,
        }
    }

    #[test]
    fn pigeonhole_layout_implicit_keep_only() {
        let outcome = Outcome {
            actions: vec![Action::Keep {
                store: store(None, &[]),
                implicit: true,
            }],
            notes: vec![],
            tracked: Vec::new(),
        };
        assert_eq!(
            render(&outcome),
            "\nPerformed actions:\n\n  (none)\n\nImplicit keep:\n\n * store message in folder: INBOX\n\n"
        );
    }

    #[test]
    fn pigeonhole_layout_fileinto_create_and_flags() {
        let mut s = store(Some("Junk"), &["\\Seen", "Work", "\\Flagged"]);
        s.create = true;
        let outcome = Outcome {
            actions: vec![
                Action::FileInto(s),
                Action::Keep {
                    store: store(None, &[]),
                    implicit: false,
                },
            ],
            notes: vec![],
            tracked: Vec::new(),
        };
        assert_eq!(
            render(&outcome),
            "\nPerformed actions:\n\n * store message in folder: Junk\n        + create mailbox if it does not exist\n        + add IMAP flags: \\flagged \\seen Work\n * store message in folder: INBOX\n\nImplicit keep:\n\n  (none)\n\n"
        );
    }

    #[test]
    fn pigeonhole_layout_reject_and_discard() {
        let outcome = Outcome {
            actions: vec![Action::Reject {
                reason: "go\naway".into(),
                ereject: false,
            }],
            notes: vec![],
            tracked: Vec::new(),
        };
        assert!(render(&outcome).contains(" * reject message with reason: go away\n"));
        let outcome = Outcome {
            actions: vec![Action::Discard],
            notes: vec![],
            tracked: Vec::new(),
        };
        assert!(render(&outcome)
            .contains("Performed actions:\n\n * discard\n\nImplicit keep:\n\n  (none)\n"));
    }

    #[test]
    fn ereject_is_named_as_such() {
        let outcome = Outcome {
            actions: vec![Action::Reject {
                reason: "no".into(),
                ereject: true,
            }],
            notes: vec![],
            tracked: Vec::new(),
        };
        assert!(render(&outcome).contains(" * ereject message with reason: no\n"));
    }
}
