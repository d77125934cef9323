//! The Sieve engine (RFC 5228 and the extensions listed in README "Sieve"): lexer, parser,
//! validator and interpreter. Sans-IO like [`crate::proto`]: no files, sockets, clocks or
//! threads in here. The caller gives the envelope, the header section, a body reader, the
//! time and a [`Host`] (mailbox existence, `:specialuse` folders, `include` scripts) and gets
//! back the list of [`Action`]s.
//!
//! Layout: [`lexer`] → [`parser`] (the generic tree in [`ast`]) → [`validate`] (checks every
//! command, test, tag and `require` against one table; produces a [`Script`]) → [`interp`]
//! (runs a script, or the before/user/after sequence, into an [`Outcome`]). The message
//! side: [`message`] (header fields, RFC 2047, addresses), [`date`] (RFC 5322 dates and date parts), [`mime`] (the streaming
//! body walker behind `body`), [`matcher`] (comparators and match types), [`vacation`] (who
//! gets no auto-reply; the reply message). [`print`] renders
//! an outcome the way Pigeonhole's `sieve-test` does.

use std::io::Read;
use std::sync::Arc;

pub mod ast;
pub mod date;
pub mod interp;
pub mod lexer;
pub mod matcher;
pub mod message;
pub mod mime;
pub mod parser;
pub mod print;
pub mod vacation;
pub mod validate;

pub use ast::Pos;
pub use validate::compile;

/// Every bound the engine keeps (README "Sieve", `lmtpd.conf(5)` `[sieve]`). A script can make
/// a delivery neither unbounded in time nor in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest script source in bytes (default 1 MiB).
    pub max_script_size: usize,
    /// Deepest nesting of blocks and tests (default 32).
    pub max_nesting: usize,
    /// Most actions one delivery may collect, over all scripts (default 32).
    pub max_actions: usize,
    /// Deepest chain of `include`s (default 10).
    pub max_include_depth: usize,
    /// Most bytes all variables together may hold (default 64 KiB); a longer value is
    /// truncated (RFC 5229 §3 allows a limit).
    pub max_variable_size: usize,
    /// Largest compiled regular expression in bytes (the regex crate's size limit,
    /// default 1 MiB).
    pub max_regex_size: usize,
    /// Most octets of the header section examined (default 1 MiB); the caller passes at
    /// most this many in [`Input::header`].
    pub max_header_octets: usize,
    /// Most octets of one decoded body part a `body` test compares as a whole (`:is`,
    /// `:matches`, `:regex`; default 1 MiB); `:contains` scans every part in bounded
    /// windows.
    pub max_body_part: usize,
    /// Most test and command evaluations one run may make (default 100 000): a bound on
    /// time independent of message size.
    pub max_steps: u64,
    /// Most `redirect`s one delivery may send (default 4); one more is a run-time error.
    pub max_redirects: usize,
    /// Shortest `vacation` period in seconds (default one day); a shorter `:days` or
    /// `:seconds` is raised to it (RFC 5230 §4.1 and RFC 6131 §2 let a site set a minimum).
    pub vacation_min_period: u64,
    /// Longest `vacation` period in seconds (default 60 days); a longer one is lowered.
    pub vacation_max_period: u64,
    /// The `vacation` period without `:days` or `:seconds` (default 7 days, RFC 5230 §4.1).
    pub vacation_default_period: u64,
    /// The `duplicate` period without `:seconds` (default 7 days).
    pub duplicate_default_period: u64,
    /// Longest `duplicate` period in seconds (default 7 days); a longer `:seconds` is lowered.
    pub duplicate_max_period: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_script_size: 1 << 20,
            max_nesting: 32,
            max_actions: 32,
            max_include_depth: 10,
            max_variable_size: 64 << 10,
            max_regex_size: 1 << 20,
            max_header_octets: 1 << 20,
            max_body_part: 1 << 20,
            max_steps: 100_000,
            max_redirects: 4,
            vacation_min_period: DAY,
            vacation_max_period: 60 * DAY,
            vacation_default_period: 7 * DAY,
            duplicate_default_period: 7 * DAY,
            duplicate_max_period: 7 * DAY,
        }
    }
}

/// Seconds in a day.
pub const DAY: u64 = 86_400;

