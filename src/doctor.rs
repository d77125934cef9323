//! `lmtpd -t` beyond syntax: checks that the configured paths are usable before a
//! misconfiguration bounces or defers mail, and reports the SQLite schema state.

use std::fs::{self, OpenOptions};
use std::path::Path;

use crate::config::{Config, Listen, StoreKind};
use crate::deliver::uses;
use crate::directory::Directory;

/// A finding of the doctor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Informational (printed, exit status unaffected).
    Note(String),
    /// A problem: `lmtpd -t` exits non-zero.
    Problem(String),
}

/// Runs every check and returns the findings in a stable order.
pub fn check(cfg: &Config, directory: &Directory) -> Vec<Finding> {
    let mut out = Vec::new();
    check_dir_writable("spool_dir", &cfg.delivery.spool_dir, &mut out);
    for l in &cfg.listeners.listen {
        if let Listen::Unix(p) = l {
            let parent = p.parent().filter(|d| !d.as_os_str().is_empty());
            if let Some(parent) = parent {
                if !parent.is_dir() {
                    out.push(Finding::Problem(format!(
                        "listen {l}: directory {} does not exist",
                        parent.display()
                    )));
                }
            }
        }
    }
    postfix_chroot(cfg, Path::new("/etc/postfix/master.cf"), &mut out);
    // The server raises its soft limit toward the hard one at start; warn when even that
    // is not enough for `workers` sessions.
    if let Some(w) = crate::server::limits::check(cfg.process.workers) {
        out.push(Finding::Note(w));
    }
    check_sieve(cfg, &mut out);
    check_accounts(cfg, &mut out);
    if directory.is_empty() && !cfg.accounts.passwd {
        out.push(Finding::Note(format!(
            "{}: no users: every RCPT will get 550 5.1.1",
            cfg.recipients.users.display()
        )));
    }
    if uses(cfg, directory, StoreKind::Maildir) {
        let mc = lmtpd_maildir::MaildirConfig {
            template: cfg.maildir.template.clone(),
            hostname: cfg.delivery.hostname.clone(),
            quota_permfail: cfg.delivery.quota_permfail,
        };
        if let Err(e) = mc.validate() {
            out.push(Finding::Problem(format!("maildir: {e}")));
        }
        check_template_base(cfg, "maildir", &cfg.maildir.template, &mut out);
    }
    if uses(cfg, directory, StoreKind::Mbox) {
        check_template_base(cfg, "mbox", &cfg.mbox.template, &mut out);
    }
    if uses(cfg, directory, StoreKind::Sqlite) {
        sqlite_status(cfg, &mut out);
    }
    if uses(cfg, directory, StoreKind::Postgres) {
        postgres_status(cfg, &mut out);
    }
    out
}

/// Connectivity, schema state and the durability settings of the PostgreSQL store.
#[cfg(feature = "postgres")]
fn postgres_status(cfg: &Config, out: &mut Vec<Finding>) {
    if cfg.postgres.conninfo.is_empty() {
        out.push(Finding::Problem(
            "postgres: store postgres is used but no postgres connection string is set".into(),
        ));
        return;
    }
    match lmtpd_postgres::schema_status(&cfg.postgres.conninfo) {
        Ok(s) if s.fsync == "off" => out.push(Finding::Problem(format!(
            "postgres: {s}: the server runs with fsync = off; lmtpd refuses it"
        ))),
        Ok(s) if s.version > s.known => out.push(Finding::Problem(format!(
            "postgres: {s}: the database is newer than this lmtpd"
        ))),
        Ok(s) if s.synchronous_commit == "off" => out.push(Finding::Note(format!(
            "postgres: {s}: warning: synchronous_commit = off can lose deliveries answered 250"
        ))),
        Ok(s) => out.push(Finding::Note(format!("postgres: {s}"))),
        Err(e) => out.push(Finding::Problem(format!("postgres: {e}"))),
    }
}

#[cfg(not(feature = "postgres"))]
fn postgres_status(_cfg: &Config, out: &mut Vec<Finding>) {
    out.push(Finding::Problem(
        "store postgres is used but this lmtpd was built without PostgreSQL support".into(),
    ));
}

