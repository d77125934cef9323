//! Writing the copies of one message to several recipients on a few threads at once: each
//! lane takes the next recipient nobody has started, stores its copies and reports the
//! outcome straight to the [`Reporter`] (which releases replies in RCPT order); no new
//! recipient is started once the reporter says the client is gone.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use lmtpd_store::{Outcome, Reporter};

/// Runs `one(i)` for every recipient index `0..n` on up to `lanes` threads (the calling
/// thread is one of them) and reports each outcome. After the client is gone no further
/// recipient is started; those already running finish and report. If no helper thread can
/// be started, everything runs on the calling thread.
pub(crate) fn deliver_parallel<F>(n: usize, lanes: usize, reporter: &Reporter, one: F)
where
    F: Fn(usize) -> Outcome + Sync,
{
    let lanes = lanes.clamp(1, n.max(1));
    let next = AtomicUsize::new(0);
    // The next recipient nobody has started, unless the client is gone.
    let take = || {
        if reporter.client_gone() {
            return None;
        }
        let i = next.fetch_add(1, Ordering::SeqCst);
        (i < n).then_some(i)
    };
    let lane = || {
        while let Some(i) = take() {
            if !reporter.report(i, one(i)) {
                break;
            }
        }
    };
    thread::scope(|scope| {
        for _ in 1..lanes {
            let spawned = thread::Builder::new()
                .name("lmtpd-copy".into())
                .spawn_scoped(scope, lane);
            if let Err(err) = spawned {
                log::warn!("maildir: cannot start a copy thread ({err}); copying on fewer");
                break;
            }
        }
        lane();
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use lmtpd_store::{reporter, DeliveryError};
    use std::collections::HashSet;
    use std::sync::{Barrier, Mutex};

    #[test]
    fn every_recipient_is_reported_once_with_its_own_outcome_from_several_threads() {
        let threads = Mutex::new(HashSet::new());
        // Four lanes meet at the barrier, so four distinct threads must have run copies.
        let barrier = Barrier::new(4);
        let (rep, replies) = reporter(9);
        deliver_parallel(9, 4, &rep, |i| {
            threads.lock().unwrap().insert(thread::current().id());
            if i < 4 {
                barrier.wait();
            }
            if i == 4 {
                Err(DeliveryError::local_error())
            } else {
                Ok(())
            }
        });
        drop(rep);
        let seen: Vec<(usize, bool)> = std::iter::from_fn(|| replies.next())
            .map(|(i, r)| (i, r.is_ok()))
            .collect();
        let want: Vec<(usize, bool)> = (0..9).map(|i| (i, i != 4)).collect();
        assert_eq!(seen, want);
        assert_eq!(replies.ignored(), 0, "no recipient reported twice");
        assert_eq!(
            threads.lock().unwrap().len(),
            4,
            "copies ran on four threads"
        );
    }

    #[test]
    fn no_recipient_is_started_after_the_client_is_gone() {
        let started = AtomicUsize::new(0);
        let (rep, replies) = reporter(20);
        deliver_parallel(20, 1, &rep, |_| {
            if started.fetch_add(1, Ordering::SeqCst) == 2 {
                replies.client_gone();
            }
            Ok(())
        });
        assert_eq!(
            started.load(Ordering::SeqCst),
            3,
            "one lane: nothing after the stop"
        );
    }

    #[test]
    fn a_single_recipient_runs_on_the_calling_thread() {
        let caller = thread::current().id();
        let (rep, replies) = reporter(1);
        deliver_parallel(1, 4, &rep, |_| {
            assert_eq!(thread::current().id(), caller);
            Ok(())
        });
        drop(rep);
        assert!(replies.next().is_some_and(|(i, r)| i == 0 && r.is_ok()));
    }
}
