//! Delivery after the final dot: turns each resolved recipient into a [`Delivery`] (its trace
//! headers and its targets: the `+detail` folder under `detail_mailbox`), hands consecutive
//! recipients of one store to that store in one call (so a store can share work such as one
//! SQLite body row), and turns each outcome, released by the store crate's reporter in RCPT
//! order, into that recipient's LMTP reply, log line and metrics the moment it is known.
//!
//! A store call with several recipients, to a store that reports them one by one (Maildir,
//! mbox), runs on a helper thread while this thread writes each reply as it is released
//! (RFC 2033 §5: the client learns of each copy as soon as it is durable); the socket is only
//! ever written here, never from inside a store.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use lmtpd_store::open::OpenError;
use lmtpd_store::{
    reporter, Body, CloseOnDrop, Delivery, DeliveryError, DetailMailbox, Envelope, MailStore,
    Message, Outcome, Recipient, Replies, Reporter, Request, Target,
};

use crate::config::{Config, StoreKind};
use crate::directory::{Directory, Resolved};
use crate::journal::{Journal, Key};
use crate::metrics::PolicyEvent;
use crate::policy::{self, Plan};
use crate::proto::{Enhanced, Reply};
use crate::trace;

/// The configured mailbox backends, by kind. A store that no user is routed to is not
/// opened (so an unused SQLite path is never created).
pub struct Stores {
    maildir: Arc<dyn MailStore>,
    mbox: Arc<dyn MailStore>,
    sqlite: Option<Arc<dyn MailStore>>,
    postgres: Option<Arc<dyn MailStore>>,
    /// Maildir and mbox of system accounts, written by the account helper.
    account_maildir: Arc<dyn MailStore>,
    account_mbox: Arc<dyn MailStore>,
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
            template: cfg.maildir.template.clone(),
            hostname: d.hostname.clone(),
            quota_permfail: d.quota_permfail,
        });
        let mbox = lmtpd_mbox::MboxStore::new(lmtpd_mbox::MboxConfig {
            template: cfg.mbox.template.clone(),
            locks: cfg.mbox.locks.clone(),
            lock_timeout: cfg.mbox.lock_timeout,
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
        let kept_postgres = previous.and_then(|(old_cfg, old)| {
            let same = PostgresSettings::of(old_cfg) == PostgresSettings::of(cfg);
            old.postgres.clone().filter(|_| same)
        });
        let postgres = if !uses(cfg, directory, StoreKind::Postgres) {
            None
        } else if let Some(s) = kept_postgres {
            Some(s)
        } else {
            Some(open_postgres(cfg)?)
        };
        use crate::helper::{client::HelperStore, wire::AccountStore};
        let helper = crate::helper::client::get();
        Ok(Stores {
            maildir: Arc::new(maildir),
            mbox: Arc::new(mbox),
            sqlite,
            postgres,
            account_maildir: Arc::new(HelperStore::new(AccountStore::Maildir, helper.clone())),
            account_mbox: Arc::new(HelperStore::new(AccountStore::Mbox, helper)),
        })
    }

    /// The store of a recipient: its kind's, or for a system account the helper's.
    pub fn route(&self, r: &Resolved) -> Option<&dyn MailStore> {
        self.get_for(r.store, r.account.is_some())
    }

    /// The store for a kind, of system accounts when `account`.
    pub fn get_for(&self, kind: StoreKind, account: bool) -> Option<&dyn MailStore> {
        match (account, kind) {
            (true, StoreKind::Maildir) => Some(&*self.account_maildir),
            (true, StoreKind::Mbox) => Some(&*self.account_mbox),
            (true, _) => None,
            (false, kind) => self.get(kind),
        }
    }

    /// The store for a kind, if it is open.
    pub fn get(&self, kind: StoreKind) -> Option<&dyn MailStore> {
        match kind {
            StoreKind::Maildir => Some(&*self.maildir),
            StoreKind::Mbox => Some(&*self.mbox),
            StoreKind::Sqlite => self.sqlite.as_deref(),
            StoreKind::Postgres => self.postgres.as_deref(),
        }
    }
}

