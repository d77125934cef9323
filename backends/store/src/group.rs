//! One durable step shared by everyone waiting for it: [`SyncGroup`] lets concurrent
//! deliveries share one fsync (or one COMMIT) while each still returns only after a step that
//! *started after its own write*, and with that step's own result.
//!
//! A writer finishes its write (a `link()` into `new/`, rows staged in a transaction), then
//! [`SyncGroup::join`]s the open generation and [`SyncGroup::wait`]s on its ticket. The first
//! waiter while no step runs becomes the leader: it closes the open generation (later joiners
//! start the next one), runs the step once, and publishes the result to every ticket of the
//! generation it closed. Nobody retries a failed step on behalf of a generation: after a
//! failed fsync the kernel may already have dropped the dirty data, so a later "successful"
//! fsync would prove nothing (the fsync-after-error problem).

use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

/// One generation of joiners: resolved once, by the step that covered them.
#[derive(Debug)]
struct Generation<E> {
    result: OnceLock<Result<(), E>>,
}

impl<E> Default for Generation<E> {
    fn default() -> Self {
        Generation {
            result: OnceLock::new(),
        }
    }
}

#[derive(Debug)]
struct State<E> {
    /// The generation new joiners join.
    open: Arc<Generation<E>>,
    /// A leader is running a step now.
    running: bool,
}

/// Shared durable steps for one resource (a directory, a database writer).
#[derive(Debug)]
pub struct SyncGroup<E> {
    state: Mutex<State<E>>,
    done: Condvar,
}

/// A joiner's place in a generation; pass it to [`SyncGroup::wait`].
#[derive(Debug)]
pub struct Ticket<E>(Arc<Generation<E>>);

impl<E> Default for SyncGroup<E> {
    fn default() -> Self {
        SyncGroup {
            state: Mutex::new(State {
                open: Arc::default(),
                running: false,
            }),
            done: Condvar::new(),
        }
    }
}

impl<E: Clone> SyncGroup<E> {
    fn lock(&self) -> MutexGuard<'_, State<E>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Joins the open generation. Call it after the write the step must cover is complete.
    pub fn join(&self) -> Ticket<E> {
        Ticket(Arc::clone(&self.lock().open))
    }

    /// Returns the result of a step that started after `ticket` joined: waits for the one
    /// running, or runs `step` itself (once) for everyone in its generation.
    pub fn wait(&self, ticket: &Ticket<E>, step: impl FnOnce() -> Result<(), E>) -> Result<(), E> {
        let mut step = Some(step);
        let mut s = self.lock();
        loop {
            if let Some(result) = ticket.0.result.get() {
                return result.clone();
            }
            if s.running {
                s = self.done.wait(s).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // Lead: our generation is the open one (an older one would be resolved).
            s.running = true;
            let closing = std::mem::take(&mut s.open);
            drop(s);
            let result = match step.take() {
                Some(step) => step(),
                None => unreachable!("a waiter leads at most once: its generation resolves"),
            };
            // Set exactly once: only the leader that closed a generation resolves it.
            let _ = closing.result.set(result);
            s = self.lock();
            s.running = false;
            self.done.notify_all();
        }
    }

    /// [`SyncGroup::join`] then [`SyncGroup::wait`].
    pub fn sync(&self, step: impl FnOnce() -> Result<(), E>) -> Result<(), E> {
        let ticket = self.join();
        self.wait(&ticket, step)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_waiter_returns_after_a_step_that_started_after_it_joined() {
        // Each writer bumps `written` before joining; a step records how many writes existed
        // when it started. A waiter's step must have seen its own write.
        let group = SyncGroup::<()>::default();
        let written = AtomicUsize::new(0);
        let steps = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..50 {
                        let mine = written.fetch_add(1, Ordering::SeqCst) + 1;
                        let ticket = group.join();
                        let seen = AtomicUsize::new(usize::MAX);
                        let r = group.wait(&ticket, || {
                            steps.fetch_add(1, Ordering::SeqCst);
                            seen.store(written.load(Ordering::SeqCst), Ordering::SeqCst);
                            Ok(())
                        });
                        assert!(r.is_ok());
                        let led = seen.load(Ordering::SeqCst);
                        assert!(
                            led == usize::MAX || led >= mine,
                            "own step covered own write"
                        );
                    }
                });
            }
        });
        let n = steps.load(Ordering::SeqCst);
        assert!((1..=400).contains(&n), "{n} steps for 400 writes");
    }

    #[test]
    fn a_failed_step_fails_its_whole_generation_and_is_not_retried_for_it() {
        let group = SyncGroup::<String>::default();
        let a = group.join();
        let b = group.join();
        let runs = AtomicUsize::new(0);
        let step = || {
            runs.fetch_add(1, Ordering::SeqCst);
            Err("EIO".to_string())
        };
        assert_eq!(group.wait(&a, step), Err("EIO".into()));
        // b joined the same generation: it gets the same failure without a new step.
        assert_eq!(group.wait(&b, || Ok(())), Err("EIO".into()));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // The next joiner starts a fresh generation.
        assert_eq!(group.sync(|| Ok(())), Ok(()));
    }
}
