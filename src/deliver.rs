//! Delivery after the final dot: builds each recipient's trace headers, hands the copies to
//! each recipient's store (consecutive recipients of one store in one call, so a store can
//! share work such as one SQLite body row), and turns each outcome into that recipient's
//! LMTP reply and log line the moment it is known.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

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
    /// store cannot be opened (for SQLite: the database or its migrations). On a reload,
    /// `previous` (the old configuration and stores) lets an unchanged SQLite store, with its
    /// pool, be kept instead of opened again.
    pub fn open(
        cfg: &Config,
        directory: &Directory,
        previous: Option<(&Config, &Stores)>,
    ) -> Result<Stores, String> {
        let maildir = lmtpd_maildir::MaildirStore::new(lmtpd_maildir::MaildirConfig {
            template: cfg.maildir.clone(),
            hostname: cfg.hostname.clone(),
            detail_mailbox: cfg.detail_mailbox,
            quota_permfail: cfg.quota_permfail,
        });
        let mbox = lmtpd_mbox::MboxStore::new(lmtpd_mbox::MboxConfig {
            template: cfg.mbox.clone(),
            locks: cfg.mbox_locks.clone(),
            lock_timeout: cfg.mbox_lock_timeout,
            detail_mailbox: cfg.detail_mailbox,
            quota_permfail: cfg.quota_permfail,
        });
        let reusable = previous.and_then(|(old_cfg, old)| {
            let same = old_cfg.sqlite == cfg.sqlite
                && old_cfg.sqlite_busy_timeout == cfg.sqlite_busy_timeout
                && old_cfg.detail_mailbox == cfg.detail_mailbox
                && old_cfg.quota_permfail == cfg.quota_permfail
                && old_cfg.workers == cfg.workers;
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
    cfg.store == kind || directory.users().any(|u| u.store == Some(kind))
}

#[cfg(feature = "sqlite")]
fn open_sqlite(cfg: &Config) -> Result<Arc<dyn MailStore>, String> {
    let store = lmtpd_sqlite::SqliteStore::open(lmtpd_sqlite::SqliteConfig {
        path: cfg.sqlite.clone(),
        pool_size: u32::try_from(cfg.workers).unwrap_or(u32::MAX),
        busy_timeout: cfg.sqlite_busy_timeout,
        detail_mailbox: cfg.detail_mailbox,
        quota_permfail: cfg.quota_permfail,
    })
    .map_err(|e| format!("{}: {e}", cfg.sqlite.display()))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "sqlite"))]
fn open_sqlite(_cfg: &Config) -> Result<Arc<dyn MailStore>, String> {
    Err("this lmtpd was built without SQLite support".into())
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
        let mut failed: Option<E> = None;
        let mut started = Instant::now();
        match job.stores.get(kind) {
            Some(store) => store.deliver_each(&msg, &run, &mut |i, result| {
                if failed.is_some() {
                    return;
                }
                let Some(rcpt) = run.get(i) else { return };
                let rp = outcome_reply(job.env, rcpt, &result);
                log_outcome(job, rcpt, store.name(), &rp, &result, started);
                started = Instant::now();
                if let Err(e) = reply(rp) {
                    failed = Some(e);
                }
            }),
            None => {
                for rcpt in &run {
                    let result = Err(DeliveryError::new(
                        451,
                        lmtpd_store::Enhanced(4, 3, 5),
                        "Mail system configuration error",
                    )
                    .with_source(format!("store {} is not open", kind.name())));
                    let rp = outcome_reply(job.env, rcpt, &result);
                    log_outcome(job, rcpt, kind.name(), &rp, &result, started);
                    if let Err(e) = reply(rp) {
                        failed = Some(e);
                        break;
                    }
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        start = end;
    }
    Ok(())
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
