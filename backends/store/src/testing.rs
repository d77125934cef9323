//! The store contract suite (feature `testing`): the rules every [`MailStore`] must keep,
//! run through the same path the server uses ([`MailStore::deliver`] with a [`Reporter`]).
//! A backend implements [`Harness`] (a fresh store plus a way to read back what it made
//! visible, and to break one recipient's mailbox) and expands [`contract_suite!`] in its
//! tests, which gives one named test per rule:
//!
//! - exact bytes: the stored copy is the trace prefix followed by the body, byte for byte;
//! - one outcome per recipient, reported once;
//! - per-recipient independence: an injected failure or a full quota fails only its own
//!   recipient, with the right code;
//! - several targets per recipient (folders, flags), one combined outcome;
//! - a missing folder without `create` means the inbox;
//! - concurrent deliveries into one mailbox: every copy stored, none mixed up;
//! - nothing visible before the copy is complete, nothing at all after a failed body read;
//! - a client gone before delivery starts: nothing stored, every recipient `451 4.3.0`;
//!   gone part-way: a copy is stored exactly when its recipient's outcome is `Ok`;
//! - [`MailStore::usage`] follows deliveries and [`MailStore::recalc`] agrees with it;
//! - quota grace at its boundary: a copy that starts below the byte limit may end exactly
//!   at limit + grace, not one byte later; at or above the limit nothing more goes in.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)] // a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::io::{self, Read};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::{
    reporter, Body, Delivery, DetailMailbox, Enhanced, Envelope, Flag, Flags, MailStore,
    MemoryBody, Message, Outcome, Quota, Recipient, Request, Target, Usage,
};

/// One message a store made visible in a folder, as a mail reader would get it back: the
/// copy's bytes (trace and body, with the store's own encoding undone: mbox's separator line,
/// `>From ` quoting, flag header lines and final empty line) and its flags.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Visible {
    /// The copy as delivered.
    pub bytes: Vec<u8>,
    /// Its flags, as IMAP names in [`Flag::ALL`] order (e.g. `\Flagged \Seen`).
    pub flags: String,
}

/// What a backend gives the contract suite.
pub trait Harness: Sync {
    /// The store under test (fresh: its own directory or database).
    fn store(&self) -> &dyn MailStore;
    /// Every message visible in `rcpt`'s `folder` (`None` = the inbox), in any order. For
    /// mbox, a mailbox locked by a delivery in progress shows nothing (a reader honouring
    /// the locks waits).
    fn read(&self, rcpt: &Recipient, folder: Option<&str>) -> Vec<Visible>;
    /// Makes every later copy for `rcpt` fail, without touching any other recipient.
    fn break_mailbox(&self, rcpt: &Recipient);
}

/// Delivers `msg` to `deliveries` through `store` exactly as the server does, and returns
/// the outcomes in RCPT order. Fails the test when the store reported a recipient twice.
pub fn deliver(
    store: &dyn MailStore,
    msg: &Message<'_>,
    deliveries: &[Delivery<'_>],
) -> Vec<Outcome> {
    let (rep, replies) = reporter(deliveries.len());
    let req = Request {
        message: *msg,
        deliveries,
    };
    store.deliver(&req, &rep);
    drop(rep);
    let out: Vec<Outcome> = std::iter::from_fn(|| replies.next())
        .map(|(_, o)| o)
        .collect();
    assert_eq!(
        replies.ignored(),
        0,
        "{}: a recipient was reported twice",
        store.name()
    );
    out
}

/// A store and the `detail_mailbox` rule the server would apply to its recipients' `+detail`
/// (the store itself only sees targets), for the backends' own tests.
pub struct Modal<S> {
    /// The store.
    pub st: S,
    /// The `detail_mailbox` rule.
    pub mode: DetailMailbox,
}

impl<S> std::ops::Deref for Modal<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.st
    }
}

