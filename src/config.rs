//! The configuration file (`key = value`, `#` comments) and command-line overrides, parsed
//! into a validated [`Config`] that reports every problem with its line number, not just the
//! first one.

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::proto::BareNewline;

/// Where to listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// A TCP address (IPv4 or IPv6). Port 25 is refused.
    Tcp(SocketAddr),
    /// A Unix-domain socket path.
    Unix(PathBuf),
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "{a}"),
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl Listen {
    /// Parses `unix:/path`, `127.0.0.1:2424` or `[::1]:2424`.
    pub fn parse(s: &str) -> Result<Listen, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path".into());
            }
            return Ok(Listen::Unix(PathBuf::from(path)));
        }
        match s.parse::<SocketAddr>() {
            Ok(a) if a.port() == 25 => {
                Err("port 25 is refused: LMTP must not run on the SMTP port (RFC 2033 §5)".into())
            }
            Ok(a) => Ok(Listen::Tcp(a)),
            Err(_) => Err(format!(
                "'{s}' is neither unix:PATH nor an IP address with a port (127.0.0.1:2424, [::1]:2424)"
            )),
        }
    }
}

/// Which mailbox format a recipient's mail is stored in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreKind {
    /// Maildir / Maildir++.
    Maildir,
    /// mbox (mboxrd) files.
    Mbox,
    /// One SQLite database.
    Sqlite,
}

impl StoreKind {
    /// Parses a store name as written in the config or the users file.
    pub fn parse(s: &str) -> Result<StoreKind, String> {
        match s {
            "maildir" => Ok(StoreKind::Maildir),
            "mbox" => Ok(StoreKind::Mbox),
            "sqlite" if cfg!(feature = "sqlite") => Ok(StoreKind::Sqlite),
            "sqlite" => Err("this lmtpd was built without SQLite support".into()),
            _ => Err(format!(
                "unknown store '{s}' (expected maildir, mbox or sqlite)"
            )),
        }
    }

    /// The store's name.
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Maildir => "maildir",
            StoreKind::Mbox => "mbox",
            StoreKind::Sqlite => "sqlite",
        }
    }
}

/// mbox lock kinds (`mbox_locks`).
pub use lmtpd_mbox::LockKind;
/// `+detail` handling: deliver into a folder named by the detail?
pub use lmtpd_store::DetailMailbox;

/// The validated, effective configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Listeners (`listen`, repeatable; `-l` adds more).
    pub listen: Vec<Listen>,
    /// Mode of created Unix sockets (`socket_mode`, octal).
    pub socket_mode: u32,
    /// Our host name for the greeting, Received headers and Maildir names.
    pub hostname: String,
    /// Path of the users file.
    pub users: PathBuf,
    /// The default store for users without a `store=` attribute.
    pub store: StoreKind,
    /// Maildir location template (`%u`, `%n`, `%d`).
    pub maildir: String,
    /// mbox location template (`%u`, `%n`, `%d`).
    pub mbox: String,
    /// mbox locks, taken in this order.
    pub mbox_locks: Vec<LockKind>,
    /// Total time to wait for mbox locks before `450 4.2.0`.
    pub mbox_lock_timeout: Duration,
    /// The SQLite database file.
    pub sqlite: PathBuf,
    /// How long a SQLite writer waits for the database lock before `451 4.3.0`.
    pub sqlite_busy_timeout: Duration,
    /// Directory for message spool files larger than the in-memory bound.
    pub spool_dir: PathBuf,
    /// Largest message accepted, in bytes (0 = unlimited); advertised as SIZE.
    pub max_message_size: u64,
    /// Most recipients in one transaction.
    pub max_recipients: usize,
    /// Concurrent sessions (worker threads, started on demand); one more gets `421 4.3.2`.
    pub workers: usize,
    /// The optional `GET /metrics` listener (loopback TCP or a Unix socket).
    pub metrics: Option<Listen>,
    /// Idle timeout per connection.
    pub timeout: Duration,
    /// How long SIGTERM waits for running sessions.
    pub shutdown_timeout: Duration,
    /// Characters that separate a local part from its detail (`alice+lists`).
    pub recipient_delimiter: String,
    /// Fold local parts to lower case before looking them up.
    pub lowercase_localpart: bool,
    /// Over-quota reply: `452 4.2.2` (false) or `552 5.2.2` (true).
    pub quota_permfail: bool,
    /// `+detail` folder delivery.
    pub detail_mailbox: DetailMailbox,
    /// Bare CR / LF policy for message content.
    pub bare_newline: BareNewline,
    /// Where `RCPT TO:<Postmaster>` goes; empty = the users-file entry `postmaster@...`.
    pub postmaster: String,
    /// Log level (`error`, `warn`, `info`, `debug`, `trace`).
    pub log_level: String,
    /// Where the log goes.
    pub log: LogTarget,
    /// Syslog facility name (`mail`, `daemon`, `local0` … `local7`).
    pub syslog_facility: String,
    /// Run as this user after binding, when started as root.
    pub user: String,
    /// Run with this group (default: the user's primary group).
    pub group: String,
    /// Allow running as root (not recommended).
    pub allow_root: bool,
    /// Owner given to created Unix sockets (empty = unchanged).
    pub socket_owner: String,
    /// Group given to created Unix sockets (empty = unchanged).
    pub socket_group: String,
}

