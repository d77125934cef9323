//! Started as root, lmtpd binds its listeners and then becomes the configured `user` and
//! `group` for good (supplementary groups, gid, uid; verified). It refuses to keep running
//! as root unless `allow_root = yes`.

use std::os::unix::fs::MetadataExt;

use crate::config::Config;
use crate::sys;

/// Drops root privileges as configured. Does nothing when not running as root.
pub fn drop_if_root(cfg: &Config) -> Result<(), String> {
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
        return Err(
            "started as root without 'user': set user = <the owner of the mailboxes> \
                    (or allow_root = yes, not recommended)"
                .into(),
        );
    }
    let account = sys::lookup_user(&cfg.process.user)
        .map_err(|e| format!("user {}: {e}", cfg.process.user))?
        .ok_or_else(|| format!("user '{}' does not exist", cfg.process.user))?;
    let gid = if cfg.process.group.is_empty() {
        account.gid
    } else {
        sys::lookup_group(&cfg.process.group)
            .map_err(|e| format!("group {}: {e}", cfg.process.group))?
            .ok_or_else(|| format!("group '{}' does not exist", cfg.process.group))?
    };
    if account.uid == 0 && !cfg.process.allow_root {
        return Err(format!(
            "user '{}' is root: choose an unprivileged user (or allow_root = yes)",
            cfg.process.user
        ));
    }
    hand_over_spool_dir(cfg, account.uid, gid);
    sys::drop_privileges(&account, gid)
        .map_err(|e| format!("cannot become {}:{gid}: {e}", account.name))?;
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
