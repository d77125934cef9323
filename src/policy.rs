//! Sieve at delivery: which scripts run for a recipient (the global `sieve_before` scripts,
//! the user's active script, the global `sieve_after` scripts), running them over the
//! spooled message, and turning the outcome into that recipient's [`Plan`]: the targets to
//! store (folders, flags, edited headers) or a reply with nothing stored (`reject`,
//! `discard`). A script that cannot be read, does not compile or fails at run time never
//! loses mail and never causes a tempfail: the recipient gets an implicit keep into INBOX,
//! a log line naming the script and the line:column, and a metric.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use lmtpd_store::{
    Body, DeliveryError, DetailMailbox, Enhanced, Envelope, Flag, Flags, HeaderEdit, MailStore,
    Recipient, Target,
};

use crate::config::{RedirectFrom, SieveSection};
use crate::directory::{Resolved, UserSieve};
use crate::helper::wire::{ScriptRequest, ScriptWanted};
use crate::metrics::SieveResult;
use crate::metrics::{Sent, SentResult};
use crate::scripts::{Found, ScriptCache, Source};
use crate::sieve::interp::{self, Sequence, SequenceError};
use crate::sieve::{self, Action, Host, IncludeError, IncludeLocation, Script};
use crate::submit::Submitter;
use crate::tracking::{self, Kind, Mark, Tracking};

/// What the delivery path needs to filter: the `[sieve]` settings, the compiled-script
/// cache and the recipient delimiters (for `subaddress`).
#[derive(Clone, Copy)]
pub struct Filter<'a> {
    /// The settings.
    pub cfg: &'a SieveSection,
    /// The compiled scripts.
    pub cache: &'a ScriptCache,
    /// `recipient_delimiter`.
    pub delimiters: &'a str,
    /// Our host name (`environment "host"`).
    pub hostname: &'a str,
    /// System accounts have scripts of their own (`accounts = passwd` with a non-empty
    /// `account_sieve`), read through the account helper.
    pub account_scripts: bool,
}

/// What happens to one recipient after its scripts ran.
#[derive(Debug)]
pub enum Plan {
    /// Store these copies (never empty).
    Store(Vec<Target>),
    /// Store nothing; this is the recipient's outcome (`discard`: Ok; `reject`: 550 5.7.1).
    Answer(Result<(), DeliveryError>),
}

/// What every recipient's filtering in one transaction shares, each taken once: the header
/// section from the spool, and the global scripts (found, stat'ed and compiled or taken
/// from the cache once per transaction, not once per recipient).
pub struct Shared<'a> {
    /// The envelope.
    pub env: &'a Envelope,
    /// The spooled body.
    pub body: &'a dyn Body,
    header: std::cell::OnceCell<(Vec<u8>, bool)>,
    globals: std::cell::OnceCell<Globals>,
}

/// The `sieve_before` and `sieve_after` scripts that can run (a failing one is logged and
/// counted once, and skipped).
struct Globals {
    before: Vec<Loaded>,
    after: Vec<Loaded>,
}

impl<'a> Shared<'a> {
    /// The message of this transaction.
    pub fn new(env: &'a Envelope, body: &'a dyn Body) -> Shared<'a> {
        Shared {
            env,
            body,
            header: std::cell::OnceCell::new(),
            globals: std::cell::OnceCell::new(),
        }
    }

    fn globals(&self, f: &Filter<'_>) -> &Globals {
        self.globals.get_or_init(|| {
            let load = |entries: &[PathBuf]| -> Vec<Loaded> {
                let mut run = Vec::new();
                for path in entries.iter().flat_map(|e| ScriptCache::expand_global(e)) {
                    match f.cache.global(&path) {
                        Found::Missing => {}
                        Found::Script(script, path) => run.push(Loaded { script, path }),
                        Found::Failed(path, err) => {
                            log::warn!(
                                "sieve: id={}: global script {} skipped: {err}",
                                self.env.id,
                                path.display()
                            );
                            crate::metrics::get().sieve_error(err.kind());
                        }
                    }
                }
                run
            };
            Globals {
                before: load(&f.cfg.before),
                after: load(&f.cfg.after),
            }
        })
    }

    /// The header section (up to the empty line that ends it, included), at most `max`
    /// bytes, and whether it is complete (its end was found within `max`); a spool that
    /// cannot be read gives what was read.
    fn header(&self, max: usize) -> (&[u8], bool) {
        let (h, complete) = self.header.get_or_init(|| read_header(self.body, max));
        (h, *complete)
    }
}