/// Does the configuration or any user route mail to `kind`?
/// Users-file lines in `local_domains` (under `accounts = passwd`) describe system
/// accounts, whose mail goes through the account helper, so they do not count.
pub fn uses(cfg: &Config, directory: &Directory, kind: StoreKind) -> bool {
    let mut virtual_users = directory.users().filter(|u| !directory.is_account_line(u));
    let only_accounts =
        cfg.accounts.passwd && directory.users().all(|u| directory.is_account_line(u));
    (cfg.delivery.store == kind && !only_accounts) || virtual_users.any(|u| u.store == Some(kind))
}

/// Everything the SQLite store is opened with: a reload keeps the open store (and its
/// pool) exactly when this is unchanged.
#[derive(Clone, Debug, PartialEq)]
struct SqliteSettings {
    path: std::path::PathBuf,
    busy_timeout: std::time::Duration,
    quota_permfail: bool,
    readers: u32,
    body_files: u64,
}

impl SqliteSettings {
    fn of(cfg: &Config) -> SqliteSettings {
        SqliteSettings {
            path: cfg.sqlite.path.clone(),
            busy_timeout: cfg.sqlite.busy_timeout,
            quota_permfail: cfg.delivery.quota_permfail,
            readers: sqlite_readers(cfg.process.workers),
            body_files: cfg.sqlite.body_files,
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
        quota_permfail: s.quota_permfail,
        body_files: s.body_files,
    })
    .map_err(|e| e.context(s.path.display()))?;
    Ok(Arc::new(store))
}

/// Everything the PostgreSQL store is opened with: a reload keeps the open store (and its
/// pool) exactly when this is unchanged.
#[derive(Clone, Debug, PartialEq)]
struct PostgresSettings {
    section: crate::config::PostgresSection,
    quota_permfail: bool,
}

impl PostgresSettings {
    fn of(cfg: &Config) -> PostgresSettings {
        PostgresSettings {
            section: cfg.postgres.clone(),
            quota_permfail: cfg.delivery.quota_permfail,
        }
    }
}

#[cfg(feature = "postgres")]
fn open_postgres(cfg: &Config) -> Result<Arc<dyn MailStore>, OpenError> {
    let p = &cfg.postgres;
    let store = lmtpd_postgres::PostgresStore::try_open(lmtpd_postgres::PostgresConfig {
        conninfo: p.conninfo.clone(),
        pool_size: u32::try_from(p.pool_size).unwrap_or(u32::MAX),
        connect_timeout: p.connect_timeout,
        statement_timeout: p.statement_timeout,
        quota_permfail: cfg.delivery.quota_permfail,
    })?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "postgres"))]
fn open_postgres(_cfg: &Config) -> Result<Arc<dyn MailStore>, OpenError> {
    Err(OpenError::new(
        lmtpd_store::open::OpenErrorKind::Refused,
        "this lmtpd was built without PostgreSQL support",
    ))
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

/// What one transaction's delivery needs besides the recipients.
pub struct Job<'a> {
    /// The stores.
    pub stores: &'a Stores,
    /// Our host name for the Received header.
    pub hostname: &'a str,
    /// What a `+detail` does (`detail_mailbox`).
    pub detail_mailbox: DetailMailbox,
    /// Connection id for the log.
    pub conn: u64,
    /// The envelope.
    pub env: &'a Envelope,
    /// The spooled body.
    pub body: &'a dyn Body,
    /// When the final dot arrived (each recipient's latency is counted from here).
    pub dot: Instant,
    /// Sieve filtering, when any script is configured (`None`: every recipient gets its
    /// default target without looking for scripts).
    pub filter: Option<crate::policy::Filter<'a>>,
    /// What XFORWARD said about the original client and the MTA's queue id.
    pub xforward: &'a crate::proto::Xforward,
    /// The retry journal and the quota rules that use it.
    pub rules: Rules<'a>,
}

