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
//! body walker behind `body`), [`matcher`] (comparators and match types). [`print`] renders
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
        }
    }
}

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
}
