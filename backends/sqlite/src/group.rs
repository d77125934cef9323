//! Group commit: concurrent deliveries write into one shared `BEGIN IMMEDIATE` transaction on
//! one writer connection, each recipient inside its own `SAVEPOINT`, and whoever waits first
//! commits everything staged so far with one `COMMIT` (one WAL fsync under
//! `synchronous=FULL`). No outcome is `Ok` before the `COMMIT` that contains it returned.
//!
//! A recipient whose step fails is rolled back to its savepoint alone, so its failure never
//! touches the others' rows. Only a failure of the transaction itself (a failed `COMMIT`, or
//! SQLite rolling the whole transaction back after an I/O error or a full disk) fails every
//! recipient staged in it: none of them was stored, so each gets a temporary error.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use rusqlite::Connection;

use crate::error::{classify, Class, Failure};

/// Why a group transaction did not commit, shared by every recipient staged in it.
#[derive(Clone, Debug)]
pub(crate) struct GroupFailure {
    /// How the SQLite error is answered.
    pub(crate) class: Class,
    /// What happened, for the log.
    pub(crate) text: String,
}

/// One group transaction: resolved once, when it committed or was lost.
#[derive(Debug, Default)]
pub(crate) struct Epoch {
    result: OnceLock<Result<(), GroupFailure>>,
}

impl Epoch {
    fn resolve(&self, result: Result<(), GroupFailure>) {
        // Resolved exactly once, under the writer lock; a second call is a no-op.
        let _ = self.result.set(result);
    }
}

struct Inner {
    conn: Connection,
    /// The open transaction, if any; every unresolved epoch is this one.
    open: Option<Arc<Epoch>>,
    /// Successful items staged in the open transaction (someone will wait for them).
    members: usize,
}

/// The writer connection and its group transaction.
pub(crate) struct Writer {
    inner: Mutex<Inner>,
    /// Threads waiting to stage work; a committer lets them in first.
    arriving: AtomicUsize,
    /// `COMMIT`s that succeeded (for tests and the debug log).
    commits: AtomicU64,
}

/// One staged item: its step's result and, for a success, the epoch to wait for.
pub(crate) type Staged<T> = (Result<T, Failure>, Option<Arc<Epoch>>);

/// How often a committer steps aside for arriving stagers before it commits anyway.
const MAX_YIELDS: usize = 8;

/// Rolls a recipient's savepoint back if its step did not finish (an error or a panic).
struct SavepointGuard<'c> {
    conn: &'c Connection,
    armed: bool,
}

/// Undoes the recipient's savepoint. When that fails, the whole transaction is rolled back
/// so the failed recipient's rows can never reach a COMMIT; returns false then (the caller
/// fails everything staged in it).
fn rollback_savepoint(conn: &Connection) -> bool {
    if conn.is_autocommit() {
        return true; // SQLite already rolled the transaction back; check_lost sees it
    }
    match conn.execute_batch("ROLLBACK TO rcpt; RELEASE rcpt") {
        Ok(()) => true,
        Err(err) => {
            log::warn!("sqlite: cannot roll back a recipient's savepoint: {err}");
            if let Err(err) = conn.execute_batch("ROLLBACK") {
                log::error!("sqlite: cannot roll back the delivery transaction: {err}");
            }
            false
        }
    }
}

impl SavepointGuard<'_> {
    /// Ends the recipient's step: keeps its savepoint's work (already released) when it
    /// succeeded, else rolls it back. False when the transaction had to be given up.
    fn settle(mut self, failed: bool) -> bool {
        self.armed = false;
        !failed || rollback_savepoint(self.conn)
    }
}

impl Drop for SavepointGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            rollback_savepoint(self.conn);
        }
    }
}

fn group_failure(what: &str, err: &rusqlite::Error) -> GroupFailure {
    GroupFailure {
        class: classify(err),
        text: format!("{what}: {err}"),
    }
}

