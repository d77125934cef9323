//! File locks: the configured `fcntl`, `flock` and `dotlock` locks on one mailbox, bounded by
//! the delivery's deadline (the in-process queue in front of them is `queue`).
//!
//! File locks are taken all-or-nothing: each method is tried without blocking in the
//! configured order; when one is busy, those already taken are released in reverse order
//! and the whole set is retried after a short randomised pause (Debian Policy §11.6's
//! alternative to blocking). Holding nothing while waiting means a program that takes the
//! same locks in the opposite order cannot deadlock with us.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{io_at, Failure};
use crate::sys::{self, Attempt};
use crate::LockKind;

/// First pause between two rounds of lock attempts; it grows to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(5);
/// Longest pause between two rounds of lock attempts.
const MAX_PAUSE: Duration = Duration::from_millis(200);

#[cfg(test)]
thread_local! {
    /// Lock events of the current thread (`take fcntl`, `release dotlock`, ...), for tests.
    pub(crate) static EVENTS: std::cell::RefCell<Vec<String>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Records a lock event for the tests; compiled out otherwise.
#[allow(unused_variables)]
fn event(what: &str, kind: LockKind) {
    #[cfg(test)]
    EVENTS.with(|e| e.borrow_mut().push(format!("{what} {}", kind.name())));
}

// ---------------------------------------------------------------------------------------
// File locks.

/// A file lock this delivery holds.
enum Taken {
    Fcntl,
    Flock,
    /// The dotlock file and the identity of the file we created, so we never remove
    /// someone else's.
    Dotlock {
        path: PathBuf,
        dev: u64,
        ino: u64,
    },
}

impl Taken {
    fn kind(&self) -> LockKind {
        match self {
            Taken::Fcntl => LockKind::Fcntl,
            Taken::Flock => LockKind::Flock,
            Taken::Dotlock { .. } => LockKind::Dotlock,
        }
    }
}

/// The file locks held on one open mailbox; released in reverse order when dropped.
pub(crate) struct Held<'a> {
    file: &'a File,
    taken: Vec<Taken>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        while let Some(t) = self.taken.pop() {
            event("release", t.kind());
            let result = match &t {
                Taken::Fcntl => sys::fcntl_unlock(self.file),
                Taken::Flock => sys::flock_unlock(self.file),
                Taken::Dotlock { path, dev, ino } => remove_dotlock(path, *dev, *ino),
            };
            if let Err(err) = result {
                log::warn!("mbox: cannot release {} lock: {err}", t.kind().name());
            }
        }
    }
}

/// Removes our dotlock, unless it was replaced by someone else's in the meantime.
fn remove_dotlock(path: &Path, dev: u64, ino: u64) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.dev() == dev && meta.ino() == ino => fs::remove_file(path),
        Ok(_) => {
            log::warn!(
                "mbox: {} was replaced while we held it; leaving it",
                path.display()
            );
            Ok(())
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            log::warn!("mbox: {} vanished while we held it", path.display());
            Ok(())
        }
        Err(err) => Err(err),
    }
}

