//! Maildir / Maildir++ delivery backend for lmtpd: the [`MaildirStore`] `MailStore`, its
//! configuration, and the `tmp/` sweeper.
//!
//! Each recipient's mailbox path comes from a template (`%u`, `%n`, `%d`, `%%`) whose
//! substituted values are checked before they touch the file system. A copy is written to
//! `tmp/` under a unique name, fsynced, hard-linked into `new/` as
//! `<name>,S=<size>,W=<crlf size>`, the `new/` directory is fsynced and the tmp file removed;
//! only then is the recipient's outcome `Ok`. `+detail` may select a Maildir++ folder, and a
//! limited [`Quota`](lmtpd_store::Quota) is enforced with the Maildir++ `maildirsize` file.
//!
//! Layout of this crate: `template` (path templates), `name` (unique names), `layout`
//! (directories, folders, sweeping), `quota` (`maildirsize`), `write` (one copy), `dirsync`
//! (shared `new/` fsyncs), `copies` (a message's copies on parallel threads), `error`
//! (internal failure → [`DeliveryError`]).

mod copies;
mod dirsync;
mod error;
mod layout;
mod name;
mod quota;
mod template;
mod write;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use lmtpd_store::{DeliveryError, MailStore, Message, Outcomes, Recipient};

use crate::error::Failure;

pub use crate::layout::sweep_tmp;

/// Copies of one message written at the same time (threads per delivering session).
pub const PARALLEL_COPIES: usize = 4;

/// `tmp/` entries older than this are removed (qmail/Courier: 36 hours).
pub const TMP_MAX_AGE: Duration = Duration::from_secs(36 * 60 * 60);

/// What a `+detail` does (shared by every store): here it may select the Maildir++ folder
/// `.<detail>` (`.` in the detail separates hierarchy levels).
pub use lmtpd_store::DetailMailbox;

/// Configuration of a [`MaildirStore`].
#[derive(Clone, Debug)]
pub struct MaildirConfig {
    /// Path of a recipient's maildir, e.g. `/var/mail/%d/%n/Maildir` or `./run/mail/%d/%n`:
    /// `%u` = user, `%n` = local part, `%d` = domain, `%%` = `%`.
    pub template: String,
    /// Host name used in unique file names (escaped: `/` → `\057`, `:` → `\072`,
    /// `,` → `\054`).
    pub hostname: String,
    /// What `+detail` does.
    pub detail_mailbox: DetailMailbox,
    /// Over quota is `552 5.2.2` (permanent) instead of `452 4.2.2`.
    pub quota_permfail: bool,
}

impl MaildirConfig {
    /// Checks the template for configuration errors (empty, unknown `%x`, lone `%`), so the
    /// server can refuse a bad configuration at start-up instead of at the first delivery.
    pub fn validate(&self) -> Result<(), String> {
        template::validate(&self.template)
    }
}

/// The Maildir backend. Cheap to share between threads (`Send + Sync`).
#[derive(Debug)]
pub struct MaildirStore {
    cfg: MaildirConfig,
    /// `cfg.hostname`, escaped once.
    host: String,
    /// Maildirs (roots and folders) whose `tmp/` this store has already swept.
    swept: Mutex<HashSet<PathBuf>>,
    /// Shared `new/` fsyncs for concurrent deliveries into one maildir.
    syncs: dirsync::DirSyncs,
}

impl MaildirStore {
    /// Creates a store; nothing is touched on disk until the first delivery.
    pub fn new(cfg: MaildirConfig) -> Self {
        let host = name::escape_host(&cfg.hostname);
        MaildirStore {
            cfg,
            host,
            swept: Mutex::new(HashSet::new()),
            syncs: dirsync::DirSyncs::default(),
        }
    }

    /// The configuration this store was built with.
    pub fn config(&self) -> &MaildirConfig {
        &self.cfg
    }

    /// The root maildir (INBOX) of `rcpt`: the template expanded with checked values.
    /// An unsafe value or a bad template gives `451 4.3.0` with the reason as source.
    pub fn maildir_path(&self, rcpt: &Recipient) -> Result<PathBuf, DeliveryError> {
        template::expand(&self.cfg.template, rcpt)
            .map_err(|why| DeliveryError::local_error().with_source(why))
    }

