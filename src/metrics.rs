//! The server's counters, gauges and histograms, kept in one process-wide [`Metrics`] and
//! written in the Prometheus text exposition format (version 0.0.4) for `GET /metrics`.
//! Updating a counter is one atomic add (a short lock for the labelled maps); nothing here
//! does I/O.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::StoreKind;
use crate::proto::Enhanced;

/// Upper bounds (seconds) of the delivery latency histogram's buckets: a fsync takes from
/// well under a millisecond to tens of milliseconds, a lock wait up to `mbox_lock_timeout`.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

/// A store's name and an enhanced status code (class, subject, detail).
type DeliveryKey = (&'static str, (u8, u16, u16));

const STORES: [StoreKind; 4] = [
    StoreKind::Maildir,
    StoreKind::Mbox,
    StoreKind::Sqlite,
    StoreKind::Postgres,
];

/// Why a connection was refused at connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefuseReason {
    /// `workers` sessions were running.
    Busy,
    /// No worker thread could be started.
    NoThread,
    /// Out of file descriptors (`EMFILE`/`ENFILE`).
    Descriptors,
}

impl RefuseReason {
    const ALL: [RefuseReason; 3] = [
        RefuseReason::Busy,
        RefuseReason::NoThread,
        RefuseReason::Descriptors,
    ];
    fn label(self) -> &'static str {
        match self {
            RefuseReason::Busy => "busy",
            RefuseReason::NoThread => "no_thread",
            RefuseReason::Descriptors => "descriptors",
        }
    }
}

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&le| secs <= le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

/// Why a Sieve script could not run (`lmtpd_sieve_errors_total{kind}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SieveError {
    /// It does not compile.
    Compile = 0,
    /// It cannot be read, or is refused (not a regular file, too large, a symlink out of
    /// the user's directory).
    Read = 1,
    /// It failed while running.
    Runtime = 2,
}

/// A quota or retry decision (`lmtpd_policy_events_total{event}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyEvent {
    /// A quota warning was delivered.
    WarningSent = 0,
    /// A copy was stored above the byte limit, inside the grace.
    GraceUsed = 1,
    /// An over-quota refusal became permanent after `quota_tempfail_max`.
    TempfailExpired = 2,
    /// A retry of a stored copy was answered `250` without a second copy.
    RetryRecognised = 3,
    /// A message larger than the whole quota was refused at RCPT.
    NeverFits = 4,
}

impl PolicyEvent {
    const ALL: [PolicyEvent; 5] = [
        PolicyEvent::WarningSent,
        PolicyEvent::GraceUsed,
        PolicyEvent::TempfailExpired,
        PolicyEvent::RetryRecognised,
        PolicyEvent::NeverFits,
    ];

    fn label(self) -> &'static str {
        match self {
            PolicyEvent::WarningSent => "quota_warning_sent",
            PolicyEvent::GraceUsed => "quota_grace_used",
            PolicyEvent::TempfailExpired => "quota_tempfail_expired",
            PolicyEvent::RetryRecognised => "retry_recognised",
            PolicyEvent::NeverFits => "quota_size_refused",
        }
    }
}

/// What a recipient's Sieve scripts decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SieveResult {
    /// Stored (keep, fileinto), possibly several copies.
    Stored = 0,
    /// `reject`/`ereject`: 550 5.7.1, nothing stored.
    Rejected = 1,
    /// `discard`: 250, nothing stored.
    Discarded = 2,
    /// A script failed: implicit keep into INBOX.
    Failed = 3,
    /// `redirect` without a copy: sent on, nothing stored here.
    Redirected = 4,
}

impl SieveResult {
    const ALL: [SieveResult; 5] = [
        SieveResult::Stored,
        SieveResult::Rejected,
        SieveResult::Discarded,
        SieveResult::Failed,
        SieveResult::Redirected,
    ];

    fn label(self) -> &'static str {
        match self {
            SieveResult::Stored => "stored",
            SieveResult::Rejected => "rejected",
            SieveResult::Discarded => "discarded",
            SieveResult::Failed => "failed",
            SieveResult::Redirected => "redirected",
        }
    }
}

