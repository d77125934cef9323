//! Maildir / Maildir++ delivery backend for lmtpd: the [`MaildirStore`] `MailStore`, its
//! configuration, and the `tmp/` sweeper.
//!
//! Each recipient's mailbox path comes from a template (`%u`, `%n`, `%d`, `%%`) whose
//! substituted values are checked before they touch the file system. A copy is written to
//! `tmp/` under a unique name, fsynced, hard-linked into `new/` as
//! `<name>,S=<size>,W=<crlf size>` (a copy with flags into `cur/` with `:2,<flags>`), that
//! directory is fsynced and the tmp file removed; only then is the copy durable. On Linux
//! the copy is written as an unnamed `O_TMPFILE` file in `new/` (or `cur/`) itself and
//! named there with `linkat` once fsynced: no `tmp/` entry, one directory change per copy. Each of a
//! recipient's targets names INBOX or a Maildir++ folder `.<name>`; the recipient's outcome
//! combines its copies' ([`lmtpd_store::combine`]). A limited
//! [`Quota`](lmtpd_store::Quota) is enforced with the Maildir++ `maildirsize` file, which
//! also answers [`MailStore::usage`]; [`MailStore::recalc`] recounts the messages and
//! rewrites it.
//!
//! Layout of this crate: `template` (path templates), `name` (unique names), `layout`
//! (directories, folders, sweeping), `quota` (`maildirsize`), `write` (one copy), `dirsync`
//! (shared directory fsyncs), `copies` (a message's copies on parallel threads), `sys`
//! (`linkat`), `error` (internal failure → [`DeliveryError`]).

mod copies;
mod dirsync;
mod error;
mod layout;
mod name;
mod quota;
mod sys;
mod template;
mod write;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use lmtpd_store::{
    combine, Delivery, DeliveryError, MailStore, Message, Outcome, Recipient, Reporter, Request,
    Target, Usage,
};

use crate::error::Failure;

pub use crate::layout::sweep_tmp;

/// Copies of one message written at the same time (threads per delivering session).
pub const PARALLEL_COPIES: usize = 4;

/// `tmp/` entries older than this are removed (qmail/Courier: 36 hours).
pub const TMP_MAX_AGE: Duration = Duration::from_secs(36 * 60 * 60);