/// What [`deliver_recipients`] delivers through: a store and its `+detail` rule. A backend
/// implements it for its bare store (usually with [`DetailMailbox::Yes`]).
pub trait Under {
    /// The store and the rule.
    fn parts(&self) -> (&dyn MailStore, DetailMailbox);
}

impl<S: MailStore> Under for Modal<S> {
    fn parts(&self) -> (&dyn MailStore, DetailMailbox) {
        (&self.st, self.mode)
    }
}

impl<T: Under> Under for Arc<T> {
    fn parts(&self) -> (&dyn MailStore, DetailMailbox) {
        (**self).parts()
    }
}

/// Delivers `body` to `rcpts` as the server does: each copy starts with `trace(rcpt)`, each
/// recipient's `+detail` becomes its target under the store's rule ([`Target::for_detail`]).
pub fn deliver_recipients(
    st: &impl Under,
    env: &Envelope,
    body: &dyn Body,
    rcpts: &[Recipient],
    trace: impl Fn(&Recipient) -> Vec<u8>,
) -> Vec<Outcome> {
    let (store, mode) = st.parts();
    let ds: Vec<Delivery<'_>> = rcpts
        .iter()
        .map(|r| {
            Delivery::new(
                r,
                trace(r),
                vec![Target::for_detail(r.detail.as_deref(), mode)],
            )
        })
        .collect();
    let out = deliver(store, &Message::new(env, body), &ds);
    assert_eq!(out.len(), rcpts.len());
    out
}

/// A recipient `local@example.org`.
pub fn rcpt(local: &str) -> Recipient {
    Recipient::new(local, "example.org")
}

/// The trace block the suite delivers with for `rcpt`.
pub fn trace(rcpt: &Recipient) -> Vec<u8> {
    format!(
        "Return-Path: <sender@example.net>\nDelivered-To: {}\nReceived: from client by contract\n",
        rcpt.address
    )
    .into_bytes()
}

/// A body with the lines mail formats trip over: `From ` at a line start, a quoted
/// `>From `, a lone dot, a header that looks like a status line inside the body.
pub const BODY: &[u8] = b"Subject: contract\nMessage-ID: <c1@example.net>\n\nFrom the start\n>From quoted\n.\nStatus: not a header here\nend\n";

fn inbox(rcpt: &Recipient) -> Delivery<'_> {
    Delivery::new(rcpt, trace(rcpt), vec![Target::inbox()])
}

fn expected(rcpt: &Recipient, body: &[u8], flags: Flags) -> Visible {
    Visible {
        bytes: [&trace(rcpt)[..], body].concat(),
        flags: flags.imap_list(),
    }
}

fn code(o: &Outcome) -> Option<(u16, Enhanced)> {
    o.as_ref().err().map(|e| (e.code, e.enhanced))
}

/// The stored copy is the trace prefix and the body, byte for byte, in the inbox only.
pub fn exact_bytes(h: &impl Harness) {
    let env = Envelope::default();
    let body = MemoryBody(BODY.to_vec());
    let a = rcpt("alice");
    let out = deliver(h.store(), &Message::new(&env, &body), &[inbox(&a)]);
    assert!(out[0].is_ok(), "{out:?}");
    assert_eq!(h.read(&a, None), vec![expected(&a, BODY, Flags::NONE)]);
}

/// Five recipients, five outcomes, each copy in its own mailbox once.
pub fn one_outcome_per_recipient(h: &impl Harness) {
    let env = Envelope::default();
    let body = MemoryBody(BODY.to_vec());
    let rcpts: Vec<Recipient> = (0..5).map(|i| rcpt(&format!("u{i}"))).collect();
    let ds: Vec<Delivery<'_>> = rcpts.iter().map(inbox).collect();
    let out = deliver(h.store(), &Message::new(&env, &body), &ds);
    assert_eq!(out.len(), 5);
    for (r, o) in rcpts.iter().zip(&out) {
        assert!(o.is_ok(), "{}: {o:?}", r.address);
        assert_eq!(
            h.read(r, None),
            vec![expected(r, BODY, Flags::NONE)],
            "{}",
            r.address
        );
    }
}