/// The retry journal and what uses it: retry recognition, bounded tempfail, quota warnings.
#[derive(Clone, Copy, Default)]
pub struct Rules<'a> {
    /// The journal (`None`: none of the rules below applies).
    pub journal: Option<&'a Journal>,
    /// `retry_window` is not 0: stored copies are recorded and retries recognised.
    pub retry: bool,
    /// `quota_tempfail_max` (0: off).
    pub tempfail_max: Duration,
    /// The SHA-256 of the spooled body (the retry key needs it).
    pub body_sha256: Option<[u8; 32]>,
    /// Quota warnings: their template and sender.
    pub warning: Option<&'a crate::warning::Notice>,
}

impl Rules<'_> {
    /// The retry key of one recipient's copy, when the journal and the body hash are there.
    fn key(&self, job: &Job<'_>, r: &Resolved) -> Option<Key> {
        self.journal?;
        let body = self.body_sha256.as_ref()?;
        Some(Key::new(
            job.xforward.ident.as_deref(),
            job.env.sender_or_empty(),
            &r.rcpt.address,
            body,
        ))
    }

    /// The earlier delivery of this key, when retries are recognised.
    fn earlier(&self, key: Option<&Key>, now: SystemTime) -> Option<crate::journal::Earlier> {
        let (j, k) = (self.journal.filter(|_| self.retry)?, key?);
        match j.delivered(k, now) {
            Ok(e) => e,
            Err(e) => {
                // Without the answer the copy is stored: at worst a duplicate, never a loss.
                log::warn!("retry journal: lookup failed: {e}");
                None
            }
        }
    }
}

