//! The interpreter: runs a validated [`Script`] (or the global-before, user, global-after
//! sequence) over one message and recipient into an [`Outcome`] (RFC 5228 §2.10 implicit
//! keep and duplicate actions, the extensions' run-time rules).
//!
//! # Actions and the implicit keep
//!
//! - `keep`, `fileinto` (without `:copy`), `discard`, `reject` and `ereject` cancel the
//!   implicit keep (RFC 5228 §2.10.2, RFC 5429 §2.1); `fileinto :copy` (RFC 3894) does not.
//!   An explicit `keep` is the same copy as the implicit one.
//! - Duplicates (RFC 5228 §2.10.3): two stores into one folder are one copy (`keep` and
//!   `fileinto "INBOX"` are the same folder). The copy is stored with the flags of the last
//!   of them, as Pigeonhole merges duplicate stores (its imap4flags side effect of the later
//!   action replaces the earlier one's; with the implicit keep last, its final internal
//!   variable wins), `:create` is kept when either asked for it, and the first action keeps
//!   its place and its header section.
//! - `reject`/`ereject`: at most one per delivery; together with `keep` or `fileinto` (with or
//!   without `:copy`) it is a run-time error, as in Pigeonhole (RFC 5429 only calls the
//!   combination NOT RECOMMENDED; an error makes the caller keep the message, which loses
//!   nothing). `reject` with `discard` is fine.
//! - `discard` is listed (as [`Action::Discard`], where it was executed) only when no store
//!   action remains in the outcome.
//! - `redirect` (RFC 5228 §4.2) cancels the implicit keep unless `:copy`; two redirects to
//!   one address are one (§2.10.3); more than [`Limits::max_redirects`] is a run-time error;
//!   an address that is not an addr-spec is a run-time error. Sending, loops and failures
//!   are the caller's (`crate::policy`).
//! - `vacation` (RFC 5230) does not touch the implicit keep; a second one in a delivery is a
//!   run-time error; whether the reply goes out is decided by the caller with
//!   [`super::vacation::refusal`] and its tracking store.
//! - The `duplicate` test (RFC 7352) asks [`super::Host::duplicate`] about earlier
//!   deliveries and lists what this run tracks in [`Outcome::tracked`] (empty after a
//!   run-time error: §3 tracks only completed runs).
//! - The implicit keep, when still in effect at the end, is the last action,
//!   `Action::Keep { implicit: true }`, with the final value of the imap4flags internal
//!   variable and the final edited header section.
//!
//! # Several scripts (`sieve_before`, the user's script, `sieve_after`)
//!
//! [`run_sequence`] follows Pigeonhole's documented multiscript semantics: the scripts form a
//! sequence in which the next script is executed only when the previous one ended with a
//! keep in effect (an explicit `keep`, or an implicit keep that nothing cancelled). A script's
//! `stop` ends that script only; whether the next script runs depends on the keep alone. The
//! implicit keep of a script that is followed by another is not executed (the next script
//! decides); the one of the last script executed is. All scripts add to one list of actions,
//! so the duplicate rules, the `reject` conflicts and [`Limits::max_actions`] apply across
//! scripts (a `keep` in a before script and the user script's implicit keep are one copy).
//! Header edits (`editheader`) and the imap4flags internal variable carry over to the
//! following scripts (Pigeonhole keeps both in the one result the scripts share, so a flag a
//! before script adds reaches the user script's implicit keep); variables and match
//! variables are each script's own. A run-time error in
//! any script ends the sequence: [`Sequence::error`] says which script. As in Pigeonhole,
//! which executes each script's actions before the next script runs, the actions of the
//! scripts that completed stay; the failing script's actions are dropped and the message is
//! kept in INBOX as received (the fallback implicit keep, one copy with an earlier `keep`).
//!
//! # Variables and strings
//!
//! With `variables` (RFC 5229) every string argument is expanded except the name of `set`,
//! the names of `global`, `include` script names and comparator names. `${name}` is looked
//! up case-insensitively; an unknown variable is "". `${0}`..`${9}` are the match variables
//! of the last successful `:matches`/`:regex` test of the current script. `${global.name}`
//! (RFC 6609 §3.5) is the global variable. `encoded-character` (RFC 5228 §2.4.2.4) is
//! decoded by the validator when the script is compiled, so nothing decodes twice here. All
//! variables together hold at most [`Limits::max_variable_size`] bytes;
//! a longer value is truncated with a note. An expanded string is bounded the same way.
//!
//! # Limits
//!
//! Every command and test evaluated counts one step ([`Limits::max_steps`], per script);
//! more actions than [`Limits::max_actions`] over the whole delivery, an `include` chain
//! deeper than [`Limits::max_include_depth`] and an `include` loop are run-time errors, each
//! with the position of the command.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::ast::{Argument, Command, Test};
use super::matcher::{self, Comparator, MatchType, Relation};
use super::message::{self, AddressPart, Headers};
use super::mime::{self, Transform};
use super::validate::tag_takes_argument;
use super::{
    date, Action, IncludeError, IncludeLocation, Input, Limits, Outcome, Pos, Redirect,
    RuntimeError, Script, Store, Tracked, Vacation,
};

#[cfg(test)]
mod tests;

/// Runs one script.
pub fn run(script: &Script, input: &Input<'_>, limits: &Limits) -> Result<Outcome, RuntimeError> {
    let seq = run_sequence(&[script], input, limits);
    match seq.error {
        Some(e) => Err(e.error),
        None => Ok(seq.outcome),
    }
}

/// The result of [`run_sequence`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sequence {
    /// The combined outcome of the scripts that ran; after an error, the actions of the
    /// scripts that completed before the failing one plus the fallback implicit keep of the
    /// message as received (unless one of them kept it already), with the notes so far.
    pub outcome: Outcome,
    /// The run-time error that ended the sequence, if any.
    pub error: Option<SequenceError>,
}

/// A run-time error of one script of a sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequenceError {
    /// The index in the `scripts` slice given to [`run_sequence`] of the script that failed
    /// (the script where the failing command is, or the one that included it).
    pub script: usize,
    /// The error.
    pub error: RuntimeError,
}

/// Runs the global-before scripts, the user's script and the global-after scripts in the
/// order given, with Pigeonhole's multiscript semantics (see the module documentation):
/// the next script runs only when the previous one ended with a keep in effect.
pub fn run_sequence(scripts: &[&Script], input: &Input<'_>, limits: &Limits) -> Sequence {
    let mut cx = Ctx::new(input, limits);
    let mut ran_any = false;
    // The actions of the scripts that completed (Pigeonhole has executed them already).
    let mut completed: Vec<Action> = Vec::new();
    for (i, script) in scripts.iter().enumerate() {
        ran_any = true;
        cx.begin_script();
        if let Err(error) = cx.run_main(script) {
            let mut actions = completed;
            actions.retain(|a| !matches!(a, Action::Discard));
            let kept = actions.iter().any(|a| match a {
                Action::Keep { .. } => true,
                Action::FileInto(s) => folder_key(s.mailbox.as_deref()) == "INBOX",
                _ => false,
            });
            if !kept {
                actions.push(Action::Keep {
                    store: plain_store(None, Vec::new(), None),
                    implicit: true,
                });
            }
            // RFC 7352 §3: nothing is tracked from a run that failed.
            let outcome = Outcome {
                actions,
                notes: std::mem::take(&mut cx.notes),
                tracked: Vec::new(),
            };
            return Sequence {
                outcome,
                error: Some(SequenceError { script: i, error }),
            };
        }
        completed.clone_from(&cx.actions);
        let keep_in_effect = cx.implicit_keep || cx.explicit_keep_this_script;
        if !keep_in_effect {
            break;
        }
        // The implicit keep of a script followed by another is left to the next one.
        if i + 1 < scripts.len() {
            cx.implicit_keep = true;
        }
    }
    if !ran_any {
        cx.implicit_keep = true;
    }
    Sequence {
        outcome: cx.finish(),
        error: None,
    }
}

