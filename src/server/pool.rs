//! The bounded pool of worker threads, fed by a bounded crossbeam channel. Threads are
//! started on demand, one per admitted session beyond the idle ones, up to `workers`; a
//! thread left idle for [`IDLE_EXIT`] exits (down to [`KEEP_IDLE`]), so memory follows the
//! load. A connection is admitted only when a thread will take it at once: the channel
//! never holds a connection nobody is free to serve, so nothing waits silently. Past
//! `workers` sessions the accept loop answers `421 4.3.2`. A session that panics is caught
//! here: its client gets `421 4.3.0` and the thread and the pool's counts stay whole.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

use super::conn::Conn;
use crate::metrics;
use crate::proto::Reply;

/// How long a worker thread waits for a connection before it exits.
pub const IDLE_EXIT: Duration = Duration::from_secs(60);
/// Idle threads kept however long they wait, so a lone client never pays a thread start.
pub const KEEP_IDLE: usize = 2;
/// Stack of each worker thread. Measured (README "Capacity"): a worker that delivered one
/// transaction to Maildir, mbox and SQLite at once, 4 KiB and 2 MiB messages, had touched
/// 20 KiB of its stack (release build, `Rss` of its mapping in /proc/PID/smaps). 512 KiB
/// leaves 25 times that for deeper paths and debug builds; untouched pages cost only
/// address space (4096 workers: 2 GiB of it).
pub const STACK_SIZE: usize = 512 * 1024;

/// Why [`Pool::submit`] gave a connection back.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// `workers` sessions are running already.
    Full,
    /// A new thread could not be started (out of memory or threads).
    NoThread,
    /// The pool is shutting down.
    Closed,
}

/// What the counts under the lock say.
#[derive(Default)]
struct State {
    /// Worker threads alive.
    threads: usize,
    /// Sessions admitted and not yet finished (running, or handed over and about to run).
    sessions: usize,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled whenever a thread exits.
    exited: Condvar,
    max: usize,
    handler: Arc<dyn Fn(&mut Conn) + Send + Sync>,
    rx: Receiver<Conn>,
}

impl Shared {
    fn guard(&self) -> MutexGuard<'_, State> {
        // No code panics while holding this lock; recover the counts if one ever did.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The counts, for reading or changing; whatever they are when the returned guard is
    /// dropped is what `/metrics` shows (the pool's counts are the only ones).
    fn lock(&self) -> Counts<'_> {
        Counts(self.guard())
    }
}

/// The locked counts; publishes them to the metrics when released.
struct Counts<'a>(MutexGuard<'a, State>);

impl std::ops::Deref for Counts<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.0
    }
}

impl std::ops::DerefMut for Counts<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.0
    }
}

impl Drop for Counts<'_> {
    fn drop(&mut self) {
        metrics::get().set_pool(self.0.threads, self.0.sessions);
    }
}

/// Worker threads and the channel in front of them.
pub struct Pool {
    tx: Option<Sender<Conn>>,
    shared: Arc<Shared>,
}

impl Pool {
    /// A pool that runs `handler` for each connection on at most `workers` threads at once.
    /// [`KEEP_IDLE`] threads are started now; the rest when connections need them.
    pub fn start(
        workers: usize,
        handler: Arc<dyn Fn(&mut Conn) + Send + Sync>,
    ) -> std::io::Result<Pool> {
        let max = workers.max(1);
        let (tx, rx) = bounded::<Conn>(max);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            exited: Condvar::new(),
            max,
            handler,
            rx,
        });
        metrics::get().set_workers_max(max);
        let pool = Pool {
            tx: Some(tx),
            shared,
        };
        for _ in 0..KEEP_IDLE.min(max) {
            pool.shared.lock().threads += 1;
            if let Err(e) = spawn(&pool.shared) {
                pool.shared.lock().threads -= 1;
                return Err(e);
            }
        }
        Ok(pool)
    }

    /// Hands a connection to a worker (starting one when no idle thread is left), or gives
    /// it back with the reason when it cannot be served at once.
    pub fn submit(&self, conn: Conn) -> Result<(), (Conn, Refused)> {
        let Some(tx) = &self.tx else {
            return Err((conn, Refused::Closed));
        };
        let need_thread = {
            let mut st = self.shared.lock();
            if st.sessions >= self.shared.max {
                return Err((conn, Refused::Full));
            }
            st.sessions += 1;
            // Every thread is running a session or about to take a handed-over one: one
            // more session needs one more thread.
            let need = st.sessions > st.threads;
            if need {
                st.threads += 1;
            }
            need
        };
        if need_thread {
            if let Err(e) = spawn(&self.shared) {
                log::error!("cannot start a worker thread: {e}");
                let mut st = self.shared.lock();
                st.threads -= 1;
                st.sessions -= 1;
                return Err((conn, Refused::NoThread));
            }
        }
        match tx.try_send(conn) {
            Ok(()) => Ok(()),
            // Cannot happen (capacity = max >= sessions), but never lose the count.
            Err(TrySendError::Full(c)) | Err(TrySendError::Disconnected(c)) => {
                self.shared.lock().sessions -= 1;
                Err((c, Refused::Full))
            }
        }
    }

    /// Sessions admitted and not finished.
    pub fn sessions(&self) -> usize {
        self.shared.lock().sessions
    }

    /// Stops taking connections and waits up to `deadline` for running sessions to end.
    /// Returns true when every worker finished in time.
    pub fn finish(mut self, deadline: Duration) -> bool {
        self.tx = None;
        let end = Instant::now() + deadline;
        let mut st = self.shared.guard();
        while st.threads > 0 {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = match self.shared.exited.wait_timeout(st, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }
}

/// Starts one worker thread; the caller has counted it in `threads` already.
fn spawn(shared: &Arc<Shared>) -> std::io::Result<()> {
    let shared = Arc::clone(shared);
    thread::Builder::new()
        .name("worker".into())
        .stack_size(STACK_SIZE)
        .spawn(move || work(&shared))
        .map(drop)
}

fn work(shared: &Shared) {
    loop {
        match shared.rx.recv_timeout(IDLE_EXIT) {
            Ok(mut conn) => {
                let m = metrics::get();
                m.session_started();
                run_caught(shared, &mut conn);
                m.session_ended();
                // The slot is free before the client sees the connection end.
                shared.lock().sessions -= 1;
                conn.close();
            }
            Err(RecvTimeoutError::Timeout) => {
                let mut st = shared.lock();
                // Leave only when the threads that stay still cover every handed-over
                // connection (threads - sessions is the number of idle threads minus the
                // connections waiting for one) and the idle reserve.
                if st.threads > st.sessions && st.threads - st.sessions > KEEP_IDLE {
                    st.threads -= 1;
                    shared.exited.notify_all();
                    return;
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                let mut st = shared.lock();
                st.threads -= 1;
                shared.exited.notify_all();
                return;
            }
        }
    }
}

/// Runs the handler; a panic is logged with the connection id and the client told
/// `421 4.3.0` instead of being left hanging.
fn run_caught(shared: &Shared, conn: &mut Conn) {
    let handler = &shared.handler;
    let r = panic::catch_unwind(AssertUnwindSafe(|| handler(conn)));
    if let Err(payload) = r {
        metrics::get().session_panicked();
        log::error!(
            "conn={} session panicked (a bug; please report it): {}; closing with 421 4.3.0",
            conn.id,
            panic_text(&*payload)
        );
        conn.say(&Reply::internal_error());
    }
}

/// The message of a panic payload.
pub fn panic_text(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}
