//! The configuration file (`key = value`, `#` comments) and command-line overrides, parsed
//! into a validated [`Config`] that reports every problem with its line number, not just the
//! first one.
//!
//! Every key is declared once, in the `config!` table below: its field in a typed section,
//! its default, its name in the file, the codec that reads and prints it (with the wording
//! of its refusals), its place in the output of `lmtpd -n`, and whether a SIGHUP applies it
//! (`Reload`) or only a restart does (`Restart`). Parsing, `lmtpd -n`, [`Config::default`],
//! the restart-only rule of a reload and the documentation check in the tests all read that
//! table ([`KEYS`]). The sections: `listeners`, `process`, `logging`, `limits`,
//! `recipients`, `delivery` (what every store shares) and one per store (`maildir`, `mbox`,
//! `sqlite`); the file keeps its flat key names (`mbox_locks` is `config.mbox.locks`).

mod value;

use std::fmt;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::proto::BareNewline;
use value::{
    Address, Checked, Codec, Count, Each, FilePath, GraceCodec, Locks, Metrics, OctalMode, OneOf,
    Period, Secs, Size, SpecialUse, Store, Text, WarningsCodec, YesNo,
};

pub use crate::submit::NullSender;

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
    /// A PostgreSQL database (shared by several lmtpd nodes).
    Postgres,
}

impl StoreKind {
    /// Parses a store name as written in the config or the users file.
    pub fn parse(s: &str) -> Result<StoreKind, String> {
        match s {
            "maildir" => Ok(StoreKind::Maildir),
            "mbox" => Ok(StoreKind::Mbox),
            "sqlite" if cfg!(feature = "sqlite") => Ok(StoreKind::Sqlite),
            "sqlite" => Err("this lmtpd was built without SQLite support".into()),
            "postgres" if cfg!(feature = "postgres") => Ok(StoreKind::Postgres),
            "postgres" => Err("this lmtpd was built without PostgreSQL support".into()),
            _ => Err(format!(
                "unknown store '{s}' (expected maildir, mbox, sqlite or postgres)"
            )),
        }
    }

    /// The store's name.
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Maildir => "maildir",
            StoreKind::Mbox => "mbox",
            StoreKind::Sqlite => "sqlite",
            StoreKind::Postgres => "postgres",
        }
    }
}

/// mbox lock kinds (`mbox_locks`).
pub use lmtpd_mbox::LockKind;
/// `+detail` handling: deliver into a folder named by the detail?
pub use lmtpd_store::DetailMailbox;

/// The envelope sender of redirected mail (`redirect_envelope_from`). A message whose
/// own sender is `<>` is always redirected with `<>` (a bounce must not bounce back).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RedirectFrom {
    /// The original envelope sender (breaks SPF at receivers that check it).
    #[default]
    Sender,
    /// The recipient whose script redirected.
    Recipient,
    /// The recipient as the MTA first addressed it (ORCPT), else the recipient.
    OrigRecipient,
}

/// Log destination (`log`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard error (systemd's journal, daemon(8) -S, runit, …).
    Stderr,
    /// The local syslog socket.
    Syslog,
}

/// When a changed key takes effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Apply {
    /// On the next SIGHUP.
    Reload,
    /// Only after a restart (sockets, threads, privileges, the log destination): a SIGHUP
    /// logs the change and keeps the value lmtpd started with.
    Restart,
}

/// One configuration key, as declared in the `config!` table: everything lmtpd knows about
/// it besides its documentation.
pub struct Key {
    /// The key as written in the file.
    pub name: &'static str,
    /// When a new value takes effect.
    pub apply: Apply,
    /// Position in the output of `lmtpd -n`; `None` for an obsolete key, which is accepted
    /// (its value still checked) and ignored.
    order: Option<u8>,
    set: fn(&mut Config, &str) -> Result<(), String>,
    dump: fn(&Config, &mut String),
    differs: fn(&Config, &Config) -> bool,
    restore: fn(&mut Config, &Config),
}

impl Key {
    /// True for a key that is accepted only so that old files still load.
    pub fn is_obsolete(&self) -> bool {
        self.order.is_none()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("name", &self.name)
            .field("apply", &self.apply)
            .finish_non_exhaustive()
    }
}