/// Reads the header section: bytes up to and including the first empty line, at most `max`;
/// true when that empty line (or the end of the message) was reached. A spool has LF line
/// ends; `lmtpd sieve test` also hands in message files with CRLF.
pub(crate) fn read_header(body: &dyn Body, max: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let Ok(reader) = body.open() else {
        return (out, false);
    };
    let mut buf = [0u8; 8192];
    let mut reader = reader.take(max as u64);
    loop {
        let n = match reader.read(&mut buf) {
            // The end of the message (all of it is header) or of `max`.
            Ok(0) => {
                let whole = out.len() as u64 >= body.len();
                return (out, whole);
            }
            Err(_) => return (out, false),
            Ok(n) => n,
        };
        let start = out.len().saturating_sub(2);
        out.extend_from_slice(&buf[..n]);
        if let Some(end) = find_blank_line(&out, start) {
            out.truncate(end);
            return (out, true);
        }
    }
}

/// The end (exclusive) of the first empty line (`\n\n` or `\n\r\n`) whose line break starts
/// at or after `from`, or of a leading empty line.
fn find_blank_line(b: &[u8], from: usize) -> Option<usize> {
    match b {
        [b'\n', ..] => return Some(1),
        [b'\r', b'\n', ..] => return Some(2),
        _ => {}
    }
    let rest = b.get(from..)?;
    rest.iter()
        .enumerate()
        .find_map(|(i, &c)| match (c, rest.get(i + 1..)) {
            (b'\n', Some([b'\n', ..])) => Some(from + i + 2),
            (b'\n', Some([b'\r', b'\n', ..])) => Some(from + i + 3),
            _ => None,
        })
}

/// One script of the sequence and where it came from (for the log).
struct Loaded {
    script: Arc<Script>,
    path: PathBuf,
}

/// Why `r`'s own script cannot be run.
enum UserScriptError {
    /// It exists but cannot run (logged and counted): implicit keep into INBOX.
    Broken,
    /// It could not even be looked for (the account helper is not there): the recipient
    /// gets this tempfail, so the MTA retries once the script can be read.
    Unavailable(DeliveryError),
}

/// `r`'s scripts: the transaction's global ones around the user's.
fn scripts_for<'s>(
    f: &Filter<'_>,
    shared: &'s Shared<'_>,
    r: &Resolved,
    conn: u64,
) -> Result<(&'s Globals, Option<Loaded>), UserScriptError> {
    let globals = shared.globals(f);
    let found = match &r.account {
        Some(a) if f.account_scripts && r.sieve != UserSieve::Off => Some(
            account_script(f, &a.name, &r.rcpt.domain, ScriptWanted::Active)
                .map_err(UserScriptError::Unavailable)?,
        ),
        Some(_) => None,
        None => user_script(f.cfg, r).map(|p| f.cache.personal(&p)),
    };
    let user = match found {
        None | Some(Found::Missing) => None,
        Some(Found::Script(script, path)) => Some(Loaded { script, path }),
        Some(Found::Failed(path, err)) => {
            log::warn!(
                "sieve: {}: script {}: {err}",
                log_tag(conn, shared, r),
                path.display()
            );
            crate::metrics::get().sieve_error(err.kind());
            return Err(UserScriptError::Broken);
        }
    };
    Ok((globals, user))
}

/// One of system account `name`'s scripts, read by the account helper as the account and
/// compiled here (cached by the file's stamp, under a key naming the account). `Err` when
/// the helper cannot be asked.
fn account_script(
    f: &Filter<'_>,
    name: &str,
    domain: &str,
    wanted: ScriptWanted,
) -> Result<Found, DeliveryError> {
    let client = crate::helper::client::get()
        .ok_or_else(|| DeliveryError::local_error().with_source("account helper: not started"))?;
    let reply = client.script(&ScriptRequest {
        account: name.to_string(),
        domain: domain.to_string(),
        wanted,
    })?;
    Ok(match reply {
        Source::Missing => Found::Missing,
        Source::Failed(path, err) => Found::Failed(path, err),
        Source::Text(path, stamp, text) => {
            let key = PathBuf::from(format!("account:{name}:{}", path.display()));
            match f.cache.from_source(key, stamp, &text) {
                Ok(script) => Found::Script(script, path),
                Err(err) => Found::Failed(path, err),
            }
        }
    })
}

/// How the Sieve log lines name a recipient's delivery.
fn log_tag(conn: u64, shared: &Shared<'_>, r: &Resolved) -> String {
    format!("conn={conn} id={} to=<{}>", shared.env.id, r.rcpt.address)
}

/// The path of `r`'s own script, if it has one configured.
fn user_script(cfg: &SieveSection, r: &Resolved) -> Option<PathBuf> {
    match &r.sieve {
        UserSieve::Off => None,
        UserSieve::Path(p) => Some(p.clone()),
        UserSieve::Template if cfg.script.is_empty() => None,
        UserSieve::Template => match lmtpd_store::template::expand(&cfg.script, "sieve", &r.rcpt) {
            Ok(p) => Some(p),
            Err(why) => {
                log::warn!("sieve: {}: no script: {why}", r.rcpt.user);
                None
            }
        },
    }
}

/// False when no script can run for anybody: the delivery path skips filtering.
pub fn configured(cfg: &crate::config::Config) -> bool {
    let s = &cfg.sieve;
    !s.script.is_empty() || !s.before.is_empty() || !s.after.is_empty() || account_scripts(cfg)
}