/// Configuration of a [`MaildirStore`].
#[derive(Clone, Debug)]
pub struct MaildirConfig {
    /// Path of a recipient's maildir, e.g. `/var/mail/%d/%n/Maildir` or `./run/mail/%d/%n`:
    /// `%u` = user, `%n` = local part, `%d` = domain, `%%` = `%`.
    pub template: String,
    /// Host name used in unique file names (escaped: `/` → `\057`, `:` → `\072`,
    /// `,` → `\054`).
    pub hostname: String,
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
    /// Copies are written as `O_TMPFILE` files in their target directory (Linux; cleared
    /// when the filesystem refuses one), else through `tmp/`.
    unnamed: std::sync::atomic::AtomicBool,
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
            unnamed: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// The same store writing every copy through `tmp/` (the path systems without
    /// `O_TMPFILE` take), for the tests of that path.
    #[cfg(test)]
    pub(crate) fn through_tmp(self) -> Self {
        self.unnamed
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self
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

    /// The usage of `rcpt`'s maildir: from `maildirsize` under a limited quota (recounted
    /// and rewritten when the file is missing or untrusted, as a delivery would), else
    /// counted from the messages (lmtpd keeps no `maildirsize` without a limit). A maildir
    /// that does not exist yet uses nothing.
    fn usage_inner(&self, rcpt: &Recipient) -> Result<Usage, Failure> {
        let root = template::expand(&self.cfg.template, rcpt).map_err(Failure::Local)?;
        if !layout::check_dir(&root)? {
            return Ok(Usage::default());
        }
        let usage = if rcpt.quota.is_limited() {
            quota::current(&root, &rcpt.quota, &self.host)
        } else {
            quota::count(&root)
        };
        usage.map_err(error::io_at("read the quota usage of", &root))
    }

    /// Counts `rcpt`'s messages and, under a limited quota, rewrites `maildirsize` with the
    /// result (a write failure is an error here: the admin asked for it). Without a limit
    /// nothing is written: `maildirsize` needs the quota's definition as its first line.
    fn recalc_inner(&self, rcpt: &Recipient) -> Result<Usage, Failure> {
        let root = template::expand(&self.cfg.template, rcpt).map_err(Failure::Local)?;
        if !layout::check_dir(&root)? {
            return Ok(Usage::default());
        }
        let usage = quota::count(&root).map_err(error::io_at("count the messages of", &root))?;
        if rcpt.quota.is_limited() {
            let def = quota::definition(&rcpt.quota);
            quota::write(&root, &def, usage, &self.host)
                .map_err(error::io_at("rewrite the maildirsize of", &root))?;
        }
        Ok(usage)
    }

    /// The recipient's root maildir (INBOX), created when missing and checked.
    fn root(&self, rcpt: &Recipient) -> Result<PathBuf, Failure> {
        let root = template::expand(&self.cfg.template, rcpt).map_err(Failure::Local)?;
        layout::ensure_maildir(&root, true)?;
        Ok(root)
    }

    /// Stores one copy of `d` at `target` under its checked root maildir `root`; returns
    /// where, for the log.
    fn store_target(
        &self,
        msg: &Message<'_>,
        d: &Delivery<'_>,
        root: &Path,
        target: &Target,
    ) -> Result<String, Failure> {
        let rcpt = d.rcpt;
        let target_dir = layout::resolve_target(root, &target.folder, &rcpt.user)?;
        self.sweep_once(&target_dir);

        let size = d.copy_size_at(msg, target);
        let limited = rcpt.quota.is_limited();
        if limited {
            let over = quota::over(root, &rcpt.quota, quota::Need::Add(size), &self.host)
                .map_err(error::io_at("check quota of", root))?;
            if over {
                return Err(Failure::OverQuota(format!(
                    "{size}-byte message exceeds quota {} (grace {}) of {}",
                    quota::definition(&rcpt.quota),
                    rcpt.quota.grace,
                    root.display()
                )));
            }
        }

        let name = write::store_copy(
            &target_dir,
            &self.host,
            &self.syncs,
            &self.unnamed,
            msg,
            d,
            target,
        )?;
        let path = target_dir.join(&name);

        if limited {
            if let Err(err) = quota::append(root, size) {
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

    fn mailbox_exists(&self, rcpt: &Recipient, folder: &str) -> Result<bool, DeliveryError> {
        if folder.eq_ignore_ascii_case("INBOX") {
            return Ok(true);
        }
        let root = self
            .root(rcpt)
            .map_err(|f| f.into_delivery(self.cfg.quota_permfail))?;
        layout::folder_exists(&root, folder).map_err(|f| f.into_delivery(self.cfg.quota_permfail))
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

    fn usage(&self, rcpt: &Recipient) -> Result<Option<Usage>, DeliveryError> {
        self.usage_inner(rcpt).map(Some).map_err(|failure| {
            log::warn!("maildir: {}: usage: {failure}", rcpt.user);
            failure.into_delivery(self.cfg.quota_permfail)
        })
    }

    fn recalc(&self, rcpt: &Recipient) -> Result<Option<Usage>, DeliveryError> {
        self.recalc_inner(rcpt).map(Some).map_err(|failure| {
            log::warn!("maildir: {}: recalc: {failure}", rcpt.user);
            failure.into_delivery(self.cfg.quota_permfail)
        })
    }

    /// Stores the copies of a message with several recipients on up to
    /// [`PARALLEL_COPIES`] threads at once, so their fsyncs overlap (the disk and ext4's
    /// journal merge concurrent ones); each outcome is reported as soon as that recipient's
    /// copies are durable. Starts no new recipient once the client is gone.
    fn deliver(&self, req: &Request<'_>, reporter: &Reporter) {
        copies::deliver_parallel(req.deliveries.len(), PARALLEL_COPIES, reporter, |i| {
            self.deliver_one(&req.message, &req.deliveries[i])
        });
    }
}

impl MaildirStore {
    /// One recipient's copies, one per target, each logged; the combined outcome.
    fn deliver_one(&self, msg: &Message<'_>, d: &Delivery<'_>) -> Outcome {
        let root = match self.root(d.rcpt) {
            Ok(root) => root,
            Err(failure) => {
                log::warn!("maildir: {}: delivery failed: {failure}", d.rcpt.user);
                return Err(failure.into_delivery(self.cfg.quota_permfail));
            }
        };
        let results =
            d.targets
                .iter()
                .map(|target| match self.store_target(msg, d, &root, target) {
                    Ok(path) => {
                        log::debug!("maildir: {}: stored {path}", d.rcpt.user);
                        Ok(())
                    }
                    Err(failure) => {
                        log::warn!(
                            "maildir: {}: delivery to {} failed: {failure}",
                            d.rcpt.user,
                            target.folder
                        );
                        Err(failure.into_delivery(self.cfg.quota_permfail))
                    }
                });
        // combine() stores every target: it reads the results to the end.
        combine(results)
    }
}
