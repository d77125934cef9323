//! mbox delivery backend for lmtpd: the [`MboxStore`] `MailStore`, its configuration and
//! its lock methods.
//!
//! Each recipient's mailbox is a file named by a template (`%u`, `%n`, `%d`, `%%`, values
//! checked before they touch the file system), written in the mboxrd form of RFC 4155
//! (standards §7): a `From <sender> <asctime UTC>` separator, the trace headers and the
//! message with `^>*From ` lines quoted by one more `>`, reader-trusted header fields
//! (`Status`, `X-Status`, `X-UID`, `X-IMAPbase`, `X-IMAP`, `X-Keywords`, `Content-Length`)
//! removed, LF line endings, and one empty line after each message.
//!
//! A delivery first queues behind other threads of this process delivering to the same
//! mailbox, then opens the file (refusing unsafe ones), takes the configured file locks
//! (`fcntl`, `flock`, `dotlock`, in order), appends at the end it noted, fsyncs, and on any
//! failure truncates back to that end before unlocking. The whole wait is bounded by
//! [`MboxConfig::lock_timeout`]. When other threads are queued for the same mailbox by then,
//! the delivery leads a batch: it keeps the locks, lets each of them append its copy in turn,
//! then fsyncs once for all and unlocks; nobody's `Ok` comes before that fsync, a failed
//! fsync truncates the whole batch away (every member fails), and a member whose own append
//! fails is truncated back alone.
//!
//! Replies: lock timeout `450 4.2.0`; a mailbox that is a symlink, has a link count other
//! than 1, is not a regular file, or was swapped between `lstat` and `open` `550 5.2.0`;
//! full disk or file-size limit `452 4.3.1`; quota `452 4.2.2` (or `552 5.2.2`); any other
//! local problem `451 4.3.0`.
//!
//! Quota: a file's usage is its size and its message count (`From ` separators), the count
//! cached in a sidecar file (`quota`). Each file is checked on its own when a copy goes into
//! it; [`MailStore::usage`] and [`MailStore::recalc`] report the inbox.
//!
//! Layout of this crate: `template` (path templates), `mailbox` (folder choice, safe open),
//! `queue` (the in-process queue and batches), `lock` (file locks), `append` (write + roll back), `quota`
//! (count sidecar), `sys` (the libc calls), `error`. The separator line and the mboxrd filter
//! are [`lmtpd_store::mboxrd`], shared with the SQLite export.
mod append;
mod error;

mod lock;
mod mailbox;
mod queue;
mod quota;
mod sys;
mod template;

#[cfg(test)]
mod tests;

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use lmtpd_store::{
    combine, Delivery, DeliveryError, Folder, MailStore, Message, Recipient, Reporter, Request,
    Target, Usage,
};

use crate::error::{io_at, Failure};

/// A dotlock whose ctime is older than this is stale and removed (sendmail mail.local,
/// liblockfile: 5 minutes).
pub const DOTLOCK_STALE: Duration = Duration::from_secs(300);

/// Default [`MboxConfig::lock_timeout`].
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// A file-locking method for mbox files. Everyone touching a mailbox must use the same
/// methods in the same order (standards §7.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    /// POSIX record lock (`fcntl(F_SETLK, F_WRLCK)`) on the whole file; works over NFS with
    /// lockd. Per process: lmtpd's threads are kept apart by an in-process queue.
    Fcntl,
    /// BSD `flock(LOCK_EX)`.
    Flock,
    /// The file `<mbox>.lock`, created with `O_EXCL`; stale after [`DOTLOCK_STALE`] by ctime;
    /// always removed afterwards.
    Dotlock,
}

impl LockKind {
    /// Parses a configuration word: `fcntl`, `flock` or `dotlock` (any case).
    pub fn parse(s: &str) -> Result<LockKind, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fcntl" => Ok(LockKind::Fcntl),
            "flock" => Ok(LockKind::Flock),
            "dotlock" => Ok(LockKind::Dotlock),
            _ => Err(format!(
                "unknown mbox lock method {s:?} (expected fcntl, flock or dotlock)"
            )),
        }
    }

    /// The configuration word of this method.
    pub fn name(self) -> &'static str {
        match self {
            LockKind::Fcntl => "fcntl",
            LockKind::Flock => "flock",
            LockKind::Dotlock => "dotlock",
        }
    }
}

