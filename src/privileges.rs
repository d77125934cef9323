//! Started as root, lmtpd binds its listeners and then becomes the configured `user` and
//! `group` for good (supplementary groups, gid, uid; verified). It refuses to keep running
//! as root unless `allow_root = yes`.

use std::os::unix::fs::MetadataExt;

use crate::config::Config;
use crate::sys;

/// Why lmtpd cannot drop root as configured. Every kind is a configuration problem for the
/// admin to fix (`main` exits `EX_CONFIG`); the text says which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivilegeError {
    /// Started as root without `user` (and without `allow_root = yes`).
    NoUser,
    /// `user` names root (uid 0) without `allow_root = yes`.
    UserIsRoot(String),
    /// `user` does not exist.
    UnknownUser(String),
    /// `group` does not exist.
    UnknownGroup(String),
    /// Looking the user or group up failed (`what` names which).
    Lookup {
        /// `user NAME` or `group NAME`.
        what: String,
        /// The system's reason.
        reason: String,
    },
    /// setgroups/setgid/setuid failed or did not stick.
    Switch {
        /// `user:gid`.
        to: String,
        /// The system's reason.
        reason: String,
    },
}

impl std::fmt::Display for PrivilegeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PrivilegeError::NoUser => f.write_str(
                "started as root without 'user': set user = <the owner of the mailboxes> \
                 (or allow_root = yes, not recommended)",
            ),
            PrivilegeError::UserIsRoot(user) => write!(
                f,
                "user '{user}' is root: choose an unprivileged user (or allow_root = yes)"
            ),
            PrivilegeError::UnknownUser(user) => write!(f, "user '{user}' does not exist"),
            PrivilegeError::UnknownGroup(group) => write!(f, "group '{group}' does not exist"),
            PrivilegeError::Lookup { what, reason } => write!(f, "{what}: {reason}"),
            PrivilegeError::Switch { to, reason } => write!(f, "cannot become {to}: {reason}"),
        }
    }
}

impl std::error::Error for PrivilegeError {}

/// Drops root privileges as configured. Does nothing when not running as root.
pub fn drop_if_root(cfg: &Config) -> Result<(), PrivilegeError> {
    if sys::euid() != 0 {
        if !cfg.process.user.is_empty() {
            log::debug!(
                "not started as root: 'user = {}' has no effect",
                cfg.process.user
            );
        }
        return Ok(());
    }
    if cfg.process.user.is_empty() {
        if cfg.process.allow_root {
            log::warn!("running as root (allow_root = yes)");
            return Ok(());
        }
        return Err(PrivilegeError::NoUser);
    }
    let user = &cfg.process.user;
    let account = sys::lookup_user(user)
        .map_err(|e| PrivilegeError::Lookup {
            what: format!("user {user}"),
            reason: e.to_string(),
        })?
        .ok_or_else(|| PrivilegeError::UnknownUser(user.clone()))?;
    let gid = if cfg.process.group.is_empty() {
        account.gid
    } else {
        let group = &cfg.process.group;
        sys::lookup_group(group)
            .map_err(|e| PrivilegeError::Lookup {
                what: format!("group {group}"),
                reason: e.to_string(),
            })?
            .ok_or_else(|| PrivilegeError::UnknownGroup(group.clone()))?
    };
    if account.uid == 0 && !cfg.process.allow_root {
        return Err(PrivilegeError::UserIsRoot(user.clone()));
    }
    hand_over_spool_dir(cfg, account.uid, gid);
    sys::drop_privileges(&account, gid).map_err(|e| PrivilegeError::Switch {
        to: format!("{}:{gid}", account.name),
        reason: e.to_string(),
    })?;
    log::info!(
        "running as {} (uid {}, gid {gid})",
        account.name,
        account.uid
    );
    Ok(())
}

/// The spool directory is created (as root) when missing and, when it is a private
/// root-owned directory, given to the run user, so it can spool large messages. Shared
/// sticky directories such as /tmp are left alone.
fn hand_over_spool_dir(cfg: &Config, uid: u32, gid: u32) {
    if !cfg.delivery.spool_dir.exists() {
        if let Err(e) = std::fs::create_dir_all(&cfg.delivery.spool_dir) {
            log::warn!("cannot create {}: {e}", cfg.delivery.spool_dir.display());
        }
    }
    let Ok(meta) = std::fs::symlink_metadata(&cfg.delivery.spool_dir) else {
        return;
    };
    let sticky_shared = meta.mode() & 0o1002 == 0o1002;
    if meta.is_dir() && meta.uid() == 0 && !sticky_shared {
        if let Err(e) = std::os::unix::fs::chown(&cfg.delivery.spool_dir, Some(uid), Some(gid)) {
            log::warn!(
                "cannot give {} to uid {uid}: {e}",
                cfg.delivery.spool_dir.display()
            );
        }
    }
}
