//! Quota warnings (`quota_warning`) and grace accounting: after a recipient's copy is
//! stored, its usage is compared with its warning thresholds; reaching a higher threshold
//! delivers one short notice into the user's INBOX, from the postmaster address, and usage
//! found below the last threshold re-arms it. The level last warned of is kept in the retry
//! journal and moved by one session only, so each crossing sends at most one notice, across
//! restarts too (none when the notice cannot be stored).

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use lmtpd_store::{Delivery, Envelope, MailStore, MemoryBody, Message, Quota, Target, Usage};

use crate::config::Config;
use crate::deliver::Job;
use crate::directory::Resolved;
use crate::metrics::PolicyEvent;

/// The built-in notice: a subject line, a blank line, the text. `%u` is the user, `%l` the
/// threshold reached, `%b`/`%q` the bytes used and allowed, `%m`/`%M` the messages stored
/// and allowed, `%%` a percent sign.
const BUILT_IN: &str = "Subject: Your mailbox is %l% full

Your mailbox %u has reached %l% of its quota:
%b of %q bytes, %m of %M messages.

When it is full, new mail is held back or returned to its senders. Please delete
messages you no longer need (and empty the Trash) to make room.
";

/// Counter for the notices' Message-IDs.
static SERIAL: AtomicU64 = AtomicU64::new(0);

/// How a warning looks and who sends it: fixed per configuration.
#[derive(Clone, Debug)]
pub struct Notice {
    template: String,
    from: String,
    hostname: String,
}

impl Notice {
    /// The notice of a configuration: its `quota_warning_template` (the built-in text when
    /// empty or unreadable, with a warning in the log), sent from `postmaster` (or
    /// `postmaster@` our host name).
    pub fn of(cfg: &Config) -> Notice {
        let path: &Path = &cfg.delivery.quota_warning_template;
        let template = if path.as_os_str().is_empty() {
            BUILT_IN.to_string()
        } else {
            match fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    log::warn!(
                        "quota_warning_template {}: {e}; using the built-in notice",
                        path.display()
                    );
                    BUILT_IN.to_string()
                }
            }
        };
        let hostname = cfg.delivery.hostname.clone();
        let from = match cfg.recipients.postmaster.as_str() {
            "" => format!("postmaster@{hostname}"),
            p if p.contains('@') => p.to_string(),
            p => format!("{p}@{hostname}"),
        };
        Notice {
            template,
            from,
            hostname,
        }
    }

    /// The whole notice (LF line ends) for `user` at `level` per cent.
    pub fn render(
        &self,
        user: &str,
        level: u8,
        usage: Usage,
        quota: &Quota,
        now: SystemTime,
    ) -> Vec<u8> {
        let limit = |l: Option<u64>| l.map_or_else(|| "unlimited".to_string(), |n| n.to_string());
        let text = expand(&self.template, |c| match c {
            'u' => Some(user.to_string()),
            'l' => Some(level.to_string()),
            'b' => Some(usage.bytes.to_string()),
            'q' => Some(limit(quota.bytes)),
            'm' => Some(usage.messages.to_string()),
            'M' => Some(limit(quota.messages)),
            _ => None,
        });
        let text = text.replace("\r\n", "\n");
        let (subject, body) = match text.strip_prefix("Subject:") {
            Some(rest) => match rest.split_once('\n') {
                Some((s, b)) => (s.trim().to_string(), b.trim_start_matches('\n')),
                None => (rest.trim().to_string(), ""),
            },
            None => (format!("Your mailbox is {level}% full"), text.as_str()),
        };
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let stamp = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut out = String::with_capacity(body.len() + 512);
        out.push_str(&format!("From: Mail Delivery System <{}>\n", self.from));
        out.push_str(&format!("To: <{user}>\n"));
        out.push_str(&format!(
            "Subject: {}\n",
            crate::sieve::vacation::encode_words(&subject)
        ));
        out.push_str(&format!("Date: {}\n", lmtpd_store::date::rfc5322(now)));
        out.push_str(&format!(
            "Message-ID: <quota.{stamp}.{}.{serial}@{}>\n",
            std::process::id(),
            self.hostname
        ));
        out.push_str("Auto-Submitted: auto-generated (quota warning)\n");
        out.push_str("MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n");
        out.push_str("Content-Transfer-Encoding: 8bit\n\n");
        out.push_str(body);
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.into_bytes()
    }
}

/// `template` with each `%c` replaced by `value(c)` (`%%` is `%`; an unknown `%c` stays).
fn expand(template: &str, value: impl Fn(char) -> Option<String>) -> String {
    let done = lmtpd_store::template::substitute(template, |c, out| {
        match c {
            Some(c) => match value(c) {
                Some(v) => out.push_str(&v),
                None => {
                    out.push('%');
                    out.push(c);
                }
            },
            None => out.push('%'),
        }
        Ok::<(), std::convert::Infallible>(())
    });
    match done {
        Ok(text) => text,
        Err(never) => match never {},
    }
}

