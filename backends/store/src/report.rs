//! The per-recipient reporter: a store reports each recipient's outcome once, in any order
//! and from any thread ([`Reporter`]); the server takes them back strictly in RCPT order, each
//! as soon as every earlier recipient's is known ([`Replies`]), and writes the replies itself.
//!
//! The rules the LMTP reply sequence (RFC 2033 §4.2) needs are kept here, once, for every
//! store: a second report for a recipient is ignored (and logged), a report for an index out
//! of range is ignored, and when the store is done ([`Reporter::close`], or the [`Reporter`] is
//! dropped, also while unwinding from a panic) every recipient it never reported gets `451 4.3.0`, so a faulty
//! store can neither stall the session nor shift replies onto the wrong recipients. When the
//! client has gone, [`Reporter::report`] returns false and [`Reporter::client_gone`] is
//! true, so the store can stop storing copies nobody would learn about.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::DeliveryError;

/// One recipient's outcome: `Ok` when its copy (every copy that succeeded) is durable.
pub type Outcome = Result<(), DeliveryError>;

enum Slot {
    Pending,
    Ready(Outcome),
    Released,
}

struct State {
    slots: Vec<Slot>,
    /// Index of the first recipient not yet released to the server.
    next: usize,
    /// The client is gone: the server will write no more replies.
    gone: bool,
    /// The store is done (the reporter was closed or dropped).
    closed: bool,
    /// Reports ignored because the recipient was reported before or the index is unknown.
    ignored: usize,
}

struct Shared {
    state: Mutex<State>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The store's side: report each recipient's outcome by its index in the request. `Sync`,
/// so several threads of one store may report.
pub struct Reporter {
    shared: Arc<Shared>,
}

/// The server's side: the outcomes in RCPT order.
pub struct Replies {
    shared: Arc<Shared>,
}

/// Stores one delivery of `message` through `store`, on this thread, and returns its
/// outcome (`451 4.3.0` when the store reported none): for a copy that is not one of an
/// LMTP transaction's recipients (a quota warning, an account helper's request).
pub fn deliver_one(
    store: &dyn crate::MailStore,
    message: crate::Message<'_>,
    delivery: crate::Delivery<'_>,
) -> Outcome {
    let deliveries = [delivery];
    let req = crate::Request {
        message,
        deliveries: &deliveries,
    };
    let (rep, replies) = reporter(1);
    {
        let _close = CloseOnDrop(&rep);
        store.deliver(&req, &rep);
    }
    match replies.next() {
        Some((_, outcome)) => outcome,
        None => Err(DeliveryError::local_error().with_source("the store reported nothing")),
    }
}

/// A reporter for `n` recipients and the matching receiver of their outcomes.
pub fn reporter(n: usize) -> (Reporter, Replies) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            slots: (0..n).map(|_| Slot::Pending).collect(),
            next: 0,
            gone: false,
            closed: false,
            ignored: 0,
        }),
        ready: Condvar::new(),
    });
    (
        Reporter {
            shared: Arc::clone(&shared),
        },
        Replies { shared },
    )
}

impl Reporter {
    /// Records recipient `i`'s outcome. Returns false when the client is gone (the store
    /// should store nothing more). A second report for `i`, or an unknown `i`, is ignored.
    pub fn report(&self, i: usize, outcome: Outcome) -> bool {
        let mut s = self.shared.lock();
        match s.slots.get_mut(i) {
            Some(slot @ Slot::Pending) => {
                *slot = Slot::Ready(outcome);
                if i == s.next {
                    self.shared.ready.notify_all();
                }
            }
            Some(_) => {
                s.ignored += 1;
                log::warn!("store reported recipient {i} twice; the second report is ignored");
            }
            None => {
                s.ignored += 1;
                log::warn!("store reported unknown recipient {i}; ignored");
            }
        }
        !s.gone
    }

    /// True once the server has said the client is gone.
    pub fn client_gone(&self) -> bool {
        self.shared.lock().gone
    }
}

impl Reporter {
    /// The store is done: every recipient it did not report gets `451 4.3.0` and the server
    /// stops waiting. Idempotent; dropping the reporter does the same.
    pub fn close(&self) {
        let mut s = self.shared.lock();
        if s.closed {
            return;
        }
        let mut missing = 0;
        for slot in s.slots.iter_mut() {
            if matches!(slot, Slot::Pending) {
                *slot = Slot::Ready(Err(
                    DeliveryError::local_error().with_source("the store reported no outcome")
                ));
                missing += 1;
            }
        }
        if missing > 0 && !s.gone {
            log::warn!("store left {missing} recipient(s) unreported; they get 451 4.3.0");
        }
        s.closed = true;
        self.shared.ready.notify_all();
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.close();
    }
}