/// Whether system accounts have scripts of their own to look for.
pub fn account_scripts(cfg: &crate::config::Config) -> bool {
    cfg.accounts.passwd && !cfg.accounts.sieve.is_empty()
}

/// The recipient's side of the engine: its mailboxes (through its store), the special-use
/// folders and the scripts `include` may name.
struct RcptHost<'a> {
    f: &'a Filter<'a>,
    rcpt: &'a Recipient,
    store: Option<&'a dyn MailStore>,
    /// Where `include :personal` looks.
    personal: Personal,
    /// The run's clock (for the tracking list).
    now: i64,
}

impl Host for RcptHost<'_> {
    fn mailbox_exists(&self, name: &str) -> bool {
        let Some(store) = self.store else {
            return false;
        };
        match store_folder(name, self.f.cfg.separator) {
            Ok(None) => true,
            Ok(Some(folder)) => store.mailbox_exists(self.rcpt, &folder).unwrap_or(false),
            Err(_) => false,
        }
    }

    fn special_use(&self, flag: &str) -> Option<String> {
        let (_, folder) = self
            .f
            .cfg
            .special_use
            .iter()
            .find(|(f, _)| f.eq_ignore_ascii_case(flag))?;
        self.mailbox_exists(folder).then(|| folder.clone())
    }

    fn duplicate(&self, handle: &str, id: &str) -> bool {
        let key = tracking::key(handle, id);
        match tracking_of(self.f.cfg).contains(&self.rcpt.user, Kind::Duplicate, &key, self.now) {
            Ok(seen) => seen,
            Err(e) => {
                // Not knowing means not a duplicate: the message is delivered.
                log::warn!(
                    "sieve: {}: duplicate tracking unavailable ({e}); taken as not seen",
                    self.rcpt.user
                );
                false
            }
        }
    }

    fn include(&self, location: IncludeLocation, name: &str) -> Result<Arc<Script>, IncludeError> {
        let (dir, confined) = match (location, &self.personal) {
            (IncludeLocation::Global, _) => (self.f.cfg.global_dir.clone(), false),
            (IncludeLocation::Personal, Personal::Dir(d)) => (d.clone(), true),
            (IncludeLocation::Personal, Personal::None) => return Err(IncludeError::NotFound),
            (IncludeLocation::Personal, Personal::Account(account)) => {
                let wanted = ScriptWanted::Include(name.to_string());
                return match account_script(self.f, account, &self.rcpt.domain, wanted) {
                    Ok(Found::Missing) => Err(IncludeError::NotFound),
                    Ok(Found::Script(s, _)) => Ok(s),
                    Ok(Found::Failed(path, err)) => {
                        Err(IncludeError::Failed(format!("{}: {err}", path.display())))
                    }
                    Err(e) => Err(IncludeError::Failed(
                        e.source
                            .unwrap_or_else(|| "account helper unavailable".into()),
                    )),
                };
            }
        };
        self.f.cache.include(&dir, name, confined)
    }
}

/// Where a recipient's `include :personal` scripts are.
enum Personal {
    /// Nowhere: every personal include is missing.
    None,
    /// In this directory, read by lmtpd.
    Dir(PathBuf),
    /// In this system account's `account_sieve_dir`, read by the account helper.
    Account(String),
}

/// The `include :personal` directory of `r`: the `sieve_dir` template, else the directory
/// of its active script.
fn personal_dir(cfg: &SieveSection, r: &Resolved, active: Option<&Path>) -> Option<PathBuf> {
    if !cfg.dir.is_empty() {
        return lmtpd_store::template::expand(&cfg.dir, "sieve", &r.rcpt).ok();
    }
    active.and_then(Path::parent).map(Path::to_path_buf)
}

/// A script's folder name as the store names it: `None` for INBOX, else the levels joined
/// with `.` (Maildir++ style, as `Folder::Named` wants them). A name whose level contains
/// the store's separator, or an empty level, is refused.
pub fn store_folder(name: &str, separator: char) -> Result<Option<String>, String> {
    if name.eq_ignore_ascii_case("INBOX") {
        return Ok(None);
    }
    let levels: Vec<&str> = name.split(separator).collect();
    let levels = match levels.first() {
        // `INBOX/x` with a `/` separator and a namespace without prefix names `x`'s
        // sibling in Dovecot's view; we only strip an INBOX prefix when the separator is
        // `.` and Maildir++ folders live under INBOX anyway.
        Some(first)
            if first.eq_ignore_ascii_case("INBOX") && separator == '.' && levels.len() > 1 =>
        {
            &levels[1..]
        }
        _ => &levels[..],
    };
    if levels
        .iter()
        .any(|l| l.is_empty() || (separator != '.' && l.contains('.')))
    {
        return Err(format!("'{name}' is not a usable folder name"));
    }
    Ok(Some(levels.join(".")))
}

