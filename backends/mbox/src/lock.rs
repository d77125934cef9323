//! Locking: the process-wide per-mailbox queue (so threads of lmtpd never poll each other
//! through file locks) and the configured file locks (`fcntl`, `flock`, `dotlock`), all
//! bounded by one deadline.
//!
//! File locks are taken all-or-nothing: each method is tried without blocking in the
//! configured order; when one is busy, those already taken are released in reverse order
//! and the whole set is retried after a short randomised pause (Debian Policy §11.6's
//! alternative to blocking). Holding nothing while waiting means a program that takes the
//! same locks in the opposite order cannot deadlock with us.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
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
// The in-process queue.

/// The FIFO queue of one mailbox inside this process.
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    cv: Condvar,
}

#[derive(Default)]
struct GateState {
    held: bool,
    next: u64,
    queue: VecDeque<u64>,
    /// A batch whose leader holds the mailbox's file locks and still accepts copies.
    batch: Option<Arc<Batch>>,
}

/// Copies appended, not yet fsynced, to a mailbox whose file locks a leading delivery holds.
/// The threads queued behind the leader append their copies to the same open file in turn
/// and wait; the leader queues once more behind them, then fsyncs once for all of them
/// (truncating all of them away again if that fails), unlocks and publishes the outcome.
pub(crate) struct Batch {
    /// The open, locked mailbox; taken away by the leader before it passes its turn on, so
    /// that the descriptor is closed while this process still holds the locks (closing any
    /// descriptor of a file drops the process's `fcntl` locks on it).
    file: Mutex<Option<Arc<File>>>,
    /// A member's failed append could not be truncated back durably: its fsync may have
    /// consumed a writeback error of earlier copies, so the whole batch is given up.
    poisoned: AtomicBool,
    result: Mutex<Option<Result<(), String>>>,
    done: Condvar,
}

impl Batch {
    /// A batch on the open, locked mailbox `file`.
    pub(crate) fn new(file: Arc<File>) -> Arc<Batch> {
        Arc::new(Batch {
            file: Mutex::new(Some(file)),
            poisoned: AtomicBool::new(false),
            result: Mutex::new(None),
            done: Condvar::new(),
        })
    }

    /// The open mailbox, for a member holding the turn (`None` once the leader closed it).
    /// The member drops it before giving up its turn.
    pub(crate) fn file(&self) -> Option<Arc<File>> {
        lock(&self.file).clone()
    }

    /// Marks the batch's durability as in doubt (see `poisoned`).
    pub(crate) fn poison(&self) {
        self.poisoned.store(true, Ordering::SeqCst);
    }