fn plain_store(mailbox: Option<String>, flags: Vec<String>, pos: Option<Pos>) -> Store {
    Store {
        mailbox,
        flags,
        create: false,
        special_use: None,
        header: None,
        pos,
    }
}

fn err(pos: Pos, message: impl Into<String>) -> RuntimeError {
    RuntimeError {
        pos,
        message: message.into(),
    }
}

type R<T> = Result<T, RuntimeError>;

/// How a block ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Next,
    Stop,
    Return,
}

/// One script being executed (the main one or an included one).
struct Frame<'s> {
    script: &'s Script,
    /// Local variables, lower-cased names.
    vars: HashMap<String, String>,
    /// Names declared `global` in this script, lower-cased.
    globals: HashSet<String>,
    /// `${0}`.. of the last successful `:matches`/`:regex`.
    match_vars: Vec<String>,
    variables: bool,
    include: bool,
}

impl<'s> Frame<'s> {
    fn new(script: &'s Script) -> Frame<'s> {
        let has = |name: &str| script.requires.iter().any(|r| r == name);
        Frame {
            script,
            vars: HashMap::new(),
            globals: HashSet::new(),
            match_vars: Vec::new(),
            variables: has("variables"),
            include: has("include"),
        }
    }
}

/// The state of one delivery's run.
struct Ctx<'a, 'i> {
    input: &'a Input<'i>,
    limits: &'a Limits,
    steps: u64,
    actions: Vec<Action>,
    notes: Vec<String>,
    implicit_keep: bool,
    explicit_keep_this_script: bool,
    discarded: bool,
    rejected: bool,
    /// The imap4flags internal variable.
    flags: Vec<String>,
    headers: Headers,
    edited: bool,
    snapshot: Option<Arc<[u8]>>,
    regex_cache: HashMap<(String, u8), Arc<regex::Regex>>,
    globals: HashMap<String, String>,
    var_bytes: usize,
    /// Octets of the fields `addheader` added (bounded by [`Limits::max_header_octets`]).
    added_header_bytes: usize,
    /// Current recursion depth of blocks and tests.
    depth: usize,
    included_once: HashSet<(IncludeLocation, String)>,
    include_stack: Vec<(IncludeLocation, String, *const Script)>,
    /// The `duplicate` entries to record on success.
    tracked: Vec<Tracked>,
}

/// The deepest recursion of blocks and tests whatever the limits say (a bound on stack use).
const MAX_DEPTH: usize = 1000;

/// How many regular expressions compiled at run time are kept (a bound on memory).
const REGEX_CACHE_SIZE: usize = 64;

/// A command's or test's arguments split into tags and positional arguments.
struct Args<'a> {
    tags: Vec<(&'a str, Pos, Option<&'a Argument>)>,
    pos: Vec<&'a Argument>,
}

impl<'a> Args<'a> {
    fn split(args: &'a [Argument]) -> Args<'a> {
        let mut tags = Vec::new();
        let mut pos = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a {
                Argument::Tag { name, pos: p } => {
                    let value = if tag_takes_argument(name) {
                        it.next()
                    } else {
                        None
                    };
                    tags.push((name.as_str(), *p, value));
                }
                other => pos.push(other),
            }
        }
        Args { tags, pos }
    }

    fn has(&self, tag: &str) -> bool {
        self.tags.iter().any(|(t, _, _)| *t == tag)
    }

    fn value(&self, tag: &str) -> Option<&'a Argument> {
        self.tags
            .iter()
            .find(|(t, _, _)| *t == tag)
            .and_then(|(_, _, v)| *v)
    }

    fn positional(&self, i: usize, at: Pos) -> R<&'a Argument> {
        self.pos
            .get(i)
            .copied()
            .ok_or_else(|| err(at, "missing argument"))
    }
}

fn raw_strings(a: &Argument) -> R<&[String]> {
    match a {
        Argument::Strings { values, .. } => Ok(values),
        other => Err(err(other.pos(), "expected a string")),
    }
}

fn number(a: &Argument) -> R<u64> {
    match a {
        Argument::Number { value, .. } => Ok(*value),
        other => Err(err(other.pos(), "expected a number")),
    }
}

fn cmp_key(c: Comparator) -> u8 {
    match c {
        Comparator::Octet => 0,
        Comparator::AsciiCasemap => 1,
        Comparator::AsciiNumeric => 2,
    }
}

/// Splits flag strings at white space and drops case-insensitive duplicates, keeping the
/// first spelling (RFC 5232 §3).
fn flag_list<S: AsRef<str>>(strings: &[S]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in strings {
        for f in s.as_ref().split_ascii_whitespace() {
            add_flag(&mut out, f);
        }
    }
    out
}

fn add_flag(list: &mut Vec<String>, f: &str) {
    if !list.iter().any(|x| x.eq_ignore_ascii_case(f)) {
        list.push(f.to_string());
    }
}

fn merge_flags(into: &mut Vec<String>, from: &[String]) {
    for f in from {
        add_flag(into, f);
    }
}

/// The folder key of a store action for duplicate detection: INBOX case-insensitively.
/// Two addresses are one destination when their local parts are equal and their domains
/// equal but for case (RFC 5321 §2.4: only the domain is case-insensitive).
fn same_address(a: &str, b: &str) -> bool {
    match (a.rsplit_once('@'), b.rsplit_once('@')) {
        (Some((la, da)), Some((lb, db))) => la == lb && da.eq_ignore_ascii_case(db),
        _ => a == b,
    }
}

/// A `redirect` address as an addr-spec (RFC 5228 §4.2 wants an RFC 5322 address; the
/// envelope needs a bare one): `local@domain`, optionally in angle brackets, a dot-atom or
/// quoted local part, a domain of letters, digits, `-` and `.` (UTF-8 allowed, RFC 6531)
/// or an address literal; at most 254 octets. `None` for anything else.
pub fn redirect_address(text: &str) -> Option<String> {
    let t = text.trim();
    let t = t
        .strip_prefix('<')
        .and_then(|x| x.strip_suffix('>'))
        .unwrap_or(t);
    if t.is_empty() || t.len() > 254 {
        return None;
    }
    let at = t.rfind('@')?;
    let (local, domain) = (t.get(..at)?, t.get(at + 1..)?);
    let atext =
        |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii();
    let local_ok = if let Some(q) = local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        let mut escaped = false;
        q.chars().all(|c| {
            let ok = !c.is_control() && (escaped || c != '"');
            escaped = !escaped && c == '\\';
            ok
        }) && !escaped
    } else {
        !local.is_empty()
            && local
                .split('.')
                .all(|w| !w.is_empty() && w.chars().all(atext))
    };
    let domain_ok = if domain.starts_with('[') {
        domain.ends_with(']') && !domain.chars().any(|c| c.is_whitespace() || c.is_control())
    } else {
        !domain.is_empty()
            && domain.split('.').all(|l| {
                !l.is_empty()
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_alphanumeric() || c == '-')
            })
    };
    (local_ok && domain_ok).then(|| t.to_string())
}

fn folder_key(mailbox: Option<&str>) -> String {
    match mailbox {
        None => "INBOX".to_string(),
        Some(m) if m.eq_ignore_ascii_case("inbox") => "INBOX".to_string(),
        Some(m) => m.to_string(),
    }
}