/// Log destination (`log`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard error (systemd's journal, daemon(8) -S, runit, …).
    Stderr,
    /// The local syslog socket.
    Syslog,
}

/// The default `workers`: above what Postfix (100 delivery processes, 20 per destination
/// and cached connections), Exim beside it and a burst after a restart open at once; an
/// idle session costs about 20 KiB (README "Capacity").
pub const DEFAULT_WORKERS: usize = 512;

/// The largest `workers` accepted.
pub const MAX_WORKERS: u64 = 4096;

/// The built-in default configuration file path.
pub const DEFAULT_CONFIG: &str = match option_env!("LMTPD_DEFAULT_CONFIG") {
    Some(p) => p,
    None => "/usr/local/etc/lmtpd.conf",
};

/// The built-in default users file path (follows `SYSCONFDIR` at build time).
pub const DEFAULT_USERS: &str = match option_env!("LMTPD_DEFAULT_USERS") {
    Some(p) => p,
    None => "/usr/local/etc/lmtpd.users",
};

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: Vec::new(),
            socket_mode: 0o660,
            hostname: system_hostname(),
            users: PathBuf::from(DEFAULT_USERS),
            store: StoreKind::Maildir,
            maildir: "/var/vmail/%d/%n/Maildir".into(),
            mbox: "/var/mail/%n".into(),
            mbox_locks: lmtpd_mbox::default_locks(),
            mbox_lock_timeout: Duration::from_secs(30),
            sqlite: PathBuf::from("/var/lib/lmtpd/mail.db"),
            sqlite_busy_timeout: Duration::from_secs(30),
            spool_dir: std::env::temp_dir(),
            max_message_size: 64 << 20,
            max_recipients: 1000,
            workers: DEFAULT_WORKERS,
            metrics: None,
            timeout: Duration::from_secs(300),
            shutdown_timeout: Duration::from_secs(30),
            recipient_delimiter: "+".into(),
            lowercase_localpart: true,
            quota_permfail: false,
            detail_mailbox: DetailMailbox::Yes,
            bare_newline: BareNewline::Normalize,
            postmaster: String::new(),
            log_level: "info".into(),
            log: LogTarget::Stderr,
            syslog_facility: "mail".into(),
            user: String::new(),
            group: String::new(),
            allow_root: false,
            socket_owner: String::new(),
            socket_group: String::new(),
        }
    }
}

/// Reads the machine's host name without libc: `/proc/sys/kernel/hostname` on Linux,
/// `/etc/hostname` or `/etc/myname` (OpenBSD) elsewhere, then `localhost`.
pub fn system_hostname() -> String {
    for f in ["/proc/sys/kernel/hostname", "/etc/hostname", "/etc/myname"] {
        if let Ok(s) = fs::read_to_string(f) {
            let s = s.trim();
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic()) {
                return s.to_string();
            }
        }
    }
    "localhost".into()
}

