//! The process-wide per-mailbox queue: threads of lmtpd delivering to the same mailbox wait
//! their turn here, in FIFO order and bounded by the delivery's deadline, instead of polling
//! each other through file locks; and the batches through which a turn holding the file
//! locks lets the threads queued behind it append under those locks and share one fsync.
//! The file locks themselves are in `lock`.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

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