/// A message Sieve asked lmtpd to send (`lmtpd_sieve_sent_total{kind}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// A `redirect`.
    Redirect = 0,
    /// A vacation reply.
    Vacation = 1,
}

/// What became of it (`lmtpd_sieve_sent_total{result}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SentResult {
    /// The sendmail program took it.
    Sent = 0,
    /// Sending failed (a redirect's message was kept in INBOX instead).
    Failed = 1,
    /// Not sent on purpose: a redirect loop, a vacation rule (list mail, bounce, already
    /// answered within the period).
    Suppressed = 2,
}

/// Every metric the server exports.
#[derive(Default)]
pub struct Metrics {
    start_time: AtomicU64,
    workers_max: AtomicU64,
    worker_threads: AtomicU64,
    /// Admitted by the pool and not finished: running or about to run.
    sessions_admitted: AtomicU64,
    sessions_active: AtomicU64,
    connections_tcp: AtomicU64,
    connections_unix: AtomicU64,
    refused: [AtomicU64; 3],
    panics: AtomicU64,
    accept_errors: AtomicU64,
    transactions: AtomicU64,
    transactions_refused: AtomicU64,
    received_bytes: AtomicU64,
    spool_bytes: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    /// Sieve failures by kind: compile, read, runtime.
    sieve_errors: [AtomicU64; 3],
    /// Recipients whose scripts ran, by result (`SieveResult`).
    sieve_runs: [AtomicU64; 5],
    /// Messages Sieve asked to send, by kind (`Sent`) and result (`SentResult`).
    sieve_sent: [[AtomicU64; 3]; 2],
    /// Quota and retry decisions, by `PolicyEvent`.
    policy: [AtomicU64; 5],
    /// RCPT replies by reply code.
    rcpt: Mutex<BTreeMap<u16, u64>>,
    /// Post-DATA outcomes by (store, enhanced status code as class, subject, detail).
    deliveries: Mutex<BTreeMap<DeliveryKey, u64>>,
    latency: [Histogram; 4],
}

static METRICS: std::sync::OnceLock<Metrics> = std::sync::OnceLock::new();

/// The process's metrics.
pub fn get() -> &'static Metrics {
    METRICS.get_or_init(|| {
        let m = Metrics::default();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        m.start_time.store(now, Ordering::Relaxed);
        m
    })
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn dec(c: &AtomicU64) {
    // Saturating: a gauge never wraps below zero, whatever the order of updates.
    let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(1))
    });
}

fn store_index(kind: StoreKind) -> usize {
    match kind {
        StoreKind::Maildir => 0,
        StoreKind::Mbox => 1,
        StoreKind::Sqlite => 2,
        StoreKind::Postgres => 3,
    }
}