/// The store flags for a script's flag list; keywords (anything but the five system flags)
/// cannot be stored yet and are returned for the log. `\Recent` is not a flag one can set
/// (RFC 3501 §2.3.2) and is dropped.
fn store_flags(flags: &[String]) -> (Flags, Vec<String>) {
    let mut set = Flags::NONE;
    let mut dropped = Vec::new();
    for f in flags {
        match Flag::ALL
            .iter()
            .find(|k| k.imap_name().eq_ignore_ascii_case(f))
        {
            Some(k) => set.insert(*k),
            None if f.eq_ignore_ascii_case("\\Recent") => {}
            None => dropped.push(f.clone()),
        }
    }
    (set, dropped)
}

/// A reject reason as an SMTP reply text: printable ASCII only (RFC 5429 §2.1.1: without a
/// UTF-8 reply extension, other text must be replaced), lines kept apart, bounded.
pub fn reject_text(reason: &str) -> Vec<String> {
    const FIXED: &str = "Message rejected by the recipient's filter";
    let printable = |s: &str| {
        s.chars()
            .all(|c| c == ' ' || c.is_ascii_graphic() || c == '\t')
    };
    if !reason.is_ascii() || reason.trim().is_empty() {
        return vec![FIXED.into()];
    }
    let lines: Vec<String> = reason
        .lines()
        .map(|l| l.trim_end().replace('\t', " "))
        .filter(|l| !l.is_empty())
        .take(10)
        .map(|l| l.chars().take(400).collect())
        .collect();
    if lines.is_empty() || !lines.iter().all(|l| printable(l)) {
        return vec![FIXED.into()];
    }
    lines
}

/// Everything one recipient's filtering produced, for the delivery path and its log line.
pub struct Filtered {
    /// The plan.
    pub plan: Plan,
    /// The log summary: `sieve=fileinto:Junk,keep` and the like; empty when no script ran.
    pub summary: String,
    /// What to send and to track once the recipient's copies are durable.
    pub outgoing: Outgoing,
}

/// What a recipient's scripts asked to send and to track. It is acted on only for a
/// recipient whose delivery succeeded (a recipient that gets a tempfail runs its scripts
/// again when the MTA retries), after its copies are durable; [`Outgoing::redirect_only`]
/// redirects go before the reply instead, since nothing else keeps that message.
#[derive(Debug, Default)]
pub struct Outgoing {
    /// The redirects.
    pub redirects: Vec<sieve::Redirect>,
    /// The vacation action, if any.
    pub vacation: Option<sieve::Vacation>,
    /// The duplicate tracking entries.
    pub tracked: Vec<sieve::Tracked>,
    /// Nothing but the redirects keeps the message: they are sent first, and the message is
    /// stored in INBOX when one of them fails.
    pub redirect_only: bool,
    /// The header section the copies are stored with was read whole (edits can be sent).
    original: Option<Original>,
}