/// Parses `123`, `10K`, `5M`, `2G` (binary multiples) into bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1 << 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 1 << 30),
        Some(b'T' | b't') => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (a number with an optional K, M or G)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("size '{s}' is too large"))
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "yes" | "true" | "on" | "1" => Ok(true),
        "no" | "false" | "off" | "0" => Ok(false),
        _ => Err(format!("'{s}' is not yes or no")),
    }
}

fn parse_count(s: &str, min: u64, max: u64) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("'{s}' is not a whole number from {min} to {max}")),
    }
}

impl Config {
    /// Parses configuration text. `origin` names the file in messages. Every problem is
    /// returned, each with its line number.
    pub fn parse(text: &str, origin: &str) -> Result<Config, Vec<String>> {
        let (c, errors) = Config::parse_lenient(text, origin);
        if errors.is_empty() {
            Ok(c)
        } else {
            Err(errors)
        }
    }

    /// Like [`Config::parse`], but also returns the settings of every valid line, so that
    /// `lmtpd -t` can go on checking the users file and paths after a bad line.
    pub fn parse_lenient(text: &str, origin: &str) -> (Config, Vec<String>) {
        let mut c = Config::default();
        let mut errors = Vec::new();
        let mut listen_set = false;
        for (i, raw) in text.lines().enumerate() {
            let lineno = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                errors.push(format!("{origin}:{lineno}: expected 'key = value'"));
                continue;
            };
            let key = key.trim();
            let value = value.trim();
            let r: Result<(), String> = (|| {
                match key {
                    "listen" => {
                        if !listen_set {
                            c.listen.clear();
                            listen_set = true;
                        }
                        c.listen.push(Listen::parse(value)?);
                    }
                    "socket_mode" => {
                        c.socket_mode = u32::from_str_radix(value, 8)
                            .ok()
                            .filter(|m| *m <= 0o777)
                            .ok_or_else(|| {
                            format!("'{value}' is not an octal mode like 0660")
                        })?
                    }
                    "hostname" => {
                        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()) {
                            return Err("hostname must be printable ASCII without spaces".into());
                        }
                        c.hostname = value.into();
                    }
                    "users" => c.users = PathBuf::from(value),
                    "store" => c.store = StoreKind::parse(value)?,
                    "maildir" => {
                        check_template(value)?;
                        c.maildir = value.into();
                    }
                    "mbox" => {
                        check_template(value)?;
                        c.mbox = value.into();
                    }
                    "mbox_locks" => {
                        let locks = value
                            .split(|ch: char| ch == ',' || ch.is_whitespace())
                            .filter(|w| !w.is_empty())
                            .map(LockKind::parse)
                            .collect::<Result<Vec<_>, _>>()?;
                        if locks.is_empty() {
                            return Err("name at least one of fcntl, flock, dotlock".into());
                        }
                        c.mbox_locks = locks;
                    }
                    "mbox_lock_timeout" => {
                        c.mbox_lock_timeout = Duration::from_secs(parse_count(value, 0, 3600)?)
                    }
                    "sqlite" => c.sqlite = PathBuf::from(value),
                    "sqlite_busy_timeout" => {
                        c.sqlite_busy_timeout = Duration::from_secs(parse_count(value, 0, 3600)?)
                    }
                    "spool_dir" => c.spool_dir = PathBuf::from(value),
                    "max_message_size" => c.max_message_size = parse_size(value)?,
                    "max_recipients" => c.max_recipients = parse_count(value, 1, 100_000)? as usize,
                    "workers" => c.workers = parse_count(value, 1, MAX_WORKERS)? as usize,
                    // Obsolete (connections no longer wait for a worker): accepted so old
                    // configurations still load, and ignored.
                    "queue" => {
                        parse_count(value, 0, 100_000)?;
                    }
                    "metrics" => c.metrics = parse_metrics(value)?,
                    "timeout" => c.timeout = Duration::from_secs(parse_count(value, 1, 86_400)?),
                    "shutdown_timeout" => {
                        c.shutdown_timeout = Duration::from_secs(parse_count(value, 0, 3600)?)
                    }
                    "recipient_delimiter" => {
                        if value
                            .chars()
                            .any(|ch| ch.is_alphanumeric() || ch == '@' || ch.is_whitespace())
                        {
                            return Err(
                                "recipient_delimiter must be punctuation such as + or -".into()
                            );
                        }
                        c.recipient_delimiter = value.into();
                    }
                    "lowercase_localpart" => c.lowercase_localpart = parse_bool(value)?,
                    "quota_full" => {
                        c.quota_permfail = match value {
                            "tempfail" => false,
                            "permfail" => true,
                            _ => return Err(format!("'{value}' is not tempfail or permfail")),
                        }
                    }
                    "detail_mailbox" => {
                        c.detail_mailbox = match value {
                            "no" => DetailMailbox::No,
                            "yes" => DetailMailbox::Yes,
                            "create" => DetailMailbox::Create,
                            _ => return Err(format!("'{value}' is not no, yes or create")),
                        }
                    }
                    "bare_newline" => {
                        c.bare_newline = match value {
                            "normalize" | "normalise" => BareNewline::Normalize,
                            "reject" => BareNewline::Reject,
                            _ => return Err(format!("'{value}' is not normalize or reject")),
                        }
                    }
                    "postmaster" => c.postmaster = value.into(),
                    "log" => {
                        c.log = match value {
                            "stderr" => LogTarget::Stderr,
                            "syslog" => LogTarget::Syslog,
                            _ => return Err(format!("'{value}' is not stderr or syslog")),
                        }
                    }
                    "syslog_facility" => {
                        if crate::logging::facility_code(value).is_none() {
                            return Err(format!(
                                "'{value}' is not a facility (mail, daemon, user, local0 … local7)"
                            ));
                        }
                        c.syslog_facility = value.into();
                    }
                    "user" => c.user = value.into(),
                    "group" => c.group = value.into(),
                    "allow_root" => c.allow_root = parse_bool(value)?,
                    "socket_owner" => c.socket_owner = value.into(),
                    "socket_group" => c.socket_group = value.into(),
                    "log_level" => {
                        if !matches!(value, "error" | "warn" | "info" | "debug" | "trace" | "off") {
                            return Err(format!(
                                "'{value}' is not error, warn, info, debug or trace"
                            ));
                        }
                        c.log_level = value.into();
                    }
                    _ => return Err(format!("unknown key '{key}'")),
                }
                Ok(())
            })();
            if let Err(e) = r {
                errors.push(format!("{origin}:{lineno}: {key}: {e}"));
            }
        }
        (c, errors)
    }

    /// Reads and parses a configuration file. Relative paths inside it stay relative to the
    /// working directory, as documented.
    pub fn load(path: &Path) -> Result<Config, Vec<String>> {
        let (c, errors) = Config::load_lenient(path);
        if errors.is_empty() {
            Ok(c)
        } else {
            Err(errors)
        }
    }

    /// Reads a configuration file leniently (see [`Config::parse_lenient`]).
    pub fn load_lenient(path: &Path) -> (Config, Vec<String>) {
        match fs::read_to_string(path) {
            Ok(text) => Config::parse_lenient(&text, &path.display().to_string()),
            Err(e) => (
                Config::default(),
                vec![format!("{}: cannot read: {e}", path.display())],
            ),
        }
    }

    /// Checks what can only be checked as a whole (after `-l` flags were added). `stdio`:
    /// the server runs one session on standard input (`-i`) and needs no listener; under
    /// socket activation (`LISTEN_FDS`) the listeners are inherited.
    pub fn validate(&self, stdio: bool) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if self.listen.is_empty() && !stdio && std::env::var_os("LISTEN_FDS").is_none() {
            errors.push("no listener: set 'listen' in the config file or pass -l".into());
        }
        if self.spool_dir.as_os_str().is_empty() {
            errors.push("spool_dir is empty".into());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The effective settings in config-file syntax (`lmtpd -n`).
    pub fn dump(&self) -> String {
        let mut s = String::new();
        for l in &self.listen {
            let _ = writeln!(s, "listen = {l}");
        }
        let _ = writeln!(s, "socket_mode = {:04o}", self.socket_mode);
        let _ = writeln!(s, "hostname = {}", self.hostname);
        let _ = writeln!(s, "users = {}", self.users.display());
        let _ = writeln!(s, "store = {}", self.store.name());
        let _ = writeln!(s, "maildir = {}", self.maildir);
        let _ = writeln!(s, "mbox = {}", self.mbox);
        let locks: Vec<&str> = self.mbox_locks.iter().map(|l| l.name()).collect();
        let _ = writeln!(s, "mbox_locks = {}", locks.join(" "));
        let _ = writeln!(
            s,
            "mbox_lock_timeout = {}",
            self.mbox_lock_timeout.as_secs()
        );
        let _ = writeln!(s, "sqlite = {}", self.sqlite.display());
        let _ = writeln!(
            s,
            "sqlite_busy_timeout = {}",
            self.sqlite_busy_timeout.as_secs()
        );
        let _ = writeln!(s, "spool_dir = {}", self.spool_dir.display());
        let _ = writeln!(s, "max_message_size = {}", self.max_message_size);
        let _ = writeln!(s, "max_recipients = {}", self.max_recipients);
        let _ = writeln!(s, "workers = {}", self.workers);
        match &self.metrics {
            Some(l) => {
                let _ = writeln!(s, "metrics = {l}");
            }
            None => {
                let _ = writeln!(s, "metrics = off");
            }
        }
        let _ = writeln!(s, "timeout = {}", self.timeout.as_secs());
        let _ = writeln!(s, "shutdown_timeout = {}", self.shutdown_timeout.as_secs());
        let _ = writeln!(s, "recipient_delimiter = {}", self.recipient_delimiter);
        let _ = writeln!(
            s,
            "lowercase_localpart = {}",
            if self.lowercase_localpart {
                "yes"
            } else {
                "no"
            }
        );
        let _ = writeln!(
            s,
            "quota_full = {}",
            if self.quota_permfail {
                "permfail"
            } else {
                "tempfail"
            }
        );
        let _ = writeln!(
            s,
            "detail_mailbox = {}",
            match self.detail_mailbox {
                DetailMailbox::No => "no",
                DetailMailbox::Yes => "yes",
                DetailMailbox::Create => "create",
            }
        );
        let _ = writeln!(
            s,
            "bare_newline = {}",
            match self.bare_newline {
                BareNewline::Normalize => "normalize",
                BareNewline::Reject => "reject",
            }
        );
        let _ = writeln!(s, "postmaster = {}", self.postmaster);
        let _ = writeln!(s, "log_level = {}", self.log_level);
        let _ = writeln!(
            s,
            "log = {}",
            match self.log {
                LogTarget::Stderr => "stderr",
                LogTarget::Syslog => "syslog",
            }
        );
        let _ = writeln!(s, "syslog_facility = {}", self.syslog_facility);
        let _ = writeln!(s, "user = {}", self.user);
        let _ = writeln!(s, "group = {}", self.group);
        let _ = writeln!(
            s,
            "allow_root = {}",
            if self.allow_root { "yes" } else { "no" }
        );
        let _ = writeln!(s, "socket_owner = {}", self.socket_owner);
        let _ = writeln!(s, "socket_group = {}", self.socket_group);
        s
    }
}