#[cfg(feature = "sqlite")]
fn sqlite_status(cfg: &Config, out: &mut Vec<Finding>) {
    if !cfg.sqlite.path.exists() {
        match cfg
            .sqlite
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            Some(dir) if !dir.is_dir() => out.push(Finding::Problem(format!(
                "sqlite: directory {} does not exist",
                dir.display()
            ))),
            _ => out.push(Finding::Note(format!(
                "sqlite: {} will be created at start-up",
                cfg.sqlite.path.display()
            ))),
        }
        return;
    }
    match lmtpd_sqlite::schema_status(&cfg.sqlite.path) {
        Ok(s) => out.push(Finding::Note(format!(
            "sqlite: {}: {s}",
            cfg.sqlite.path.display()
        ))),
        Err(e) => out.push(Finding::Problem(format!(
            "sqlite: {}: {e}",
            cfg.sqlite.path.display()
        ))),
    }
}

#[cfg(not(feature = "sqlite"))]
fn sqlite_status(_cfg: &Config, out: &mut Vec<Finding>) {
    out.push(Finding::Problem(
        "store sqlite is used but this lmtpd was built without SQLite support".into(),
    ));
}

/// When Postfix's `lmtp` service runs chrooted (master.cf column 5 is `y`), a Unix socket
/// outside its queue directory cannot be reached: `lmtp:unix:private/lmtpd` means
/// `/var/spool/postfix/private/lmtpd`.
fn postfix_chroot(cfg: &Config, master_cf: &Path, out: &mut Vec<Finding>) {
    let Ok(text) = fs::read_to_string(master_cf) else {
        return;
    };
    let chrooted = text.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() >= 8 && f[0] == "lmtp" && f[1] == "unix" && f[4] == "y"
    });
    if !chrooted {
        return;
    }
    for l in &cfg.listeners.listen {
        if let Listen::Unix(p) = l {
            if !p.starts_with("/var/spool/postfix/") {
                out.push(Finding::Note(format!(
                    "warning: Postfix's lmtp client runs chrooted ({}): it cannot reach {}; \
                     listen on unix:/var/spool/postfix/private/lmtpd and use \
                     lmtp:unix:private/lmtpd",
                    master_cf.display(),
                    p.display()
                )));
            }
        }
    }
}

/// The fixed leading part of a mailbox template (before the first `%`) must lead to an
/// existing directory that the run user can write to, or mail will fail with 451 4.3.0.
fn check_template_base(cfg: &Config, key: &str, template: &str, out: &mut Vec<Finding>) {
    let fixed = template.split('%').next().unwrap_or_default();
    let base: std::path::PathBuf = if fixed.ends_with('/') {
        Path::new(fixed).components().collect()
    } else {
        Path::new(fixed)
            .parent()
            .unwrap_or(Path::new(""))
            .components()
            .collect()
    };
    let base = base.as_path();
    let mut existing = base;
    while !existing.as_os_str().is_empty() && !existing.exists() {
        existing = existing.parent().unwrap_or(Path::new(""));
    }
    if existing.as_os_str().is_empty() {
        existing = Path::new(".");
    }
    if !existing.is_dir() {
        out.push(Finding::Problem(format!(
            "{key}: {} is not a directory",
            existing.display()
        )));
        return;
    }
    if let Some(problem) = not_writable_by_run_user(cfg, existing) {
        out.push(Finding::Problem(format!("{key}: {problem}")));
    }
    if base != existing {
        out.push(Finding::Note(format!(
            "{key}: {} does not exist yet; it will be created under {}",
            base.display(),
            existing.display()
        )));
    }
}

/// When a run `user` is configured, checks the directory's owner and mode bits for it.
fn not_writable_by_run_user(cfg: &Config, dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if cfg.process.user.is_empty() {
        return None;
    }
    let account = match crate::sys::lookup_user(&cfg.process.user) {
        Ok(Some(a)) => a,
        _ => return Some(format!("user '{}' does not exist", cfg.process.user)),
    };
    let gid = if cfg.process.group.is_empty() {
        account.gid
    } else {
        crate::sys::lookup_group(&cfg.process.group)
            .ok()
            .flatten()?
    };
    let meta = fs::metadata(dir).ok()?;
    let mode = meta.mode();
    let ok = account.uid == 0
        || (meta.uid() == account.uid && mode & 0o300 == 0o300)
        || (meta.gid() == gid && mode & 0o030 == 0o030)
        || mode & 0o003 == 0o003;
    (!ok).then(|| {
        format!(
            "{} is not writable by user {} (owner uid {}, gid {}, mode {:04o})",
            dir.display(),
            account.name,
            meta.uid(),
            meta.gid(),
            mode & 0o7777
        )
    })
}