    /// True when a member poisoned the batch.
    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::SeqCst)
    }

    /// The leader's last step before closing its own descriptor: no member can reach it.
    pub(crate) fn forget_file(&self) {
        lock(&self.file).take();
    }

    /// Publishes the outcome of the batch's fsync to every member (the first outcome
    /// published stands).
    pub(crate) fn finish(&self, result: Result<(), String>) {
        lock(&self.result).get_or_insert(result);
        self.done.notify_all();
    }

    /// Waits for the leader's fsync: `Ok` once every copy of the batch is durable.
    pub(crate) fn wait(&self) -> Result<(), String> {
        let mut r = lock(&self.result);
        loop {
            if let Some(result) = r.as_ref() {
                return result.clone();
            }
            r = self.done.wait(r).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Every mailbox some thread of this process is delivering to or waiting for. Process-wide
/// because POSIX record locks are per process: two stores in one process must queue too.
static GATES: Mutex<BTreeMap<PathBuf, Arc<Gate>>> = Mutex::new(BTreeMap::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A reference to a registered gate; dropping the last one unregisters the gate.
struct Ticket {
    key: PathBuf,
    gate: Option<Arc<Gate>>,
}

impl Ticket {
    fn new(key: &Path) -> Self {
        let gate = Arc::clone(lock(&GATES).entry(key.to_path_buf()).or_default());
        Ticket {
            key: key.to_path_buf(),
            gate: Some(gate),
        }
    }

    fn gate(&self) -> &Gate {
        match &self.gate {
            Some(gate) => gate,
            None => unreachable!("a ticket keeps its gate until dropped"),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut map = lock(&GATES);
        // Clones are only made and dropped under the map lock, so the count is exact here.
        drop(self.gate.take());
        if map
            .get(&self.key)
            .is_some_and(|g| Arc::strong_count(g) == 1)
        {
            map.remove(&self.key);
        }
    }
}

/// This thread's turn at one mailbox; the next thread in line goes when it is dropped.
pub(crate) struct Turn {
    /// Always `Some` until [`Turn::lead_batch`] takes it over (then dropping does nothing).
    ticket: Option<Ticket>,
}

/// Held by a batch leader: if it unwinds before publishing the outcome, the members are
/// told their copies failed instead of waiting forever.
pub(crate) struct LeaderGuard(pub(crate) Arc<Batch>);

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        self.0
            .finish(Err("the delivery leading this batch failed".into()));
    }
}

impl Turn {
    fn gate(&self) -> &Gate {
        match &self.ticket {
            Some(ticket) => ticket.gate(),
            None => unreachable!("a turn keeps its ticket until lead_batch consumes it"),
        }
    }

    /// The batch open on this mailbox, if a leader holds its locks and takes more copies.
    pub(crate) fn batch(&self) -> Option<Arc<Batch>> {
        lock(&self.gate().state).batch.clone()
    }

    /// True when other threads of this process are queued for this mailbox.
    pub(crate) fn others_waiting(&self) -> bool {
        !lock(&self.gate().state).queue.is_empty()
    }

    /// Opens `batch` for the threads queued now, queues this thread behind them and passes
    /// the turn on, all in one step (so nobody can arrive in between and find the mailbox
    /// locked but no batch open, and the gate holding the batch stays registered); returns
    /// when this thread is at the front again, with the batch closed. There is no deadline:
    /// the leader holds the file locks and must get its turn back to fsync, truncate or
    /// unlock, and the members ahead of it each append one copy.
    pub(crate) fn lead_batch(mut self, batch: Arc<Batch>) -> Turn {
        let Some(ticket) = self.ticket.take() else {
            unreachable!("a turn keeps its ticket until lead_batch consumes it")
        };
        let me = {
            let gate = ticket.gate();
            let mut st = lock(&gate.state);
            st.batch = Some(batch);
            let me = st.next;
            st.next += 1;
            st.queue.push_back(me);
            st.held = false;
            drop(st);
            gate.cv.notify_all();
            me
        };
        let turn = match wait_turn(ticket, me, None) {
            Ok(turn) => turn,
            Err(_) => unreachable!("a wait without deadline only ends with the turn"),
        };
        lock(&turn.gate().state).batch = None;
        turn
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(ticket) = &self.ticket {
            let gate = ticket.gate();
            lock(&gate.state).held = false;
            gate.cv.notify_all();
        }
    }
}

/// Threads queued (not holding the turn) for the mailbox `key`, for tests.
#[cfg(test)]
pub(crate) fn waiting(key: &Path) -> usize {
    let gate = lock(&GATES).get(key).cloned();
    gate.map_or(0, |g| lock(&g.state).queue.len())
}

/// Waits (first come, first served) until no other thread of this process is delivering to
/// the mailbox `key`, or until `deadline` (then `None`).
pub(crate) fn queue(key: &Path, deadline: Instant) -> Option<Turn> {
    let ticket = Ticket::new(key);
    let me = {
        let mut st = lock(&ticket.gate().state);
        let me = st.next;
        st.next += 1;
        st.queue.push_back(me);
        me
    };
    wait_turn(ticket, me, Some(deadline)).ok()
}

/// Waits until `me`, queued on `ticket`'s gate, is at the front and the turn is free; at
/// `deadline` (if any) leaves the queue and hands the ticket back.
fn wait_turn(ticket: Ticket, me: u64, deadline: Option<Instant>) -> Result<Turn, Ticket> {
    let gate = ticket.gate();
    let mut st = lock(&gate.state);
    while st.held || st.queue.front() != Some(&me) {
        let Some(deadline) = deadline else {
            st = gate.cv.wait(st).unwrap_or_else(|p| p.into_inner());
            continue;
        };
        let now = Instant::now();
        if now >= deadline {
            st.queue.retain(|&t| t != me);
            drop(st);
            gate.cv.notify_all(); // the front of the queue may have changed
            return Err(ticket);
        }
        st = match gate.cv.wait_timeout(st, deadline - now) {
            Ok((st, _)) => st,
            Err(poisoned) => poisoned.into_inner().0,
        };
    }
    st.queue.pop_front();
    st.held = true;
    drop(st);
    Ok(Turn {
        ticket: Some(ticket),
    })
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