/// A compile error, with the place in the script. Shown as `line:column: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    /// Where.
    pub pos: Pos,
    /// What, in one line.
    pub message: String,
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.pos, self.message)
    }
}

/// A run-time error (for example an `include` that cannot be found, too many actions, a
/// `reject` together with a store action). The caller falls back to implicit keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeError {
    /// The command that failed.
    pub pos: Pos,
    /// What, in one line.
    pub message: String,
}

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.pos, self.message)
    }
}

/// A compiled, validated script: immutable, shared between deliveries (the caller caches it
/// by file and recompiles when the file changes).
#[derive(Debug)]
pub struct Script {
    /// The validated commands.
    pub commands: Vec<ast::Command>,
    /// The extensions named in `require`, lower-cased.
    pub requires: Vec<String>,
    /// Compiled regular expressions and other per-node data the validator prepared, owned
    /// by [`validate`] and read by [`interp`].
    pub prepared: validate::Prepared,
}

/// Where an `include` looks (RFC 6609 §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IncludeLocation {
    /// `:personal`: the user's own scripts (the default).
    Personal,
    /// `:global`: the administrator's directory.
    Global,
}

/// Why an `include` produced no script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IncludeError {
    /// No such script (`:optional` makes this a no-op).
    NotFound,
    /// The script exists but cannot be read or does not compile; the text says which.
    Failed(String),
}

/// What the engine asks its caller for while running. Implemented by the delivery code,
/// which may do I/O here; the engine itself does none.
pub trait Host {
    /// Does the recipient's mailbox `name` exist (`mailboxexists`, `fileinto` without
    /// `:create`)? `name` uses the script's hierarchy separator; `INBOX` always exists.
    fn mailbox_exists(&self, name: &str) -> bool;
    /// The folder that has the special-use attribute `flag` (e.g. `\Junk`), if any
    /// (RFC 8579).
    fn special_use(&self, flag: &str) -> Option<String>;
    /// The compiled script `name` from `location`, for `include`.
    fn include(&self, location: IncludeLocation, name: &str) -> Result<Arc<Script>, IncludeError>;
    /// Is `id` in the recipient's duplicate tracking list under `handle`, and not expired
    /// (RFC 7352 §3)? Only earlier deliveries count: the entries this run adds are in
    /// [`Outcome::tracked`], recorded by the caller once the delivery succeeded.
    fn duplicate(&self, handle: &str, id: &str) -> bool;
}

/// The envelope as the script sees it (`envelope` test, RFC 5228 §5.4).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    /// MAIL FROM address without brackets; empty for the null sender `<>`.
    pub from: String,
    /// The RCPT TO address of the recipient this run is for.
    pub to: String,
    /// The original recipient (DSN ORCPT, RFC 3461), when the client gave one. When set,
    /// `envelope "to"` tests this address instead of [`Envelope::to`], as Pigeonhole does.
    pub orig_to: Option<String>,
    /// MAIL FROM's AUTH= parameter, if any (`envelope "auth"`).
    pub auth: Option<String>,
}

/// Everything one run reads.
pub struct Input<'a> {
    /// The envelope.
    pub envelope: &'a Envelope,
    /// The raw header section of the message as stored (without trace headers we add), at
    /// most [`Limits::max_header_octets`] bytes, including the empty line that ends it when
    /// that fits.
    pub header: &'a [u8],
    /// The message size in octets (`size` test).
    pub size: u64,
    /// Opens a reader over the whole message (header section and body) from its first byte,
    /// for `body`. Called at most once per `body` test.
    pub body: &'a dyn Fn() -> std::io::Result<Box<dyn Read + 'a>>,
    /// Now, in seconds since the Unix epoch (`currentdate`).
    pub now: i64,
    /// The local time zone's offset from UTC in minutes at `now` (`date`/`currentdate`
    /// without `:zone`).
    pub zone_offset_minutes: i32,
    /// The `environment` items (RFC 5183 §4: `domain`, `host`, `location`, `name`, `phase`,
    /// `remote-host`, `remote-ip`, `version`), name → value; an item not here is unknown.
    pub environment: &'a [(&'a str, String)],
    /// The recipient delimiter characters for `subaddress` (`recipient_delimiter`, e.g. `+`).
    pub delimiters: &'a str,
    /// The hierarchy separator of mailbox names in scripts (e.g. `.` or `/`).
    pub separator: char,
    /// The caller's side.
    pub host: &'a dyn Host,
}