/// Truncates `s` to at most `max` bytes at a character boundary.
fn truncate_at(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while cut > 0 && !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// Header field names editheader refuses to touch, as Pigeonhole does (RFC 5293 §7 lets an
/// implementation protect fields; trace and loop-prevention fields are the ones that matter).
const PROTECTED_FIELDS: &[&str] = &["received", "auto-submitted"];

fn valid_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// Encodes a value for a header field: ASCII as is, anything else as RFC 2047 `B`
/// encoded-words (RFC 5293 §4 asks for that), each at most 75 characters.
fn encode_value(value: &str) -> String {
    if value.is_ascii() {
        return value.to_string();
    }
    let mut out = String::new();
    let mut chunk = String::new();
    for c in value.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            push_word(&mut out, &chunk);
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        push_word(&mut out, &chunk);
    }
    out
}

fn push_word(out: &mut String, chunk: &str) {
    if !out.is_empty() {
        out.push(' ');
    }
    out.push_str("=?UTF-8?B?");
    out.push_str(&base64(chunk.as_bytes()));
    out.push_str("?=");
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let idx = |shift: u32| char::from(T[((n >> shift) & 63) as usize]);
        out.push(idx(18));
        out.push(idx(12));
        out.push(if chunk.len() > 1 { idx(6) } else { '=' });
        out.push(if chunk.len() > 2 { idx(0) } else { '=' });
    }
    out
}

/// The characters `:quoteregex` escapes.
const REGEX_SPECIALS: &str = "\\^$.[]|()?*+{}";

fn apply_modifiers(args: &Args<'_>, value: String) -> String {
    let mut v = value;
    // RFC 5229 §4.1: higher precedence first (40 :lower/:upper, 30 :lowerfirst/:upperfirst,
    // 20 :quotewildcard, 15 :quoteregex, 10 :length).
    if args.has("lower") {
        v = v.to_ascii_lowercase();
    }
    if args.has("upper") {
        v = v.to_ascii_uppercase();
    }
    if args.has("lowerfirst") || args.has("upperfirst") {
        let mut chars = v.chars();
        if let Some(first) = chars.next() {
            let first = if args.has("upperfirst") {
                first.to_ascii_uppercase()
            } else {
                first.to_ascii_lowercase()
            };
            let mut s = String::with_capacity(v.len());
            s.push(first);
            s.push_str(chars.as_str());
            v = s;
        }
    }
    if args.has("quotewildcard") {
        let mut s = String::with_capacity(v.len());
        for c in v.chars() {
            if matches!(c, '*' | '?' | '\\') {
                s.push('\\');
            }
            s.push(c);
        }
        v = s;
    }
    if args.has("quoteregex") {
        let mut s = String::with_capacity(v.len());
        for c in v.chars() {
            if REGEX_SPECIALS.contains(c) {
                s.push('\\');
            }
            s.push(c);
        }
        v = s;
    }
    if args.has("length") {
        v = v.chars().count().to_string();
    }
    v
}

/// The match settings of a test.
struct Match {
    cmp: Comparator,
    mt: MatchType,
}

impl<'a, 'i> Ctx<'a, 'i> {
    fn new(input: &'a Input<'i>, limits: &'a Limits) -> Ctx<'a, 'i> {
        Ctx {
            input,
            limits,
            steps: 0,
            actions: Vec::new(),
            notes: Vec::new(),
            implicit_keep: true,
            explicit_keep_this_script: false,
            discarded: false,
            rejected: false,
            flags: Vec::new(),
            headers: Headers::parse(input.header),
            edited: false,
            snapshot: None,
            regex_cache: HashMap::new(),
            globals: HashMap::new(),
            var_bytes: 0,
            added_header_bytes: 0,
            depth: 0,
            included_once: HashSet::new(),
            include_stack: Vec::new(),
            tracked: Vec::new(),
        }
    }

    fn begin_script(&mut self) {
        self.steps = 0;
        self.explicit_keep_this_script = false;
        self.globals.clear();
        self.var_bytes = 0;
        self.included_once.clear();
        self.include_stack.clear();
    }

    fn note(&mut self, pos: Pos, text: impl std::fmt::Display) {
        self.notes.push(format!("{pos}: {text}"));
    }

    fn step(&mut self, pos: Pos) -> R<()> {
        self.steps += 1;
        if self.steps > self.limits.max_steps {
            return Err(err(
                pos,
                format!("more than {} steps (max_steps)", self.limits.max_steps),
            ));
        }
        Ok(())
    }

    fn run_main(&mut self, script: &Script) -> R<()> {
        let mut frame = Frame::new(script);
        self.include_stack.push((
            IncludeLocation::Personal,
            String::new(),
            script as *const Script,
        ));
        let r = self.exec_block(&mut frame, &script.commands);
        self.release_frame(&frame);
        r.map(|_| ())
    }

    fn release_frame(&mut self, frame: &Frame<'_>) {
        let bytes: usize = frame.vars.values().map(String::len).sum();
        self.var_bytes = self.var_bytes.saturating_sub(bytes);
    }

    fn finish(mut self) -> Outcome {
        if self.implicit_keep {
            let flags = self.flags.clone();
            let header = self.header_snapshot();
            let existing = self.actions.iter_mut().find_map(|a| match a {
                Action::Keep { store, .. } => Some(store),
                Action::FileInto(store) if folder_key(store.mailbox.as_deref()) == "INBOX" => {
                    Some(store)
                }
                _ => None,
            });
            match existing {
                Some(store) => store.flags = flags,
                None => {
                    let mut store = plain_store(None, flags, None);
                    store.header = header;
                    self.actions.push(Action::Keep {
                        store,
                        implicit: true,
                    });
                }
            }
        }
        let stores = self
            .actions
            .iter()
            .any(|a| matches!(a, Action::Keep { .. } | Action::FileInto(_)));
        if stores {
            self.actions.retain(|a| !matches!(a, Action::Discard));
        }
        Outcome {
            actions: self.actions,
            notes: self.notes,
            tracked: self.tracked,
        }
    }

    // ----- variables -----

    fn var_get(&self, frame: &Frame<'_>, name: &str) -> String {
        let lower = name.to_ascii_lowercase();
        if let Some(g) = lower.strip_prefix("global.") {
            return self.globals.get(g).cloned().unwrap_or_default();
        }
        if frame.globals.contains(&lower) {
            return self.globals.get(&lower).cloned().unwrap_or_default();
        }
        frame.vars.get(&lower).cloned().unwrap_or_default()
    }

    fn var_set(&mut self, frame: &mut Frame<'_>, name: &str, mut value: String, pos: Pos) {
        let lower = name.to_ascii_lowercase();
        let (global, key) = match lower.strip_prefix("global.") {
            Some(g) => (true, g.to_string()),
            None => (frame.globals.contains(&lower), lower.clone()),
        };
        let old = if global {
            self.globals.get(&key)
        } else {
            frame.vars.get(&key)
        }
        .map_or(0, String::len);
        let base = self.var_bytes.saturating_sub(old);
        let room = self.limits.max_variable_size.saturating_sub(base);
        if value.len() > room {
            truncate_at(&mut value, room);
            self.note(
                pos,
                format!(
                    "variable {name} truncated to {} bytes (max_variable_size)",
                    value.len()
                ),
            );
        }
        self.var_bytes = base + value.len();
        if global {
            self.globals.insert(key, value);
        } else {
            frame.vars.insert(key, value);
        }
    }

