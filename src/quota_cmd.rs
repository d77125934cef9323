//! `lmtpd quota show ADDRESS` and `lmtpd quota recalc ADDRESS`: an address resolved as the
//! server resolves it at RCPT (as `lmtpd -t -a` shows), the store it routes to opened as the
//! server opens it, and that recipient's quota limits and usage ([`MailStore::usage`]), or
//! its usage recounted from the messages ([`MailStore::recalc`]), before and after.

use lmtpd_store::open::OpenError;
use lmtpd_store::{DeliveryError, ErrorKind, MailStore, Quota, Usage};

use crate::config::Config;
use crate::deliver::Stores;
use crate::directory::Directory;
use crate::proto::Mailbox;

/// What to do with the recipient's usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Print the limits and the store's current (cheap) usage.
    Show,
    /// Recount the usage from the messages, rewrite the store's counters, print both.
    Recalc,
}

impl Action {
    /// Parses the subcommand word: `show` or `recalc`.
    pub fn parse(word: &str) -> Option<Action> {
        match word {
            "show" => Some(Action::Show),
            "recalc" => Some(Action::Recalc),
            _ => None,
        }
    }
}

/// Why a quota command failed; `main` turns each into its exit status.
#[derive(Debug)]
pub enum QuotaError {
    /// The address is refused (unknown user, bad address): the reply it would get.
    NoUser(String),
    /// A store could not be opened.
    Open(OpenError),
    /// The recipient's store failed (temporary or permanent, as its reply says).
    Store(DeliveryError),
    /// The recipient routes to a store that is not open, or the store cannot recount.
    Unsupported(String),
}

impl QuotaError {
    /// True when trying again later may succeed (a busy mailbox, a lock, a pool).
    pub fn is_temporary(&self) -> bool {
        matches!(self, QuotaError::Store(e) if e.kind == ErrorKind::Temporary)
    }
}

impl std::fmt::Display for QuotaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QuotaError::NoUser(why) | QuotaError::Unsupported(why) => f.write_str(why),
            QuotaError::Open(e) => write!(f, "cannot open the store: {e}"),
            // An admin's tool: the logged cause (paths included) is what helps here.
            QuotaError::Store(e) => write!(f, "store error: {e}"),
        }
    }
}

/// `limits: ...`: the byte and message limits and the grace.
fn limits_line(q: &Quota) -> String {
    let or_unlimited =
        |v: Option<u64>| v.map_or_else(|| "unlimited".to_string(), |n| n.to_string());
    format!(
        "limits: {} bytes, {} messages, grace {} bytes",
        or_unlimited(q.bytes),
        or_unlimited(q.messages),
        q.grace
    )
}

/// `used` as a share of `limit`, one decimal (`None`: no limit). A limit of 0 is full.
fn percent(used: u64, limit: Option<u64>) -> Option<String> {
    let limit = limit?;
    if limit == 0 {
        return Some("100.0%".into());
    }
    // Tenths of a percent in integers: exact for any u64 (u128 cannot overflow here).
    let tenths = u128::from(used) * 1000 / u128::from(limit);
    Some(format!("{}.{}%", tenths / 10, tenths % 10))
}

/// `<label>: N bytes (P%), M messages (Q%)`, or `unknown` with the reason.
fn usage_line(label: &str, usage: Option<Usage>, q: &Quota) -> String {
    let Some(u) = usage else {
        return format!("{label}: unknown (this store cannot tell)");
    };
    let with = |n: u64, what: &str, limit: Option<u64>| match percent(n, limit) {
        Some(p) => format!("{n} {what} ({p})"),
        None => format!("{n} {what}"),
    };
    format!(
        "{label}: {}, {}",
        with(u.bytes, "bytes", q.bytes),
        with(u.messages, "messages", q.messages)
    )
}