/// Declares the sections of [`Config`], each key in them, and [`KEYS`]. Per key:
/// `field: Type = default, "name" @ position in -n, codec, Reload | Restart;`.
macro_rules! config {
    (
        $(
            $(#[$sdoc:meta])*
            $sec:ident: $Sec:ident {
                $(
                    $(#[$fdoc:meta])*
                    $field:ident: $ty:ty = $default:expr,
                        $key:literal @ $order:literal, $codec:expr, $apply:ident;
                )*
            }
        )*
        @obsolete {
            $( $(#[$odoc:meta])* $okey:literal: $oty:ty, $ocodec:expr; )*
        }
    ) => {
        /// The validated, effective configuration, in typed sections. Reload compares
        /// sections (and keys) with `==`; see [`KEYS`] for which keys need a restart.
        #[derive(Clone, Debug, PartialEq)]
        pub struct Config {
            $( $(#[$sdoc])* pub $sec: $Sec, )*
        }

        impl Default for Config {
            fn default() -> Self {
                Config { $( $sec: $Sec::default(), )* }
            }
        }

        $(
            $(#[$sdoc])*
            #[derive(Clone, Debug, PartialEq)]
            pub struct $Sec {
                $( $(#[$fdoc])* pub $field: $ty, )*
            }

            impl Default for $Sec {
                fn default() -> Self {
                    $Sec { $( $field: $default, )* }
                }
            }
        )*

        /// Every key lmtpd accepts, in the order of the sections of [`Config`].
        pub static KEYS: &[Key] = &[
            $( $(
                Key {
                    name: $key,
                    apply: Apply::$apply,
                    order: Some($order),
                    set: |c: &mut Config, text: &str| {
                        Codec::set(&$codec, &mut c.$sec.$field, text)
                    },
                    dump: |c: &Config, out: &mut String| {
                        Codec::dump(&$codec, $key, &c.$sec.$field, out)
                    },
                    differs: |a: &Config, b: &Config| a.$sec.$field != b.$sec.$field,
                    restore: |c: &mut Config, from: &Config| {
                        c.$sec.$field.clone_from(&from.$sec.$field)
                    },
                },
            )* )*
            $(
                Key {
                    name: $okey,
                    apply: Apply::Reload,
                    order: None,
                    set: |_: &mut Config, text: &str| {
                        <_ as Codec<$oty>>::parse(&$ocodec, text).map(drop)
                    },
                    dump: |_: &Config, _: &mut String| {},
                    differs: |_: &Config, _: &Config| false,
                    restore: |_: &mut Config, _: &Config| {},
                },
            )*
        ];
    };
}

config! {
    /// Where lmtpd accepts connections (all restart-only: sockets are bound once, as root
    /// when started as root).
    listeners: Listeners {
        /// Listeners (`listen`, repeatable; `-l` adds more).
        listen: Vec<Listen> = Vec::new(), "listen" @ 0, Each(Address), Restart;
        /// Mode of created Unix sockets (`socket_mode`, octal).
        socket_mode: u32 = 0o660, "socket_mode" @ 1, OctalMode, Restart;
        /// Owner given to created Unix sockets (empty = unchanged).
        socket_owner: String = String::new(), "socket_owner" @ 30, Text, Restart;
        /// Group given to created Unix sockets (empty = unchanged).
        socket_group: String = String::new(), "socket_group" @ 31, Text, Restart;
        /// The optional `GET /metrics` listener (loopback TCP or a Unix socket).
        metrics: Option<Listen> = None, "metrics" @ 15, Metrics, Restart;
    }

    /// The process: who it runs as, how many sessions it serves, how it stops (all
    /// restart-only).
    process: Process {
        /// Run as this user after binding, when started as root.
        user: String = String::new(), "user" @ 27, Text, Restart;
        /// Run with this group (default: the user's primary group).
        group: String = String::new(), "group" @ 28, Text, Restart;
        /// Allow running as root (not recommended).
        allow_root: bool = false, "allow_root" @ 29, YesNo, Restart;
        /// Concurrent sessions (worker threads, started on demand); one more gets `421 4.3.2`.
        workers: usize = DEFAULT_WORKERS, "workers" @ 14, Count(1, MAX_WORKERS), Restart;
        /// How long SIGTERM waits for running sessions.
        shutdown_timeout: Duration = Duration::from_secs(30),
            "shutdown_timeout" @ 17, Secs(0, 3600), Restart;
    }

    /// Logging: the level changes on SIGHUP, the destination only with a restart.
    logging: Logging {
        /// Log level (`error`, `warn`, `info`, `debug`, `trace`).
        log_level: String = "info".into(), "log_level" @ 24, Checked(check_log_level), Reload;
        /// Where the log goes.
        log: LogTarget = LogTarget::Stderr, "log" @ 25, OneOf {
            words: &[("stderr", LogTarget::Stderr), ("syslog", LogTarget::Syslog)],
            expected: "stderr or syslog",
        }, Restart;
        /// Syslog facility name (`mail`, `daemon`, `local0` … `local7`).
        syslog_facility: String = "mail".into(),
            "syslog_facility" @ 26, Checked(check_facility), Restart;
    }

    /// STARTTLS on TCP listeners (RFC 3207; never on Unix sockets).
    tls: TlsSection {
        /// PEM certificate chain; with `tls_key`, STARTTLS is offered on TCP listeners.
        cert: PathBuf = PathBuf::new(), "tls_cert" @ 62, FilePath, Reload;
        /// PEM private key of `tls_cert`.
        key: PathBuf = PathBuf::new(), "tls_key" @ 63, FilePath, Reload;
        /// `may`: STARTTLS is offered; `required`: MAIL over TCP before STARTTLS gets
        /// `530 5.7.0`.
        required: bool = false, "tls" @ 64, OneOf {
            words: &[("may", false), ("required", true)],
            expected: "may or required",
        }, Reload;
    }

    /// Which clients may send XFORWARD (Postfix's original client and queue id).
    xforward: XforwardSection {
        /// `local`: Unix-socket and loopback clients; `none`: nobody.
        local: bool = true, "xforward" @ 65, OneOf {
            words: &[("local", true), ("none", false)],
            expected: "local or none",
        }, Reload;
    }

    /// Local Unix accounts as recipients (README "System accounts"). Restart-only: the
    /// privileged helper that delivers as each account starts before lmtpd drops root, with
    /// these settings.
    accounts: AccountsSection {
        /// `passwd`: a local part in `local_domains` names a Unix account; `none`: only the
        /// users file.
        passwd: bool = false, "accounts" @ 66, OneOf {
            words: &[("none", false), ("passwd", true)],
            expected: "none or passwd",
        }, Restart;
        /// Domains whose local parts are accounts (repeatable); none = `hostname` and
        /// `localhost`.
        local_domains: Vec<String> = Vec::new(), "local_domains" @ 67, Each(Text), Restart;
        /// Lowest uid that receives mail (uid 0 never does).
        min_uid: usize = 1000, "min_uid" @ 68, Count(1, u32::MAX as u64), Restart;
        /// Highest uid that receives mail (above it: `nobody` and other system ids).
        max_uid: usize = 59_999, "max_uid" @ 69, Count(1, u32::MAX as u64), Restart;
        /// Accounts outside `min_uid`..`max_uid` that receive mail all the same (repeatable).
        allow: Vec<String> = Vec::new(), "accounts_allow" @ 70, Each(Text), Restart;
        /// The store of accounts without a users-file `store=`: `mbox` or `maildir`.
        store: StoreKind = StoreKind::Mbox, "account_store" @ 71, Store, Restart;
        /// Maildir of an account (`~` = its home, `%n` = its name).
        maildir: String = "~/Maildir".into(),
            "account_maildir" @ 72, Checked(check_account_template), Restart;
        /// mbox of an account (`~` = its home, `%n` = its name).
        mbox: String = "/var/mail/%n".into(),
            "account_mbox" @ 73, Checked(check_account_template), Restart;
        /// Supplementary group of the delivery to an account's mbox (to create the mbox and
        /// its dotlock in a group-writable `/var/mail`); empty = none.
        mail_group: String = "mail".into(), "account_mail_group" @ 74, Text, Restart;
        /// An account's active Sieve script, read by the helper as the account (`~` = its
        /// home, `%n` = its name); empty = accounts run the global scripts only.
        sieve: String = "~/.dovecot.sieve".into(),
            "account_sieve" @ 75, Checked(check_account_script), Restart;
        /// Where an account's `include :personal` scripts are (`~` = its home).
        sieve_dir: String = "~/sieve".into(),
            "account_sieve_dir" @ 76, Checked(check_account_script), Restart;
    }

    /// The limits a session enforces.
    limits: Limits {
        /// Largest message accepted, in bytes (0 = unlimited); advertised as SIZE.
        max_message_size: u64 = 64 << 20, "max_message_size" @ 12, Size, Reload;
        /// Most recipients in one transaction.
        max_recipients: usize = 1000, "max_recipients" @ 13, Count(1, 100_000), Reload;
        /// Idle timeout per connection.
        timeout: Duration = Duration::from_secs(300), "timeout" @ 16, Secs(1, 86_400), Reload;
        /// Bare CR / LF policy for message content.
        bare_newline: BareNewline = BareNewline::Normalize, "bare_newline" @ 22, OneOf {
            words: &[
                ("normalize", BareNewline::Normalize),
                ("normalise", BareNewline::Normalize),
                ("reject", BareNewline::Reject),
            ],
            expected: "normalize or reject",
        }, Reload;
    }

    /// Recipient resolution: the users file and how addresses are looked up in it.
    recipients: Recipients {
        /// Path of the users file.
        users: PathBuf = PathBuf::from(DEFAULT_USERS), "users" @ 3, FilePath, Reload;
        /// Characters that separate a local part from its detail (`alice+lists`).
        recipient_delimiter: String = "+".into(),
            "recipient_delimiter" @ 18, Checked(check_delimiter), Reload;
        /// Fold local parts to lower case before looking them up.
        lowercase_localpart: bool = true, "lowercase_localpart" @ 19, YesNo, Reload;
        /// Where `RCPT TO:<Postmaster>` goes; empty = the users-file entry `postmaster@...`.
        postmaster: String = String::new(), "postmaster" @ 23, Text, Reload;
    }

    /// Delivery: what every store shares (our name, the body spool, `+detail` folders,
    /// over-quota replies) and the default store.
    delivery: Delivery {
        /// Our host name for the greeting, Received headers and Maildir names.
        hostname: String = system_hostname(), "hostname" @ 2, Checked(check_hostname), Reload;
        /// Directory for message spool files larger than the in-memory bound.
        spool_dir: PathBuf = std::env::temp_dir(), "spool_dir" @ 11, FilePath, Reload;
        /// Over-quota reply: `452 4.2.2` (false) or `552 5.2.2` (true).
        quota_permfail: bool = false, "quota_full" @ 20, OneOf {
            words: &[("tempfail", false), ("permfail", true)],
            expected: "tempfail or permfail",
        }, Reload;
        /// How far a message that starts below the byte quota may end above it.
        quota_grace: crate::quota::Grace = crate::quota::Grace::Bytes(0),
            "quota_grace" @ 77, GraceCodec, Reload;
        /// Usage thresholds (per cent of a limit) that deliver a warning to the user.
        quota_warning: crate::quota::Warnings = crate::quota::Warnings::default(),
            "quota_warning" @ 78, WarningsCodec, Reload;
        /// The warning's text (empty: the built-in one).
        quota_warning_template: PathBuf = PathBuf::new(),
            "quota_warning_template" @ 79, FilePath, Reload;
        /// How long one message may be refused over quota with `452` before the reply
        /// becomes `552` (0: always `452` under `quota_full = tempfail`).
        quota_tempfail_max: Duration = Duration::ZERO,
            "quota_tempfail_max" @ 80, Period(0, 365 * 86_400), Reload;
        /// How long a stored copy is remembered so that a retry of it is not stored again
        /// (0: off).
        retry_window: Duration = Duration::from_secs(2 * 86_400),
            "retry_window" @ 81, Period(0, 30 * 86_400), Restart;
        /// The retry journal (an SQLite file; also the memory of `quota_tempfail_max` and
        /// `quota_warning`); empty: none.
        retry_journal: PathBuf = PathBuf::from("/var/lib/lmtpd/retry.db"),
            "retry_journal" @ 82, FilePath, Restart;
        /// `+detail` folder delivery.
        detail_mailbox: DetailMailbox = DetailMailbox::Yes, "detail_mailbox" @ 21, OneOf {
            words: &[
                ("no", DetailMailbox::No),
                ("yes", DetailMailbox::Yes),
                ("create", DetailMailbox::Create),
            ],
            expected: "no, yes or create",
        }, Reload;
        /// The default store for users without a `store=` attribute.
        store: StoreKind = StoreKind::Maildir, "store" @ 4, Store, Reload;
    }

    /// The Maildir store.
    maildir: MaildirSection {
        /// Maildir location template (`%u`, `%n`, `%d`).
        template: String = "/var/vmail/%d/%n/Maildir".into(),
            "maildir" @ 5, Checked(check_template), Reload;
    }

    /// The mbox store.
    mbox: MboxSection {
        /// mbox location template (`%u`, `%n`, `%d`).
        template: String = "/var/mail/%n".into(), "mbox" @ 6, Checked(check_template), Reload;
        /// mbox locks, taken in this order.
        locks: Vec<LockKind> = lmtpd_mbox::default_locks(), "mbox_locks" @ 7, Locks, Reload;
        /// Total time to wait for mbox locks before `450 4.2.0`.
        lock_timeout: Duration = Duration::from_secs(30),
            "mbox_lock_timeout" @ 8, Secs(0, 3600), Reload;
    }

    /// The SQLite store.
    sqlite: SqliteSection {
        /// The SQLite database file.
        path: PathBuf = PathBuf::from("/var/lib/lmtpd/mail.db"), "sqlite" @ 9, FilePath, Reload;
        /// How long a SQLite writer waits for the database lock before `451 4.3.0`.
        busy_timeout: Duration = Duration::from_secs(30),
            "sqlite_busy_timeout" @ 10, Secs(0, 3600), Reload;
        /// Bodies of at least this size are kept as files beside the database; 0: none.
        body_files: u64 = 256 << 10,
            "sqlite_body_files" @ 83, Size, Reload;
    }

    /// The PostgreSQL store.
    postgres: PostgresSection {
        /// libpq-style connection string (`host=/run/postgresql dbname=mail user=lmtpd`).
        conninfo: String = String::new(), "postgres" @ 58, Text, Reload;
        /// Most connections to the database server.
        pool_size: usize = 16, "postgres_pool_size" @ 59, Count(1, 1000), Reload;
        /// How long connecting, or waiting for a pooled connection, may take.
        connect_timeout: Duration = Duration::from_secs(10),
            "postgres_connect_timeout" @ 60, Secs(1, 600), Reload;
        /// The longest any statement may run (`statement_timeout`, `lock_timeout`).
        statement_timeout: Duration = Duration::from_secs(30),
            "postgres_statement_timeout" @ 61, Secs(1, 3600), Reload;
    }

    /// Sieve filtering at delivery (README "Sieve"): where scripts live and the engine's
    /// limits.
    sieve: SieveSection {
        /// Per-user script template (`%u`, `%n`, `%d`); empty = no per-user scripts. A
        /// missing file means the user has none; a symlink (ManageSieve's active script) is
        /// followed only to a file inside the directory that holds the link.
        script: String = "/var/vmail/%d/%n/.dovecot.sieve".into(),
            "sieve" @ 32, Checked(check_optional_template), Reload;
        /// Per-user directory of `include :personal` scripts (`%u`, `%n`, `%d`); empty = the
        /// directory of the user's active script.
        dir: String = "/var/vmail/%d/%n/sieve".into(),
            "sieve_dir" @ 33, Checked(check_optional_template), Reload;
        /// Global scripts run before the user's, in order (repeatable).
        before: Vec<PathBuf> = Vec::new(), "sieve_before" @ 34, Each(FilePath), Reload;
        /// Global scripts run after the user's, in order (repeatable).
        after: Vec<PathBuf> = Vec::new(), "sieve_after" @ 35, Each(FilePath), Reload;
        /// Directory of `include :global` scripts.
        global_dir: PathBuf = PathBuf::from("/etc/lmtpd/sieve"),
            "sieve_global_dir" @ 36, FilePath, Reload;
        /// The hierarchy separator of folder names in scripts: `.` or `/`.
        separator: char = '.', "sieve_separator" @ 37, OneOf {
            words: &[(".", '.'), ("/", '/')],
            expected: ". or /",
        }, Reload;
        /// Folders with a special-use attribute (RFC 6154), `\Flag=Folder`, repeatable.
        special_use: Vec<(String, String)> = default_special_use(),
            "sieve_special_use" @ 38, SpecialUse, Reload;
        /// Largest script file.
        max_script_size: u64 = 1 << 20, "sieve_max_script_size" @ 39, Size, Reload;
        /// Deepest nesting of blocks and tests.
        max_nesting: usize = 32, "sieve_max_nesting" @ 40, Count(1, 256), Reload;
        /// Most actions one delivery may take over all its scripts.
        max_actions: usize = 32, "sieve_max_actions" @ 41, Count(1, 1000), Reload;
        /// Deepest chain of `include`s.
        max_include_depth: usize = 10, "sieve_max_include_depth" @ 42, Count(0, 100), Reload;
        /// Most bytes all variables of one run may hold.
        max_variable_size: u64 = 64 << 10, "sieve_max_variable_size" @ 43, Size, Reload;
        /// Largest compiled `:regex` pattern.
        max_regex_size: u64 = 1 << 20, "sieve_max_regex_size" @ 44, Size, Reload;
        /// Most octets of the header section that tests examine.
        max_header_size: u64 = 1 << 20, "sieve_max_header_size" @ 45, Size, Reload;
        /// Most octets of one decoded body part that `body` compares as a whole.
        max_body_part: u64 = 1 << 20, "sieve_max_body_part" @ 46, Size, Reload;
        /// The program that sends redirects and vacation replies, run as
        /// `PROGRAM -i -f SENDER -- RECIPIENT`.
        sendmail: PathBuf = PathBuf::from("/usr/sbin/sendmail"), "sendmail" @ 47, FilePath, Reload;
        /// How long one run of the sendmail program may take before it is killed.
        sendmail_timeout: Duration = Duration::from_secs(60),
            "sendmail_timeout" @ 48, Secs(1, 3600), Reload;
        /// How the null sender is passed to the sendmail program: `-f <>` or `-f ''`.
        sendmail_null_sender: NullSender = NullSender::Angle, "sendmail_null_sender" @ 49, OneOf {
            words: &[("<>", NullSender::Angle), ("empty", NullSender::Empty)],
            expected: "<> or empty",
        }, Reload;
        /// The envelope sender of redirected mail.
        redirect_from: RedirectFrom = RedirectFrom::Sender, "redirect_envelope_from" @ 50, OneOf {
            words: &[
                ("sender", RedirectFrom::Sender),
                ("recipient", RedirectFrom::Recipient),
                ("orig_recipient", RedirectFrom::OrigRecipient),
            ],
            expected: "sender, recipient or orig_recipient",
        }, Reload;
        /// Most redirects one delivery may send.
        max_redirects: usize = 4, "sieve_max_redirects" @ 51, Count(0, 100), Reload;
        /// Directory of the per-user vacation and duplicate tracking lists.
        state_dir: PathBuf = PathBuf::from("/var/lib/lmtpd/sieve"), "sieve_state_dir" @ 52, FilePath, Reload;
        /// Shortest vacation period (a shorter `:days`/`:seconds` is raised to it).
        vacation_min_period: Duration = Duration::from_secs(86_400),
            "sieve_vacation_min_period" @ 53, Period(0, 365 * 86_400), Reload;
        /// Longest vacation period (a longer one is lowered to it).
        vacation_max_period: Duration = Duration::from_secs(60 * 86_400),
            "sieve_vacation_max_period" @ 54, Period(0, 365 * 86_400), Reload;
        /// The vacation period when the script gives none.
        vacation_default_period: Duration = Duration::from_secs(7 * 86_400),
            "sieve_vacation_default_period" @ 55, Period(0, 365 * 86_400), Reload;
        /// The `duplicate` period when the script gives no `:seconds`.
        duplicate_period: Duration = Duration::from_secs(7 * 86_400),
            "sieve_duplicate_period" @ 56, Period(0, 365 * 86_400), Reload;
        /// Longest `duplicate` period (a longer `:seconds` is lowered to it).
        duplicate_max_period: Duration = Duration::from_secs(7 * 86_400),
            "sieve_duplicate_max_period" @ 57, Period(0, 365 * 86_400), Reload;
    }

    // Accepted so that old files still load, with their value checked, and ignored.
    @obsolete {
        // Connections no longer wait for a worker.
        "queue": usize, Count(0, 100_000);
    }
}

/// A problem with the configuration, where it was found, in the words `lmtpd` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The file cannot be read.
    Unreadable {
        /// The file.
        path: String,
        /// The operating system's reason.
        reason: String,
    },
    /// A line that is not `key = value`.
    Syntax {
        /// The file (or other source) of the line.
        origin: String,
        /// The line number, from 1.
        line: usize,
    },
    /// A key lmtpd does not know, or a value it refuses.
    Value {
        /// The file (or other source) of the line.
        origin: String,
        /// The line number, from 1.
        line: usize,
        /// The key as written.
        key: String,
        /// Why the value (or the key) is refused.
        reason: String,
    },
    /// Settings that do not work together (no listener at all, an empty `spool_dir`).
    Incomplete(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Unreadable { path, reason } => write!(f, "{path}: cannot read: {reason}"),
            ConfigError::Syntax { origin, line } => {
                write!(f, "{origin}:{line}: expected 'key = value'")
            }
            ConfigError::Value {
                origin,
                line,
                key,
                reason,
            } => write!(f, "{origin}:{line}: {key}: {reason}"),
            ConfigError::Incomplete(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for ConfigError {}

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

fn check_hostname(value: &str) -> Result<(), String> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("hostname must be printable ASCII without spaces".into());
    }
    Ok(())
}

fn check_delimiter(value: &str) -> Result<(), String> {
    if value
        .chars()
        .any(|ch| ch.is_alphanumeric() || ch == '@' || ch.is_whitespace())
    {
        return Err("recipient_delimiter must be punctuation such as + or -".into());
    }
    Ok(())
}

fn check_facility(value: &str) -> Result<(), String> {
    if crate::logging::facility_code(value).is_none() {
        return Err(format!(
            "'{value}' is not a facility (mail, daemon, user, local0 … local7)"
        ));
    }
    Ok(())
}

fn check_log_level(value: &str) -> Result<(), String> {
    if !matches!(value, "error" | "warn" | "info" | "debug" | "trace" | "off") {
        return Err(format!(
            "'{value}' is not error, warn, info, debug or trace"
        ));
    }
    Ok(())
}

/// The declaration of `name`, if lmtpd knows that key.
pub fn key(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

impl Config {
    /// Parses configuration text. `origin` names the file in messages. Every problem is
    /// returned, each with its line number.
    pub fn parse(text: &str, origin: &str) -> Result<Config, Vec<ConfigError>> {
        let (c, errors) = Config::parse_lenient(text, origin);
        if errors.is_empty() {
            Ok(c)
        } else {
            Err(errors)
        }
    }

    /// Like [`Config::parse`], but also returns the settings of every valid line, so that
    /// `lmtpd -t` can go on checking the users file and paths after a bad line.
    pub fn parse_lenient(text: &str, origin: &str) -> (Config, Vec<ConfigError>) {
        let mut c = Config::default();
        let mut errors = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let Some((key, value)) = trimmed.split_once('=') else {
                errors.push(ConfigError::Syntax {
                    origin: origin.into(),
                    line,
                });
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            let r = match self::key(key) {
                Some(k) => (k.set)(&mut c, value),
                None => Err(format!("unknown key '{key}'")),
            };
            if let Err(reason) = r {
                errors.push(ConfigError::Value {
                    origin: origin.into(),
                    line,
                    key: key.into(),
                    reason,
                });
            }
        }
        (c, errors)
    }

    /// Reads and parses a configuration file. Relative paths inside it stay relative to the
    /// working directory, as documented.
    pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
        let (c, errors) = Config::load_lenient(path);
        if errors.is_empty() {
            Ok(c)
        } else {
            Err(errors)
        }
    }

    /// Reads a configuration file leniently (see [`Config::parse_lenient`]).
    pub fn load_lenient(path: &Path) -> (Config, Vec<ConfigError>) {
        match fs::read_to_string(path) {
            Ok(text) => Config::parse_lenient(&text, &path.display().to_string()),
            Err(e) => (
                Config::default(),
                vec![ConfigError::Unreadable {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                }],
            ),
        }
    }

    /// Checks what can only be checked as a whole (after `-l` flags were added). `stdio`:
    /// the server runs one session on standard input (`-i`) and needs no listener; under
    /// socket activation (`LISTEN_FDS`) the listeners are inherited.
    pub fn validate(&self, stdio: bool) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        if self.listeners.listen.is_empty() && !stdio && std::env::var_os("LISTEN_FDS").is_none() {
            errors.push(ConfigError::Incomplete(
                "no listener: set 'listen' in the config file or pass -l".into(),
            ));
        }
        if self.delivery.spool_dir.as_os_str().is_empty() {
            errors.push(ConfigError::Incomplete("spool_dir is empty".into()));
        }
        if !matches!(self.accounts.store, StoreKind::Maildir | StoreKind::Mbox) {
            errors.push(ConfigError::Incomplete(format!(
                "account_store = {}: accounts are delivered to maildir or mbox",
                self.accounts.store.name()
            )));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The effective settings in config-file syntax (`lmtpd -n`).
    pub fn dump(&self) -> String {
        let mut keys: Vec<(u8, &Key)> = KEYS
            .iter()
            .filter_map(|k| k.order.map(|o| (o, k)))
            .collect();
        keys.sort_by_key(|(o, _)| *o);
        let mut s = String::new();
        for (_, k) in keys {
            (k.dump)(self, &mut s);
        }
        s
    }

    /// The restart-only keys whose value differs between `self` (what lmtpd started with)
    /// and `new`, by name, in the order of [`KEYS`].
    pub fn restart_only_changes(&self, new: &Config) -> Vec<&'static str> {
        KEYS.iter()
            .filter(|k| k.apply == Apply::Restart && (k.differs)(self, new))
            .map(|k| k.name)
            .collect()
    }

    /// `new` with every restart-only key set back to its value in `self`.
    pub fn keep_restart_only(&self, mut new: Config) -> Config {
        for k in KEYS.iter().filter(|k| k.apply == Apply::Restart) {
            (k.restore)(&mut new, self);
        }
        new
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

/// An account's mailbox template: absolute, or `~/...` (the account's home); it names one
/// mailbox per account (`~` or `%n`), and `%d`/`%u` are not used (an account has no domain
/// of its own).
pub fn check_account_template(t: &str) -> Result<(), String> {
    lmtpd_store::template::validate(t, "account mailbox")?;
    if !(t.starts_with('/') || t == "~" || t.starts_with("~/")) {
        return Err(format!("'{t}' is neither absolute nor ~/..."));
    }
    if t[1..].contains('~') {
        return Err(format!("'{t}': ~ (the home) may only start the template"));
    }
    if t.contains("%d") || t.contains("%u") {
        return Err(format!("'{t}': use %n (the account), not %d or %u"));
    }
    if !t.starts_with('~') && !t.contains("%n") {
        return Err(format!(
            "'{t}' names the same mailbox for every account: use ~ or %n"
        ));
    }
    Ok(())
}

/// `account_sieve` and `account_sieve_dir`: empty, or an account template.
fn check_account_script(t: &str) -> Result<(), String> {
    if t.is_empty() {
        return Ok(());
    }
    check_account_template(t)
}

fn check_optional_template(t: &str) -> Result<(), String> {
    if t.is_empty() {
        return Ok(());
    }
    lmtpd_store::template::validate(t, "sieve")
}

/// The special-use folders most clients create (Dovecot's default configuration names the
/// same ones).
fn default_special_use() -> Vec<(String, String)> {
    [
        ("\\Drafts", "Drafts"),
        ("\\Junk", "Junk"),
        ("\\Sent", "Sent"),
        ("\\Trash", "Trash"),
        ("\\Archive", "Archive"),
    ]
    .iter()
    .map(|(f, n)| (f.to_string(), n.to_string()))
    .collect()
}

impl SieveSection {
    /// The engine's limits from this section.
    pub fn limits(&self) -> crate::sieve::Limits {
        let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        crate::sieve::Limits {
            max_script_size: size(self.max_script_size),
            max_nesting: self.max_nesting,
            max_actions: self.max_actions,
            max_include_depth: self.max_include_depth,
            max_variable_size: size(self.max_variable_size),
            max_regex_size: size(self.max_regex_size),
            max_header_octets: size(self.max_header_size),
            max_body_part: size(self.max_body_part),
            max_redirects: self.max_redirects,
            vacation_min_period: self.vacation_min_period.as_secs(),
            vacation_max_period: self.vacation_max_period.as_secs(),
            vacation_default_period: self.vacation_default_period.as_secs(),
            duplicate_default_period: self.duplicate_period.as_secs(),
            duplicate_max_period: self.duplicate_max_period.as_secs(),
            ..crate::sieve::Limits::default()
        }
    }
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
sqlite_body_files = 1M
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
sieve = /srv/%d/%n/active.sieve
sieve_dir =
sieve_before = /etc/lmtpd/before.sieve
sieve_before = /etc/lmtpd/before.d
sieve_after = /etc/lmtpd/after.sieve
sieve_global_dir = /etc/lmtpd/global
sieve_separator = /
sieve_special_use = \\Junk=Spam
sieve_special_use = \\Trash=Deleted Items
sieve_max_script_size = 64K
sieve_max_nesting = 16
sieve_max_actions = 8
sieve_max_include_depth = 3
sieve_max_variable_size = 4K
sieve_max_regex_size = 128K
sieve_max_header_size = 256K
sieve_max_body_part = 512K
sendmail = /usr/local/sbin/sendmail
sendmail_timeout = 20
sendmail_null_sender = empty
redirect_envelope_from = recipient
sieve_max_redirects = 2
sieve_state_dir = /var/db/lmtpd/sieve
sieve_vacation_min_period = 12h
sieve_vacation_max_period = 30d
sieve_vacation_default_period = 3d
sieve_duplicate_period = 90m
sieve_duplicate_max_period = 86401
postgres = host=/run/postgresql dbname=mail user=lmtpd
postgres_pool_size = 4
postgres_connect_timeout = 3
postgres_statement_timeout = 9
tls_cert = /etc/lmtpd/cert.pem
tls_key = /etc/lmtpd/key.pem
tls = required
xforward = none
accounts = passwd
local_domains = host.example
local_domains = localhost
min_uid = 500
max_uid = 30000
accounts_allow = news
account_store = maildir
account_maildir = ~/Mail/inbox
account_mbox = /var/spool/mail/%n
account_mail_group = 
account_sieve = ~/.sieve/active
account_sieve_dir = ~/.sieve
quota_grace = 5%
quota_warning = 80% 95%
quota_warning_template = /etc/lmtpd/quota-warning.txt
quota_tempfail_max = 1d
retry_window = 1d
retry_journal = /var/db/lmtpd/retry.db
sqlite_body_files = 1048576
";
        let c = Config::parse(text, "t").expect("valid");
        assert_eq!(c.sieve.sendmail_null_sender, NullSender::Empty);
        assert_eq!(c.sieve.redirect_from, RedirectFrom::Recipient);
        assert_eq!(c.sieve.limits().vacation_min_period, 43_200);
        assert_eq!(c.sieve.limits().duplicate_default_period, 5400);
        assert_eq!(c.sieve.limits().max_redirects, 2);
        assert_eq!(
            c.postgres.conninfo,
            "host=/run/postgresql dbname=mail user=lmtpd"
        );
        assert_eq!(c.postgres.pool_size, 4);
        assert!(c.tls.required);
        assert_eq!(c.sieve.before.len(), 2);
        assert_eq!(c.sieve.separator, '/');
        assert_eq!(
            c.sieve.special_use,
            vec![
                ("\\Junk".to_string(), "Spam".to_string()),
                ("\\Trash".to_string(), "Deleted Items".to_string())
            ],
            "the first line replaces the defaults"
        );
        assert_eq!(c.sieve.limits().max_actions, 8);
        assert_eq!(c.listeners.listen.len(), 3);
        assert_eq!(c.listeners.socket_mode, 0o600);
        assert_eq!(c.limits.max_message_size, 10 << 20);
        assert_eq!(c.sqlite.body_files, 1 << 20);
        assert_eq!(c.recipients.recipient_delimiter, "+-");
        assert!(c.delivery.quota_permfail);
        assert_eq!(c.delivery.quota_grace, crate::quota::Grace::Percent(5));
        assert_eq!(c.delivery.quota_warning.0, vec![80, 95]);
        assert_eq!(c.delivery.quota_tempfail_max, Duration::from_secs(86_400));
        assert!(!c.recipients.lowercase_localpart);
        assert_eq!(c.delivery.detail_mailbox, DetailMailbox::Create);
        assert_eq!(c.limits.bare_newline, BareNewline::Reject);
        assert_eq!(c.delivery.store, StoreKind::Mbox);
        assert_eq!(c.mbox.locks, vec![LockKind::Dotlock, LockKind::Flock]);
        assert_eq!(c.sqlite.busy_timeout, Duration::from_secs(7));
        assert_eq!(
            c.listeners.metrics,
            Some(Listen::Tcp("127.0.0.1:9124".parse().expect("addr")))
        );
        // The dump is itself a valid config that yields the same settings.
        let again = Config::parse(&c.dump(), "dump").expect("dump parses");
        assert_eq!(again.dump(), c.dump());
        assert_eq!(again, c);
        // `lmtpd -n`, byte for byte as before the keys were declared in one table.
        assert_eq!(
            c.dump(),
            "\
listen = unix:/tmp/x.sock
listen = 127.0.0.1:2424
listen = [::1]:2424
socket_mode = 0600
hostname = mx.example.org
users = /etc/lmtpd.users
store = mbox
maildir = /var/mail/%d/%n
mbox = /var/mail/%n
mbox_locks = dotlock flock
mbox_lock_timeout = 5
sqlite = /var/lib/lmtpd/x.db
sqlite_busy_timeout = 7
spool_dir = /var/tmp
max_message_size = 10485760
max_recipients = 50
workers = 4
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
sieve = /srv/%d/%n/active.sieve
sieve_dir = 
sieve_before = /etc/lmtpd/before.sieve
sieve_before = /etc/lmtpd/before.d
sieve_after = /etc/lmtpd/after.sieve
sieve_global_dir = /etc/lmtpd/global
sieve_separator = /
sieve_special_use = \\Junk=Spam
sieve_special_use = \\Trash=Deleted Items
sieve_max_script_size = 65536
sieve_max_nesting = 16
sieve_max_actions = 8
sieve_max_include_depth = 3
sieve_max_variable_size = 4096
sieve_max_regex_size = 131072
sieve_max_header_size = 262144
sieve_max_body_part = 524288
sendmail = /usr/local/sbin/sendmail
sendmail_timeout = 20
sendmail_null_sender = empty
redirect_envelope_from = recipient
sieve_max_redirects = 2
sieve_state_dir = /var/db/lmtpd/sieve
sieve_vacation_min_period = 12h
sieve_vacation_max_period = 30d
sieve_vacation_default_period = 3d
sieve_duplicate_period = 90m
sieve_duplicate_max_period = 86401s
postgres = host=/run/postgresql dbname=mail user=lmtpd
postgres_pool_size = 4
postgres_connect_timeout = 3
postgres_statement_timeout = 9
tls_cert = /etc/lmtpd/cert.pem
tls_key = /etc/lmtpd/key.pem
tls = required
xforward = none
accounts = passwd
local_domains = host.example
local_domains = localhost
min_uid = 500
max_uid = 30000
accounts_allow = news
account_store = maildir
account_maildir = ~/Mail/inbox
account_mbox = /var/spool/mail/%n
account_mail_group = 
account_sieve = ~/.sieve/active
account_sieve_dir = ~/.sieve
quota_grace = 5%
quota_warning = 80% 95%
quota_warning_template = /etc/lmtpd/quota-warning.txt
quota_tempfail_max = 1d
retry_window = 1d
retry_journal = /var/db/lmtpd/retry.db
sqlite_body_files = 1048576
"
        );
    }

    #[test]
    fn defaults_print_as_before() {
        let mut c = Config::default();
        c.delivery.hostname = "h.test".into();
        c.delivery.spool_dir = "/tmp".into();
        c.mbox.locks = vec![LockKind::Fcntl, LockKind::Dotlock];
        let users = DEFAULT_USERS;
        assert_eq!(
            c.dump(),
            format!(
                "\
socket_mode = 0660
hostname = h.test
users = {users}
store = maildir
maildir = /var/vmail/%d/%n/Maildir
mbox = /var/mail/%n
mbox_locks = fcntl dotlock
mbox_lock_timeout = 30
sqlite = /var/lib/lmtpd/mail.db
sqlite_busy_timeout = 30
spool_dir = /tmp
max_message_size = 67108864
max_recipients = 1000
workers = 512
metrics = off
timeout = 300
shutdown_timeout = 30
recipient_delimiter = +
lowercase_localpart = yes
quota_full = tempfail
detail_mailbox = yes
bare_newline = normalize
postmaster = 
log_level = info
log = stderr
syslog_facility = mail
user = 
group = 
allow_root = no
socket_owner = 
socket_group = 
sieve = /var/vmail/%d/%n/.dovecot.sieve
sieve_dir = /var/vmail/%d/%n/sieve
sieve_global_dir = /etc/lmtpd/sieve
sieve_separator = .
sieve_special_use = \\Drafts=Drafts
sieve_special_use = \\Junk=Junk
sieve_special_use = \\Sent=Sent
sieve_special_use = \\Trash=Trash
sieve_special_use = \\Archive=Archive
sieve_max_script_size = 1048576
sieve_max_nesting = 32
sieve_max_actions = 32
sieve_max_include_depth = 10
sieve_max_variable_size = 65536
sieve_max_regex_size = 1048576
sieve_max_header_size = 1048576
sieve_max_body_part = 1048576
sendmail = /usr/sbin/sendmail
sendmail_timeout = 60
sendmail_null_sender = <>
redirect_envelope_from = sender
sieve_max_redirects = 4
sieve_state_dir = /var/lib/lmtpd/sieve
sieve_vacation_min_period = 1d
sieve_vacation_max_period = 60d
sieve_vacation_default_period = 7d
sieve_duplicate_period = 7d
sieve_duplicate_max_period = 7d
postgres = 
postgres_pool_size = 16
postgres_connect_timeout = 10
postgres_statement_timeout = 30
tls_cert = 
tls_key = 
tls = may
xforward = local
accounts = none
min_uid = 1000
max_uid = 59999
account_store = mbox
account_maildir = ~/Maildir
account_mbox = /var/mail/%n
account_mail_group = mail
account_sieve = ~/.dovecot.sieve
account_sieve_dir = ~/sieve
quota_grace = 0
quota_warning = none
quota_warning_template = 
quota_tempfail_max = 0s
retry_window = 2d
retry_journal = /var/lib/lmtpd/retry.db
sqlite_body_files = 262144
"
            )
        );
        assert_eq!(Config::parse(&c.dump(), "dump").expect("parses"), c);
    }

    #[test]
    fn every_key_is_declared_once_with_a_unique_place_in_the_dump() {
        let mut names: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "a key is declared twice");
        let mut order: Vec<u8> = KEYS.iter().filter_map(|k| k.order).collect();
        order.sort_unstable();
        let expected: Vec<u8> = (0..).take(order.len()).collect();
        assert_eq!(order, expected, "-n positions are 0, 1, 2, … without gaps");
        assert!(key("queue").is_some_and(Key::is_obsolete));
        assert_eq!(key("workers").map(|k| k.apply), Some(Apply::Restart));
        assert_eq!(key("log_level").map(|k| k.apply), Some(Apply::Reload));
    }

    #[test]
    fn refusals_keep_their_wording() {
        let cases = [
            (
                "socket_mode = 0999",
                "socket_mode: '0999' is not an octal mode like 0660",
            ),
            (
                "hostname = a b",
                "hostname: hostname must be printable ASCII without spaces",
            ),
            (
                "lowercase_localpart = maybe",
                "lowercase_localpart: 'maybe' is not yes or no",
            ),
            (
                "workers = 0",
                "workers: '0' is not a whole number from 1 to 4096",
            ),
            (
                "timeout = 0",
                "timeout: '0' is not a whole number from 1 to 86400",
            ),
            (
                "queue = x",
                "queue: 'x' is not a whole number from 0 to 100000",
            ),
            (
                "quota_full = maybe",
                "quota_full: 'maybe' is not tempfail or permfail",
            ),
            (
                "detail_mailbox = 2",
                "detail_mailbox: '2' is not no, yes or create",
            ),
            (
                "bare_newline = keep",
                "bare_newline: 'keep' is not normalize or reject",
            ),
            ("log = file", "log: 'file' is not stderr or syslog"),
            (
                "log_level = loud",
                "log_level: 'loud' is not error, warn, info, debug or trace",
            ),
            (
                "mbox_locks = ,",
                "mbox_locks: name at least one of fcntl, flock, dotlock",
            ),
            (
                "recipient_delimiter = a",
                "recipient_delimiter: recipient_delimiter must be punctuation such as + or -",
            ),
            ("nokey = 1", "nokey: unknown key 'nokey'"),
        ];
        for (line, want) in cases {
            let errs = Config::parse(line, "f").expect_err(line);
            assert_eq!(
                errs,
                vec![ConfigError::Value {
                    origin: "f".into(),
                    line: 1,
                    key: line.split(' ').next().unwrap_or_default().into(),
                    reason: want
                        .split_once(": ")
                        .map(|(_, r)| r.to_string())
                        .unwrap_or_default(),
                }],
                "{line}"
            );
            assert_eq!(errs[0].to_string(), format!("f:1: {want}"));
        }
        // `normalise` is accepted and printed as `normalize`; `listen` lines add up.
        let c = Config::parse(
            "bare_newline = normalise\nlisten = unix:/a\nlisten = unix:/b\n",
            "f",
        )
        .expect("valid");
        assert_eq!(c.limits.bare_newline, BareNewline::Normalize);
        assert_eq!(c.listeners.listen.len(), 2);
    }

    #[test]
    fn restart_only_keys_are_the_sockets_the_process_and_the_log_destination() {
        let restart: Vec<&str> = KEYS
            .iter()
            .filter(|k| k.apply == Apply::Restart)
            .map(|k| k.name)
            .collect();
        assert_eq!(
            restart,
            [
                "listen",
                "socket_mode",
                "socket_owner",
                "socket_group",
                "metrics",
                "user",
                "group",
                "allow_root",
                "workers",
                "shutdown_timeout",
                "log",
                "syslog_facility",
                "accounts",
                "local_domains",
                "min_uid",
                "max_uid",
                "accounts_allow",
                "account_store",
                "account_maildir",
                "account_mbox",
                "account_mail_group",
                "account_sieve",
                "account_sieve_dir",
                "retry_window",
                "retry_journal"
            ]
        );
    }

    #[test]
    fn reports_every_problem_with_line_numbers() {
        let text = "listen = 127.0.0.1:25\nbogus = 1\nmax_message_size = lots\nnoequals\n";
        let errs = Config::parse(text, "f.conf").expect_err("invalid");
        assert_eq!(errs.len(), 4, "{errs:?}");
        let errs: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert!(errs[0].starts_with("f.conf:1: listen: port 25"));
        assert!(errs[1].starts_with("f.conf:2:"));
        assert!(errs[2].starts_with("f.conf:3:"));
        assert!(errs[3].starts_with("f.conf:4:"));
        assert_eq!(errs[3], "f.conf:4: expected 'key = value'");
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
        assert!(Config::default().process.workers >= 256);
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

    /// The keys a document lists, sorted, with any key listed twice reported.
    fn listed(doc: &str, keys: Vec<String>) -> Vec<String> {
        let mut sorted = keys.clone();
        sorted.sort();
        let n = sorted.len();
        sorted.dedup();
        assert_eq!(sorted.len(), n, "{doc} lists a key twice: {keys:?}");
        sorted
    }

    fn declared() -> Vec<String> {
        let mut keys: Vec<String> = KEYS.iter().map(|k| k.name.to_string()).collect();
        keys.sort();
        keys
    }

    fn read_doc(rel: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn the_man_page_documents_exactly_the_declared_keys() {
        // lmtpd.conf(5): one `.It Ic key No = ...` item per key, from DESCRIPTION up to the
        // users file section.
        let man = read_doc("man/lmtpd.conf.5");
        let body = man
            .split_once(".Sh DESCRIPTION")
            .and_then(|(_, rest)| rest.split_once(".Sh USERS FILE"))
            .map(|(keys, _)| keys)
            .expect("DESCRIPTION and USERS FILE sections");
        let keys = body
            .lines()
            .filter_map(|l| l.strip_prefix(".It Ic "))
            .filter_map(|l| l.split_whitespace().next())
            .map(String::from)
            .collect();
        assert_eq!(listed("lmtpd.conf.5", keys), declared());
    }

    #[test]
    fn the_readme_table_documents_exactly_the_declared_keys() {
        // README "Configuration file": the first column of each row names one or more keys
        // in backquotes (`socket_owner`, `socket_group`).
        let readme = read_doc("README.md");
        let table = readme
            .split_once("### Configuration file")
            .map(|(_, rest)| rest)
            .expect("a Configuration file section");
        let mut keys = Vec::new();
        for row in table
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
        {
            let first = row.split('|').nth(1).unwrap_or_default();
            keys.extend(first.split('`').skip(1).step_by(2).map(String::from));
        }
        assert_eq!(listed("README", keys), declared());
    }

    #[test]
    fn lmtpd_8_names_exactly_the_restart_only_keys() {
        // lmtpd(8), SIGHUP: "Listeners, .Ic socket_* , ... change only with a restart".
        let man = read_doc("man/lmtpd.8");
        let list = man
            .split_once("\nListeners,\n")
            .and_then(|(_, rest)| rest.split_once("change only with a restart"))
            .map(|(list, _)| list)
            .expect("the SIGHUP paragraph");
        let mut named: Vec<String> = vec!["listen".into()];
        for word in list
            .lines()
            .filter_map(|l| l.strip_prefix(".Ic "))
            .filter_map(|l| l.split_whitespace().next())
        {
            match word.strip_suffix('*') {
                Some(prefix) => named.extend(
                    KEYS.iter()
                        .filter(|k| k.name.starts_with(prefix))
                        .map(|k| k.name.to_string()),
                ),
                None => named.push(word.into()),
            }
        }
        let mut restart: Vec<String> = KEYS
            .iter()
            .filter(|k| k.apply == Apply::Restart)
            .map(|k| k.name.to_string())
            .collect();
        restart.sort();
        assert_eq!(listed("lmtpd.8", named), restart);
    }
}