impl Metrics {
    /// The pool's `workers`.
    pub fn set_workers_max(&self, n: usize) {
        self.workers_max.store(n as u64, Ordering::Relaxed);
    }
    /// The pool's counts: worker threads alive, sessions admitted and not finished.
    pub fn set_pool(&self, threads: usize, sessions: usize) {
        self.worker_threads.store(threads as u64, Ordering::Relaxed);
        self.sessions_admitted
            .store(sessions as u64, Ordering::Relaxed);
    }
    /// A worker started a session.
    pub fn session_started(&self) {
        inc(&self.sessions_active);
    }
    /// A session ended.
    pub fn session_ended(&self) {
        dec(&self.sessions_active);
    }
    /// A session panicked (and was closed with `421 4.3.0`).
    pub fn session_panicked(&self) {
        inc(&self.panics);
    }
    /// A connection was accepted (`unix`: on a Unix socket, else TCP).
    pub fn connection(&self, unix: bool) {
        inc(if unix {
            &self.connections_unix
        } else {
            &self.connections_tcp
        });
    }
    /// A connection was refused at connect.
    pub fn refused(&self, why: RefuseReason) {
        let i = RefuseReason::ALL
            .iter()
            .position(|&r| r == why)
            .unwrap_or(0);
        inc(&self.refused[i]);
    }
    /// `accept` failed (other than would-block).
    pub fn accept_error(&self) {
        inc(&self.accept_errors);
    }
    /// A RCPT command was answered with `code` after the directory and store checks.
    pub fn rcpt(&self, code: u16) {
        let mut m = self.rcpt.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(code).or_insert(0) += 1;
    }
    /// A message's final dot was received; `refused`: its content was refused (size, bare
    /// newlines), so it went to no store.
    pub fn transaction(&self, refused: bool) {
        inc(if refused {
            &self.transactions_refused
        } else {
            &self.transactions
        });
    }
    /// Message content received (after dot-unstuffing).
    pub fn received(&self, bytes: usize) {
        self.received_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }
    /// A recipient's post-DATA outcome: `status` is its enhanced code (`2.0.0`), `took` the
    /// time from the final dot to its reply. No allocation: this runs once per recipient.
    pub fn delivery(&self, store: StoreKind, status: Enhanced, took: Duration) {
        {
            let mut m = self.deliveries.lock().unwrap_or_else(|p| p.into_inner());
            *m.entry((store.name(), (status.0, status.1, status.2)))
                .or_insert(0) += 1;
        }
        self.latency[store_index(store)].observe(took);
    }
    /// A SIGHUP reload finished (`ok`) or was refused.
    pub fn reload(&self, ok: bool) {
        inc(if ok {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        });
    }

    /// A Sieve script that could not run.
    pub fn sieve_error(&self, kind: SieveError) {
        inc(&self.sieve_errors[kind as usize]);
    }

    /// One recipient's scripts ran to this result.
    pub fn sieve_run(&self, result: SieveResult) {
        inc(&self.sieve_runs[result as usize]);
    }

    /// A message Sieve asked to send, and what became of it.
    pub fn sieve_sent(&self, kind: Sent, result: SentResult) {
        inc(&self.sieve_sent[kind as usize][result as usize]);
    }

    /// A quota or retry decision.
    pub fn policy(&self, event: PolicyEvent) {
        inc(&self.policy[event as usize]);
    }