/// The platform's customary lock list (Postfix `mailbox_delivery_lock`): `fcntl, dotlock`
/// on Linux and other systems (Debian Policy §11.6), `flock, dotlock` on the BSDs and macOS.
pub fn default_locks() -> Vec<LockKind> {
    if cfg!(any(
        target_os = "freebsd",
        target_os = "openbsd",
        target_os = "netbsd",
        target_os = "dragonfly",
        target_os = "macos"
    )) {
        vec![LockKind::Flock, LockKind::Dotlock]
    } else {
        vec![LockKind::Fcntl, LockKind::Dotlock]
    }
}

/// Configuration of an [`MboxStore`].
#[derive(Clone, Debug)]
pub struct MboxConfig {
    /// Path of a recipient's inbox, e.g. `/var/mail/%n` or `run/mail/%d/%n.mbox`:
    /// `%u` = user, `%n` = local part, `%d` = domain, `%%` = `%`.
    pub template: String,
    /// Lock methods, taken in this order and released in reverse.
    pub locks: Vec<LockKind>,
    /// Bound on the whole wait (in-process queue and file locks) before `450 4.2.0`.
    pub lock_timeout: Duration,
    /// Over quota is `552 5.2.2` (permanent) instead of `452 4.2.2`.
    pub quota_permfail: bool,
}

impl MboxConfig {
    /// Checks the template's escapes and the lock list (not empty, no method twice), so the
    /// server can refuse a bad configuration at start-up.
    pub fn validate(&self) -> Result<(), String> {
        template::validate(&self.template)?;
        if self.template.ends_with('/') {
            return Err("mbox template names a directory (ends with '/')".into());
        }
        if self.locks.is_empty() {
            return Err("mbox_locks is empty; at least one lock method is needed".into());
        }
        for (i, kind) in self.locks.iter().enumerate() {
            if self.locks[..i].contains(kind) {
                return Err(format!("mbox_locks lists {} twice", kind.name()));
            }
        }
        Ok(())
    }
}

/// The mbox backend. Cheap to share between threads (`Send + Sync`).
#[derive(Debug)]
pub struct MboxStore {
    cfg: MboxConfig,
    /// Whether the template gives each user a directory (needed for `+detail` folders).
    per_user_dir: bool,
    /// Dotlock staleness limit ([`DOTLOCK_STALE`]; shortened by tests).
    stale_after: Duration,
}

impl MboxStore {
    /// Creates a store; nothing is touched on disk until the first delivery.
    pub fn new(cfg: MboxConfig) -> Self {
        let per_user_dir = template::dir_is_per_user(&cfg.template);
        MboxStore {
            cfg,
            per_user_dir,
            stale_after: DOTLOCK_STALE,
        }
    }

    /// The configuration this store was built with.
    pub fn config(&self) -> &MboxConfig {
        &self.cfg
    }

    /// The inbox mbox file of `rcpt`: the template expanded with checked values.
    /// An unsafe value or a bad template gives `451 4.3.0` with the reason as source.
    pub fn mbox_path(&self, rcpt: &Recipient) -> Result<PathBuf, DeliveryError> {
        template::expand(&self.cfg.template, rcpt)
            .map_err(|why| DeliveryError::local_error().with_source(why))
    }

    /// The file a copy for `folder` goes to: the inbox, or a folder file next to it (only
    /// when the template's directory part contains `%u` or `%n`, a per-user mail directory;
    /// with a shared spool such as `/var/mail/%n` every copy goes to the inbox).
    fn target(&self, rcpt: &Recipient, folder: &Folder) -> Result<PathBuf, Failure> {
        let inbox = template::expand(&self.cfg.template, rcpt).map_err(Failure::Local)?;
        mailbox::resolve_target(&inbox, folder, self.per_user_dir, &rcpt.user)
    }

    /// The RCPT-time check looks at the inbox (the folder is known only after the dot).
    fn check_inner(&self, rcpt: &Recipient) -> Result<(), Failure> {
        let target = self.target(rcpt, &Folder::Inbox)?;
        let meta = match fs::symlink_metadata(&target) {
            Ok(meta) => Some(meta),
            Err(err) if err.kind() == io::ErrorKind::NotFound => None,
            Err(err) => return Err(io_at("stat", &target)(err)),
        };
        if let Some(meta) = &meta {
            mailbox::check_meta(meta, &target)?;
        }
        if !rcpt.quota.is_limited() {
            return Ok(());
        }
        let (bytes, count) = match &meta {
            None => (0, 0),
            Some(meta) => (meta.len(), self.count_for_check(&target, meta)),
        };
        if rcpt.quota.is_full(bytes, count) {
            return Err(Failure::OverQuota(format!(
                "{} is full ({bytes} bytes, {count} messages)",
                target.display()
            )));
        }
        Ok(())
    }