    /// Expands variables in `s` (RFC 5229 §3).
    fn expand(&mut self, frame: &Frame<'_>, s: &str, pos: Pos) -> String {
        if !frame.variables || !s.contains("${") {
            return s.to_string();
        }
        let cap = self.limits.max_variable_size.saturating_add(s.len());
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        let mut truncated = false;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[i..]);
                rest = "";
                break;
            };
            let inner = &after[..end];
            match self.expand_one(frame, inner) {
                Some(v) => {
                    out.push_str(&v);
                    rest = &after[end + 1..];
                }
                None => {
                    out.push_str("${");
                    rest = after;
                }
            }
            if out.len() > cap {
                truncated = true;
                break;
            }
        }
        if !truncated {
            out.push_str(rest);
        }
        if out.len() > cap {
            truncate_at(&mut out, cap);
            truncated = true;
        }
        if truncated {
            self.note(
                pos,
                format!("a string was truncated to {cap} bytes while expanding variables"),
            );
        }
        out
    }

    /// The replacement of `${inner}`, or `None` when it is not a reference.
    fn expand_one(&self, frame: &Frame<'_>, inner: &str) -> Option<String> {
        if !frame.variables {
            return None;
        }
        if !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit()) {
            // An index too large for usize names no match variable: "".
            let n = inner.parse::<usize>().unwrap_or(usize::MAX);
            return Some(frame.match_vars.get(n).cloned().unwrap_or_default());
        }
        let valid = !inner.is_empty()
            && inner.split('.').all(|part| {
                let mut b = part.bytes();
                matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
                    && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
            });
        if !valid {
            return None;
        }
        if inner.contains('.') {
            let (ns, _) = inner.split_once('.')?;
            if !(ns.eq_ignore_ascii_case("global") && frame.include)
                || inner.matches('.').count() != 1
            {
                return None;
            }
        }
        Some(self.var_get(frame, inner))
    }

    fn strings(&mut self, frame: &Frame<'_>, a: &Argument) -> R<Vec<String>> {
        let values = raw_strings(a)?;
        let pos = a.pos();
        Ok(values.iter().map(|v| self.expand(frame, v, pos)).collect())
    }

    fn string(&mut self, frame: &Frame<'_>, a: &Argument) -> R<String> {
        let mut v = self.strings(frame, a)?;
        if v.is_empty() {
            return Err(err(a.pos(), "expected a string"));
        }
        Ok(v.swap_remove(0))
    }

    // ----- matching -----

    fn match_of(&mut self, frame: &Frame<'_>, args: &Args<'_>, at: Pos) -> R<Match> {
        let cmp = match args.value("comparator") {
            Some(a) => {
                let name = raw_strings(a)?.first().cloned().unwrap_or_default();
                Comparator::from_name(&name)
                    .ok_or_else(|| err(a.pos(), format!("unknown comparator {name}")))?
            }
            None => Comparator::AsciiCasemap,
        };
        let mut mt = MatchType::Is;
        for (tag, p, value) in &args.tags {
            mt = match *tag {
                "is" => MatchType::Is,
                "contains" => MatchType::Contains,
                "matches" => MatchType::Matches,
                "regex" => MatchType::Regex,
                "value" | "count" => {
                    let a = value.ok_or_else(|| err(*p, "missing relation"))?;
                    let name = self.string(frame, a)?;
                    let rel = Relation::from_name(&name)
                        .ok_or_else(|| err(a.pos(), format!("unknown relation {name}")))?;
                    if *tag == "value" {
                        MatchType::Value(rel)
                    } else {
                        MatchType::Count(rel)
                    }
                }
                _ => continue,
            };
        }
        let _ = at;
        Ok(Match { cmp, mt })
    }

    fn regex_for(
        &mut self,
        script: &Script,
        key: &str,
        list_pos: Pos,
        index: usize,
        cmp: Comparator,
    ) -> R<Arc<regex::Regex>> {
        if let Some(r) = script.prepared.regexes.get(&(list_pos, index)) {
            return Ok(r.clone());
        }
        let ck = (key.to_string(), cmp_key(cmp));
        if let Some(r) = self.regex_cache.get(&ck) {
            return Ok(r.clone());
        }
        let r = matcher::compile_regex(key, cmp, self.limits.max_regex_size)
            .map_err(|e| err(list_pos, format!("invalid regular expression: {e}")))?;
        let r = Arc::new(r);
        if self.regex_cache.len() >= REGEX_CACHE_SIZE {
            self.regex_cache.clear();
        }
        self.regex_cache.insert(ck, r.clone());
        Ok(r)
    }

    /// Does any value match any key? Sets the match variables on a successful
    /// `:matches`/`:regex`.
    /// The shape `header`, `address`, `envelope` and `string` share: the match type and
    /// comparator, the first positional argument (field names, envelope parts or source
    /// strings) turned into the values compared by `values`, the second the keys.
    fn compare(
        &mut self,
        frame: &mut Frame<'_>,
        args: &Args<'_>,
        pos: Pos,
        values: impl FnOnce(&mut Self, &Match, Vec<String>) -> R<Vec<String>>,
    ) -> R<bool> {
        let m = self.match_of(frame, args, pos)?;
        let first = self.strings(frame, args.positional(0, pos)?)?;
        let keys_arg = args.positional(1, pos)?;
        let keys = self.strings(frame, keys_arg)?;
        let values = values(self, &m, first)?;
        self.match_values(frame, &m, &values, &keys, keys_arg.pos())
    }

    fn match_values(
        &mut self,
        frame: &mut Frame<'_>,
        m: &Match,
        values: &[String],
        keys: &[String],
        keys_pos: Pos,
    ) -> R<bool> {
        if let MatchType::Count(rel) = m.mt {
            return Ok(keys
                .iter()
                .any(|k| matcher::count_matches(m.cmp, rel, values.len(), k)));
        }
        let capture = matches!(m.mt, MatchType::Matches | MatchType::Regex);
        for value in values {
            for (ki, key) in keys.iter().enumerate() {
                let regex = if m.mt == MatchType::Regex {
                    Some(self.regex_for(frame.script, key, keys_pos, ki, m.cmp)?)
                } else {
                    None
                };
                let mut caps = Vec::new();
                let hit = matcher::matches(
                    m.cmp,
                    m.mt,
                    value,
                    key,
                    regex.as_deref(),
                    if capture { Some(&mut caps) } else { None },
                );
                if hit {
                    if capture {
                        for c in caps.iter_mut() {
                            truncate_at(c, self.limits.max_variable_size);
                        }
                        frame.match_vars = caps;
                    }
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    // ----- header access -----

    /// The values of the fields named `name`, restricted by `:index`/`:last`.
    fn field_values(&self, name: &str, args: &Args<'_>) -> R<Vec<String>> {
        let all: Vec<&str> = self.headers.named(name).map(|f| f.value.as_str()).collect();
        let picked = match args.value("index") {
            Some(a) => {
                let n = number(a)?;
                if n == 0 {
                    Vec::new()
                } else {
                    let n = usize::try_from(n).unwrap_or(usize::MAX);
                    let idx = if args.has("last") {
                        all.len().checked_sub(n)
                    } else {
                        Some(n - 1)
                    };
                    idx.and_then(|i| all.get(i).copied()).into_iter().collect()
                }
            }
            None => all,
        };
        Ok(picked
            .into_iter()
            .map(|v| v.trim_end_matches([' ', '\t', '\r', '\n']).to_string())
            .collect())
    }

    fn header_snapshot(&mut self) -> Option<Arc<[u8]>> {
        if !self.edited {
            return None;
        }
        if self.snapshot.is_none() {
            self.snapshot = Some(Arc::from(self.headers.to_bytes()));
        }
        self.snapshot.clone()
    }

    // ----- actions -----

    fn count_check(&self, pos: Pos) -> R<()> {
        if self.actions.len() >= self.limits.max_actions {
            return Err(err(
                pos,
                format!(
                    "more than {} actions (max_actions)",
                    self.limits.max_actions
                ),
            ));
        }
        Ok(())
    }

    /// `redirect` (RFC 5228 §4.2): a checked address, one send per address (§2.10.3), at
    /// most [`Limits::max_redirects`]; without `:copy` it cancels the implicit keep.
    fn redirect(&mut self, to: String, copy: bool, pos: Pos) -> R<()> {
        if self.rejected {
            return Err(err(pos, "redirect cannot be combined with reject"));
        }
        let address = redirect_address(&to)
            .ok_or_else(|| err(pos, format!("redirect: '{to}' is not a valid address")))?;
        let existing = self.actions.iter_mut().find_map(|a| match a {
            Action::Redirect(r) if same_address(&r.address, &address) => Some(r),
            _ => None,
        });
        match existing {
            Some(r) => r.copy &= copy,
            None => {
                let sent = self
                    .actions
                    .iter()
                    .filter(|a| matches!(a, Action::Redirect(_)))
                    .count();
                if sent >= self.limits.max_redirects {
                    return Err(err(
                        pos,
                        format!(
                            "more than {} redirects (sieve_max_redirects)",
                            self.limits.max_redirects
                        ),
                    ));
                }
                self.count_check(pos)?;
                let header = self.header_snapshot();
                self.actions.push(Action::Redirect(Redirect {
                    address,
                    copy,
                    header,
                    pos,
                }));
            }
        }
        if !copy {
            self.implicit_keep = false;
        }
        Ok(())
    }

    /// `vacation` (RFC 5230 §4, RFC 6131): one per delivery; the period bounded by the
    /// site's limits; the default handle derived from the other arguments (§4.2). Whether a
    /// reply is sent is the caller's decision ([`super::vacation`]).
    fn vacation(&mut self, frame: &Frame<'_>, args: &Args<'_>, pos: Pos) -> R<()> {
        if self.rejected {
            return Err(err(pos, "vacation cannot be combined with reject"));
        }
        if self
            .actions
            .iter()
            .any(|a| matches!(a, Action::Vacation(_)))
        {
            return Err(err(pos, "more than one vacation (RFC 5230 §4.7)"));
        }
        let reason = self.string(frame, args.positional(0, pos)?)?;
        let opt = |cx: &mut Self, tag: &str| -> R<Option<String>> {
            match args.value(tag) {
                Some(a) => cx.string(frame, a).map(Some),
                None => Ok(None),
            }
        };
        let subject = opt(self, "subject")?;
        let from = opt(self, "from")?;
        if let Some(f) = from.as_deref().filter(|f| !super::validate::valid_from(f)) {
            self.note(
                pos,
                format!("vacation: :from \"{f}\" is not an address; the reply will come from the recipient"),
            );
        }
        let handle = opt(self, "handle")?;
        let addresses = match args.value("addresses") {
            Some(a) => self.strings(frame, a)?,
            None => Vec::new(),
        };
        let mime = args.has("mime");
        let l = self.limits;
        let asked = match (args.value("days"), args.value("seconds")) {
            (Some(d), _) => number(d)?.saturating_mul(super::DAY),
            (None, Some(s)) => number(s)?,
            (None, None) => l.vacation_default_period,
        };
        let seconds = asked
            .max(l.vacation_min_period)
            .min(l.vacation_max_period.max(l.vacation_min_period));
        if seconds != asked {
            self.note(
                pos,
                format!("vacation: period {asked}s is outside the site's bounds; {seconds}s used"),
            );
        }
        // RFC 5230 §4.2: without :handle, one derived from the arguments as the script
        // writes them (before variables are expanded, as Pigeonhole does), so a changed
        // text starts a new period but a changed variable does not.
        let handle = match handle {
            Some(h) => h,
            None => {
                let raw = |tag: &str| -> Option<String> {
                    let a = args.value(tag)?;
                    raw_strings(a).ok()?.first().cloned()
                };
                let reason_raw = raw_strings(args.positional(0, pos)?)?
                    .first()
                    .cloned()
                    .unwrap_or_default();
                format!(
                    "{reason_raw}{}{}{}",
                    raw("subject").unwrap_or_else(|| "<default-subject>".into()),
                    raw("from").unwrap_or_else(|| "<default-from>".into()),
                    if mime { "<MIME>" } else { "<NO-MIME>" }
                )
            }
        };
        self.count_check(pos)?;
        self.actions.push(Action::Vacation(Vacation {
            reason,
            subject,
            from,
            addresses,
            mime,
            handle,
            seconds,
            pos,
        }));
        Ok(())
    }

    /// The `duplicate` test (RFC 7352 §3): is this message's unique id in the tracking list
    /// of earlier deliveries? The id is listed in [`Outcome::tracked`] either way; a message
    /// without the id's header field is neither a duplicate nor tracked.
    fn duplicate(&mut self, frame: &Frame<'_>, args: &Args<'_>, pos: Pos) -> R<bool> {
        let id = match (args.value("uniqueid"), args.value("header")) {
            (Some(u), _) => Some(self.string(frame, u)?),
            (None, Some(h)) => {
                let name = self.string(frame, h)?;
                let value = self.headers.named(&name).next().map(|f| f.value.clone());
                value
            }
            (None, None) => self
                .headers
                .named("message-id")
                .next()
                .map(|f| f.value.clone()),
        };
        let Some(id) = id.filter(|v| !v.trim().is_empty()) else {
            return Ok(false);
        };
        let handle = match args.value("handle") {
            Some(h) => self.string(frame, h)?,
            None => String::new(),
        };
        let l = self.limits;
        let seconds = match args.value("seconds") {
            Some(s) => number(s)?,
            None => l.duplicate_default_period,
        }
        .min(l.duplicate_max_period);
        let last = args.has("last");
        let seen = self.input.host.duplicate(&handle, &id);
        if seen {
            // Logged for every delivery: a message discarded as a duplicate can be found.
            let h = if handle.is_empty() {
                String::new()
            } else {
                format!(" (handle {handle})")
            };
            self.note(pos, format!("duplicate: {id} was delivered before{h}"));
        }
        match self
            .tracked
            .iter_mut()
            .find(|t| t.handle == handle && t.id == id)
        {
            Some(t) => {
                t.last |= last;
                t.seconds = t.seconds.max(seconds);
            }
            None => self.tracked.push(Tracked {
                handle,
                id,
                seconds,
                last,
            }),
        }
        Ok(seen)
    }

    fn add_store(&mut self, store: Store, keep: bool, pos: Pos) -> R<()> {
        if self.rejected {
            return Err(err(pos, "reject cannot be combined with keep or fileinto"));
        }
        let key = folder_key(store.mailbox.as_deref());
        let existing = self.actions.iter_mut().find_map(|a| match a {
            Action::Keep { store: s, .. } if key == "INBOX" => Some(s),
            Action::FileInto(s) if folder_key(s.mailbox.as_deref()) == key => Some(s),
            _ => None,
        });
        if let Some(s) = existing {
            // Pigeonhole: the later store's flags replace the earlier one's.
            s.flags = store.flags;
            s.create |= store.create;
            return Ok(());
        }
        self.count_check(pos)?;
        if keep {
            self.actions.push(Action::Keep {
                store,
                implicit: false,
            });
        } else {
            self.actions.push(Action::FileInto(store));
        }
        Ok(())
    }

    // ----- commands -----

    /// Enters one level of blocks or tests: the validator bounds nesting per script, this
    /// bounds it over an include chain too (the interpreter recurses once per level).
    fn enter(&mut self, pos: Pos) -> R<()> {
        self.depth += 1;
        let max = self
            .limits
            .max_nesting
            .saturating_add(2)
            .saturating_mul(self.limits.max_include_depth.saturating_add(1))
            .min(MAX_DEPTH);
        if self.depth > max {
            return Err(err(pos, "nested too deeply"));
        }
        Ok(())
    }

    fn exec_block(&mut self, frame: &mut Frame<'_>, cmds: &[Command]) -> R<Flow> {
        let pos = cmds.first().map(|c| c.pos).unwrap_or_default();
        self.enter(pos)?;
        let r = self.exec_block_inner(frame, cmds);
        self.depth -= 1;
        r
    }

    fn exec_block_inner(&mut self, frame: &mut Frame<'_>, cmds: &[Command]) -> R<Flow> {
        // Whether the if/elsif chain before the current command has taken a branch; None
        // when the previous command is not part of a chain.
        let mut chain: Option<bool> = None;
        for cmd in cmds {
            self.step(cmd.pos)?;
            let flow = match cmd.name.as_str() {
                "if" => {
                    let taken = self.cond(frame, cmd)?;
                    chain = Some(taken);
                    if taken {
                        self.exec_block(frame, cmd.block.as_deref().unwrap_or(&[]))?
                    } else {
                        Flow::Next
                    }
                }
                "elsif" => match chain {
                    Some(false) => {
                        let taken = self.cond(frame, cmd)?;
                        chain = Some(taken);
                        if taken {
                            self.exec_block(frame, cmd.block.as_deref().unwrap_or(&[]))?
                        } else {
                            Flow::Next
                        }
                    }
                    Some(true) => Flow::Next,
                    None => return Err(err(cmd.pos, "elsif without if")),
                },
                "else" => match chain.take() {
                    Some(false) => self.exec_block(frame, cmd.block.as_deref().unwrap_or(&[]))?,
                    Some(true) => Flow::Next,
                    None => return Err(err(cmd.pos, "else without if")),
                },
                _ => {
                    chain = None;
                    self.exec_command(frame, cmd)?
                }
            };
            if flow != Flow::Next {
                return Ok(flow);
            }
        }
        Ok(Flow::Next)
    }

    fn cond(&mut self, frame: &mut Frame<'_>, cmd: &Command) -> R<bool> {
        let test = cmd
            .tests
            .first()
            .ok_or_else(|| err(cmd.pos, "missing test"))?;
        self.test(frame, test)
    }

    fn exec_command(&mut self, frame: &mut Frame<'_>, cmd: &Command) -> R<Flow> {
        let args = Args::split(&cmd.args);
        let pos = cmd.pos;
        match cmd.name.as_str() {
            "require" => {}
            "stop" => return Ok(Flow::Stop),
            "return" => return Ok(Flow::Return),
            "keep" => {
                let flags = self.action_flags(frame, &args)?;
                let header = self.header_snapshot();
                let mut store = plain_store(None, flags, Some(pos));
                store.header = header;
                self.add_store(store, true, pos)?;
                self.implicit_keep = false;
                self.explicit_keep_this_script = true;
            }
            "fileinto" => {
                let name = self.string(frame, args.positional(0, pos)?)?;
                let flags = self.action_flags(frame, &args)?;
                let special_use = match args.value("specialuse") {
                    Some(a) => Some(self.string(frame, a)?),
                    None => None,
                };
                let mailbox = match &special_use {
                    Some(flag) => self.input.host.special_use(flag).unwrap_or(name),
                    None => name,
                };
                let create = args.has("create");
                if !create && !self.input.host.mailbox_exists(&mailbox) {
                    self.note(pos, format!("fileinto: folder {mailbox} does not exist (no :create); it is stored into INBOX"));
                }
                let header = self.header_snapshot();
                let store = Store {
                    mailbox: Some(mailbox),
                    flags,
                    create,
                    special_use,
                    header,
                    pos: Some(pos),
                };
                self.add_store(store, false, pos)?;
                if !args.has("copy") {
                    self.implicit_keep = false;
                }
            }
            "discard" => {
                if !self.discarded {
                    self.count_check(pos)?;
                    self.actions.push(Action::Discard);
                    self.discarded = true;
                }
                self.implicit_keep = false;
            }
            "reject" | "ereject" => {
                let reason = self.string(frame, args.positional(0, pos)?)?;
                if self.rejected {
                    return Err(err(pos, "more than one reject (RFC 5429 §2.1)"));
                }
                if self.actions.iter().any(|a| {
                    matches!(
                        a,
                        Action::Keep { .. }
                            | Action::FileInto(_)
                            | Action::Redirect(_)
                            | Action::Vacation(_)
                    )
                }) {
                    return Err(err(
                        pos,
                        "reject cannot be combined with keep, fileinto, redirect or vacation",
                    ));
                }
                self.count_check(pos)?;
                self.actions.push(Action::Reject {
                    reason,
                    ereject: cmd.name == "ereject",
                });
                self.rejected = true;
                self.implicit_keep = false;
            }
            "redirect" => {
                let to = self.string(frame, args.positional(0, pos)?)?;
                self.redirect(to, args.has("copy"), pos)?;
            }
            "vacation" => self.vacation(frame, &args, pos)?,
            "set" => {
                let name_arg = args.positional(0, pos)?;
                let name = raw_strings(name_arg)?.first().cloned().unwrap_or_default();
                let value = self.string(frame, args.positional(1, pos)?)?;
                let value = apply_modifiers(&args, value);
                self.var_set(frame, &name, value, pos);
            }
            "global" => {
                for name in raw_strings(args.positional(0, pos)?)? {
                    frame.globals.insert(name.to_ascii_lowercase());
                }
            }
            "setflag" | "addflag" | "removeflag" => self.flag_command(frame, cmd, &args)?,
            "include" => return self.include(frame, cmd, &args),
            "addheader" => self.addheader(frame, &args, pos)?,
            "deleteheader" => self.deleteheader(frame, &args, pos)?,
            other => return Err(err(pos, format!("command {other} is not supported"))),
        }
        Ok(Flow::Next)
    }

    fn action_flags(&mut self, frame: &Frame<'_>, args: &Args<'_>) -> R<Vec<String>> {
        match args.value("flags") {
            Some(a) => {
                let v = self.strings(frame, a)?;
                Ok(flag_list(&v))
            }
            None => Ok(self.flags.clone()),
        }
    }

    fn flag_command(&mut self, frame: &mut Frame<'_>, cmd: &Command, args: &Args<'_>) -> R<()> {
        let pos = cmd.pos;
        let (var, list_arg) = if args.pos.len() >= 2 {
            (
                Some(self.string(frame, args.positional(0, pos)?)?),
                args.positional(1, pos)?,
            )
        } else {
            (None, args.positional(0, pos)?)
        };
        let given = flag_list(&self.strings(frame, list_arg)?);
        let mut current = match &var {
            Some(name) => flag_list(&[self.var_get(frame, name)]),
            None => self.flags.clone(),
        };
        match cmd.name.as_str() {
            "setflag" => current = given,
            "addflag" => merge_flags(&mut current, &given),
            _ => current.retain(|f| !given.iter().any(|g| g.eq_ignore_ascii_case(f))),
        }
        match var {
            Some(name) => {
                let joined = current.join(" ");
                self.var_set(frame, &name, joined, pos);
            }
            None => self.flags = current,
        }
        Ok(())
    }

    fn include(&mut self, frame: &mut Frame<'_>, cmd: &Command, args: &Args<'_>) -> R<Flow> {
        let pos = cmd.pos;
        let name = raw_strings(args.positional(0, pos)?)?
            .first()
            .cloned()
            .unwrap_or_default();
        let location = if args.has("global") {
            IncludeLocation::Global
        } else {
            IncludeLocation::Personal
        };
        let key = (location, name.clone());
        if args.has("once") && self.included_once.contains(&key) {
            return Ok(Flow::Next);
        }
        let script = match self.input.host.include(location, &name) {
            Ok(s) => s,
            Err(IncludeError::NotFound) if args.has("optional") => {
                self.note(
                    pos,
                    format!("include: script {name} not found; skipped (:optional)"),
                );
                return Ok(Flow::Next);
            }
            Err(IncludeError::NotFound) => {
                return Err(err(pos, format!("include: script {name} not found")))
            }
            Err(IncludeError::Failed(why)) => {
                return Err(err(pos, format!("include: script {name}: {why}")))
            }
        };
        let ptr = Arc::as_ptr(&script);
        if self
            .include_stack
            .iter()
            .any(|(l, n, p)| (*l == location && *n == name) || std::ptr::eq(*p, ptr))
        {
            return Err(err(
                pos,
                format!("include: script {name} includes itself (a loop)"),
            ));
        }
        // The stack holds the main script too.
        if self.include_stack.len() > self.limits.max_include_depth {
            return Err(err(
                pos,
                format!(
                    "include: deeper than {} (max_include_depth)",
                    self.limits.max_include_depth
                ),
            ));
        }
        self.included_once.insert(key);
        self.include_stack.push((location, name, ptr));
        let mut sub = Frame::new(&script);
        let r = self.exec_block(&mut sub, &script.commands);
        self.release_frame(&sub);
        self.include_stack.pop();
        let _ = frame;
        match r? {
            Flow::Stop => Ok(Flow::Stop),
            Flow::Next | Flow::Return => Ok(Flow::Next),
        }
    }

    /// True (with a note) when `name` is a field editheader must leave alone.
    fn protected(&mut self, command: &str, name: &str, pos: Pos) -> bool {
        let protected = PROTECTED_FIELDS
            .iter()
            .any(|p| name.eq_ignore_ascii_case(p));
        if protected {
            self.note(
                pos,
                format!("{command}: the {name} field may not be changed; ignored"),
            );
        }
        protected
    }

    fn addheader(&mut self, frame: &Frame<'_>, args: &Args<'_>, pos: Pos) -> R<()> {
        let name = self.string(frame, args.positional(0, pos)?)?;
        let value = self.string(frame, args.positional(1, pos)?)?;
        if !valid_field_name(&name) {
            return Err(err(pos, format!("addheader: invalid field name {name:?}")));
        }
        if self.protected("addheader", &name, pos) {
            return Ok(());
        }
        // No line breaks of the script's own: they would end the field early.
        let value = encode_value(&value.replace(['\r', '\n'], " "));
        self.added_header_bytes = self
            .added_header_bytes
            .saturating_add(name.len() + value.len() + 4);
        if self.added_header_bytes > self.limits.max_header_octets {
            return Err(err(
                pos,
                format!(
                    "addheader: more than {} octets added (max_header_octets)",
                    self.limits.max_header_octets
                ),
            ));
        }
        let field = message::Field::new(&name, &value);
        if args.has("last") {
            self.headers.fields.push(field);
        } else {
            self.headers.fields.insert(0, field);
        }
        self.edited = true;
        self.snapshot = None;
        Ok(())
    }

    fn deleteheader(&mut self, frame: &mut Frame<'_>, args: &Args<'_>, pos: Pos) -> R<()> {
        let name = self.string(frame, args.positional(0, pos)?)?;
        if self.protected("deleteheader", &name, pos) {
            return Ok(());
        }
        let patterns = match args.pos.get(1) {
            Some(a) => Some((self.strings(frame, a)?, a.pos())),
            None => None,
        };
        let m = self.match_of(frame, args, pos)?;
        // Positions (in self.headers.fields) of the fields with that name.
        let positions: Vec<usize> = self
            .headers
            .fields
            .iter()
            .enumerate()
            .filter(|(_, f)| f.name.eq_ignore_ascii_case(&name))
            .map(|(i, _)| i)
            .collect();
        let candidates: Vec<usize> = match args.value("index") {
            Some(a) => {
                let n = usize::try_from(number(a)?).unwrap_or(usize::MAX);
                if n == 0 {
                    Vec::new()
                } else {
                    let idx = if args.has("last") {
                        positions.len().checked_sub(n)
                    } else {
                        Some(n - 1)
                    };
                    idx.and_then(|i| positions.get(i).copied())
                        .into_iter()
                        .collect()
                }
            }
            None => positions,
        };
        let mut doomed = Vec::new();
        for i in candidates {
            let hit = match &patterns {
                None => true,
                Some((keys, kp)) => {
                    let value = self
                        .headers
                        .fields
                        .get(i)
                        .map(|f| message::decode(f.value.trim_end()))
                        .unwrap_or_default();
                    // deleteheader does not set match variables.
                    let saved = std::mem::take(&mut frame.match_vars);
                    let r = self.match_values(frame, &m, &[value], keys, *kp);
                    frame.match_vars = saved;
                    r?
                }
            };
            if hit {
                doomed.push(i);
            }
        }
        if !doomed.is_empty() {
            let mut i = 0;
            self.headers.fields.retain(|_| {
                let keep = !doomed.contains(&i);
                i += 1;
                keep
            });
            self.edited = true;
            self.snapshot = None;
        }
        Ok(())
    }

    // ----- tests -----

    fn test(&mut self, frame: &mut Frame<'_>, t: &Test) -> R<bool> {
        self.step(t.pos)?;
        self.enter(t.pos)?;
        let r = self.test_inner(frame, t);
        self.depth -= 1;
        r
    }

    fn test_inner(&mut self, frame: &mut Frame<'_>, t: &Test) -> R<bool> {
        let args = Args::split(&t.args);
        let pos = t.pos;
        match t.name.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            "not" => {
                let inner = t
                    .tests
                    .first()
                    .ok_or_else(|| err(pos, "not without a test"))?;
                Ok(!self.test(frame, inner)?)
            }
            "allof" => {
                for sub in &t.tests {
                    if !self.test(frame, sub)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            "anyof" => {
                for sub in &t.tests {
                    if self.test(frame, sub)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            "size" => {
                let n = number(args.positional(0, pos)?)?;
                if args.has("over") {
                    Ok(self.input.size > n)
                } else if args.has("under") {
                    Ok(self.input.size < n)
                } else {
                    Err(err(pos, "size needs :over or :under"))
                }
            }
            "duplicate" => self.duplicate(frame, &args, pos),
            "exists" => {
                let names = self.strings(frame, args.positional(0, pos)?)?;
                Ok(names.iter().all(|n| self.headers.named(n).next().is_some()))
            }
            "header" => self.compare(frame, &args, pos, |cx, _, names| {
                let mut values = Vec::new();
                for n in &names {
                    for v in cx.field_values(n, &args)? {
                        values.push(message::decode(&v));
                    }
                }
                Ok(values)
            }),
            "address" => self.compare(frame, &args, pos, |cx, _, names| {
                let part = address_part_of(&args);
                let mut values = Vec::new();
                for n in &names {
                    for v in cx.field_values(n, &args)? {
                        for a in message::addresses(&v) {
                            if let Some(p) = message::address_part(&a, part, cx.input.delimiters) {
                                values.push(p);
                            }
                        }
                    }
                }
                Ok(values)
            }),
            "envelope" => self.compare(frame, &args, pos, |cx, _, parts| {
                let part = address_part_of(&args);
                let env = cx.input.envelope;
                let mut values = Vec::new();
                for p in &parts {
                    let raw: Option<&str> = if p.eq_ignore_ascii_case("from") {
                        Some(env.from.as_str())
                    } else if p.eq_ignore_ascii_case("to") {
                        Some(env.orig_to.as_deref().unwrap_or(env.to.as_str()))
                    } else if p.eq_ignore_ascii_case("auth") {
                        env.auth.as_deref()
                    } else {
                        return Err(err(pos, format!("unknown envelope part {p}")));
                    };
                    let Some(raw) = raw else { continue };
                    if raw.is_empty() {
                        // The null sender: every part is "" (RFC 5228 §5.4).
                        values.push(String::new());
                        continue;
                    }
                    if let Some(a) = message::parse_envelope_address(raw) {
                        if let Some(v) = message::address_part(&a, part, cx.input.delimiters) {
                            values.push(v);
                        }
                    }
                }
                Ok(values)
            }),
            "string" => self.compare(frame, &args, pos, |_, m, mut source| {
                if matches!(m.mt, MatchType::Count(_)) {
                    // RFC 5229 §5: empty strings are not counted.
                    source.retain(|s| !s.is_empty());
                }
                Ok(source)
            }),
            "hasflag" => {
                let m = self.match_of(frame, &args, pos)?;
                let (vars, keys_arg) = if args.pos.len() >= 2 {
                    (
                        Some(self.strings(frame, args.positional(0, pos)?)?),
                        args.positional(1, pos)?,
                    )
                } else {
                    (None, args.positional(0, pos)?)
                };
                let flags = match vars {
                    Some(names) => {
                        let mut all = Vec::new();
                        for n in names {
                            let v = self.var_get(frame, &n);
                            merge_flags(&mut all, &flag_list(&[v]));
                        }
                        all
                    }
                    None => self.flags.clone(),
                };
                let keys = self.strings(frame, keys_arg)?;
                // Keys are flag lists too, except regular expressions (which keep their
                // place for the validator's precompiled ones).
                let keys = if m.mt == MatchType::Regex {
                    keys
                } else {
                    flag_list(&keys)
                };
                self.match_values(frame, &m, &flags, &keys, keys_arg.pos())
            }
            "environment" => {
                let m = self.match_of(frame, &args, pos)?;
                let name = self.string(frame, args.positional(0, pos)?)?;
                let keys_arg = args.positional(1, pos)?;
                let keys = self.strings(frame, keys_arg)?;
                let value = self
                    .input
                    .environment
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(&name))
                    .map(|(_, v)| v.clone());
                match value {
                    Some(v) => self.match_values(frame, &m, &[v], &keys, keys_arg.pos()),
                    None => Ok(false),
                }
            }
            "mailboxexists" => {
                let names = self.strings(frame, args.positional(0, pos)?)?;
                Ok(names.iter().all(|n| self.input.host.mailbox_exists(n)))
            }
            "specialuse_exists" => {
                let (mailbox, flags_arg) = if args.pos.len() >= 2 {
                    (
                        Some(self.string(frame, args.positional(0, pos)?)?),
                        args.positional(1, pos)?,
                    )
                } else {
                    (None, args.positional(0, pos)?)
                };
                let flags = self.strings(frame, flags_arg)?;
                let host = self.input.host;
                Ok(flags.iter().all(|f| match (host.special_use(f), &mailbox) {
                    (Some(folder), Some(mb)) => folder_key(Some(&folder)) == folder_key(Some(mb)),
                    (Some(_), None) => true,
                    (None, _) => false,
                }))
            }
            "date" | "currentdate" => self.date_test(frame, t, &args),
            "body" => self.body_test(frame, &args, pos),
            other => Err(err(pos, format!("test {other} is not supported"))),
        }
    }

    fn date_test(&mut self, frame: &mut Frame<'_>, t: &Test, args: &Args<'_>) -> R<bool> {
        let pos = t.pos;
        let m = self.match_of(frame, args, pos)?;
        let zone = match args.value("zone") {
            Some(a) => {
                let z = self.string(frame, a)?;
                match date::parse_zone(&z) {
                    Some(z) => Some(z),
                    None => {
                        // RFC 5260 §4.1: an invalid zone makes the test false... we note it.
                        self.note(a.pos(), format!("invalid :zone {z}; test is false"));
                        return Ok(false);
                    }
                }
            }
            None => None,
        };
        let original = args.has("originalzone");
        let local = self.input.zone_offset_minutes;
        let shown = |d: date::DateTime| -> date::DateTime {
            match zone {
                Some(z) => d.in_zone(z),
                None if original => d,
                None => d.in_zone(local),
            }
        };
        let (dates, part_arg, keys_arg) = if t.name == "currentdate" {
            let now = date::DateTime {
                unix: self.input.now,
                offset_minutes: local,
            };
            (
                vec![shown(now)],
                args.positional(0, pos)?,
                args.positional(1, pos)?,
            )
        } else {
            let name = self.string(frame, args.positional(0, pos)?)?;
            let mut dates = Vec::new();
            for v in self.field_values(&name, args)? {
                let text = if name.eq_ignore_ascii_case("received") {
                    v.rsplit(';').next().unwrap_or("").to_string()
                } else {
                    v
                };
                if let Some(d) = date::parse(text.trim()) {
                    dates.push(shown(d));
                }
            }
            (dates, args.positional(1, pos)?, args.positional(2, pos)?)
        };
        let part = self.string(frame, part_arg)?;
        let keys = self.strings(frame, keys_arg)?;
        let mut values = Vec::new();
        for d in dates {
            match d.part(&part) {
                Some(v) => values.push(v),
                None => return Err(err(part_arg.pos(), format!("unknown date part {part}"))),
            }
        }
        self.match_values(frame, &m, &values, &keys, keys_arg.pos())
    }

    fn body_test(&mut self, frame: &mut Frame<'_>, args: &Args<'_>, pos: Pos) -> R<bool> {
        let m = self.match_of(frame, args, pos)?;
        let transform = if args.has("raw") {
            Transform::Raw
        } else if let Some(a) = args.value("content") {
            Transform::Content(self.strings(frame, a)?)
        } else {
            Transform::Text
        };
        let keys_arg = args.positional(0, pos)?;
        let keys = self.strings(frame, keys_arg)?;
        let overlap = keys.iter().map(String::len).max().unwrap_or(0);
        let mut regexes = Vec::new();
        if m.mt == MatchType::Regex {
            for (i, k) in keys.iter().enumerate() {
                regexes.push(self.regex_for(frame.script, k, keys_arg.pos(), i, m.cmp)?);
            }
        }
        let mut reader = (self.input.body)()
            .map_err(|e| err(pos, format!("body: cannot read the message: {e}")))?;
        let capture = matches!(m.mt, MatchType::Matches | MatchType::Regex);
        let mut caps_out: Option<Vec<String>> = None;
        let mut partial_skipped = false;
        let mut visit = |text: &str, whole: bool| -> bool {
            if let MatchType::Count(_) = m.mt {
                return false;
            }
            if !whole && m.mt != MatchType::Contains {
                partial_skipped = true;
                return false;
            }
            for (i, key) in keys.iter().enumerate() {
                let mut caps = Vec::new();
                let regex = regexes.get(i).map(|r| r.as_ref());
                if matcher::matches(
                    m.cmp,
                    m.mt,
                    text,
                    key,
                    regex,
                    if capture { Some(&mut caps) } else { None },
                ) {
                    if capture {
                        caps_out = Some(caps);
                    }
                    return true;
                }
            }
            false
        };
        // `:contains` needs no whole part: it reads in 64 KiB windows (wider for longer
        // keys), which keeps a session's memory for `body` far below max_body_part.
        let window = if m.mt == MatchType::Contains {
            (64usize << 10)
                .max(overlap.saturating_mul(2).saturating_add(1))
                .min(self.limits.max_body_part.max(overlap.saturating_add(1)))
        } else {
            self.limits.max_body_part
        };
        let hit = mime::scan(&mut reader, &transform, window, overlap, &mut visit)
            .map_err(|e| err(pos, format!("body: cannot read the message: {e}")))?;
        if partial_skipped {
            self.note(
                pos,
                "body: a part larger than max_body_part was compared with :contains only",
            );
        }
        if let Some(mut caps) = caps_out {
            for c in caps.iter_mut() {
                truncate_at(c, self.limits.max_variable_size);
            }
            frame.match_vars = caps;
        }
        Ok(hit)
    }
}

fn address_part_of(args: &Args<'_>) -> AddressPart {
    let mut part = AddressPart::All;
    for (tag, _, _) in &args.tags {
        part = match *tag {
            "all" => AddressPart::All,
            "localpart" => AddressPart::LocalPart,
            "domain" => AddressPart::Domain,
            "user" => AddressPart::User,
            "detail" => AddressPart::Detail,
            _ => continue,
        };
    }
    part
}