fn check_dir_writable(key: &str, dir: &Path, out: &mut Vec<Finding>) {
    if !dir.is_dir() {
        if dir.parent().is_some_and(Path::is_dir) {
            out.push(Finding::Note(format!(
                "{key}: {} will be created at start-up",
                dir.display()
            )));
        } else {
            out.push(Finding::Problem(format!(
                "{key}: {} does not exist",
                dir.display()
            )));
        }
        return;
    }
    let probe = dir.join(format!(".lmtpd-doctor.{}", std::process::id()));
    match OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = fs::remove_file(&probe);
        }
        Err(e) => out.push(Finding::Problem(format!(
            "{key}: cannot create files in {}: {e}",
            dir.display()
        ))),
    }
}

/// Compiles every global Sieve script (`sieve_before`, `sieve_after` and the scripts in
/// `sieve_global_dir`): one that is missing or does not compile is a problem, reported with
/// its line and column.
fn check_sieve(cfg: &Config, out: &mut Vec<Finding>) {
    use crate::scripts::{Found, ScriptCache};
    let cache = ScriptCache::new(cfg.sieve.limits());
    let lists = [
        ("sieve_before", &cfg.sieve.before),
        ("sieve_after", &cfg.sieve.after),
    ];
    for (key, list) in lists {
        for entry in list {
            if !entry.exists() {
                out.push(Finding::Problem(format!(
                    "{key} {}: no such file",
                    entry.display()
                )));
                continue;
            }
            for file in ScriptCache::expand_global(entry) {
                match cache.global(&file) {
                    Found::Script(..) => {}
                    Found::Missing => out.push(Finding::Problem(format!(
                        "{key} {}: no such file",
                        file.display()
                    ))),
                    Found::Failed(path, err) => {
                        out.push(Finding::Problem(format!("{key} {}: {err}", path.display())))
                    }
                }
            }
        }
    }
    if cfg.sieve.global_dir.is_dir() {
        for file in ScriptCache::expand_global(&cfg.sieve.global_dir) {
            if let Found::Failed(path, err) = cache.global(&file) {
                out.push(Finding::Problem(format!(
                    "sieve_global_dir {}: {err}",
                    path.display()
                )));
            }
        }
    }
    if crate::policy::configured(cfg) {
        check_sending(cfg, out);
    }
}

/// The submission program and the tracking directory, when scripts can run: a missing
/// `sendmail` makes every redirect fall back to INBOX and every vacation reply fail, which
/// an admin wants to hear before the first one.
fn check_sending(cfg: &Config, out: &mut Vec<Finding>) {
    use std::os::unix::fs::PermissionsExt;
    // Notes, not problems: without them mail is still delivered (a redirect falls back to
    // INBOX, no vacation reply is sent), and a host without an MTA may not use either.
    let program = &cfg.sieve.sendmail;
    match std::fs::metadata(program) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {}
        Ok(_) => out.push(Finding::Note(format!(
            "sendmail {}: not an executable file: Sieve redirects will be kept in INBOX and vacation replies not sent",
            program.display()
        ))),
        Err(e) => out.push(Finding::Note(format!(
            "sendmail {}: {e}: Sieve redirects will be kept in INBOX and vacation replies not sent",
            program.display()
        ))),
    }
    let dir = &cfg.sieve.state_dir;
    if !dir.is_dir() {
        out.push(Finding::Note(format!(
            "sieve_state_dir: {} will be created by the first vacation or duplicate",
            dir.display()
        )));
    } else {
        check_dir_writable("sieve_state_dir", dir, out);
    }
}