/// Where a copy goes and how it is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Store {
    /// The folder, with the script's separator; `None` for `keep` (INBOX).
    pub mailbox: Option<String>,
    /// The IMAP flags and keywords to store with, as the script gave them (`\\Seen`,
    /// `$label1`), without duplicates.
    pub flags: Vec<String>,
    /// `fileinto :create` (RFC 5490 §3.2).
    pub create: bool,
    /// `fileinto :specialuse` (RFC 8579): the special-use flag asked for; the engine already
    /// resolved it through [`Host::special_use`] into `mailbox` when the folder exists.
    pub special_use: Option<String>,
    /// The header section this copy is stored with when `editheader` changed it before the
    /// action (RFC 5293 §6); `None` stores the message as received.
    pub header: Option<Arc<[u8]>>,
    /// Where in which script the action was taken (for the log); `None` for implicit keep.
    pub pos: Option<Pos>,
}

/// One action of the outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `keep`, or the implicit keep (`implicit`).
    Keep {
        /// The copy.
        store: Store,
        /// True for the implicit keep (RFC 5228 §2.10.2).
        implicit: bool,
    },
    /// `fileinto` (with or without `:copy`).
    FileInto(Store),
    /// `reject` or `ereject` (RFC 5429): the recipient's reply is 550 5.7.1 with `reason`.
    Reject {
        /// The reason as the script gave it.
        reason: String,
        /// True for `ereject`.
        ereject: bool,
    },
    /// `discard`: nothing is stored (only shown when nothing else keeps the message).
    Discard,
    /// `redirect` (RFC 5228 §4.2): send the message on to another address.
    Redirect(Redirect),
    /// `vacation` (RFC 5230): an auto-reply to the sender, if the caller's rules allow it
    /// (see [`vacation`] for who never gets one) and none went to that sender within the
    /// period.
    Vacation(Vacation),
}

/// One `redirect`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// The address to send to (an RFC 5322 addr-spec, checked).
    pub address: String,
    /// `:copy` (RFC 3894): the redirect did not cancel the implicit keep.
    pub copy: bool,
    /// The header section to send with, when `editheader` changed it before the action.
    pub header: Option<Arc<[u8]>>,
    /// Where in which script.
    pub pos: Pos,
}

/// One `vacation` (RFC 5230 §4, RFC 6131), with its arguments evaluated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vacation {
    /// The reply text (with `:mime`, a MIME entity: its header fields, an empty line, its
    /// body).
    pub reason: String,
    /// `:subject`.
    pub subject: Option<String>,
    /// `:from`.
    pub from: Option<String>,
    /// `:addresses`: more addresses of the recipient.
    pub addresses: Vec<String>,
    /// `:mime`.
    pub mime: bool,
    /// `:handle`, or the one RFC 5230 §4.2 derives from the other arguments.
    pub handle: String,
    /// The period in seconds after the site's bounds were applied.
    pub seconds: u64,
    /// Where in which script.
    pub pos: Pos,
}

/// An entry for the recipient's duplicate tracking list (RFC 7352 §3), which the caller
/// records only when the whole delivery succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracked {
    /// `:handle` (empty without one).
    pub handle: String,
    /// The unique id: `:uniqueid`, the `:header` field's value or the Message-ID.
    pub id: String,
    /// How long the entry lives, in seconds.
    pub seconds: u64,
    /// `:last`: the period counts from this delivery even when the id was seen before;
    /// without it an existing entry keeps its expiry.
    pub last: bool,
}

/// The result of a run: the actions to take, in order, after the RFC 5228 §2.10.3 rules
/// merged duplicates (two `fileinto` of one folder are one copy; `keep` and implicit keep are
/// one), plus what the caller should log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The actions.
    pub actions: Vec<Action>,
    /// Things worth a log line that did not stop the run (an `include :optional` that was
    /// missing, a value truncated at a limit, ...), each starting with its position.
    pub notes: Vec<String>,
    /// The duplicate tracking entries to record once the delivery succeeded (RFC 7352 §3:
    /// only when the script completed).
    pub tracked: Vec<Tracked>,
}