/// A broken mailbox fails its own recipient only; the others' copies are exact.
pub fn injected_failure_is_per_recipient(h: &impl Harness) {
    let env = Envelope::default();
    let body = MemoryBody(BODY.to_vec());
    let (a, b, c) = (rcpt("a"), rcpt("broken"), rcpt("c"));
    h.break_mailbox(&b);
    let out = deliver(
        h.store(),
        &Message::new(&env, &body),
        &[inbox(&a), inbox(&b), inbox(&c)],
    );
    assert!(out[0].is_ok() && out[2].is_ok(), "{out:?}");
    let err = out[1].as_ref().expect_err("the broken mailbox fails");
    assert!((400..600).contains(&err.code), "{err}");
    assert_eq!(
        err.enhanced.0 as u16,
        err.code / 100,
        "class matches: {err}"
    );
    assert!(h.read(&b, None).is_empty());
    assert_eq!(h.read(&a, None), vec![expected(&a, BODY, Flags::NONE)]);
    assert_eq!(h.read(&c, None), vec![expected(&c, BODY, Flags::NONE)]);
}

/// A recipient at its quota gets `452 4.2.2`; its neighbours are stored.
pub fn quota_failure_is_per_recipient(h: &impl Harness) {
    let env = Envelope::default();
    let body = MemoryBody(BODY.to_vec());
    let full = Recipient {
        quota: Quota {
            bytes: None,
            messages: Some(0),
            grace: 0,
        },
        ..rcpt("full")
    };
    let (a, c) = (rcpt("a"), rcpt("c"));
    let out = deliver(
        h.store(),
        &Message::new(&env, &body),
        &[inbox(&a), inbox(&full), inbox(&c)],
    );
    assert!(out[0].is_ok() && out[2].is_ok(), "{out:?}");
    assert_eq!(code(&out[1]), Some((452, Enhanced(4, 2, 2))));
    assert!(h.read(&full, None).is_empty());
    assert_eq!(h.read(&c, None).len(), 1);
}

/// Two targets (the inbox, and a folder created with flags): one `Ok`, both copies stored
/// with their own flags.
pub fn several_targets_one_outcome(h: &impl Harness) {
    let env = Envelope::default();
    let body = MemoryBody(BODY.to_vec());
    let a = rcpt("alice");
    let flags = Flags::of(&[Flag::Seen, Flag::Flagged]);
    let d = Delivery::new(
        &a,
        trace(&a),
        vec![
            Target::inbox(),
            Target::folder("Work", true).with_flags(flags),
        ],
    );
    let out = deliver(h.store(), &Message::new(&env, &body), &[d]);
    assert_eq!(out.len(), 1);
    assert!(out[0].is_ok(), "{out:?}");
    assert_eq!(h.read(&a, None), vec![expected(&a, BODY, Flags::NONE)]);
    assert_eq!(h.read(&a, Some("Work")), vec![expected(&a, BODY, flags)]);
}

/// A target with its own header section (Sieve `editheader`) stores trace + that section +
/// the original content; the recipient's other target and another recipient in the same
/// call keep the message as received.
pub fn edited_header_is_that_copys_own(h: &impl Harness) {
    let env = Envelope::default();
    let body = MemoryBody(BODY.to_vec());
    let a = rcpt("alice");
    let b = rcpt("bob");
    let original = b"Subject: contract\nMessage-ID: <c1@example.net>\n\n";
    assert!(BODY.starts_with(original));
    let edited = b"X-Edited: yes\nSubject: contract\n\n".to_vec();
    let edit = std::sync::Arc::new(crate::HeaderEdit {
        header: edited.clone(),
        replaces: original.len() as u64,
        replaces_lines: 3,
    });
    let seen = Flags::of(&[Flag::Seen]);
    let da = Delivery::new(
        &a,
        trace(&a),
        vec![
            Target::folder("Edited", true)
                .with_flags(seen)
                .with_edit(edit),
            Target::inbox(),
        ],
    );
    let db = Delivery::new(&b, trace(&b), vec![Target::inbox()]);
    let out = deliver(h.store(), &Message::new(&env, &body), &[da, db]);
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    let content = &BODY[original.len()..];
    let want = Visible {
        bytes: [&trace(&a)[..], &edited[..], content].concat(),
        flags: seen.imap_list(),
    };
    assert_eq!(h.read(&a, Some("Edited")), vec![want]);
    assert_eq!(h.read(&a, None), vec![expected(&a, BODY, Flags::NONE)]);
    assert_eq!(h.read(&b, None), vec![expected(&b, BODY, Flags::NONE)]);
}