    /// The exposition text (`text/plain; version=0.0.4`).
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(8 * 1024);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let version = format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"));
        let refused: Vec<(String, u64)> = RefuseReason::ALL
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    format!("{{reason=\"{}\"}}", r.label()),
                    get(&self.refused[i]),
                )
            })
            .collect();
        let plain = |v: u64| vec![(String::new(), v)];
        // One row per family: a table reads better than rustfmt's one argument a line.
        #[rustfmt::skip]
        let families = [
            Family::new("lmtpd_build_info", "gauge", "Always 1; the version label names the running lmtpd.", vec![(version, 1)]),
            Family::new("lmtpd_start_time_seconds", "gauge", "When the server started, in seconds since the Unix epoch.", plain(get(&self.start_time))),
            Family::new("lmtpd_workers_max", "gauge", "Concurrent sessions allowed (the workers setting).", plain(get(&self.workers_max))),
            Family::new("lmtpd_worker_threads", "gauge", "Worker threads alive (started on demand, idle ones exit).", plain(get(&self.worker_threads))),
            Family::new("lmtpd_sessions_active", "gauge", "LMTP sessions being served.", plain(get(&self.sessions_active))),
            Family::new("lmtpd_sessions_queued", "gauge", "Accepted connections handed to a worker that has not started them yet.", plain(get(&self.sessions_admitted).saturating_sub(get(&self.sessions_active)))),
            Family::new("lmtpd_connections_total", "counter", "Connections accepted, by listener kind.", vec![
                ("{listener=\"tcp\"}".into(), get(&self.connections_tcp)),
                ("{listener=\"unix\"}".into(), get(&self.connections_unix)),
            ]),
            Family::new("lmtpd_sessions_refused_total", "counter", "Connections answered 421 4.3.2 at connect, by reason.", refused),
            Family::new("lmtpd_session_panics_total", "counter", "Sessions ended by an internal error (a bug), answered 421 4.3.0.", plain(get(&self.panics))),
            Family::new("lmtpd_accept_errors_total", "counter", "Failed accept calls (EMFILE, ENFILE, ...).", plain(get(&self.accept_errors))),
            Family::new("lmtpd_transactions_total", "counter", "Messages received to the final dot, by result: delivered (handed to the stores) or refused (content over the size limit or with bare newlines).", vec![
                ("{result=\"delivered\"}".into(), get(&self.transactions)),
                ("{result=\"refused\"}".into(), get(&self.transactions_refused)),
            ]),
            Family::new("lmtpd_received_bytes_total", "counter", "Message content received, after dot-unstuffing, in bytes.", plain(get(&self.received_bytes))),
            Family::new("lmtpd_spool_bytes", "gauge", "Message bytes held in spools right now (memory and spool files).", plain(get(&self.spool_bytes))),
            Family::new("lmtpd_reloads_total", "counter", "SIGHUP reloads, by result.", vec![
                ("{result=\"ok\"}".into(), get(&self.reloads_ok)),
                ("{result=\"failed\"}".into(), get(&self.reloads_failed)),
            ]),
            Family::new("lmtpd_sieve_errors_total", "counter", "Sieve scripts that could not run (the recipient got an implicit keep into INBOX), by kind.", vec![
                ("{kind=\"compile\"}".into(), get(&self.sieve_errors[0])),
                ("{kind=\"read\"}".into(), get(&self.sieve_errors[1])),
                ("{kind=\"runtime\"}".into(), get(&self.sieve_errors[2])),
            ]),
            Family::new("lmtpd_sieve_recipients_total", "counter", "Recipients whose Sieve scripts ran, by what they decided.", SieveResult::ALL.iter().map(|r| (format!("{{result=\"{}\"}}", r.label()), get(&self.sieve_runs[*r as usize]))).collect()),
            Family::new("lmtpd_sieve_sent_total", "counter", "Messages Sieve asked to send (redirects, vacation replies), by what became of them.", [("redirect", 0), ("vacation", 1)].iter().flat_map(|(k, i)| [("sent", 0), ("failed", 1), ("suppressed", 2)].iter().map(move |(r, j)| (format!("{{kind=\"{k}\",result=\"{r}\"}}"), get(&self.sieve_sent[*i][*j])))).collect()),
            Family::new("lmtpd_policy_events_total", "counter", "Quota and retry decisions: warnings delivered, grace used, tempfails turned permanent, retries answered without a second copy, messages refused at RCPT as larger than the whole quota.", PolicyEvent::ALL.iter().map(|e| (format!("{{event=\"{}\"}}", e.label()), get(&self.policy[*e as usize]))).collect()),
            Family::new("lmtpd_recipients_total", "counter", "RCPT commands answered after the directory and store checks, by reply code.", {
                let m = self.rcpt.lock().unwrap_or_else(|p| p.into_inner());
                m.iter().map(|(code, n)| (format!("{{code=\"{code}\"}}"), *n)).collect()
            }),
        ];
        for f in families {
            family(&mut o, f.name, f.kind, f.help);
            for (labels, v) in f.samples {
                let _ = writeln!(o, "{}{labels} {v}", f.name);
            }
        }
        family(
            &mut o,
            "lmtpd_deliveries_total",
            "counter",
            "Per-recipient replies after the final dot, by store and enhanced status code.",
        );
        {
            let m = self.deliveries.lock().unwrap_or_else(|p| p.into_inner());
            for ((store, (class, subject, detail)), n) in m.iter() {
                let _ = writeln!(
                    o,
                    "lmtpd_deliveries_total{{store=\"{store}\",status=\"{class}.{subject}.{detail}\"}} {n}"
                );
            }
        }
        family(
            &mut o,
            "lmtpd_delivery_duration_seconds",
            "histogram",
            "Time from the final dot to each recipient's reply, by store.",
        );
        for kind in STORES {
            let h = &self.latency[store_index(kind)];
            let store = kind.name();
            let mut cumulative = 0;
            for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
                cumulative += get(&h.buckets[i]);
                let _ = writeln!(
                    o,
                    "lmtpd_delivery_duration_seconds_bucket{{store=\"{store}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let count = get(&h.count);
            let sum = get(&h.sum_micros) as f64 / 1e6;
            let _ = writeln!(
                o,
                "lmtpd_delivery_duration_seconds_bucket{{store=\"{store}\",le=\"+Inf\"}} {count}\n\
                 lmtpd_delivery_duration_seconds_sum{{store=\"{store}\"}} {sum}\n\
                 lmtpd_delivery_duration_seconds_count{{store=\"{store}\"}} {count}"
            );
        }
        o
    }
}