/// The dotlock path of `mbox`: `<mbox>.lock`.
pub(crate) fn dotlock_path(mbox: &Path) -> PathBuf {
    let mut s = mbox.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// A dotlock younger than this is never judged by its owner's pid (its writer may not have
/// written the pid yet).
const DEAD_OWNER_GRACE: Duration = Duration::from_secs(2);

/// True when the dotlock holds a process id (as ours and liblockfile's do) and no such
/// process exists on this host: its owner was killed and will never remove it.
fn owner_is_gone(path: &Path) -> bool {
    let Ok(text) = fs::read_to_string(path) else {
        return false;
    };
    match text.trim().parse::<u32>() {
        Ok(pid) if pid != std::process::id() => !crate::sys::process_exists(pid),
        _ => false,
    }
}

/// One attempt at the dotlock: `Ok(None)` when someone else holds a fresh one. A lock whose
/// ctime is more than `stale_after` ago, or older than two seconds and naming a process that
/// no longer exists, is removed and the attempt repeated once.
fn try_dotlock(mbox: &Path, stale_after: Duration) -> Result<Option<Taken>, Failure> {
    let path = dotlock_path(mbox);
    for _ in 0..2 {
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut file) => {
                let meta = file.metadata().map_err(io_at("stat", &path));
                let written = writeln!(file, "{}", std::process::id());
                let meta = match (meta, written) {
                    (Ok(meta), Ok(())) => meta,
                    (Err(failure), _) => {
                        let _ = fs::remove_file(&path);
                        return Err(failure);
                    }
                    (_, Err(err)) => {
                        let _ = fs::remove_file(&path);
                        return Err(io_at("write", &path)(err));
                    }
                };
                return Ok(Some(Taken::Dotlock {
                    path,
                    dev: meta.dev(),
                    ino: meta.ino(),
                }));
            }
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(io_at("create", &path)(err)),
        }
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue, // just released
            Err(err) => return Err(io_at("stat", &path)(err)),
        };
        let changed = UNIX_EPOCH
            + Duration::from_secs(meta.ctime().max(0) as u64)
            + Duration::from_nanos(meta.ctime_nsec().max(0) as u64);
        let age = SystemTime::now().duration_since(changed).ok();
        let dead_owner = age.is_some_and(|a| a > DEAD_OWNER_GRACE) && owner_is_gone(&path);
        match age {
            Some(age) if age > stale_after || dead_owner => log::info!(
                "mbox: removing stale {} (changed {} s ago{})",
                path.display(),
                age.as_secs(),
                if dead_owner {
                    ", its process is gone"
                } else {
                    ""
                }
            ),
            _ => return Ok(None), // fresh (or from the future: not ours to judge)
        }
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(io_at("remove stale", &path)(err)),
        }
    }
    Ok(None)
}

/// Tries to take one lock without waiting: `Ok(None)` when it is busy.
fn try_one(
    kind: LockKind,
    file: &File,
    mbox: &Path,
    stale_after: Duration,
) -> Result<Option<Taken>, Failure> {
    let io = |err| io_at("lock", mbox)(err);
    Ok(match kind {
        LockKind::Fcntl => match sys::fcntl_try_lock(file).map_err(io)? {
            Attempt::Locked => Some(Taken::Fcntl),
            Attempt::Busy => None,
        },
        LockKind::Flock => match sys::flock_try_lock(file).map_err(io)? {
            Attempt::Locked => Some(Taken::Flock),
            Attempt::Busy => None,
        },
        LockKind::Dotlock => try_dotlock(mbox, stale_after)?,
    })
}

/// A pause of up to `base` plus a pseudo-random part, so competing deliverers spread out.
fn jittered(base: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id().wrapping_mul(2_654_435_761);
    let spread = (base.as_micros() as u32 / 2).max(1);
    base / 2 + Duration::from_micros(u64::from(nanos % spread))
}

/// Takes every lock in `kinds`, in order, on the open mailbox `file` at `mbox`, waiting
/// until `deadline` at most ([`Failure::Busy`] then).
pub(crate) fn acquire<'a>(
    file: &'a File,
    mbox: &Path,
    kinds: &[LockKind],
    deadline: Instant,
    stale_after: Duration,
) -> Result<Held<'a>, Failure> {
    let mut pause = FIRST_PAUSE;
    loop {
        let mut held = Held {
            file,
            taken: Vec::with_capacity(kinds.len()),
        };
        let mut busy = None;
        for &kind in kinds {
            match try_one(kind, file, mbox, stale_after)? {
                Some(t) => {
                    event("take", kind);
                    held.taken.push(t);
                }
                None => {
                    busy = Some(kind);
                    break;
                }
            }
        }
        let Some(kind) = busy else {
            return Ok(held);
        };
        drop(held);
        let now = Instant::now();
        if now >= deadline {
            return Err(Failure::Busy(format!(
                "{} lock on {} still held by someone else at the lock timeout",
                kind.name(),
                mbox.display()
            )));
        }
        std::thread::sleep(jittered(pause).min(deadline - now));
        pause = (pause * 2).min(MAX_PAUSE);
    }
}