/// `mailbox_exists` (Sieve `mailboxexists`): INBOX always, a folder once a delivery created
/// it, never one that was not created.
pub fn mailbox_exists_follows_the_folders(h: &impl Harness) {
    let env = Envelope::default();
    let body = MemoryBody(BODY.to_vec());
    let a = rcpt("alice");
    let st = h.store();
    assert_eq!(st.mailbox_exists(&a, "INBOX").ok(), Some(true));
    assert_eq!(st.mailbox_exists(&a, "inbox").ok(), Some(true));
    assert_eq!(st.mailbox_exists(&a, "Work").ok(), Some(false));
    let d = Delivery::new(&a, trace(&a), vec![Target::folder("Work", true)]);
    let out = deliver(st, &Message::new(&env, &body), &[d]);
    assert!(out[0].is_ok(), "{out:?}");
    assert_eq!(st.mailbox_exists(&a, "Work").ok(), Some(true));
    assert_eq!(st.mailbox_exists(&a, "Other").ok(), Some(false));
    assert_eq!(
        st.mailbox_exists(&a, "../x").ok(),
        Some(false),
        "an unusable name"
    );
}

/// A folder that does not exist, without `create`, means the inbox; with flags they stay.
pub fn missing_folder_means_inbox(h: &impl Harness) {
    let env = Envelope::default();
    let body = MemoryBody(BODY.to_vec());
    let a = rcpt("alice");
    let seen = Flags::of(&[Flag::Seen]);
    let d = Delivery::new(
        &a,
        trace(&a),
        vec![Target::folder("Nope", false).with_flags(seen)],
    );
    let out = deliver(h.store(), &Message::new(&env, &body), &[d]);
    assert!(out[0].is_ok(), "{out:?}");
    assert_eq!(h.read(&a, None), vec![expected(&a, BODY, seen)]);
    assert!(h.read(&a, Some("Nope")).is_empty());
}

/// Eight threads deliver five distinct messages each into one mailbox at once: forty
/// copies, each exact.
pub fn concurrent_deliveries_to_one_mailbox(h: &impl Harness) {
    let a = rcpt("shared");
    std::thread::scope(|s| {
        for t in 0..8 {
            let a = &a;
            s.spawn(move || {
                for m in 0..5 {
                    let env = Envelope::default();
                    let body =
                        MemoryBody(format!("Subject: {t}/{m}\n\nbody {t} {m}\n").into_bytes());
                    let out = deliver(h.store(), &Message::new(&env, &body), &[inbox(a)]);
                    assert!(out[0].is_ok(), "{t}/{m}: {out:?}");
                }
            });
        }
    });
    let got: BTreeSet<Vec<u8>> = h.read(&a, None).into_iter().map(|v| v.bytes).collect();
    let want: BTreeSet<Vec<u8>> = (0..8)
        .flat_map(|t| (0..5).map(move |m| (t, m)))
        .map(|(t, m)| {
            [
                &trace(&a)[..],
                format!("Subject: {t}/{m}\n\nbody {t} {m}\n").as_bytes(),
            ]
            .concat()
        })
        .collect();
    assert_eq!(got.len(), 40, "forty distinct copies");
    assert_eq!(got, want);
}