    /// The message count for an RCPT-time check: from the sidecar, else counted now when no
    /// thread of this process is delivering to the mailbox, else 0 (`deliver` checks again).
    fn count_for_check(&self, target: &Path, meta: &fs::Metadata) -> u64 {
        if let Some(count) = quota::cached(target, meta) {
            return count;
        }
        match count_now(target, Instant::now()) {
            Ok(Some(counted)) => counted.usage.messages,
            Ok(None) => 0,
            Err(err) => {
                log::warn!("mbox: cannot count messages in {}: {err}", target.display());
                0
            }
        }
    }

    /// The inbox of `rcpt`, checked like a delivery checks it, with its metadata (`None`:
    /// it does not exist yet).
    fn inbox_meta(&self, rcpt: &Recipient) -> Result<(PathBuf, Option<fs::Metadata>), Failure> {
        let target = self.target(rcpt, &Folder::Inbox)?;
        match fs::symlink_metadata(&target) {
            Ok(meta) => {
                mailbox::check_meta(&meta, &target)?;
                Ok((target, Some(meta)))
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok((target, None)),
            Err(err) => Err(io_at("stat", &target)(err)),
        }
    }

    /// The inbox's size and message count: the cached count when the sidecar matches the
    /// file, else counted now unless another thread of this process is delivering to it
    /// (then `None`: waiting is not cheap). Takes no file lock.
    fn usage_inner(&self, rcpt: &Recipient) -> Result<Option<Usage>, Failure> {
        let (target, meta) = self.inbox_meta(rcpt)?;
        let Some(meta) = meta else {
            return Ok(Some(Usage::default()));
        };
        if let Some(messages) = quota::cached(&target, &meta) {
            return Ok(Some(Usage {
                bytes: meta.len(),
                messages,
            }));
        }
        match count_now(&target, Instant::now()) {
            Ok(counted) => Ok(counted.map(|c| c.usage)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Some(Usage::default())),
            Err(err) => Err(io_at("count messages in", &target)(err)),
        }
    }

    /// Counts the inbox's messages whatever the sidecar says, and records the count in it.
    /// Waits for this process's deliveries to the inbox up to the lock timeout; counts again
    /// (three passes) when the file changes during the count.
    fn recalc_inner(&self, rcpt: &Recipient) -> Result<Usage, Failure> {
        let (target, meta) = self.inbox_meta(rcpt)?;
        if meta.is_none() {
            return Ok(Usage::default());
        }
        let deadline = Instant::now() + self.cfg.lock_timeout;
        for _ in 0..RECOUNT_TRIES {
            match count_now(&target, deadline) {
                Ok(Some(counted)) if counted.unchanged => return Ok(counted.usage),
                Ok(Some(_)) => continue,
                Ok(None) => {
                    return Err(Failure::Busy(format!(
                        "other deliveries to {} in this process took longer than the lock \
                         timeout",
                        target.display()
                    )))
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Usage::default()),
                Err(err) => return Err(io_at("count messages in", &target)(err)),
            }
        }
        Err(Failure::Busy(format!(
            "{} kept changing while its messages were counted",
            target.display()
        )))
    }

    /// Stores one copy of `d` at `want`; returns what was done, for the log.
    fn deliver_target(
        &self,
        msg: &Message<'_>,
        d: &Delivery<'_>,
        want: &Target,
    ) -> Result<String, Failure> {
        let target = self.target(d.rcpt, &want.folder)?;
        let deadline = Instant::now() + self.cfg.lock_timeout;
        mailbox::ensure_parent(&target)?;
        let key = mailbox::queue_key(&target);
        let busy = || {
            Failure::Busy(format!(
                "other deliveries to {} in this process took longer than the lock timeout",
                target.display()
            ))
        };
        let turn = queue::queue(&key, deadline).ok_or_else(busy)?;
        if let Some(batch) = turn.batch() {
            // A leader holds the locks: append under them and share its fsync. Our handle on
            // the file is gone before the turn passes on (see `Batch::file`).
            let file = batch.file().ok_or_else(|| {
                Failure::Local(format!("batch on {} already closed", target.display()))
            })?;
            let appended = self.append_locked(&file, &target, msg, d, want, Some(&batch));
            drop(file);
            drop(turn);
            let done = appended?;
            batch.wait().map_err(Failure::Local)?;
            return Ok(describe(&done, &target, " (batched)"));
        }
        loop {
            let file = Arc::new(mailbox::open(&target)?);
            let held = lock::acquire(&file, &target, &self.cfg.locks, deadline, self.stale_after)?;
            if !mailbox::still_current(&file, &target)? {
                drop(held);
                if Instant::now() >= deadline {
                    return Err(Failure::Busy(format!(
                        "{} kept being replaced until the lock timeout",
                        target.display()
                    )));
                }
                log::debug!(
                    "mbox: {} was replaced while locking; reopening",
                    target.display()
                );
                continue;
            }
            let done = self.append_locked(&file, &target, msg, d, want, None)?;
            if !turn.others_waiting() {
                append::sync(&file, done.start, &target)?;
                drop(held);
                return Ok(describe(&done, &target, ""));
            }
            // Lead a batch: the threads queued now append under our locks, then we fsync
            // once for all of them (or give all of them up if one member's failed append
            // could not be truncated back durably).
            let batch = queue::Batch::new(Arc::clone(&file));
            let guard = queue::LeaderGuard(Arc::clone(&batch));
            let again = turn.lead_batch(Arc::clone(&batch));
            let synced = if batch.is_poisoned() {
                Err(append::discard(
                    &file,
                    done.start,
                    &target,
                    Failure::Local(format!(
                        "a failed copy in this batch on {} could not be truncated back \
                         durably; giving up the whole batch",
                        target.display()
                    )),
                ))
            } else {
                append::sync(&file, done.start, &target)
            };
            // Unlock and close our descriptor (the only one left) before the turn passes.
            drop(held);
            batch.forget_file();
            drop(file);
            batch.finish(synced.as_ref().map(|_| ()).map_err(ToString::to_string));
            drop(guard);
            drop(again);
            synced?;
            return Ok(describe(&done, &target, ""));
        }
    }

    /// With `file` open and locked: checks the quota, appends the copy (not yet durable)
    /// and updates the cached message count.
    fn append_locked(
        &self,
        file: &fs::File,
        target: &Path,
        msg: &Message<'_>,
        d: &Delivery<'_>,
        want: &Target,
        batch: Option<&queue::Batch>,
    ) -> Result<append::Appended, Failure> {
        let count = if d.rcpt.quota.is_limited() {
            Some(self.check_quota(file, target, msg, d, want)?)
        } else {
            None
        };
        let done = append::append(file, target, msg, d, want).map_err(|failed| {
            if !failed.clean {
                if let Some(batch) = batch {
                    batch.poison();
                }
            }
            failed.failure
        })?;
        if let Some(count) = count {
            match file.metadata() {
                Ok(meta) => quota::store(target, &meta, count + 1),
                Err(err) => log::warn!("mbox: fstat {}: {err}", target.display()),
            }
        }
        Ok(done)
    }

    /// With the mailbox locked: refuses the copy when it would exceed the quota, else
    /// returns the current message count.
    fn check_quota(
        &self,
        file: &fs::File,
        target: &Path,
        msg: &Message<'_>,
        d: &Delivery<'_>,
        want: &Target,
    ) -> Result<u64, Failure> {
        let rcpt = d.rcpt;
        let meta = file.metadata().map_err(io_at("fstat", target))?;
        let count = match quota::cached(target, &meta) {
            Some(count) => count,
            None => {
                let count = quota::count(file).map_err(io_at("count messages in", target))?;
                quota::store(target, &meta, count);
                count
            }
        };
        // The separator line, the flag lines, the copy and the final empty line (quoting
        // adds a byte per quoted line, header removal takes some away: close enough for a
        // quota).
        let from =
            lmtpd_store::mboxrd::from_line(msg.envelope.sender.as_deref(), SystemTime::now());
        let flags = append::flag_lines(want.flags).len() as u64;
        let size = from.len() as u64 + flags + d.copy_size_at(msg, want) + 1;
        if rcpt.quota.would_exceed(meta.len(), count, size) {
            return Err(Failure::OverQuota(format!(
                "{size}-byte message exceeds the quota of {} ({} bytes, {count} messages; \
                 grace {})",
                target.display(),
                meta.len(),
                rcpt.quota.grace
            )));
        }
        Ok(count)
    }
}

/// Passes of [`MboxStore::recalc`] over a mailbox that changes while it is counted.
const RECOUNT_TRIES: usize = 3;

/// A message count taken by [`count_now`].
struct Counted {
    /// The file's size and message count.
    usage: Usage,
    /// The file did not change during the count (the count was cached).
    unchanged: bool,
}

/// Counts the messages of the mailbox at `target` once no thread of this process is
/// delivering to it (its turn in the in-process queue, waiting until `deadline`: opening and
/// closing a second descriptor would drop such a thread's fcntl lock), and caches the count
/// when the file did not change meanwhile. `None` when the turn did not come in time or a
/// batch leader holds the mailbox.
fn count_now(target: &Path, deadline: Instant) -> io::Result<Option<Counted>> {
    let key = mailbox::queue_key(target);
    let Some(turn) = queue::queue(&key, deadline) else {
        return Ok(None);
    };
    if turn.batch().is_some() {
        // A batch leader holds the locks on an open descriptor between turns.
        return Ok(None);
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(target)?;
    let before = file.metadata()?;
    let messages = quota::count(&file)?;
    let after = file.metadata()?;
    let unchanged = stamp_eq(&before, &after);
    if unchanged {
        quota::store(target, &after, messages);
    }
    // Our descriptor is closed before the turn passes on.
    drop(file);
    drop(turn);
    Ok(Some(Counted {
        usage: Usage {
            bytes: after.len(),
            messages,
        },
        unchanged,
    }))
}

/// The log text of a stored copy.
fn describe(done: &append::Appended, target: &Path, how: &str) -> String {
    format!(
        "{} bytes at offset {} of {}{how}",
        done.bytes,
        done.start,
        target.display()
    )
}

/// True when two fstat results describe the same unchanged file.
fn stamp_eq(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.len() == b.len()
        && a.ino() == b.ino()
        && a.mtime() == b.mtime()
        && a.mtime_nsec() == b.mtime_nsec()
}

impl MailStore for MboxStore {
    fn name(&self) -> &'static str {
        "mbox"
    }

    fn mailbox_exists(&self, rcpt: &Recipient, folder: &str) -> Result<bool, DeliveryError> {
        if folder.eq_ignore_ascii_case("INBOX") {
            return Ok(true);
        }
        let inbox = template::expand(&self.cfg.template, rcpt)
            .map_err(|why| DeliveryError::local_error().with_source(why))?;
        Ok(mailbox::folder_exists(&inbox, folder, self.per_user_dir))
    }

    fn check(&self, rcpt: &Recipient) -> Result<(), DeliveryError> {
        self.check_inner(rcpt).map_err(|failure| {
            match &failure {
                Failure::OverQuota(_) => log::info!("mbox: {}: {failure}", rcpt.user),
                _ => log::warn!("mbox: {}: {failure}", rcpt.user),
            }
            failure.into_delivery(self.cfg.quota_permfail)
        })
    }

    fn usage(&self, rcpt: &Recipient) -> Result<Option<Usage>, DeliveryError> {
        self.usage_inner(rcpt).map_err(|failure| {
            log::warn!("mbox: {}: usage: {failure}", rcpt.user);
            failure.into_delivery(self.cfg.quota_permfail)
        })
    }

    fn recalc(&self, rcpt: &Recipient) -> Result<Option<Usage>, DeliveryError> {
        self.recalc_inner(rcpt).map(Some).map_err(|failure| {
            log::warn!("mbox: {}: recalc: {failure}", rcpt.user);
            failure.into_delivery(self.cfg.quota_permfail)
        })
    }

    /// One recipient after the other (each queues for its mailbox, sharing fsyncs with
    /// other sessions' deliveries to it through batches), each target in turn; stops before
    /// the next recipient once the client is gone.
    fn deliver(&self, req: &Request<'_>, reporter: &Reporter) {
        for (i, d) in req.deliveries.iter().enumerate() {
            if reporter.client_gone() {
                return;
            }
            let results = d
                .targets
                .iter()
                .map(|want| self.deliver_logged(&req.message, d, want));
            // combine() stores every target: it reads the results to the end.
            if !reporter.report(i, combine(results)) {
                return;
            }
        }
    }
}

impl MboxStore {
    /// One copy, logged, as a delivery result.
    fn deliver_logged(
        &self,
        msg: &Message<'_>,
        d: &Delivery<'_>,
        want: &Target,
    ) -> Result<(), DeliveryError> {
        let user = &d.rcpt.user;
        match self.deliver_target(msg, d, want) {
            Ok(what) => {
                log::debug!("mbox: {user}: stored {what}");
                Ok(())
            }
            Err(failure) => {
                match &failure {
                    Failure::OverQuota(_) | Failure::Busy(_) => {
                        log::info!(
                            "mbox: {user}: delivery to {} failed: {failure}",
                            want.folder
                        )
                    }
                    _ => log::warn!(
                        "mbox: {user}: delivery to {} failed: {failure}",
                        want.folder
                    ),
                }
                Err(failure.into_delivery(self.cfg.quota_permfail))
            }
        }
    }
}