/// `metrics = off | 127.0.0.1:9124 | [::1]:9124 | unix:PATH`. The endpoint has no
/// authentication, so TCP is allowed on loopback addresses only.
fn parse_metrics(value: &str) -> Result<Option<Listen>, String> {
    if matches!(value, "" | "off" | "no") {
        return Ok(None);
    }
    let l = Listen::parse(value)?;
    if let Listen::Tcp(a) = &l {
        if !a.ip().is_loopback() {
            return Err(format!(
                "{a} is not a loopback address: the metrics endpoint has no authentication; \
                 use 127.0.0.1, [::1] or unix:PATH (and a proxy for remote scrapes)"
            ));
        }
    }
    Ok(Some(l))
}

/// A mailbox template may only use `%u`, `%n`, `%d` and `%%`.
fn check_template(t: &str) -> Result<(), String> {
    lmtpd_store::template::validate(t, "mailbox")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_key() {
        let text = "\
# comment
listen = unix:/tmp/x.sock
listen = 127.0.0.1:2424
listen = [::1]:2424
socket_mode = 0600
hostname = mx.example.org
users = /etc/lmtpd.users
store = mbox
maildir = /var/mail/%d/%n
mbox = /var/mail/%n
mbox_locks = dotlock, flock
mbox_lock_timeout = 5
sqlite = /var/lib/lmtpd/x.db
sqlite_busy_timeout = 7
spool_dir = /var/tmp
max_message_size = 10M
max_recipients = 50
workers = 4
queue = 8
metrics = 127.0.0.1:9124
timeout = 60
shutdown_timeout = 5
recipient_delimiter = +-
lowercase_localpart = no
quota_full = permfail
detail_mailbox = create
bare_newline = reject
postmaster = root@example.org
log_level = debug
log = syslog
syslog_facility = local3
user = vmail
group = vmail
allow_root = no
socket_owner = postfix
socket_group = postfix
";
        let c = Config::parse(text, "t").expect("valid");
        assert_eq!(c.listen.len(), 3);
        assert_eq!(c.socket_mode, 0o600);
        assert_eq!(c.max_message_size, 10 << 20);
        assert_eq!(c.recipient_delimiter, "+-");
        assert!(c.quota_permfail);
        assert!(!c.lowercase_localpart);
        assert_eq!(c.detail_mailbox, DetailMailbox::Create);
        assert_eq!(c.bare_newline, BareNewline::Reject);
        assert_eq!(c.store, StoreKind::Mbox);
        assert_eq!(c.mbox_locks, vec![LockKind::Dotlock, LockKind::Flock]);
        assert_eq!(c.sqlite_busy_timeout, Duration::from_secs(7));
        assert_eq!(
            c.metrics,
            Some(Listen::Tcp("127.0.0.1:9124".parse().expect("addr")))
        );
        // The dump is itself a valid config that yields the same settings.
        let again = Config::parse(&c.dump(), "dump").expect("dump parses");
        assert_eq!(again.dump(), c.dump());
    }

    #[test]
    fn reports_every_problem_with_line_numbers() {
        let text = "listen = 127.0.0.1:25\nbogus = 1\nmax_message_size = lots\nnoequals\n";
        let errs = Config::parse(text, "f.conf").expect_err("invalid");
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs[0].starts_with("f.conf:1: listen: port 25"));
        assert!(errs[1].starts_with("f.conf:2:"));
        assert!(errs[2].starts_with("f.conf:3:"));
        assert!(errs[3].starts_with("f.conf:4:"));
    }

    #[test]
    fn metrics_listen_only_on_loopback_or_a_unix_socket() {
        assert_eq!(parse_metrics("off"), Ok(None));
        assert!(parse_metrics("[::1]:9124").is_ok_and(|l| l.is_some()));
        assert!(parse_metrics("unix:/run/lmtpd/metrics.sock").is_ok_and(|l| l.is_some()));
        assert!(parse_metrics("0.0.0.0:9124").is_err());
        assert!(parse_metrics("192.0.2.1:9124").is_err());
    }

    #[test]
    fn default_workers_serve_what_real_mtas_open() {
        // Issue 12: at least 256 concurrent sessions with the shipped defaults.
        assert!(Config::default().workers >= 256);
        assert!(Config::parse("workers = 4096\n", "t").is_ok());
        assert!(Config::parse("workers = 4097\n", "t").is_err());
        // An old configuration with the obsolete key still loads.
        assert!(Config::parse("queue = 16\n", "t").is_ok());
    }

    #[test]
    fn sizes_have_binary_suffixes() {
        assert_eq!(parse_size("1K"), Ok(1024));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("17"), Ok(17));
        assert!(parse_size("K").is_err());
        assert!(parse_size("99999999999999T").is_err());
    }

    #[test]
    fn template_placeholders_are_checked() {
        assert!(check_template("/m/%d/%n/%u/%%").is_ok());
        assert!(check_template("/m/%x").is_err());
        assert!(check_template("/m/%").is_err());
    }
}