/// A body that hands out its first half, tells the test, and waits for the go-ahead before
/// the rest (or fails there, if `fail`).
struct Gated {
    data: Vec<u8>,
    reached: Mutex<Option<mpsc::Sender<()>>>,
    go: Mutex<Option<mpsc::Receiver<()>>>,
    fail: bool,
}

struct GatedReader<'a> {
    body: &'a Gated,
    pos: usize,
}

impl Read for GatedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let half = self.body.data.len() / 2;
        if self.pos == half {
            if let Some(tx) = self.body.reached.lock().unwrap().take() {
                let _ = tx.send(());
                if let Some(rx) = self.body.go.lock().unwrap().take() {
                    let _ = rx.recv();
                }
            }
            if self.body.fail {
                return Err(io::Error::other("spool disk failed"));
            }
        }
        let end = if self.pos < half {
            half
        } else {
            self.body.data.len()
        };
        let n = buf.len().min(end - self.pos);
        buf[..n].copy_from_slice(&self.body.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Body for Gated {
    fn len(&self) -> u64 {
        self.data.len() as u64
    }
    fn open(&self) -> io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(GatedReader { body: self, pos: 0 }))
    }
    fn lines(&self) -> u64 {
        self.data.iter().filter(|&&b| b == b'\n').count() as u64
    }
}