/// Delivers every recipient's copies and calls `reply` with each recipient's reply, in RCPT
/// order, as soon as it is known. Once `reply` fails (the connection is gone) the stores are
/// told to start no further copy; every outcome is still logged and counted, and the first
/// error is returned.
pub fn deliver_all<E>(
    job: &Job<'_>,
    rcpts: &[Resolved],
    mut reply: impl FnMut(Reply) -> Result<(), E>,
) -> Result<(), E> {
    let now = SystemTime::now();
    let shared = policy::Shared::new(job.env, job.body);
    let mut plans: Vec<Plan> = Vec::with_capacity(rcpts.len());
    let mut summaries: Vec<String> = Vec::with_capacity(rcpts.len());
    let mut outgoing: Vec<policy::Outgoing> = Vec::with_capacity(rcpts.len());
    let keys: Vec<Option<Key>> = rcpts.iter().map(|r| job.rules.key(job, r)).collect();
    // The earlier transaction id of each recipient answered as a retry.
    let mut retried: Vec<Option<String>> = vec![None; rcpts.len()];
    for (i, r) in rcpts.iter().enumerate() {
        // A retry of a copy already stored: answered 250 in its place, nothing stored, no
        // script run again (its redirects and replies went out the first time).
        if let Some(e) = job.rules.earlier(keys[i].as_ref(), now) {
            let age = now.duration_since(e.at).unwrap_or_default().as_secs();
            log::info!(
                "conn={} id={} to=<{}> retry of the copy stored {age}s ago as {} (key {}): answered 250, nothing stored",
                job.conn,
                job.env.id,
                r.rcpt.address,
                e.id,
                keys[i].map(|k| k.short()).unwrap_or_default(),
            );
            crate::metrics::get().policy(PolicyEvent::RetryRecognised);
            plans.push(Plan::Answer(Ok(())));
            // The id goes into a reply: only what our own ids are made of.
            let id: String =
                e.id.chars()
                    .filter(char::is_ascii_graphic)
                    .take(64)
                    .collect();
            summaries.push(format!("retry_of={id}"));
            retried[i] = Some(id);
            outgoing.push(policy::Outgoing::default());
            continue;
        }
        let default = || Target::for_detail(r.rcpt.detail.as_deref(), job.detail_mailbox);
        match &job.filter {
            Some(f) => {
                let store = job.stores.route(r);
                let mut done = policy::filter(f, &shared, job.conn, r, store, job.detail_mailbox);
                // A redirect that is the only thing keeping the message goes out before the
                // reply; when it cannot, the message is stored in INBOX instead.
                if done.outgoing.redirect_only
                    && !policy::send_redirects(f, &shared, job.conn, r, &done.outgoing)
                {
                    done.plan = Plan::Store(vec![Target::inbox()]);
                    done.summary.push_str(",keep(redirect failed)");
                }
                plans.push(done.plan);
                summaries.push(done.summary);
                outgoing.push(done.outgoing);
            }
            None => {
                plans.push(Plan::Store(vec![default()]));
                summaries.push(String::new());
                outgoing.push(policy::Outgoing::default());
            }
        }
    }
    let deliveries: Vec<Delivery<'_>> = rcpts
        .iter()
        .zip(&mut plans)
        .map(|(r, plan)| {
            let trace = trace::headers(job.env, &r.rcpt, job.hostname, now);
            let trace = match job.xforward.client() {
                Some(client) => trace::with_original_client(trace, &client),
                None => trace,
            };
            let targets = match plan {
                Plan::Store(targets) => std::mem::take(targets),
                Plan::Answer(_) => Vec::new(),
            };
            Delivery::new(&r.rcpt, trace, targets)
        })
        .collect();
    let mut out = Released {
        job,
        reply: &mut reply,
        failed: None,
        started: Instant::now(),
        summaries: &summaries,
        ok: vec![false; rcpts.len()],
        rcpts,
        keys: &keys,
        retried: &retried,
        now,
    };
    let mut start = 0;
    while start < rcpts.len() {
        let kind = rcpts[start].store;
        let account = rcpts[start].account.is_some();
        if let Plan::Answer(_) = &plans[start] {
            // Rejected or discarded by the filter: answered in its place, nothing stored.
            // A failed write is remembered in `out.failed`; later runs then start no copy.
            if let Plan::Answer(outcome) =
                std::mem::replace(&mut plans[start], Plan::Store(Vec::new()))
            {
                out.send(kind, start, &deliveries[start], outcome);
            }
            start += 1;
            continue;
        }
        let end = rcpts[start..]
            .iter()
            .zip(&plans[start..])
            .position(|(r, p)| {
                r.store != kind || r.account.is_some() != account || matches!(p, Plan::Answer(_))
            })
            .map_or(rcpts.len(), |n| start + n);
        let run = &deliveries[start..end];
        let req = Request {
            message: Message::new(job.env, job.body),
            deliveries: run,
        };
        let (rep, replies) = reporter(run.len());
        if out.failed.is_some() {
            replies.client_gone();
        }
        match job.stores.get_for(kind, account) {
            Some(store) => run_store(store, &req, &rep, || out.drain(kind, start, run, &replies)),
            None => {
                for i in 0..run.len() {
                    let err = DeliveryError::config_error()
                        .with_source(format!("store {} is not open", kind.name()));
                    rep.report(i, Err(err));
                }
                rep.close();
                out.drain(kind, start, run, &replies);
            }
        }
        start = end;
    }
    // What the scripts asked to send or track, for each recipient whose copies are now
    // durable (the replies are out; a failure here never changes one).
    if let Some(f) = &job.filter {
        for (i, r) in rcpts.iter().enumerate() {
            if out.ok[i] && retried[i].is_none() {
                policy::after_delivery(f, &shared, job.conn, r, &outgoing[i]);
            }
        }
    }
    // Quota warnings and grace, from each store's usage after the copy.
    for (i, r) in rcpts.iter().enumerate() {
        if out.ok[i] && retried[i].is_none() {
            if let Some(store) = job.stores.route(r) {
                crate::warning::after_delivery(job, r, store);
            }
        }
    }
    match out.failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Runs one store call while `drain` sends what it reports. With several recipients, a store
/// that reports progressively runs on a helper thread so that replies go out while later
/// copies are being stored; otherwise (one recipient, a store reporting at the end, no
/// thread to be had) on this thread, and `drain` runs after it.
fn run_store(store: &dyn MailStore, req: &Request<'_>, rep: &Reporter, drain: impl FnOnce()) {
    let deliver = || {
        let _close = CloseOnDrop(rep);
        store.deliver(req, rep);
    };
    let mut drain = Some(drain);
    if req.deliveries.len() > 1 && store.reports_progressively() {
        thread::scope(|scope| {
            match thread::Builder::new()
                .name("lmtpd-store".into())
                .spawn_scoped(scope, deliver)
            {
                Ok(_) => {
                    if let Some(drain) = drain.take() {
                        drain();
                    }
                }
                Err(err) => {
                    log::warn!("cannot start a store thread ({err}); delivering on this one")
                }
            }
        });
    }
    if let Some(drain) = drain {
        deliver();
        drain();
    }
}

/// Turns released outcomes into replies, log lines and metrics, and remembers the first
/// write error.
struct Released<'j, 'r, F, E> {
    job: &'j Job<'j>,
    reply: &'r mut F,
    failed: Option<E>,
    /// When the previous reply went out (each log line's `ms` counts from there).
    started: Instant,
    /// Each recipient's Sieve summary for its log line, by RCPT index.
    summaries: &'j [String],
    /// Which recipients' outcomes were `Ok` (their copies are durable), by RCPT index.
    ok: Vec<bool>,
    /// The recipients, by RCPT index (their quota policy).
    rcpts: &'j [Resolved],
    /// Each recipient's retry key, when the journal is on.
    keys: &'j [Option<Key>],
    /// The earlier transaction of each recipient answered as a retry of it.
    retried: &'j [Option<String>],
    /// When the final dot was handled (the journal's clock).
    now: SystemTime,
}

impl<F: FnMut(Reply) -> Result<(), E>, E> Released<'_, '_, F, E> {
    /// Logs, counts and (while the client is there) sends one recipient's reply. False once
    /// the client is gone.
    fn send(&mut self, store: StoreKind, index: usize, d: &Delivery<'_>, outcome: Outcome) -> bool {
        let outcome = self.apply_rules(index, outcome);
        if let Some(ok) = self.ok.get_mut(index) {
            *ok = outcome.is_ok();
        }
        let rp = match self.retried.get(index).and_then(Option::as_deref) {
            Some(earlier) => Reply::already_saved(&d.rcpt.address, earlier),
            None => outcome_reply(self.job.env, d.rcpt, &outcome),
        };
        let sieve = self.summaries.get(index).map_or("", String::as_str);
        log_outcome(
            self.job,
            d.rcpt,
            store.name(),
            &rp,
            &outcome,
            self.started,
            sieve,
        );
        // Every post-DATA reply carries an enhanced code (outcome_reply, Reply::delivery_error).
        let status = rp.enhanced.unwrap_or(Enhanced(4, 3, 0));
        crate::metrics::get().delivery(store, status, self.job.dot.elapsed());
        self.started = Instant::now();
        test_reply_delay(&d.rcpt.local);
        if self.failed.is_none() {
            if let Err(e) = (self.reply)(rp) {
                self.failed = Some(e);
            }
        }
        self.failed.is_none()
    }

    /// Before the reply: records a durable copy in the retry journal (so a retry after a
    /// lost reply is recognised), and turns an over-quota refusal into the recipient's own
    /// reply (`quota_full`, then `quota_tempfail_max`).
    fn apply_rules(&self, index: usize, outcome: Outcome) -> Outcome {
        let rules = &self.job.rules;
        let key = self.keys.get(index).and_then(Option::as_ref);
        match outcome {
            Ok(()) => {
                let retry = self.retried.get(index).is_some_and(Option::is_some);
                if let (Some(j), Some(k), true, false) = (rules.journal, key, rules.retry, retry) {
                    if let Err(e) = j.record(k, &self.job.env.id, self.now) {
                        log::warn!("retry journal: cannot record {}: {e}", self.job.env.id);
                    }
                }
                Ok(())
            }
            Err(e) if crate::quota::is_over_quota(&e) => {
                let Some(r) = self.rcpts.get(index) else {
                    return Err(e);
                };
                let e = crate::quota::apply(&r.policy, e);
                Err(self.bounded_tempfail(r, key, e))
            }
            Err(e) => Err(e),
        }
    }

    /// `quota_tempfail_max`: a temporary over-quota refusal of a message first refused longer
    /// ago than that becomes `552 5.2.2`, so the sender hears of it in hours.
    fn bounded_tempfail(&self, r: &Resolved, key: Option<&Key>, e: DeliveryError) -> DeliveryError {
        let rules = &self.job.rules;
        let (Some(j), Some(k)) = (rules.journal, key) else {
            return e;
        };
        if e.code >= 500 || rules.tempfail_max.is_zero() {
            return e;
        }
        match j.first_refusal(k, self.now) {
            Ok(first) if crate::journal::tempfail_expired(first, self.now, rules.tempfail_max) => {
                let age = self.now.duration_since(first).unwrap_or_default().as_secs();
                log::info!(
                    "conn={} id={} to=<{}> user={} over quota since {age}s ago (quota_tempfail_max {}s): refused permanently",
                    self.job.conn,
                    self.job.env.id,
                    r.rcpt.address,
                    r.rcpt.user,
                    rules.tempfail_max.as_secs()
                );
                crate::metrics::get().policy(PolicyEvent::TempfailExpired);
                let mut p = DeliveryError::over_quota(true);
                p.source = e.source;
                p
            }
            Ok(_) => e,
            Err(err) => {
                log::warn!("retry journal: cannot look up a quota refusal: {err}");
                e
            }
        }
    }

    /// Sends every outcome `replies` releases, until the store is done; tells the store
    /// once the client is gone.
    fn drain(&mut self, store: StoreKind, first: usize, run: &[Delivery<'_>], replies: &Replies) {
        while let Some((i, outcome)) = replies.next() {
            if !self.send(store, first + i, &run[i], outcome) {
                replies.client_gone();
            }
        }
    }
}

/// For `make interop` only (nothing else sets it): with `LMTPD_TEST_REPLY_DELAY=LOCAL:SECONDS`
/// in the environment, the first post-DATA reply to a recipient with local part `LOCAL` is
/// held back that long after its copy is stored and recorded, so that the MTA times out
/// waiting for it and retries the message, as after a lost reply. Unset, it costs one
/// look at a `OnceLock`.
fn test_reply_delay(local: &str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::OnceLock;
    static HOOK: OnceLock<Option<(String, Duration)>> = OnceLock::new();
    static FIRED: AtomicBool = AtomicBool::new(false);
    let hook = HOOK.get_or_init(|| {
        let v = std::env::var("LMTPD_TEST_REPLY_DELAY").ok()?;
        let (l, secs) = v.split_once(':')?;
        Some((l.to_string(), Duration::from_secs(secs.parse().ok()?)))
    });
    if let Some((l, delay)) = hook {
        if l == local && !FIRED.swap(true, Ordering::SeqCst) {
            log::warn!("LMTPD_TEST_REPLY_DELAY: holding the reply to {local}@ for {delay:?}");
            thread::sleep(*delay);
        }
    }
}

fn outcome_reply(env: &Envelope, rcpt: &Recipient, result: &Result<(), DeliveryError>) -> Reply {
    match result {
        Ok(()) => Reply::saved(&rcpt.address, &env.id),
        Err(e) => Reply::delivery_error(e),
    }
}

/// One `info` line per recipient outcome: connection, transaction, sender, recipient, size,
/// store, reply code, milliseconds and what Sieve did (`sieve=...`, when a script ran).
/// Never the body.
pub fn log_outcome(
    job: &Job<'_>,
    rcpt: &Recipient,
    store: &str,
    reply: &Reply,
    result: &Result<(), DeliveryError>,
    started: Instant,
    sieve: &str,
) {
    let enhanced = reply.enhanced.map(|e| e.to_string()).unwrap_or_default();
    let detail = match result {
        Err(e) => match &e.source {
            Some(src) => format!(" error=\"{src}\""),
            None => String::new(),
        },
        Ok(()) => String::new(),
    };
    let sieve = if sieve.is_empty() {
        String::new()
    } else {
        format!(" {sieve}")
    };
    // The MTA's queue id and client (XFORWARD): follow one message from the MTA's log here.
    let mut orig = String::new();
    if let Some(id) = &job.xforward.ident {
        orig.push_str(&format!(" orig_queue_id={id}"));
    }
    if let Some(client) = job.xforward.client() {
        orig.push_str(&format!(" orig_client={client}"));
    }
    log::info!(
        "conn={} id={}{orig} from=<{}> to=<{}> user={} store={store} size={} status={} {enhanced} ms={}{sieve}{detail}",
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
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use lmtpd_store::{MemoryBody, Recipient};

    fn resolved(local: &str, store: StoreKind) -> Resolved {
        Resolved {
            policy: Default::default(),
            rcpt: Recipient::new(local, "x"),
            store,
            sieve: crate::directory::UserSieve::Off,
            account: None,
        }
    }

    /// Runs `f` with a job over stores writing under a temporary directory.
    fn with_job(f: impl FnOnce(&Job<'_>)) {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::default();
        cfg.maildir.template = format!("{}/%d/%n", dir.path().display());
        let users = Directory::parse("", "u", &cfg).expect("users");
        let stores = Stores::open(&cfg, &users, None).expect("stores");
        let env = Envelope::default();
        let body = MemoryBody(b"Subject: t\n\nx\n".to_vec());
        f(&Job {
            stores: &stores,
            hostname: "h",
            detail_mailbox: DetailMailbox::Yes,
            conn: 1,
            env: &env,
            body: &body,
            dot: Instant::now(),
            filter: None,
            xforward: &crate::proto::Xforward::default(),
            rules: Rules::default(),
        });
    }

    #[test]
    fn every_recipient_gets_one_reply_in_rcpt_order_across_stores() {
        with_job(|job| {
            // SQLite is not open in this configuration: those recipients get 451 4.3.5,
            // in their place, between the Maildir ones.
            let rcpts = vec![
                resolved("a", StoreKind::Maildir),
                resolved("b", StoreKind::Maildir),
                resolved("c", StoreKind::Sqlite),
                resolved("d", StoreKind::Maildir),
            ];
            let mut sent: Vec<String> = Vec::new();
            let r = deliver_all(job, &rcpts, |r: Reply| -> Result<(), ()> {
                let enhanced = r.enhanced.map(|e| e.to_string()).unwrap_or_default();
                sent.push(format!("{} {enhanced} {}", r.code, r.lines.join(" ")));
                Ok(())
            });
            assert!(r.is_ok());
            assert_eq!(sent.len(), 4, "{sent:?}");
            assert!(sent[0].starts_with("250 2.0.0 <a@x>"), "{sent:?}");
            assert!(sent[1].starts_with("250 2.0.0 <b@x>"), "{sent:?}");
            assert!(sent[2].starts_with("451 4.3.5"), "{sent:?}");
            assert!(sent[3].starts_with("250 2.0.0 <d@x>"), "{sent:?}");
        });
    }

    #[test]
    fn a_lost_connection_stops_the_replies_and_is_returned() {
        with_job(|job| {
            let rcpts: Vec<Resolved> = ["a", "b", "c"]
                .iter()
                .map(|l| resolved(l, StoreKind::Maildir))
                .collect();
            let mut calls = 0;
            let r = deliver_all(job, &rcpts, |_: Reply| -> Result<(), &'static str> {
                calls += 1;
                Err("gone")
            });
            assert_eq!(r, Err("gone"));
            assert_eq!(calls, 1, "no write after the first failed one");
        });
    }
}