/// Runs `r`'s scripts over the message and plans its delivery. `default` is the target
/// without Sieve (INBOX or the `+detail` folder).
pub fn filter(
    f: &Filter<'_>,
    shared: &Shared<'_>,
    conn: u64,
    r: &Resolved,
    store: Option<&dyn MailStore>,
    detail_mailbox: DetailMailbox,
) -> Filtered {
    let default = Target::for_detail(r.rcpt.detail.as_deref(), detail_mailbox);
    let (globals, user) = match scripts_for(f, shared, r, conn) {
        Ok(found) => found,
        Err(UserScriptError::Broken) => {
            // The user's script is broken: nothing of theirs can run; implicit keep into
            // INBOX, as Pigeonhole does, and the global scripts are not half-applied either.
            crate::metrics::get().sieve_run(SieveResult::Failed);
            return Filtered {
                plan: Plan::Store(vec![Target::inbox()]),
                summary: "sieve=error,keep".into(),
                outgoing: Outgoing::default(),
            };
        }
        Err(UserScriptError::Unavailable(e)) => {
            log::warn!(
                "sieve: {}: the account's script cannot be read: {}",
                log_tag(conn, shared, r),
                e.source.as_deref().unwrap_or("")
            );
            return Filtered {
                plan: Plan::Answer(Err(e)),
                summary: "sieve=unavailable".into(),
                outgoing: Outgoing::default(),
            };
        }
    };
    let scripts: Vec<&Loaded> = globals
        .before
        .iter()
        .chain(&user)
        .chain(&globals.after)
        .collect();
    if scripts.is_empty() {
        return Filtered {
            plan: Plan::Store(vec![default]),
            summary: String::new(),
            outgoing: Outgoing::default(),
        };
    }
    let tag = log_tag(conn, shared, r);
    let limits = f.cache.limits();
    let active = user.as_ref().map(|l| l.path.clone());
    let now = unix_now();
    let host = RcptHost {
        f,
        rcpt: &r.rcpt,
        store,
        personal: match &r.account {
            Some(a) if f.account_scripts => Personal::Account(a.name.clone()),
            Some(_) => Personal::None,
            None => personal_dir(f.cfg, r, active.as_deref()).map_or(Personal::None, Personal::Dir),
        },
        now,
    };
    let envelope = sieve::Envelope {
        from: shared.env.sender.clone().unwrap_or_default(),
        to: r.rcpt.address.clone(),
        orig_to: r.rcpt.orcpt.clone(),
        auth: None,
    };
    let (header, complete) = shared.header(limits.max_header_octets);
    let open = || -> std::io::Result<Box<dyn Read + '_>> {
        let r: Box<dyn Read + '_> = shared.body.open()?;
        Ok(r)
    };
    let environment = environment(f.hostname, shared.env.peer);
    let input = sieve::Input {
        envelope: &envelope,
        header,
        size: shared.body.len(),
        body: &open,
        now,
        zone_offset_minutes: crate::sys::local_offset_minutes(now),
        environment: &environment,
        delimiters: f.delimiters,
        separator: f.cfg.separator,
        host: &host,
    };
    let refs: Vec<&Script> = scripts.iter().map(|l| &*l.script).collect();
    let Sequence { outcome, error } = interp::run_sequence(&refs, &input, limits);
    for note in &outcome.notes {
        log::info!("sieve: {tag}: {note}");
    }
    if let Some(SequenceError { script, error: err }) = error {
        let path = scripts.get(script).map(|l| l.path.display().to_string());
        log::warn!(
            "sieve: {tag}: script {} failed at {err}; implicit keep into INBOX",
            path.unwrap_or_default()
        );
        crate::metrics::get().sieve_error(crate::metrics::SieveError::Runtime);
        crate::metrics::get().sieve_run(SieveResult::Failed);
        // Actions of the scripts that completed are dropped with the rest: the message
        // is kept as received and nothing is sent or tracked.
        return Filtered {
            plan: Plan::Store(vec![Target::inbox()]),
            summary: "sieve=error,keep".into(),
            outgoing: Outgoing::default(),
        };
    }
    let edits = complete.then(|| Original {
        len: header.len() as u64,
        lines: header.iter().filter(|&&b| b == b'\n').count() as u64,
    });
    let mut done = plan(f, &tag, &outcome.actions, default, edits);
    done.outgoing.tracked = outcome.tracked;
    done
}

/// Seconds since the epoch, now.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The tracking store of the `[sieve]` settings.
fn tracking_of(cfg: &SieveSection) -> Tracking {
    Tracking::new(&cfg.state_dir)
}

/// The submission program of the `[sieve]` settings.
fn submitter_of(cfg: &SieveSection) -> Submitter {
    Submitter {
        program: cfg.sendmail.clone(),
        timeout: cfg.sendmail_timeout,
        null_sender: cfg.sendmail_null_sender,
    }
}

/// The original header section an edited copy replaces; `None` when the header section was
/// longer than `sieve_max_header_size`, so an edit cannot be applied safely.
#[derive(Clone, Copy, Debug)]
struct Original {
    len: u64,
    lines: u64,
}

/// The environment items (RFC 5183 §4) a delivery by `hostname` shows; `lmtpd sieve test`
/// shows the same. lmtpd is the delivery agent (`location` "MDA") and runs scripts while
/// delivering (`phase` "during").
pub(crate) fn environment(
    hostname: &str,
    peer: Option<std::net::IpAddr>,
) -> Vec<(&'static str, String)> {
    let domain = hostname.split_once('.').map_or(hostname, |(_, d)| d);
    let mut items = vec![
        ("domain", domain.to_string()),
        ("host", hostname.to_string()),
        ("location", "MDA".to_string()),
        ("name", "lmtpd".to_string()),
        ("phase", "during".to_string()),
        ("version", env!("CARGO_PKG_VERSION").to_string()),
    ];
    if let Some(ip) = peer {
        items.push(("remote-ip", ip.to_string()));
    }
    items
}