fn gated(fail: bool) -> (Gated, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (reached_tx, reached_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let mut data = BODY.to_vec();
    data.extend(std::iter::repeat_n(b"filler line\n".as_slice(), 2000).flatten());
    let body = Gated {
        data,
        reached: Mutex::new(Some(reached_tx)),
        go: Mutex::new(Some(go_rx)),
        fail,
    };
    (body, reached_rx, go_tx)
}

/// While a copy is half written nothing is visible; once its `Ok` is out, all of it is.
pub fn nothing_visible_before_complete(h: &impl Harness) {
    let (body, reached, go) = gated(false);
    let a = rcpt("alice");
    let env = Envelope::default();
    std::thread::scope(|s| {
        let worker = s.spawn(|| deliver(h.store(), &Message::new(&env, &body), &[inbox(&a)]));
        reached.recv().unwrap();
        assert!(h.read(&a, None).is_empty(), "half a copy is visible");
        go.send(()).unwrap();
        let out = worker.join().unwrap();
        assert!(out[0].is_ok(), "{out:?}");
    });
    assert_eq!(
        h.read(&a, None),
        vec![expected(&a, &body.data, Flags::NONE)]
    );
}

/// The body cannot be read to its end: every recipient gets a temporary error and nothing
/// is left in any mailbox.
pub fn failed_body_read_leaves_nothing(h: &impl Harness) {
    let (body, reached, go) = gated(true);
    let (a, b) = (rcpt("a"), rcpt("b"));
    let env = Envelope::default();
    std::thread::scope(|s| {
        let worker = s.spawn(|| {
            deliver(
                h.store(),
                &Message::new(&env, &body),
                &[inbox(&a), inbox(&b)],
            )
        });
        // Each recipient's copy may read the body (SQLite reads it once for all).
        reached.recv().unwrap();
        go.send(()).unwrap();
        let out = worker.join().unwrap();
        for o in &out {
            let e = o.as_ref().expect_err("no copy without its body");
            assert_eq!(e.code / 100, 4, "temporary: {e}");
        }
    });
    assert!(h.read(&a, None).is_empty());
    assert!(h.read(&b, None).is_empty());
}

/// The client is gone before the store starts: nothing is stored, every recipient ends in
/// `451 4.3.0` (from the reporter), so a retry cannot duplicate anything.
pub fn client_gone_before_start_stores_nothing(h: &impl Harness) {
    let env = Envelope::default();
    let body = MemoryBody(BODY.to_vec());
    let rcpts: Vec<Recipient> = (0..3).map(|i| rcpt(&format!("g{i}"))).collect();
    let ds: Vec<Delivery<'_>> = rcpts.iter().map(inbox).collect();
    let (rep, replies) = reporter(ds.len());
    replies.client_gone();
    let req = Request {
        message: Message::new(&env, &body),
        deliveries: &ds,
    };
    h.store().deliver(&req, &rep);
    drop(rep);
    for (i, o) in std::iter::from_fn(|| replies.next()) {
        assert_eq!(code(&o), Some((451, Enhanced(4, 3, 0))), "recipient {i}");
        assert!(h.read(&rcpts[i], None).is_empty(), "recipient {i} stored");
    }
}

/// The client goes away after the first reply: whatever the store still finishes, a copy is
/// stored exactly when its recipient's outcome is `Ok`.
pub fn client_gone_midway_keeps_outcomes_true(h: &impl Harness) {
    let env = Envelope::default();
    let body = MemoryBody(BODY.to_vec());
    let rcpts: Vec<Recipient> = (0..6).map(|i| rcpt(&format!("m{i}"))).collect();
    let ds: Vec<Delivery<'_>> = rcpts.iter().map(inbox).collect();
    let (rep, replies) = reporter(ds.len());
    let outcomes: Arc<Mutex<Vec<(usize, bool)>>> = Arc::default();
    std::thread::scope(|s| {
        s.spawn(|| {
            let req = Request {
                message: Message::new(&env, &body),
                deliveries: &ds,
            };
            h.store().deliver(&req, &rep);
            drop(rep);
        });
        let mut first = true;
        while let Some((i, o)) = replies.next() {
            if first {
                replies.client_gone();
                first = false;
            }
            outcomes.lock().unwrap().push((i, o.is_ok()));
        }
    });
    for (i, ok) in outcomes.lock().unwrap().iter() {
        let stored = h.read(&rcpts[*i], None).len();
        assert_eq!(
            stored,
            usize::from(*ok),
            "recipient {i}: ok={ok}, stored {stored}"
        );
    }
}

/// A body without `From ` lines or reader-trusted fields, so that every store counts
/// exactly the bytes it appends for it (mbox estimates quoting at the quota check).
const PLAIN: &[u8] = b"Subject: usage\n\nplain lines only\n";

/// Delivers `body` once to `r`'s inbox and returns its outcome.
fn deliver_plain(h: &impl Harness, r: &Recipient, body: &[u8]) -> Outcome {
    let env = Envelope::default();
    let body = MemoryBody(body.to_vec());
    let mut out = deliver(h.store(), &Message::new(&env, &body), &[inbox(r)]);
    out.remove(0)
}

/// `usage` as the store reports it; every backend under the suite can tell.
fn usage_of(h: &impl Harness, r: &Recipient) -> Usage {
    let u = h.store().usage(r);
    match u {
        Ok(Some(u)) => u,
        other => panic!("{}: usage of {}: {other:?}", h.store().name(), r.address),
    }
}

/// What one copy of `body` adds to a fresh mailbox besides its trace (which names the
/// recipient, so its length differs between them), as the store counts it.
fn copy_bytes(h: &impl Harness, body: &[u8]) -> u64 {
    let probe = rcpt("probe");
    let out = deliver_plain(h, &probe, body);
    assert!(out.is_ok(), "{out:?}");
    let u = usage_of(h, &probe);
    assert_eq!(u.messages, 1, "{u:?}");
    let traced = trace(&probe).len() as u64;
    assert!(
        u.bytes >= traced + body.len() as u64,
        "a copy counts at least its trace and body: {u:?}"
    );
    u.bytes - traced
}

/// The bytes one copy adds to `r`'s mailbox, given [`copy_bytes`].
fn for_rcpt(base: u64, r: &Recipient) -> u64 {
    base + trace(r).len() as u64
}

/// A mailbox that does not exist uses nothing; each copy adds its bytes and one message,
/// with or without a quota; `recalc` recounts the same figures and `usage` still agrees.
pub fn usage_follows_deliveries(h: &impl Harness) {
    let base = copy_bytes(h, PLAIN);
    let limited = Recipient {
        quota: Quota {
            bytes: Some(1 << 30),
            messages: Some(1000),
            grace: 0,
        },
        ..rcpt("limited")
    };
    let plain = rcpt("unlimited");
    for r in [&limited, &plain] {
        let s = for_rcpt(base, r);
        assert_eq!(usage_of(h, r), Usage::default(), "{}", r.address);
        for n in 1..=3u64 {
            let out = deliver_plain(h, r, PLAIN);
            assert!(out.is_ok(), "{out:?}");
            let want = Usage {
                bytes: n * s,
                messages: n,
            };
            assert_eq!(usage_of(h, r), want, "{} after {n}", r.address);
        }
        let want = Usage {
            bytes: 3 * s,
            messages: 3,
        };
        let recounted = h.store().recalc(r);
        assert!(
            matches!(recounted, Ok(Some(u)) if u == want),
            "{}: recalc {recounted:?}",
            r.address
        );
        assert_eq!(usage_of(h, r), want, "{} after recalc", r.address);
    }
    let nobody = rcpt("nobody");
    let recounted = h.store().recalc(&nobody);
    assert!(
        matches!(recounted, Ok(Some(u)) if u == Usage::default()),
        "{recounted:?}"
    );
}

/// Quota grace at the boundary, with `s` the bytes one copy adds: a mailbox holding one copy
/// (below its limit of `s + 1`) takes a second one that ends exactly at limit + grace and
/// refuses one that would end a byte later; a mailbox at or above its limit refuses even a
/// tiny message, at RCPT and after DATA, whatever the grace. The recipients' local parts
/// have one length, so one copy adds the same `s` bytes to each mailbox.
pub fn quota_grace_boundary(h: &impl Harness) {
    let base = copy_bytes(h, PLAIN);
    let s = for_rcpt(base, &rcpt("edge"));
    let with = |local: &str, bytes: u64, grace: u64| Recipient {
        quota: Quota {
            bytes: Some(bytes),
            messages: None,
            grace,
        },
        ..rcpt(local)
    };
    let full = Some((452, Enhanced(4, 2, 2)));
    // Ends exactly at limit + grace: (s + 1) + (s - 1) = 2s.
    let edge = with("edge", s + 1, s - 1);
    // One byte more than limit + grace.
    let over = with("over", s + 1, s - 2);
    assert_eq!(for_rcpt(base, &over), s);
    for r in [&edge, &over] {
        let out = deliver_plain(h, r, PLAIN);
        assert!(out.is_ok(), "{}: first copy {out:?}", r.address);
        assert_eq!(usage_of(h, r).bytes, s);
        assert!(
            h.store().check(r).is_ok(),
            "{} is below its limit",
            r.address
        );
    }
    let out = deliver_plain(h, &edge, PLAIN);
    assert!(out.is_ok(), "ends at limit + grace: {out:?}");
    assert_eq!(
        usage_of(h, &edge),
        Usage {
            bytes: 2 * s,
            messages: 2
        }
    );
    let out = deliver_plain(h, &over, PLAIN);
    assert_eq!(code(&out), full, "a byte past limit + grace");
    assert_eq!(
        h.read(&over, None).len(),
        1,
        "nothing stored for the refused copy"
    );
    assert_eq!(
        usage_of(h, &over),
        Usage {
            bytes: s,
            messages: 1
        }
    );

    // Above the limit now (2s > s + 1): nothing more, not even a tiny message.
    let tiny = b"
";
    let refused = h
        .store()
        .check(&edge)
        .map_err(|e| (e.code, e.enhanced))
        .err();
    assert_eq!(refused, full, "RCPT above the limit");
    assert_eq!(code(&deliver_plain(h, &edge, tiny)), full);
    assert_eq!(h.read(&edge, None).len(), 2);

    // Exactly at the limit, with a grace far larger than any message.
    let at = with("atat", s, 100 * s);
    assert_eq!(for_rcpt(base, &at), s);
    assert!(deliver_plain(h, &at, PLAIN).is_ok());
    let refused = h.store().check(&at).map_err(|e| (e.code, e.enhanced)).err();
    assert_eq!(refused, full, "RCPT at the limit");
    assert_eq!(code(&deliver_plain(h, &at, tiny)), full);
    assert_eq!(h.read(&at, None).len(), 1);
}

/// Names the tools a developer may go without, comma-separated (`python3`, `root`, `all`):
/// outside CI, a test needing one that is missing then skips instead of failing.
pub const SKIP_VAR: &str = "LMTPD_TEST_SKIP";

/// A test that needs `what` (a tool, or root) calls this with whether it is there. True when
/// it is. When it is not, the test fails loudly (a test that passes without checking would
/// hide a regression), unless [`SKIP_VAR`] names `what` and `CI` is not set: then it says
/// SKIP on stderr and returns false, and the test returns without checking. `.ci/run`
/// installs every tool named by a test and runs as root.
pub fn require(what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    let opted_out = std::env::var(SKIP_VAR)
        .is_ok_and(|v| v.split(',').map(str::trim).any(|w| w == what || w == "all"));
    if opted_out && !ci {
        eprintln!("SKIP: {what} is missing and {SKIP_VAR} allows it; this test checked nothing");
        return false;
    }
    panic!(
        "this test needs {what}, which is missing; install it (.ci/run does), or outside CI \
         set {SKIP_VAR}={what} to skip such tests explicitly"
    );
}

/// True when `python3` runs (see [`require`] for what happens when it does not).
pub fn have_python3() -> bool {
    let present = std::process::Command::new("python3")
        .args(["-c", "import mailbox, sqlite3, fcntl"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    require("python3", present)
}

/// One `#[test]` per contract rule for the harness `$make()` returns (a fresh one per test).
#[macro_export]
macro_rules! contract_suite {
    ($make:expr) => {
        #[test]
        fn contract_exact_bytes() {
            $crate::testing::exact_bytes(&$make());
        }
        #[test]
        fn contract_one_outcome_per_recipient() {
            $crate::testing::one_outcome_per_recipient(&$make());
        }
        #[test]
        fn contract_injected_failure_is_per_recipient() {
            $crate::testing::injected_failure_is_per_recipient(&$make());
        }
        #[test]
        fn contract_quota_failure_is_per_recipient() {
            $crate::testing::quota_failure_is_per_recipient(&$make());
        }
        #[test]
        fn contract_several_targets_one_outcome() {
            $crate::testing::several_targets_one_outcome(&$make());
        }
        #[test]
        fn contract_edited_header_is_that_copys_own() {
            $crate::testing::edited_header_is_that_copys_own(&$make());
        }
        #[test]
        fn contract_mailbox_exists_follows_the_folders() {
            $crate::testing::mailbox_exists_follows_the_folders(&$make());
        }
        #[test]
        fn contract_missing_folder_means_inbox() {
            $crate::testing::missing_folder_means_inbox(&$make());
        }
        #[test]
        fn contract_concurrent_deliveries_to_one_mailbox() {
            $crate::testing::concurrent_deliveries_to_one_mailbox(&$make());
        }
        #[test]
        fn contract_nothing_visible_before_complete() {
            $crate::testing::nothing_visible_before_complete(&$make());
        }
        #[test]
        fn contract_failed_body_read_leaves_nothing() {
            $crate::testing::failed_body_read_leaves_nothing(&$make());
        }
        #[test]
        fn contract_client_gone_before_start_stores_nothing() {
            $crate::testing::client_gone_before_start_stores_nothing(&$make());
        }
        #[test]
        fn contract_client_gone_midway_keeps_outcomes_true() {
            $crate::testing::client_gone_midway_keeps_outcomes_true(&$make());
        }
        #[test]
        fn contract_usage_follows_deliveries() {
            $crate::testing::usage_follows_deliveries(&$make());
        }
        #[test]
        fn contract_quota_grace_boundary() {
            $crate::testing::quota_grace_boundary(&$make());
        }
    };
}