/// Resolves `address` in `directory`, opens the configured stores as the server does and
/// returns the lines to print: address, user, store, limits, and the usage (`Show`) or the
/// usage before and after recounting (`Recalc`).
pub fn run(
    cfg: &Config,
    directory: &Directory,
    action: Action,
    address: &str,
) -> Result<Vec<String>, QuotaError> {
    let mailbox = match address.rsplit_once('@') {
        Some((local, domain)) => Mailbox {
            local: local.into(),
            domain: Some(domain.into()),
        },
        None => Mailbox {
            local: address.into(),
            domain: None,
        },
    };
    let r = directory.resolve(&mailbox).map_err(|e| {
        QuotaError::NoUser(format!(
            "{address}: refused: {} {} {}",
            e.code, e.enhanced, e.text
        ))
    })?;
    let stores = Stores::open(cfg, directory, None).map_err(QuotaError::Open)?;
    let store: &dyn MailStore = stores.route(&r).ok_or_else(|| {
        QuotaError::Unsupported(format!(
            "{address}: routed to store {}, which is not open",
            r.store.name()
        ))
    })?;
    let q = &r.rcpt.quota;
    let mut lines = vec![
        format!("address: {}", r.rcpt.address),
        format!("user: {}", r.rcpt.user),
        format!("store: {}", store.name()),
        limits_line(q),
    ];
    let before = store.usage(&r.rcpt).map_err(QuotaError::Store)?;
    match action {
        Action::Show => lines.push(usage_line("usage", before, q)),
        Action::Recalc => {
            let after = store.recalc(&r.rcpt).map_err(QuotaError::Store)?;
            if after.is_none() {
                return Err(QuotaError::Unsupported(format!(
                    "{address}: store {} cannot recount a mailbox",
                    store.name()
                )));
            }
            lines.push(usage_line("before", before, q));
            lines.push(usage_line("after", after, q));
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_have_one_decimal_and_need_a_limit() {
        assert_eq!(percent(1, Some(3)).as_deref(), Some("33.3%"));
        assert_eq!(percent(3, Some(2)).as_deref(), Some("150.0%"));
        assert_eq!(percent(0, Some(0)).as_deref(), Some("100.0%"));
        assert_eq!(
            percent(u64::MAX, Some(1)).as_deref(),
            Some("1844674407370955161500.0%")
        );
        assert_eq!(percent(5, None), None);
    }

    #[test]
    fn lines_name_limits_grace_and_usage() {
        let q = Quota {
            bytes: Some(2000),
            messages: None,
            grace: 100,
        };
        assert_eq!(
            limits_line(&q),
            "limits: 2000 bytes, unlimited messages, grace 100 bytes"
        );
        let u = Usage {
            bytes: 500,
            messages: 4,
        };
        assert_eq!(
            usage_line("usage", Some(u), &q),
            "usage: 500 bytes (25.0%), 4 messages"
        );
        assert_eq!(
            usage_line("before", None, &q),
            "before: unknown (this store cannot tell)"
        );
    }

    fn maildir_setup(users: &str) -> (tempfile::TempDir, Config, Directory) {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut cfg = Config::default();
        cfg.maildir.template = format!("{}/mail/%d/%n", tmp.path().display());
        cfg.delivery.spool_dir = tmp.path().to_path_buf();
        let d = Directory::parse(users, "users", &cfg).expect("users");
        (tmp, cfg, d)
    }

    #[test]
    fn show_and_recalc_report_a_maildir_user_and_refuse_an_unknown_one() {
        let (tmp, cfg, d) = maildir_setup("a@example.org quota=1K quota_messages=10\n");
        let new = tmp.path().join("mail/example.org/a/new");
        std::fs::create_dir_all(&new).expect("mkdir");
        for d in ["cur", "tmp"] {
            std::fs::create_dir_all(tmp.path().join("mail/example.org/a").join(d)).expect("mkdir");
        }
        std::fs::write(new.join("1.m,S=100"), [b'x'; 100]).expect("write");
        let lines = run(&cfg, &d, Action::Show, "a+tag@example.org").expect("show");
        assert_eq!(
            lines,
            [
                "address: a+tag@example.org",
                "user: a@example.org",
                "store: maildir",
                "limits: 1024 bytes, 10 messages, grace 0 bytes",
                "usage: 100 bytes (9.7%), 1 messages (10.0%)",
            ]
        );
        std::fs::write(new.join("2.m,S=412"), [b'y'; 412]).expect("write");
        let lines = run(&cfg, &d, Action::Recalc, "a@example.org").expect("recalc");
        assert_eq!(
            lines[4..],
            [
                "before: 100 bytes (9.7%), 1 messages (10.0%)",
                "after: 512 bytes (50.0%), 2 messages (20.0%)",
            ]
        );
        let err = run(&cfg, &d, Action::Show, "nobody@example.org").expect_err("unknown");
        assert!(
            matches!(&err, QuotaError::NoUser(t) if t.contains("550 5.1.1")),
            "{err}"
        );
        assert!(!err.is_temporary());
    }
}