/// Turns the final actions into targets or an answer.
fn plan(
    f: &Filter<'_>,
    tag: &str,
    actions: &[Action],
    default: Target,
    original: Option<Original>,
) -> Filtered {
    let mut targets: Vec<Target> = Vec::new();
    let mut summary: Vec<String> = Vec::new();
    let mut reject: Option<String> = None;
    let mut discarded = false;
    let mut outgoing = Outgoing {
        original,
        ..Outgoing::default()
    };
    for action in actions {
        match action {
            Action::Keep { store, implicit } => {
                let (flags, dropped) = store_flags(&store.flags);
                log_dropped(tag, &dropped);
                let t = default.clone().with_flags(flags);
                targets.push(with_edit(tag, t, store, original));
                summary.push(if *implicit { "keep" } else { "keep!" }.into());
            }
            Action::FileInto(store) => {
                let name = store.mailbox.as_deref().unwrap_or("INBOX");
                let (flags, dropped) = store_flags(&store.flags);
                log_dropped(tag, &dropped);
                let folder = match store_folder(name, f.cfg.separator) {
                    Ok(Some(folder)) => Target::folder(folder, store.create),
                    Ok(None) => Target::inbox(),
                    Err(why) => {
                        log::info!("sieve: {tag}: fileinto {why}; delivering to INBOX");
                        Target::inbox()
                    }
                };
                targets.push(with_edit(tag, folder.with_flags(flags), store, original));
                summary.push(format!("fileinto:{name}"));
            }
            Action::Reject { reason, ereject } => {
                reject = Some(reason.clone());
                summary.push(if *ereject { "ereject" } else { "reject" }.into());
            }
            Action::Discard => {
                discarded = true;
                summary.push("discard".into());
            }
            Action::Redirect(r) => {
                summary.push(format!(
                    "redirect{}:{}",
                    if r.copy { "+copy" } else { "" },
                    r.address
                ));
                outgoing.redirects.push(r.clone());
            }
            Action::Vacation(v) => {
                summary.push("vacation".into());
                outgoing.vacation = Some(v.clone());
            }
        }
    }
    // Two actions asking for the same copy are one copy (RFC 5228 §2.10.3); the engine
    // merges them already, and targets that became equal here (INBOX by two names) too.
    let mut unique: Vec<Target> = Vec::new();
    for t in targets {
        if !unique.contains(&t) {
            unique.push(t);
        }
    }
    let summary = format!("sieve={}", summary.join(","));
    let (plan, result) = match reject {
        Some(reason) if unique.is_empty() => {
            let text = reject_text(&reason).join("\n");
            let err = DeliveryError::new(550, Enhanced(5, 7, 1), text);
            (Plan::Answer(Err(err)), SieveResult::Rejected)
        }
        _ if !unique.is_empty() => (Plan::Store(unique), SieveResult::Stored),
        _ if !outgoing.redirects.is_empty() => {
            outgoing.redirect_only = true;
            (Plan::Answer(Ok(())), SieveResult::Redirected)
        }
        _ => {
            if !discarded {
                log::warn!("sieve: {tag}: no action kept the message");
            }
            log::info!("sieve: {tag}: discarded by the filter; nothing stored");
            (Plan::Answer(Ok(())), SieveResult::Discarded)
        }
    };
    crate::metrics::get().sieve_run(result);
    Filtered {
        plan,
        summary,
        outgoing,
    }
}

/// The envelope sender of `r`'s redirects (`redirect_envelope_from`); a message from `<>`
/// is redirected from `<>`.
fn redirect_sender(cfg: &SieveSection, env: &Envelope, r: &Resolved) -> Option<String> {
    let original = env.sender.clone()?;
    Some(match cfg.redirect_from {
        RedirectFrom::Sender => original,
        RedirectFrom::Recipient => r.rcpt.address.clone(),
        RedirectFrom::OrigRecipient => r.rcpt.orcpt.clone().unwrap_or(r.rcpt.address.clone()),
    })
}

/// Does the message already carry our `Delivered-To` for this recipient (it went through
/// this mailbox before: forwarding it again would loop)?
pub(crate) fn delivered_to(headers: &sieve::message::Headers, own: &[&str]) -> bool {
    headers.named("delivered-to").any(|f| {
        let v = f.value.trim();
        let v = v
            .strip_prefix('<')
            .and_then(|x| x.strip_suffix('>'))
            .unwrap_or(v);
        own.iter().any(|a| v.eq_ignore_ascii_case(a))
    })
}

/// The message a redirect sends: our `Delivered-To` and `Received` (the loop marker), then
/// the message as received, or with the header section `editheader` made for the action.
fn forwarded<'b>(
    shared: &'b Shared<'_>,
    prefix: Vec<u8>,
    edit: Option<(&'b [u8], Original)>,
) -> std::io::Result<Box<dyn Read + 'b>> {
    let mut body = shared.body.open()?;
    let head: Box<dyn Read + 'b> = match edit {
        Some((header, original)) => {
            std::io::copy(&mut (&mut body).take(original.len), &mut std::io::sink())?;
            Box::new(std::io::Cursor::new(prefix).chain(header))
        }
        None => Box::new(std::io::Cursor::new(prefix)),
    };
    Ok(Box::new(head.chain(body)))
}