/// One metric family without buckets: its name, type, help and samples (label set,
/// value).
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Vec<(String, u64)>,
}

impl Family {
    fn new(
        name: &'static str,
        kind: &'static str,
        help: &'static str,
        samples: Vec<(String, u64)>,
    ) -> Family {
        Family {
            name,
            kind,
            help,
            samples,
        }
    }
}

/// The `# HELP` and `# TYPE` lines of one metric family.
fn family(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Bytes of one spool counted in `lmtpd_spool_bytes`, taken off again when dropped.
#[derive(Debug, Default)]
pub struct SpoolCharge(u64);

impl SpoolCharge {
    /// Counts `n` more bytes.
    pub fn add(&mut self, n: usize) {
        self.0 += n as u64;
        get().spool_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl Drop for SpoolCharge {
    fn drop(&mut self) {
        let n = self.0;
        let _ = get()
            .spool_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_is_cumulative_and_its_count_is_the_inf_bucket() {
        let m = Metrics::default();
        m.delivery(
            StoreKind::Mbox,
            Enhanced(2, 0, 0),
            Duration::from_micros(300),
        );
        m.delivery(
            StoreKind::Mbox,
            Enhanced(2, 0, 0),
            Duration::from_millis(20),
        );
        m.delivery(StoreKind::Mbox, Enhanced(4, 2, 0), Duration::from_secs(99));
        let text = m.render();
        assert!(text
            .contains("lmtpd_delivery_duration_seconds_bucket{store=\"mbox\",le=\"0.0005\"} 1\n"));
        assert!(text
            .contains("lmtpd_delivery_duration_seconds_bucket{store=\"mbox\",le=\"0.025\"} 2\n"));
        assert!(
            text.contains("lmtpd_delivery_duration_seconds_bucket{store=\"mbox\",le=\"30\"} 2\n")
        );
        assert!(
            text.contains("lmtpd_delivery_duration_seconds_bucket{store=\"mbox\",le=\"+Inf\"} 3\n")
        );
        assert!(text.contains("lmtpd_delivery_duration_seconds_count{store=\"mbox\"} 3\n"));
        assert!(text.contains("lmtpd_deliveries_total{store=\"mbox\",status=\"2.0.0\"} 2\n"));
        assert!(text.contains("lmtpd_deliveries_total{store=\"mbox\",status=\"4.2.0\"} 1\n"));
        assert!(text.contains("lmtpd_delivery_duration_seconds_count{store=\"maildir\"} 0\n"));
    }

    #[test]
    fn every_sample_belongs_to_a_family_declared_before_it() {
        let m = Metrics::default();
        m.rcpt(250);
        m.rcpt(550);
        let text = m.render();
        let mut declared: Vec<String> = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap_or("").to_string();
                assert!(!declared.contains(&name), "{name} declared twice");
                declared.push(name);
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let name = line.split(['{', ' ']).next().unwrap_or("");
            let family = declared.last().expect("a TYPE line first");
            assert!(
                name == family
                    || name
                        .strip_prefix(family.as_str())
                        .is_some_and(|s| { ["_bucket", "_sum", "_count"].contains(&s) }),
                "{name} outside its family {family}"
            );
            let value = line.rsplit(' ').next().unwrap_or("");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        assert!(text.contains("lmtpd_recipients_total{code=\"550\"} 1\n"));
    }
}
