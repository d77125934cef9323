//! Writing the copies of one message to several recipients on a few threads at once: each
//! copy's outcome is reported (on the calling thread) as soon as it is durable, and no new
//! copy is started once the caller says the client is gone.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;

use lmtpd_store::{DeliveryError, Recipient};

/// Runs `one` for every recipient on up to `lanes` threads (the calling thread is one of
/// them) and passes each outcome to `report` with the recipient's index, on the calling
/// thread, in completion order. When `report` returns false no further recipient is
/// started; the ones already running finish, unreported. If no helper thread can be
/// started, everything runs on the calling thread.
pub(crate) fn deliver_parallel<F>(
    rcpts: &[Recipient],
    lanes: usize,
    report: &mut dyn FnMut(usize, Result<(), DeliveryError>) -> bool,
    one: F,
) where
    F: Fn(&Recipient) -> Result<(), DeliveryError> + Sync,
{
    let lanes = lanes.clamp(1, rcpts.len().max(1));
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    // The next recipient nobody has started, unless the client is gone.
    let take = || {
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        let i = next.fetch_add(1, Ordering::SeqCst);
        (i < rcpts.len()).then_some(i)
    };
    thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, Result<(), DeliveryError>)>();
        for _ in 1..lanes {
            let tx = tx.clone();
            let (take, one) = (&take, &one);
            let spawned = thread::Builder::new()
                .name("lmtpd-copy".into())
                .spawn_scoped(scope, move || {
                    while let Some(i) = take() {
                        if tx.send((i, one(&rcpts[i]))).is_err() {
                            break;
                        }
                    }
                });
            if let Err(err) = spawned {
                log::warn!("maildir: cannot start a copy thread ({err}); copying on fewer");
                break;
            }
        }
        drop(tx);
        let mut deliver = |i: usize, result| {
            if !report(i, result) {
                stop.store(true, Ordering::SeqCst);
            }
        };
        // The calling thread copies too, reporting the helpers' outcomes in between.
        while let Some(i) = take() {
            let result = one(&rcpts[i]);
            deliver(i, result);
            while let Ok((j, r)) = rx.try_recv() {
                deliver(j, r);
            }
        }
        for (j, r) in rx {
            deliver(j, r);
        }
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Mutex;
    use std::time::Duration;

    fn rcpts(n: usize) -> Vec<Recipient> {
        (0..n)
            .map(|i| Recipient::new(&format!("u{i}"), "example.org"))
            .collect()
    }

    #[test]
    fn every_recipient_is_reported_once_with_its_own_outcome() {
        let list = rcpts(9);
        let threads = Mutex::new(HashSet::new());
        let mut seen = Vec::new();
        deliver_parallel(
            &list,
            4,
            &mut |i, r| {
                seen.push((i, r.is_ok()));
                true
            },
            |rcpt| {
                threads.lock().unwrap().insert(thread::current().id());
                std::thread::sleep(Duration::from_millis(20));
                if rcpt.local == "u4" {
                    Err(DeliveryError::local_error())
                } else {
                    Ok(())
                }
            },
        );
        seen.sort();
        let want: Vec<(usize, bool)> = (0..9).map(|i| (i, i != 4)).collect();
        assert_eq!(seen, want);
        assert!(
            threads.lock().unwrap().len() > 1,
            "copies ran on several threads"
        );
    }

    #[test]
    fn no_recipient_is_started_after_the_client_is_gone() {
        let list = rcpts(20);
        let started = AtomicUsize::new(0);
        let mut reports = 0;
        deliver_parallel(
            &list,
            1,
            &mut |_, _| {
                reports += 1;
                reports < 3
            },
            |_| {
                started.fetch_add(1, Ordering::SeqCst);
                Ok(())
            },
        );
        assert_eq!(reports, 3);
        assert_eq!(
            started.load(Ordering::SeqCst),
            3,
            "one lane: nothing after the stop"
        );
    }

    #[test]
    fn a_single_recipient_runs_on_the_calling_thread() {
        let list = rcpts(1);
        let caller = thread::current().id();
        let mut n = 0;
        deliver_parallel(
            &list,
            4,
            &mut |_, r| {
                n += 1;
                r.is_ok()
            },
            |_| {
                assert_eq!(thread::current().id(), caller);
                Ok(())
            },
        );
        assert_eq!(n, 1);
    }
}