/// Sends `out`'s redirects for `r` through the sendmail program. True when each was
/// handed over; false when one failed or a loop stopped them (the caller keeps the message
/// in INBOX when nothing else does). Each is logged and counted.
pub fn send_redirects(
    f: &Filter<'_>,
    shared: &Shared<'_>,
    conn: u64,
    r: &Resolved,
    out: &Outgoing,
) -> bool {
    if out.redirects.is_empty() {
        return true;
    }
    let tag = log_tag(conn, shared, r);
    let metrics = crate::metrics::get();
    let (header, _) = shared.header(f.cache.limits().max_header_octets);
    let own = [r.rcpt.address.as_str(), r.rcpt.user.as_str()];
    if delivered_to(&sieve::message::Headers::parse(header), &own) {
        for rd in &out.redirects {
            log::warn!(
                "sieve: {tag}: redirect to <{}> not sent: the message already has Delivered-To: {} (a forwarding loop)",
                rd.address,
                r.rcpt.address
            );
            metrics.sieve_sent(Sent::Redirect, SentResult::Suppressed);
        }
        return false;
    }
    let sender = redirect_sender(f.cfg, shared.env, r);
    let submitter = submitter_of(f.cfg);
    let mut all = true;
    for rd in &out.redirects {
        let prefix = crate::trace::forwarded(shared.env, &r.rcpt, f.hostname, SystemTime::now());
        let edit = match (&rd.header, out.original) {
            (Some(h), Some(o)) => Some((&h[..], o)),
            _ => None,
        };
        let result = forwarded(shared, prefix, edit)
            .map_err(crate::submit::SubmitError::Read)
            .and_then(|mut reader| submitter.send(sender.as_deref(), &rd.address, &mut reader));
        match result {
            Ok(()) => {
                log::info!(
                    "sieve: {tag}: redirected to <{}> from <{}>",
                    rd.address,
                    sender.as_deref().unwrap_or("")
                );
                metrics.sieve_sent(Sent::Redirect, SentResult::Sent);
            }
            Err(e) => {
                log::warn!("sieve: {tag}: redirect to <{}> failed: {e}", rd.address);
                metrics.sieve_sent(Sent::Redirect, SentResult::Failed);
                all = false;
            }
        }
    }
    all
}

/// Once `r`'s copies are durable: records its duplicate tracking entries (RFC 7352 §3),
/// sends the redirects that did not go before the reply (a failure is logged: the message
/// has its copy), and sends its vacation reply when the rules and the tracking list allow.
pub fn after_delivery(
    f: &Filter<'_>,
    shared: &Shared<'_>,
    conn: u64,
    r: &Resolved,
    out: &Outgoing,
) {
    let now = unix_now();
    if !out.tracked.is_empty() {
        let marks: Vec<Mark> = out
            .tracked
            .iter()
            .map(|t| Mark {
                kind: Kind::Duplicate,
                key: tracking::key(&t.handle, &t.id),
                seconds: t.seconds,
                refresh: t.last,
            })
            .collect();
        if let Err(e) = tracking_of(f.cfg).record(&r.rcpt.user, &marks, now) {
            log::warn!(
                "sieve: {}: duplicate tracking not recorded: {e}",
                log_tag(conn, shared, r)
            );
        }
    }
    if !out.redirect_only {
        send_redirects(f, shared, conn, r, out);
    }
    if let Some(v) = &out.vacation {
        vacation(f, shared, conn, r, v, now);
    }
}

/// A vacation reply's Message-ID counter (unique within the process).
static REPLY_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Sends `v`'s reply for `r` unless a rule of RFC 5230 refuses it or the sender got one
/// within the period (claimed in the tracking list before sending, so neither a crash nor
/// a concurrent delivery sends a second one).
fn vacation(
    f: &Filter<'_>,
    shared: &Shared<'_>,
    conn: u64,
    r: &Resolved,
    v: &sieve::Vacation,
    now: i64,
) {
    let tag = log_tag(conn, shared, r);
    let metrics = crate::metrics::get();
    let sender = shared.env.sender.as_deref().unwrap_or("");
    let (header, _) = shared.header(f.cache.limits().max_header_octets);
    let headers = sieve::message::Headers::parse(header);
    let mut own = vec![r.rcpt.address.as_str(), r.rcpt.user.as_str()];
    own.extend(r.rcpt.orcpt.as_deref());
    if let Some(why) = sieve::vacation::refusal(v, sender, &own, &headers) {
        log::info!("sieve: {tag}: vacation: no reply to <{sender}>: {why}");
        metrics.sieve_sent(Sent::Vacation, SentResult::Suppressed);
        return;
    }
    let key = tracking::key(&v.handle, &sender.to_ascii_lowercase());
    match tracking_of(f.cfg).claim(&r.rcpt.user, &key, v.seconds, now) {
        Ok(true) => {}
        Ok(false) => {
            log::info!(
                "sieve: {tag}: vacation: <{sender}> was answered within the last {}s; no reply",
                v.seconds
            );
            metrics.sieve_sent(Sent::Vacation, SentResult::Suppressed);
            return;
        }
        Err(e) => {
            // Without the list a reply could repeat for every message: none is sent.
            log::warn!(
                "sieve: {tag}: vacation: no reply to <{sender}>: tracking list unavailable: {e}"
            );
            metrics.sieve_sent(Sent::Vacation, SentResult::Failed);
            return;
        }
    }
    let seq = REPLY_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let message_id = format!(
        "<{now}.{}.{seq}.vacation@{}>",
        std::process::id(),
        f.hostname
    );
    let date = lmtpd_store::date::rfc5322(SystemTime::now());
    let reply = sieve::vacation::compose(
        v,
        &headers,
        &sieve::vacation::ReplyTo {
            from: &r.rcpt.user,
            to: sender,
            date: &date,
            message_id: &message_id,
        },
    );
    match submitter_of(f.cfg).send(None, sender, &mut &reply[..]) {
        Ok(()) => {
            log::info!("sieve: {tag}: vacation reply {message_id} sent to <{sender}>");
            metrics.sieve_sent(Sent::Vacation, SentResult::Sent);
        }
        Err(e) => {
            log::warn!("sieve: {tag}: vacation reply to <{sender}> failed: {e}");
            metrics.sieve_sent(Sent::Vacation, SentResult::Failed);
        }
    }
}