    /// Sweeps `dir/tmp` the first time this store touches `dir`.
    fn sweep_once(&self, dir: &Path) {
        let first = {
            let mut swept = self.swept.lock().unwrap_or_else(|e| e.into_inner());
            // Every delivery asks; only the first one for a maildir allocates its key.
            !swept.contains(dir) && swept.insert(dir.to_path_buf())
        };
        if first {
            match sweep_tmp(dir, TMP_MAX_AGE) {
                Ok(0) => {}
                Ok(n) => log::info!(
                    "maildir: removed {n} stale file(s) from {}/tmp",
                    dir.display()
                ),
                Err(err) => log::warn!("maildir: cannot sweep {}/tmp: {err}", dir.display()),
            }
        }
    }

    fn check_inner(&self, rcpt: &Recipient) -> Result<(), Failure> {
        let root = template::expand(&self.cfg.template, rcpt).map_err(Failure::Local)?;
        if !layout::check_dir(&root)? || !rcpt.quota.is_limited() {
            return Ok(());
        }
        let full = quota::over(&root, &rcpt.quota, quota::Need::Full, &self.host)
            .map_err(error::io_at("check quota of", &root))?;
        if full {
            return Err(Failure::OverQuota(format!(
                "{} is full ({})",
                root.display(),
                quota::definition(&rcpt.quota)
            )));
        }
        Ok(())
    }

    fn deliver_inner(&self, msg: &Message<'_>, rcpt: &Recipient) -> Result<String, Failure> {
        let root = template::expand(&self.cfg.template, rcpt).map_err(Failure::Local)?;
        layout::ensure_maildir(&root, true)?;
        let target = layout::resolve_target(
            &root,
            rcpt.detail.as_deref(),
            self.cfg.detail_mailbox,
            &rcpt.user,
        )?;
        self.sweep_once(&target);

        let size = msg.copy_size(rcpt);
        let limited = rcpt.quota.is_limited();
        if limited {
            let over = quota::over(&root, &rcpt.quota, quota::Need::Add(size), &self.host)
                .map_err(error::io_at("check quota of", &root))?;
            if over {
                return Err(Failure::OverQuota(format!(
                    "{size}-byte message exceeds quota {} of {}",
                    quota::definition(&rcpt.quota),
                    root.display()
                )));
            }
        }

        let name = write::store_copy(&target, &self.host, &self.syncs, msg, rcpt)?;
        let path = target.join("new").join(&name);

        if limited {
            if let Err(err) = quota::append(&root, size) {
                // The copy is durable; the quota file is approximate by design.
                log::warn!(
                    "maildir: cannot update {}/{}: {err}",
                    root.display(),
                    quota::FILE
                );
            }
        }
        Ok(path.display().to_string())
    }
}

impl MailStore for MaildirStore {
    fn name(&self) -> &'static str {
        "maildir"
    }

    fn check(&self, rcpt: &Recipient) -> Result<(), DeliveryError> {
        self.check_inner(rcpt).map_err(|failure| {
            match &failure {
                Failure::OverQuota(_) => log::info!("maildir: {}: {failure}", rcpt.user),
                _ => log::warn!("maildir: {}: {failure}", rcpt.user),
            }
            failure.into_delivery(self.cfg.quota_permfail)
        })
    }

    fn deliver(&self, msg: &Message<'_>, rcpts: &[Recipient]) -> Outcomes {
        Outcomes::from_fn(rcpts, |rcpt| self.deliver_one(msg, rcpt))
    }

    /// Stores the copies of a message with several recipients on up to
    /// [`PARALLEL_COPIES`] threads at once, so their fsyncs overlap (the disk and ext4's
    /// journal merge concurrent ones); each outcome is reported as soon as that copy is
    /// durable. Stops taking new recipients once `report` says the client is gone.
    fn deliver_each(
        &self,
        msg: &Message<'_>,
        rcpts: &[Recipient],
        report: &mut dyn FnMut(usize, Result<(), DeliveryError>) -> bool,
    ) {
        copies::deliver_parallel(rcpts, PARALLEL_COPIES, report, |rcpt| {
            self.deliver_one(msg, rcpt)
        });
    }
}

impl MaildirStore {
    /// One recipient's copy, logged, as a `MailStore` outcome.
    fn deliver_one(&self, msg: &Message<'_>, rcpt: &Recipient) -> Result<(), DeliveryError> {
        match self.deliver_inner(msg, rcpt) {
            Ok(path) => {
                log::debug!("maildir: {}: stored {path}", rcpt.user);
                Ok(())
            }
            Err(failure) => {
                log::warn!("maildir: {}: delivery failed: {failure}", rcpt.user);
                Err(failure.into_delivery(self.cfg.quota_permfail))
            }
        }
    }
}
