//! Delivery after the final dot: builds each recipient's trace headers, hands the copies to
//! each recipient's store (consecutive recipients of one store in one call, so a store can
//! share work such as one SQLite body row), and turns each outcome into that recipient's
//! LMTP reply and log line the moment it is known.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use lmtpd_store::open::OpenError;
use lmtpd_store::{Body, DeliveryError, Envelope, MailStore, Message, Recipient};

use crate::config::{Config, StoreKind};
use crate::directory::{Directory, Resolved};
use crate::proto::{Enhanced, Reply};
use crate::trace;

/// The configured mailbox backends, by kind. A store that no user is routed to is not
/// opened (so an unused SQLite path is never created).
pub struct Stores {
    maildir: Arc<dyn MailStore>,
    mbox: Arc<dyn MailStore>,
    sqlite: Option<Arc<dyn MailStore>>,
}

impl Stores {
    /// Builds every store the configuration and the users table route to. Fails when a
    /// store cannot be opened (for SQLite: the database or its migrations), with the kind
    /// of failure (see [`lmtpd_store::open::OpenErrorKind`]). On a reload, `previous` (the
    /// old configuration and stores) lets an unchanged SQLite store, with its pool, be kept
    /// instead of opened again.
    pub fn open(
        cfg: &Config,
        directory: &Directory,
        previous: Option<(&Config, &Stores)>,
    ) -> Result<Stores, OpenError> {
        let d = &cfg.delivery;
        let maildir = lmtpd_maildir::MaildirStore::new(lmtpd_maildir::MaildirConfig {
            template: d.maildir.clone(),
            hostname: d.hostname.clone(),
            detail_mailbox: d.detail_mailbox,
            quota_permfail: d.quota_permfail,
        });
        let mbox = lmtpd_mbox::MboxStore::new(lmtpd_mbox::MboxConfig {
            template: d.mbox.clone(),
            locks: d.mbox_locks.clone(),
            lock_timeout: d.mbox_lock_timeout,
            detail_mailbox: d.detail_mailbox,
            quota_permfail: d.quota_permfail,
        });
        let reusable = previous.and_then(|(old_cfg, old)| {
            let same = SqliteSettings::of(old_cfg) == SqliteSettings::of(cfg);
            old.sqlite.clone().filter(|_| same)
        });
        let sqlite = if !uses(cfg, directory, StoreKind::Sqlite) {
            None
        } else if let Some(s) = reusable {
            Some(s)
        } else {
            Some(open_sqlite(cfg)?)
        };
        Ok(Stores {
            maildir: Arc::new(maildir),
            mbox: Arc::new(mbox),
            sqlite,
        })
    }

    /// The store for a kind, if it is open.
    pub fn get(&self, kind: StoreKind) -> Option<&dyn MailStore> {
        match kind {
            StoreKind::Maildir => Some(&*self.maildir),
            StoreKind::Mbox => Some(&*self.mbox),
            StoreKind::Sqlite => self.sqlite.as_deref(),
        }
    }
}

/// Does the configuration or any user route mail to `kind`?
pub fn uses(cfg: &Config, directory: &Directory, kind: StoreKind) -> bool {
    cfg.delivery.store == kind || directory.users().any(|u| u.store == Some(kind))
}

/// Everything the SQLite store is opened with: a reload keeps the open store (and its
/// pool) exactly when this is unchanged.
#[derive(Clone, Debug, PartialEq)]
struct SqliteSettings {
    path: std::path::PathBuf,
    busy_timeout: std::time::Duration,
    detail_mailbox: lmtpd_store::DetailMailbox,
    quota_permfail: bool,
    readers: u32,
}

impl SqliteSettings {
    fn of(cfg: &Config) -> SqliteSettings {
        let d = &cfg.delivery;
        SqliteSettings {
            path: d.sqlite.clone(),
            busy_timeout: d.sqlite_busy_timeout,
            detail_mailbox: d.detail_mailbox,
            quota_permfail: d.quota_permfail,
            readers: sqlite_readers(cfg.process.workers),
        }
    }
}

#[cfg(feature = "sqlite")]
fn open_sqlite(cfg: &Config) -> Result<Arc<dyn MailStore>, OpenError> {
    let s = SqliteSettings::of(cfg);
    let store = lmtpd_sqlite::SqliteStore::try_open(lmtpd_sqlite::SqliteConfig {
        path: s.path.clone(),
        pool_size: s.readers,
        busy_timeout: s.busy_timeout,
        detail_mailbox: s.detail_mailbox,
        quota_permfail: s.quota_permfail,
    })
    .map_err(|e| e.context(s.path.display()))?;
    Ok(Arc::new(store))
}