fn log_dropped(tag: &str, dropped: &[String]) {
    if !dropped.is_empty() {
        log::info!(
            "sieve: {tag}: keywords {} not stored (only the IMAP system flags are kept)",
            dropped.join(" ")
        );
    }
}

/// `t` with the header section `store` was edited into, if `editheader` changed it.
fn with_edit(tag: &str, t: Target, store: &sieve::Store, original: Option<Original>) -> Target {
    match (&store.header, original) {
        (None, _) => t,
        (Some(_), None) => {
            log::info!("sieve: {tag}: header section too long to edit; stored as received");
            t
        }
        (Some(header), Some(o)) => t.with_edit(Arc::new(HeaderEdit {
            header: header.to_vec(),
            replaces: o.len,
            replaces_lines: o.lines,
        })),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use lmtpd_store::MemoryBody;

    #[test]
    fn folder_names_map_to_maildir_levels() {
        assert_eq!(store_folder("INBOX", '.'), Ok(None));
        assert_eq!(store_folder("inbox", '/'), Ok(None));
        assert_eq!(store_folder("Junk", '.'), Ok(Some("Junk".into())));
        assert_eq!(
            store_folder("Lists.rust", '.'),
            Ok(Some("Lists.rust".into()))
        );
        assert_eq!(store_folder("INBOX.Lists", '.'), Ok(Some("Lists".into())));
        assert_eq!(
            store_folder("Lists/rust", '/'),
            Ok(Some("Lists.rust".into()))
        );
        assert!(
            store_folder("a.b/c", '/').is_err(),
            "a level holding the store's separator"
        );
        assert!(store_folder("a..b", '.').is_err(), "an empty level");
        assert!(store_folder("", '.').is_err());
    }

    #[test]
    fn system_flags_are_stored_keywords_are_reported() {
        let (flags, dropped) = store_flags(&[
            "\\seen".into(),
            "\\Flagged".into(),
            "$label1".into(),
            "\\Recent".into(),
        ]);
        assert!(flags.contains(Flag::Seen) && flags.contains(Flag::Flagged));
        assert!(!flags.contains(Flag::Deleted));
        assert_eq!(dropped, vec!["$label1".to_string()]);
    }

    #[test]
    fn rfc5429_2_1_1_reject_reasons_become_safe_reply_lines() {
        assert_eq!(reject_text("go away"), vec!["go away"]);
        assert_eq!(reject_text("one\ntwo\n"), vec!["one", "two"]);
        let fixed = reject_text("Grüße");
        assert_eq!(fixed.len(), 1);
        assert!(fixed[0].is_ascii() && !fixed[0].contains("Gr"));
        assert!(reject_text("bell\u{7}")
            .iter()
            .all(|l| !l.contains('\u{7}')));
        assert!(reject_text("").iter().all(|l| !l.is_empty()));
        assert!(reject_text(&"x\n".repeat(100)).len() <= 10);
    }

    #[test]
    fn the_header_section_is_read_up_to_its_empty_line_and_bounded() {
        let body = MemoryBody(b"A: 1\nB: 2\n\nbody\n".to_vec());
        assert_eq!(
            read_header(&body, 1 << 20),
            (b"A: 1\nB: 2\n\n".to_vec(), true)
        );
        let only = MemoryBody(b"A: 1\n".to_vec());
        assert_eq!(read_header(&only, 1 << 20), (b"A: 1\n".to_vec(), true));
        let long = MemoryBody([&b"X: "[..], &vec![b'y'; 100][..], b"\n\nbody"].concat());
        let (h, complete) = read_header(&long, 50);
        assert_eq!(h.len(), 50);
        assert!(
            !complete,
            "a header section longer than the limit cannot be edited"
        );
        let empty_header = MemoryBody(b"\nbody\n".to_vec());
        assert_eq!(read_header(&empty_header, 100), (b"\n".to_vec(), true));
        // Message files given to `lmtpd sieve test` may have CRLF line ends.
        let crlf = MemoryBody(b"A: 1\r\nB: 2\r\n\r\nbody\r\n".to_vec());
        assert_eq!(
            read_header(&crlf, 1 << 20),
            (b"A: 1\r\nB: 2\r\n\r\n".to_vec(), true)
        );
        assert_eq!(
            read_header(&MemoryBody(b"\r\nbody".to_vec()), 100).0,
            b"\r\n".to_vec()
        );
    }
}