/// `accounts = passwd`: lmtpd must start as root, and the directory of `account_mbox` must
/// let the delivery (as the account, with `account_mail_group`) create the mbox and the
/// dotlock beside it.
fn check_accounts(cfg: &Config, out: &mut Vec<Finding>) {
    use std::os::unix::fs::MetadataExt;
    let a = &cfg.accounts;
    if !a.passwd {
        return;
    }
    if crate::sys::euid() != 0 {
        out.push(Finding::Note(
            "accounts = passwd: lmtpd must be started as root (it drops root after starting \
             the account helper)"
                .into(),
        ));
    }
    if let Some(rules) = crate::directory::AccountRules::of(cfg) {
        out.push(Finding::Note(format!(
            "accounts: local parts in {} are Unix accounts with uid {} .. {}{}; store {}",
            rules.local_domains.join(", "),
            rules.min_uid,
            rules.max_uid,
            if rules.allow.is_empty() {
                String::new()
            } else {
                format!(" (and {})", rules.allow.join(", "))
            },
            rules.store.name()
        )));
    }
    if a.mbox.starts_with('~') {
        return;
    }
    let Some(dir) = Path::new(&a.mbox).parent() else {
        return;
    };
    let meta = match fs::metadata(dir) {
        Ok(m) => m,
        Err(e) => {
            out.push(Finding::Problem(format!(
                "account_mbox: {}: {e}",
                dir.display()
            )));
            return;
        }
    };
    let mode = meta.mode() & 0o7777;
    let group = if a.mail_group.is_empty() {
        None
    } else {
        crate::sys::lookup_group(&a.mail_group).ok().flatten()
    };
    let world_sticky = mode & 0o1002 == 0o1002;
    let group_writable = group == Some(meta.gid()) && mode & 0o020 != 0;
    out.push(Finding::Note(format!(
        "account_mbox: {} is uid {} gid {} mode {mode:04o}",
        dir.display(),
        meta.uid(),
        meta.gid()
    )));
    if !(world_sticky || group_writable) {
        let need = if cfg.mbox.locks.contains(&lmtpd_mbox::LockKind::Dotlock) {
            "new mboxes and their dotlocks"
        } else {
            "new mboxes"
        };
        out.push(Finding::Problem(format!(
            "account_mbox: {need} cannot be created in {} as the account: make it group-writable \
             by account_mail_group ({}) as Debian does (root:mail 2775), or sticky and \
             world-writable as FreeBSD does (1777)",
            dir.display(),
            if a.mail_group.is_empty() {
                "empty"
            } else {
                &a.mail_group
            }
        )));
    }
}