/// Size of the SQLite read pool (RCPT-time quota checks; writes go through one writer
/// connection): one per session up to 32. RCPT reads take microseconds, so more sessions
/// than that share them; each pooled connection costs three descriptors and a page cache.
pub fn sqlite_readers(workers: usize) -> u32 {
    u32::try_from(workers.clamp(1, 32)).unwrap_or(32)
}

#[cfg(not(feature = "sqlite"))]
fn open_sqlite(_cfg: &Config) -> Result<Arc<dyn MailStore>, OpenError> {
    Err(OpenError::new(
        lmtpd_store::open::OpenErrorKind::Refused,
        "this lmtpd was built without SQLite support",
    ))
}

/// Converts a store's error into the reply the client sees.
pub fn error_reply(e: &DeliveryError) -> Reply {
    let lmtpd_store::Enhanced(class, subject, detail) = e.enhanced;
    Reply::new(e.code, Enhanced(class, subject, detail), e.text.clone())
}

/// What one transaction's delivery needs besides the recipients.
pub struct Job<'a> {
    /// The stores.
    pub stores: &'a Stores,
    /// Our host name for the Received header.
    pub hostname: &'a str,
    /// Connection id for the log.
    pub conn: u64,
    /// The envelope.
    pub env: &'a Envelope,
    /// The spooled body.
    pub body: &'a dyn Body,
    /// When the final dot arrived (each recipient's latency is counted from here).
    pub dot: Instant,
}

/// Delivers every recipient's copy in RCPT order and calls `reply` with each recipient's
/// reply as soon as it is known. Recipients of the same store that follow each other are
/// handed to the store in one call. Stops early only when `reply` fails (the connection is
/// gone); the recipients not yet reported then get no reply, which the client treats as a
/// temporary failure (RFC 2033 §5).
pub fn deliver_all<E>(
    job: &Job<'_>,
    rcpts: &mut [Resolved],
    mut reply: impl FnMut(Reply) -> Result<(), E>,
) -> Result<(), E> {
    let now = SystemTime::now();
    for r in rcpts.iter_mut() {
        r.rcpt.trace = trace::headers(job.env, &r.rcpt, job.hostname, now);
    }
    let msg = Message::new(job.env, job.body);
    let mut start = 0;
    while start < rcpts.len() {
        let kind = rcpts[start].store;
        let end = rcpts[start..]
            .iter()
            .position(|r| r.store != kind)
            .map_or(rcpts.len(), |n| start + n);
        let run: Vec<Recipient> = rcpts[start..end].iter().map(|r| r.rcpt.clone()).collect();
        let mut out = Ordered::new(job, kind, &run, &mut reply);
        match job.stores.get(kind) {
            Some(store) => store.deliver_each(&msg, &run, &mut |i, result| out.report(i, result)),
            None => {
                for i in 0..run.len() {
                    let err = DeliveryError::new(
                        451,
                        lmtpd_store::Enhanced(4, 3, 5),
                        "Mail system configuration error",
                    )
                    .with_source(format!("store {} is not open", kind.name()));
                    if !out.report(i, Err(err)) {
                        break;
                    }
                }
            }
        }
        out.finish()?;
        start = end;
    }
    Ok(())
}

/// Turns one store call's outcomes into replies strictly in recipient order, whatever order
/// the store reports them in; a recipient the store never reported gets `451 4.3.0` (the
/// client retries it), so a faulty store cannot stall the session or shift replies onto the
/// wrong recipients.
struct Ordered<'j, 'r, F, E> {
    job: &'j Job<'j>,
    store: StoreKind,
    run: &'r [Recipient],
    slots: Vec<Option<Result<(), DeliveryError>>>,
    next: usize,
    reply: &'r mut F,
    failed: Option<E>,
    started: Instant,
}

impl<'j, 'r, F: FnMut(Reply) -> Result<(), E>, E> Ordered<'j, 'r, F, E> {
    fn new(job: &'j Job<'j>, store: StoreKind, run: &'r [Recipient], reply: &'r mut F) -> Self {
        Ordered {
            job,
            store,
            run,
            slots: run.iter().map(|_| None).collect(),
            next: 0,
            reply,
            failed: None,
            started: Instant::now(),
        }
    }

    /// Records recipient `i`'s outcome and sends every reply now in order. Returns false
    /// once the connection is gone, so the store can stop delivering copies nobody will be
    /// told about.
    fn report(&mut self, i: usize, result: Result<(), DeliveryError>) -> bool {
        if let Some(slot @ None) = self.slots.get_mut(i) {
            *slot = Some(result);
        }
        while let Some(Some(_)) = self.slots.get(self.next) {
            let Some(result) = self.slots[self.next].take() else {
                break;
            };
            self.send(self.next, result);
            self.next += 1;
        }
        self.failed.is_none()
    }