/// The warning level usage has reached: the higher of the byte and the message levels.
pub fn level(r: &Resolved, usage: Usage) -> u8 {
    let w = &r.policy.warnings;
    w.level(usage.bytes, r.rcpt.quota.bytes)
        .max(w.level(usage.messages, r.rcpt.quota.messages))
}

/// After `r`'s copy is durable in `store`: logs and counts a copy that used the grace, and
/// sends a warning when usage reached a higher threshold than last time (or re-arms when
/// it fell below). Never changes a reply (they are out).
pub fn after_delivery(job: &Job<'_>, r: &Resolved, store: &dyn MailStore) {
    let quota = &r.rcpt.quota;
    let grace = quota.bytes.is_some() && quota.grace > 0;
    let warns = !r.policy.warnings.0.is_empty() && quota.is_limited();
    if !grace && !warns {
        return;
    }
    let usage = match store.usage(&r.rcpt) {
        Ok(Some(u)) => u,
        Ok(None) => return,
        Err(e) => {
            log::debug!("conn={} usage of {}: {e}", job.conn, r.rcpt.user);
            return;
        }
    };
    if let Some(limit) = quota.bytes.filter(|l| usage.bytes > *l) {
        log::info!(
            "conn={} id={} user={} stored inside the quota grace: {} of {limit} bytes (+{} grace)",
            job.conn,
            job.env.id,
            r.rcpt.user,
            usage.bytes,
            quota.grace
        );
        crate::metrics::get().policy(PolicyEvent::GraceUsed);
    }
    let (Some(journal), Some(notice), true) = (job.rules.journal, job.rules.warning, warns) else {
        return;
    };
    let now_level = level(r, usage);
    let last = match journal.warned(&r.rcpt.user) {
        Ok(l) => l,
        Err(e) => {
            log::warn!("retry journal: warning level of {}: {e}", r.rcpt.user);
            return;
        }
    };
    if now_level == last {
        return;
    }
    // Remembered first, and only by one session: a crash after this, or a concurrent
    // delivery that saw the same crossing, sends no second notice for it.
    match journal.set_warned(&r.rcpt.user, last, now_level) {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            log::warn!(
                "retry journal: cannot remember the warning level of {}: {e}",
                r.rcpt.user
            );
            return;
        }
    }

    if now_level < last {
        log::info!(
            "conn={} user={} quota usage below {last}% again: warning re-armed",
            job.conn,
            r.rcpt.user
        );
        return;
    }
    send(job, r, store, notice, now_level, usage);
}

/// Delivers the notice into `r`'s INBOX through its own store, with no quota (a full
/// mailbox must still get it), from the null sender.
fn send(
    job: &Job<'_>,
    r: &Resolved,
    store: &dyn MailStore,
    notice: &Notice,
    level: u8,
    usage: Usage,
) {
    let now = SystemTime::now();
    let body = MemoryBody(notice.render(&r.rcpt.user, level, usage, &r.rcpt.quota, now));
    let env = Envelope {
        sender: None,
        lhlo: notice.hostname.clone(),
        peer: None,
        smtputf8: false,
        eight_bit: true,
        id: format!("{}-quota", job.env.id),
    };
    let mut rcpt = r.rcpt.clone();
    rcpt.quota = Quota::default();
    rcpt.detail = None;
    rcpt.orcpt = None;
    let trace = crate::trace::headers(&env, &rcpt, &notice.hostname, now);
    let outcome = lmtpd_store::deliver_one(
        store,
        Message::new(&env, &body),
        Delivery::new(&rcpt, trace, vec![Target::inbox()]),
    );
    match outcome {
        Ok(()) => {
            log::info!(
                "conn={} id={} user={} quota warning sent: {level}% reached ({} bytes, {} messages)",
                job.conn,
                env.id,
                r.rcpt.user,
                usage.bytes,
                usage.messages
            );
            crate::metrics::get().policy(PolicyEvent::WarningSent);
        }
        Err(e) => log::warn!(
            "conn={} user={} quota warning not stored: {e}",
            job.conn,
            r.rcpt.user
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn the_template_gets_the_figures_and_its_subject_line() {
        let mut cfg = Config::default();
        cfg.delivery.hostname = "mx.example".into();
        let n = Notice::of(&cfg);
        let q = Quota {
            bytes: Some(1000),
            ..Quota::default()
        };
        let usage = Usage {
            bytes: 850,
            messages: 3,
        };
        let text = String::from_utf8(n.render("a@x", 80, usage, &q, SystemTime::now())).unwrap();
        assert!(
            text.starts_with("From: Mail Delivery System <postmaster@mx.example>\n"),
            "{text}"
        );
        assert!(
            text.contains("\nSubject: Your mailbox is 80% full\n"),
            "{text}"
        );
        assert!(
            text.contains("\nAuto-Submitted: auto-generated (quota warning)\n"),
            "{text}"
        );
        assert!(
            text.contains("850 of 1000 bytes, 3 of unlimited messages"),
            "{text}"
        );
        assert_eq!(
            expand("100%% %z %u", |c| (c == 'u').then(|| "me".into())),
            "100% %z me"
        );
    }
}