/// `lmtpd -t -a ADDRESS`: how one address resolves, one `key: value` line each; `Err` with
/// the reply it would get when it is refused.
pub fn explain(cfg: &Config, directory: &Directory, address: &str) -> Result<Vec<String>, String> {
    let mailbox = match address.rsplit_once('@') {
        Some((l, d)) => crate::proto::Mailbox {
            local: l.into(),
            domain: Some(d.into()),
        },
        None => crate::proto::Mailbox {
            local: address.into(),
            domain: None,
        },
    };
    let r = directory.resolve(&mailbox).map_err(|e| {
        format!(
            "{address}: refused: {} {} {}{}",
            e.code,
            e.enhanced,
            e.text,
            e.source.map(|s| format!(" ({s})")).unwrap_or_default()
        )
    })?;
    let mut lines = vec![format!("address: {}", r.rcpt.address)];
    let quota = |q: lmtpd_store::Quota| {
        format!(
            "{} bytes, {} messages",
            q.bytes.map_or("unlimited".into(), |b| b.to_string()),
            q.messages.map_or("unlimited".into(), |m| m.to_string())
        )
    };
    if let Some(acct) = &r.account {
        lines.push(format!(
            "account: {} (uid {}, gid {}, home {})",
            acct.name,
            acct.uid,
            acct.gid,
            acct.home.display()
        ));
        lines.push(format!(
            "store: {} (written as {} by the account helper)",
            r.store.name(),
            acct.name
        ));
        let template = if r.store == StoreKind::Maildir {
            &cfg.accounts.maildir
        } else {
            &cfg.accounts.mbox
        };
        let sys_account = crate::sys::Account {
            name: acct.name.clone(),
            uid: acct.uid,
            gid: acct.gid,
            home: acct.home.clone(),
        };
        match crate::helper::server::account_path(template, &sys_account, &r.rcpt.domain) {
            Ok(p) => {
                lines.push(format!("path: {}", p.display()));
                if let Err(why) = crate::helper::server::check_ownership(
                    &p,
                    &sys_account,
                    template.starts_with('~'),
                ) {
                    lines.push(format!("refused at delivery (550 5.2.0): {why}"));
                }
            }
            Err(e) => lines.push(format!("path: cannot be computed: {e}")),
        }
        let sieve = if r.sieve == crate::directory::UserSieve::Off {
            "none (sieve=none in the users file)".to_string()
        } else if cfg.accounts.sieve.is_empty() {
            "none (account_sieve is empty)".to_string()
        } else {
            match crate::helper::server::account_path(
                &cfg.accounts.sieve,
                &sys_account,
                &r.rcpt.domain,
            ) {
                Ok(p) => format!(
                    "{} (read as {} by the account helper)",
                    p.display(),
                    acct.name
                ),
                Err(e) => format!("cannot be computed: {e}"),
            }
        };
        lines.push(format!("sieve: {sieve}"));
    } else {
        lines.push(format!("user: {}", r.rcpt.user));
        lines.push(format!("store: {}", r.store.name()));
        let path = match r.store {
            StoreKind::Maildir => {
                lmtpd_store::template::expand(&cfg.maildir.template, "maildir", &r.rcpt)
                    .map(|p| p.display().to_string())
            }
            StoreKind::Mbox => lmtpd_store::template::expand(&cfg.mbox.template, "mbox", &r.rcpt)
                .map(|p| p.display().to_string()),
            StoreKind::Sqlite => Ok(format!("{} (database)", cfg.sqlite.path.display())),
            StoreKind::Postgres => Ok("PostgreSQL (postgres = ...)".into()),
        };
        lines.push(format!(
            "path: {}",
            path.unwrap_or_else(|e| format!("cannot be computed: {e}"))
        ));
    }
    if let Some(d) = &r.rcpt.detail {
        lines.push(format!("detail: {d}"));
    }
    lines.push(format!("quota: {}", quota(r.rcpt.quota)));
    lines.push(format!(
        "quota policy: quota_full = {}, grace {} bytes, warnings {}",
        if r.policy.permfail {
            "permfail"
        } else {
            "tempfail"
        },
        r.rcpt.quota.grace,
        r.policy.warnings.show()
    ));
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_spool_dir_parent_is_a_problem() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut cfg = Config::default();
        cfg.delivery.spool_dir = tmp.path().join("no/such/dir");
        cfg.maildir.template = format!("{}/mail/%d/%n", tmp.path().display());
        let d = Directory::parse("a@b\n", "u", &cfg).expect("users");
        let f = check(&cfg, &d);
        assert!(
            f.iter()
                .any(|x| matches!(x, Finding::Problem(p) if p.starts_with("spool_dir"))),
            "{f:?}"
        );
    }

    #[test]
    fn good_config_has_no_problems() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut cfg = Config::default();
        cfg.delivery.spool_dir = tmp.path().to_path_buf();
        cfg.maildir.template = format!("{}/mail/%d/%n", tmp.path().display());
        cfg.listeners.listen = vec![Listen::Unix(tmp.path().join("s.sock"))];
        let d = Directory::parse("a@b\n", "u", &cfg).expect("users");
        let f = check(&cfg, &d);
        assert!(!f.iter().any(|x| matches!(x, Finding::Problem(_))), "{f:?}");
    }

    #[test]
    fn socket_outside_a_chrooted_postfix_is_flagged() {
        let tmp = tempfile::tempdir().expect("tmp");
        let master = tmp.path().join("master.cf");
        fs::write(
            &master,
            "smtp inet n - y - - smtpd\nlmtp unix - - y - - lmtp\n",
        )
        .expect("w");
        let mut cfg = Config::default();
        cfg.listeners.listen = vec![Listen::Unix("/run/lmtpd/lmtp.sock".into())];
        let mut out = Vec::new();
        postfix_chroot(&cfg, &master, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        cfg.listeners.listen = vec![Listen::Unix("/var/spool/postfix/private/lmtpd".into())];
        out.clear();
        postfix_chroot(&cfg, &master, &mut out);
        assert!(out.is_empty());
        fs::write(&master, "lmtp unix - - n - - lmtp\n").expect("w");
        cfg.listeners.listen = vec![Listen::Unix("/run/x.sock".into())];
        postfix_chroot(&cfg, &master, &mut out);
        assert!(out.is_empty(), "not chrooted: no warning");
    }

    #[test]
    fn directory_not_writable_by_the_run_user_is_a_problem() {
        let tmp = tempfile::tempdir().expect("tmp");
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        // "nobody" exists on Debian and the BSDs; the temp dir is owned by the test user.
        let mut cfg = Config::default();
        cfg.process.user = "nobody".into();
        let able =
            crate::sys::lookup_user("nobody").ok().flatten().is_some() && crate::sys::euid() == 0;
        // Root and a user `nobody` (CI has both): without them this fails, unless
        // LMTPD_TEST_SKIP=root outside CI.
        if !lmtpd_store::testing::require("root", able) {
            return;
        }
        assert!(not_writable_by_run_user(&cfg, tmp.path()).is_some());
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(not_writable_by_run_user(&cfg, tmp.path()).is_none());
    }

    #[test]
    fn template_base_that_is_a_file_is_a_problem() {
        let tmp = tempfile::tempdir().expect("tmp");
        fs::write(tmp.path().join("file"), b"x").expect("w");
        let mut out = Vec::new();
        check_template_base(
            &Config::default(),
            "maildir",
            &format!("{}/file/%d/%n", tmp.path().display()),
            &mut out,
        );
        assert!(matches!(&out[..], [Finding::Problem(_)]), "{out:?}");
    }
}