/// Closes a borrowed [`Reporter`] when dropped, also while unwinding from a store's panic.
pub struct CloseOnDrop<'r>(pub &'r Reporter);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Replies {
    /// The next recipient's outcome in RCPT order, with its index: waits until it is known.
    /// `None` once every recipient's has been returned.
    pub fn next(&self) -> Option<(usize, Outcome)> {
        let mut s = self.shared.lock();
        loop {
            let i = s.next;
            match s.slots.get_mut(i) {
                None => return None,
                Some(slot @ Slot::Ready(_)) => {
                    let Slot::Ready(outcome) = std::mem::replace(slot, Slot::Released) else {
                        unreachable!("matched Ready just above");
                    };
                    s.next += 1;
                    return Some((i, outcome));
                }
                Some(_) => {
                    // Pending. A closed reporter has filled every pending slot, so this
                    // wait ends: the next report, or the reporter's drop, notifies.
                    s = self.shared.ready.wait(s).unwrap_or_else(|p| p.into_inner());
                }
            }
        }
    }

    /// The next outcome in RCPT order if it is already known, without waiting (tests).
    #[cfg(test)]
    pub(crate) fn try_next(&self) -> Option<(usize, Outcome)> {
        let mut s = self.shared.lock();
        let i = s.next;
        match s.slots.get_mut(i) {
            Some(slot @ Slot::Ready(_)) => {
                let Slot::Ready(outcome) = std::mem::replace(slot, Slot::Released) else {
                    unreachable!("matched Ready just above");
                };
                s.next += 1;
                Some((i, outcome))
            }
            _ => None,
        }
    }

    /// Tells the store the client is gone: its next [`Reporter::report`] returns false.
    pub fn client_gone(&self) {
        self.shared.lock().gone = true;
    }

    /// Reports the store sent that were ignored (second reports, unknown indexes).
    pub fn ignored(&self) -> usize {
        self.shared.lock().ignored
    }

    /// True once the store is done (its reporter closed or dropped; tests).
    #[cfg(test)]
    pub(crate) fn store_done(&self) -> bool {
        self.shared.lock().closed
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn codes(replies: &Replies) -> Vec<(usize, u16)> {
        std::iter::from_fn(|| replies.next())
            .map(|(i, o)| (i, o.map_or_else(|e| e.code, |()| 250)))
            .collect()
    }

    #[test]
    fn outcomes_are_released_in_rcpt_order_as_soon_as_the_prefix_is_complete() {
        let (rep, replies) = reporter(3);
        assert!(rep.report(2, Err(DeliveryError::over_quota(false))));
        assert!(replies.try_next().is_none(), "recipient 0 is still pending");
        assert!(rep.report(0, Ok(())));
        assert_eq!(
            replies.try_next().map(|(i, o)| (i, o.is_ok())),
            Some((0, true))
        );
        assert!(replies.try_next().is_none(), "recipient 1 is still pending");
        assert!(rep.report(1, Ok(())));
        drop(rep);
        assert_eq!(codes(&replies), vec![(1, 250), (2, 452)]);
    }

    #[test]
    fn a_second_report_is_ignored_and_counted() {
        let (rep, replies) = reporter(2);
        rep.report(0, Ok(()));
        rep.report(0, Err(DeliveryError::local_error()));
        rep.report(7, Ok(()));
        rep.report(1, Err(DeliveryError::unknown_user()));
        drop(rep);
        assert_eq!(codes(&replies), vec![(0, 250), (1, 550)]);
        assert_eq!(replies.ignored(), 2);
    }

    #[test]
    fn unreported_recipients_get_451_when_the_store_is_done() {
        let (rep, replies) = reporter(3);
        rep.report(1, Ok(()));
        drop(rep);
        assert!(replies.store_done());
        let got: Vec<_> = std::iter::from_fn(|| replies.next())
            .map(|(i, o)| {
                (
                    i,
                    o.map_or_else(
                        |e| (e.code, e.enhanced.to_string()),
                        |()| (250, String::new()),
                    ),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (0, (451, "4.3.0".into())),
                (1, (250, String::new())),
                (2, (451, "4.3.0".into()))
            ]
        );
    }

    #[test]
    fn a_panicking_store_still_ends_in_one_outcome_per_recipient() {
        let (rep, replies) = reporter(2);
        let joined = std::thread::spawn(move || {
            rep.report(0, Ok(()));
            panic!("store bug");
        })
        .join();
        assert!(joined.is_err());
        assert_eq!(codes(&replies), vec![(0, 250), (1, 451)]);
    }

    #[test]
    fn the_store_learns_that_the_client_is_gone() {
        let (rep, replies) = reporter(3);
        assert!(rep.report(0, Ok(())));
        assert!(!rep.client_gone());
        replies.client_gone();
        assert!(rep.client_gone());
        assert!(!rep.report(1, Ok(())), "report says stop");
    }

    #[test]
    fn the_server_waits_for_a_store_reporting_from_other_threads() {
        let (rep, replies) = reporter(4);
        let store = std::thread::spawn(move || {
            std::thread::scope(|s| {
                let rep = &rep;
                for i in (0..4).rev() {
                    s.spawn(move || rep.report(i, Ok(())));
                }
            });
        });
        // Blocks until the prefix is complete; ends once the reporter is dropped.
        assert_eq!(
            codes(&replies),
            vec![(0, 250), (1, 250), (2, 250), (3, 250)]
        );
        store.join().unwrap();
    }
}