impl Writer {
    /// Wraps a connection that already has the pragmas of [`crate::conn::init`].
    pub(crate) fn new(conn: Connection) -> Self {
        Writer {
            inner: Mutex::new(Inner {
                conn,
                open: None,
                members: 0,
            }),
            arriving: AtomicUsize::new(0),
            commits: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of successful group `COMMIT`s so far.
    #[cfg(test)]
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Runs `f` on the writer connection outside any group transaction (tests, set-up).
    #[cfg(test)]
    pub(crate) fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        let g = self.lock();
        f(&g.conn)
    }

    /// Runs `step` for every item inside the open group transaction (beginning one when
    /// none is open), each in its own savepoint. Returns, per item, the step's result and,
    /// for a success, the epoch that must commit before the success may be reported (see
    /// [`Writer::wait`]).
    pub(crate) fn stage<I, T>(
        &self,
        items: I,
        mut step: impl FnMut(&Connection, I::Item) -> Result<T, Failure>,
    ) -> Vec<Staged<T>>
    where
        I: IntoIterator,
    {
        self.arriving.fetch_add(1, Ordering::SeqCst);
        let mut g = self.lock();
        self.arriving.fetch_sub(1, Ordering::SeqCst);
        let mut out = Vec::new();
        // Once BEGIN failed (the write lock stayed busy past the timeout), the remaining
        // items fail with the same error instead of waiting out the timeout again each.
        let mut no_begin: Option<GroupFailure> = None;
        for item in items {
            if let Some(failure) = &no_begin {
                let mut failure = failure.clone();
                failure
                    .text
                    .push_str(" (not retried for this copy: BEGIN already failed)");
                out.push((Err(Failure::Group(failure)), None));
                continue;
            }
            if g.open.is_none() {
                if !g.conn.is_autocommit() {
                    // Left over from a ROLLBACK that failed: nothing in it was acknowledged.
                    if let Err(err) = g.conn.execute_batch("ROLLBACK") {
                        log::error!("sqlite: cannot end a leftover transaction: {err}");
                    }
                }
                if let Err(err) = g.conn.execute_batch("BEGIN IMMEDIATE") {
                    no_begin = Some(group_failure("begin delivery transaction", &err));
                    out.push((Err(Failure::sql("begin delivery transaction")(err)), None));
                    continue;
                }
                g.open = Some(Arc::new(Epoch::default()));
                g.members = 0;
            }
            let epoch = g.open.clone();
            if let Err(err) = g.conn.execute_batch("SAVEPOINT rcpt") {
                out.push((Err(Failure::sql("begin recipient savepoint")(err)), None));
                Self::check_lost(&mut g);
                continue;
            }
            let (result, sound) = {
                let guard = SavepointGuard {
                    conn: &g.conn,
                    armed: true,
                };
                let result = step(&g.conn, item).and_then(|v| {
                    g.conn
                        .execute_batch("RELEASE rcpt")
                        .map(|()| v)
                        .map_err(Failure::sql("release recipient savepoint"))
                });
                let sound = guard.settle(result.is_err());
                (result, sound)
            };
            if !sound {
                if let Some(lost) = g.open.take() {
                    lost.resolve(Err(GroupFailure {
                        class: Class::Other,
                        text: "a recipient's savepoint could not be rolled back; the group \
                               transaction was given up"
                            .into(),
                    }));
                }
            }
            let ok = result.is_ok();
            if ok {
                g.members += 1;
            }
            out.push((result, if ok { epoch } else { None }));
            Self::check_lost(&mut g);
        }
        // A transaction nobody will wait for (every item so far failed) must not stay open:
        // it would hold SQLite's write lock against other programs until the next delivery.
        if g.members == 0 {
            if let Some(empty) = g.open.take() {
                if let Err(err) = g.conn.execute_batch("ROLLBACK") {
                    log::warn!("sqlite: cannot end an empty delivery transaction: {err}");
                }
                empty.resolve(Err(GroupFailure {
                    class: Class::Other,
                    text: "no copy was staged in this transaction".into(),
                }));
            }
        }
        out
    }

    /// SQLite rolls a whole transaction back on some errors (I/O error, full disk); then
    /// everything staged in it is gone and its epoch fails.
    fn check_lost(g: &mut Inner) {
        if g.conn.is_autocommit() {
            if let Some(lost) = g.open.take() {
                lost.resolve(Err(GroupFailure {
                    class: Class::Other,
                    text: "the group transaction was rolled back by SQLite".into(),
                }));
            }
        }
    }

    /// Returns once `epoch` is resolved: `Ok` after the `COMMIT` that contains it returned,
    /// or the failure shared by everything staged in it. The first waiter commits for the
    /// whole group.
    pub(crate) fn wait(&self, epoch: &Arc<Epoch>) -> Result<(), GroupFailure> {
        let mut yields = 0;
        loop {
            if let Some(r) = epoch.result.get() {
                return r.clone();
            }
            let mut g = self.lock();
            if let Some(r) = epoch.result.get() {
                return r.clone();
            }
            // Deliveries are about to join: let them into this transaction first.
            if yields < MAX_YIELDS && self.arriving.load(Ordering::SeqCst) > 0 {
                yields += 1;
                drop(g);
                std::thread::yield_now();
                continue;
            }
            match g.open.take() {
                Some(open) if Arc::ptr_eq(&open, epoch) => {
                    let result = g.conn.execute_batch("COMMIT");
                    if result.is_err() && !g.conn.is_autocommit() {
                        if let Err(err) = g.conn.execute_batch("ROLLBACK") {
                            log::warn!("sqlite: rollback after a failed commit: {err}");
                        }
                    }
                    match &result {
                        Ok(()) => {
                            self.commits.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(err) => log::warn!("sqlite: group commit failed: {err}"),
                    }
                    open.resolve(result.map_err(|err| group_failure("commit deliveries", &err)));
                }
                other => {
                    // Cannot happen (only the open epoch is unresolved); never hang on it.
                    g.open = other;
                    epoch.resolve(Err(GroupFailure {
                        class: Class::Other,
                        text: "delivery transaction lost".into(),
                    }));
                }
            }
        }
    }
}