    fn send(&mut self, i: usize, result: Result<(), DeliveryError>) {
        if self.failed.is_some() {
            return;
        }
        let Some(rcpt) = self.run.get(i) else { return };
        let rp = outcome_reply(self.job.env, rcpt, &result);
        log_outcome(
            self.job,
            rcpt,
            self.store.name(),
            &rp,
            &result,
            self.started,
        );
        // Every post-DATA reply carries an enhanced code (outcome_reply, error_reply).
        let status = rp.enhanced.unwrap_or(Enhanced(4, 3, 0));
        crate::metrics::get().delivery(self.store, status, self.job.dot.elapsed());
        self.started = Instant::now();
        if let Err(e) = (self.reply)(rp) {
            self.failed = Some(e);
        }
    }

    /// Answers every recipient the store did not report, then returns the connection error,
    /// if any.
    fn finish(mut self) -> Result<(), E> {
        while self.next < self.run.len() && self.failed.is_none() {
            let result = self.slots[self.next].take().unwrap_or_else(|| {
                Err(DeliveryError::local_error().with_source("the store reported no outcome"))
            });
            self.send(self.next, result);
            self.next += 1;
        }
        match self.failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn outcome_reply(env: &Envelope, rcpt: &Recipient, result: &Result<(), DeliveryError>) -> Reply {
    match result {
        Ok(()) => Reply::new(
            250,
            Enhanced(2, 0, 0),
            format!("<{}> {} Saved", rcpt.address, env.id),
        ),
        Err(e) => error_reply(e),
    }
}

/// One `info` line per recipient outcome: connection, transaction, sender, recipient, size,
/// store, reply code and milliseconds. Never the body.
pub fn log_outcome(
    job: &Job<'_>,
    rcpt: &Recipient,
    store: &str,
    reply: &Reply,
    result: &Result<(), DeliveryError>,
    started: Instant,
) {
    let enhanced = reply.enhanced.map(|e| e.to_string()).unwrap_or_default();
    let detail = match result {
        Err(e) => match &e.source {
            Some(src) => format!(" error=\"{src}\""),
            None => String::new(),
        },
        Ok(()) => String::new(),
    };
    log::info!(
        "conn={} id={} from=<{}> to=<{}> user={} store={store} size={} status={} {enhanced} ms={}{detail}",
        job.conn,
        job.env.id,
        job.env.sender_or_empty(),
        rcpt.address,
        rcpt.user,
        job.body.len(),
        reply.code,
        started.elapsed().as_millis(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use lmtpd_store::MemoryBody;

    fn rcpt(addr: &str) -> Recipient {
        let (local, domain) = addr.split_once('@').unwrap_or((addr, ""));
        Recipient::new(local, domain)
    }

    /// Runs `f` with a job over the default stores and an empty message.
    fn with_job(f: impl FnOnce(&Job<'_>)) {
        let cfg = Config::default();
        let dir = Directory::parse("", "u", &cfg).expect("users");
        let stores = Stores::open(&cfg, &dir, None).expect("stores");
        let env = Envelope::default();
        let body = MemoryBody::default();
        f(&Job {
            stores: &stores,
            hostname: "h",
            conn: 1,
            env: &env,
            body: &body,
            dot: Instant::now(),
        });
    }

    #[test]
    fn replies_follow_rcpt_order_and_unreported_recipients_get_451() {
        with_job(|job| {
            let run = vec![rcpt("a@x"), rcpt("b@x"), rcpt("c@x")];
            let mut sent: Vec<String> = Vec::new();
            let mut sink = |r: Reply| -> Result<(), ()> {
                sent.push(format!("{} {}", r.code, r.lines.join(" ")));
                Ok(())
            };
            let mut out = Ordered::new(job, StoreKind::Maildir, &run, &mut sink);
            // A store reporting out of order, once twice, and never for the first recipient.
            assert!(out.report(2, Err(DeliveryError::over_quota(false))));
            assert!(out.report(1, Ok(())));
            assert!(out.report(1, Err(DeliveryError::local_error())));
            assert!(out.finish().is_ok());
            assert_eq!(sent.len(), 3, "{sent:?}");
            assert!(sent[0].starts_with("451"), "{sent:?}");
            assert!(
                sent[1].starts_with("250") && sent[1].contains("<b@x>"),
                "{sent:?}"
            );
            assert!(sent[2].starts_with("452"), "{sent:?}");
        });
    }

    #[test]
    fn a_lost_connection_tells_the_store_to_stop() {
        with_job(|job| {
            let run = vec![rcpt("a@x"), rcpt("b@x")];
            let mut sink = |_: Reply| -> Result<(), &'static str> { Err("gone") };
            let mut out = Ordered::new(job, StoreKind::Maildir, &run, &mut sink);
            assert!(!out.report(0, Ok(())), "store must stop");
            assert_eq!(out.finish(), Err("gone"));
        });
    }
}
