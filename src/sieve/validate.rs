//! The validator: checks every command, test, tag and argument of a parsed script against
//! the one table of what each command accepts and which extension it needs (RFC 5228 §3.2
//! `require`, §8.3), and prepares what the interpreter needs ([`Prepared`]).
//!
//! # What the interpreter may rely on after [`compile`] succeeded
//!
//! - Every command and test in [`Script::commands`] is one of the table's ([`SPECS`]), its
//!   extension was required, and its name is lower-case. `elsif`/`else` only follow an
//!   `if`/`elsif` of the same block; `require` only appears first, at the top level.
//! - Arguments stay in script order, as the parser produced them. All tags come first
//!   (lower-case, no colon, each at most once, at most one per group: match type,
//!   comparator, address part, `size` over/under, `:zone`/`:originalzone`, location, body
//!   transform, each `set` modifier precedence level). A tag that takes an argument is
//!   immediately followed by it: `:comparator`, `:value`, `:count`, `:specialuse`, `:zone`
//!   by a single-string [`Argument::Strings`], `:flags` and `:content` by a string list,
//!   `:index` by an [`Argument::Number`] ≥ 1 (see [`tag_takes_argument`], [`split_args`]).
//! - The positional arguments follow the tags, in the order of the RFC's syntax line, with
//!   the kinds the table gives (a "string" is `Strings` with one value and `single`). The
//!   optional ones: `setflag`/`addflag`/`removeflag` and `hasflag` take an optional *first*
//!   positional (the variable name / list; only with "variables"), `specialuse_exists` an
//!   optional first mailbox, `deleteheader` optional *last* value patterns. So a command
//!   with one positional fewer than its maximum lacks exactly that optional one.
//! - `if`/`elsif`/`not` have exactly one test, `allof`/`anyof` at least one, the others
//!   none; `if`/`elsif`/`else` have a block, no other command has one.
//! - `size` has exactly one of `:over`/`:under`; `:last` only appears with `:index`.
//! - Constant values were checked; "constant" means containing no `${` when "variables" is
//!   required (otherwise every string is constant). Comparator names are lower-cased, known
//!   and allowed; relation names (`:value`/`:count`) are lower-cased and valid; neither may
//!   contain variables. `i;ascii-numeric` is never combined with `:contains`, `:matches` or
//!   `:regex`. Constant date parts are lower-cased and known; constant `:zone` values are
//!   `+hhmm`/`-hhmm`; constant `include` names are not empty and hold no `/`; constant
//!   header field names (of `header`, `address`, `exists`, `date` and editheader) are
//!   RFC 5322 field names; constant special-use flags are `\\` and an atom; `set` names are identifiers (or
//!   `global.name` with "include"); `global` names are identifiers.
//! - Constant `:regex` keys are compiled in [`Prepared::regexes`] under the position of the
//!   key-list argument and the index of the key; a key with `${` (with "variables") is not
//!   there and must be compiled at run time.
//! - With "encoded-character", `${hex:..}`/`${unicode:..}` sequences were already decoded in
//!   every string (RFC 5228 §2.4.2.4).

use std::collections::HashMap;
use std::sync::Arc;

use super::ast::{Argument, Command, Test};
use super::matcher::{compile_regex, Comparator};
use super::{lexer, parser, CompileError, Limits, Pos, Script};

/// Per-node data prepared at compile time.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Constant `:regex` keys compiled once: by the position of the key-list argument and
    /// the index of the key in it.
    pub regexes: HashMap<(Pos, usize), Arc<regex::Regex>>,
}

/// The most errors one compile reports; the rest are dropped.
pub const MAX_ERRORS: usize = 100;

/// Compiles `source`: parse, then validate. Returns every error found (at least one).
pub fn compile(source: &[u8], limits: &Limits) -> Result<Script, Vec<CompileError>> {
    let start = Pos { line: 1, column: 1 };
    if source.len() > limits.max_script_size {
        return Err(vec![CompileError {
            pos: start,
            message: format!(
                "script is {} bytes, larger than the limit of {} bytes",
                source.len(),
                limits.max_script_size
            ),
        }]);
    }
    let text = lexer::check_utf8(source).map_err(|e| vec![e])?;
    let mut commands = parser::parse(text, limits.max_nesting).map_err(|e| vec![e])?;
    let mut v = Validator {
        requires: Vec::new(),
        errors: Vec::new(),
        prepared: Prepared::default(),
        limits,
    };
    v.collect_requires(&commands);
    if v.has("encoded-character") {
        for c in commands.iter_mut() {
            v.decode_command(c);
        }
    }
    v.block(&mut commands, true);
    if v.errors.is_empty() {
        Ok(Script {
            commands,
            requires: v.requires,
            prepared: v.prepared,
        })
    } else {
        v.errors.truncate(MAX_ERRORS);
        Err(v.errors)
    }
}

/// The kind of a positional argument or of a tag's own argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One string (`"x"`, not `["x"]`).
    Str,
    /// A string list (a single string is a list of one).
    List,
    /// A number.
    Num,
}

/// What a positional argument means, for the checks on constant values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Nothing more to check.
    Plain,
    /// The key list of a match (compiled when `:regex`).
    Keys,
    /// `require`'s extension list.
    Extensions,
    /// An editheader field name.
    FieldName,
    /// Header field names to read (`header`, `address`, `exists`, `date`).
    HeaderNames,
    /// A variable name to assign (`set`, `setflag`'s first, `global`).
    VarName,
    /// A variable name to read (`hasflag`'s variable list).
    VarRef,
    /// An `include` script name.
    ScriptName,
    /// A `date`/`currentdate` date part.
    DatePart,
    /// `envelope` parts.
    EnvelopePart,
    /// RFC 8579 special-use flags (`\\Junk`).
    SpecialUse,
}

/// Whether a positional argument must be there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opt {
    /// Always.
    Req,
    /// Optional, before the required ones.
    Lead,
    /// Optional, after the required ones.
    Trail,
}

/// One positional argument of a command or test.
#[derive(Clone, Copy, Debug)]
pub struct PosSpec {
    /// Its kind.
    pub kind: Kind,
    /// Whether it may be left out.
    pub opt: Opt,
    /// What it means.
    pub role: Role,
}

/// One tagged argument.
#[derive(Clone, Copy, Debug)]
pub struct TagSpec {
    /// The name, lower-case, without `:`.
    pub name: &'static str,
    /// The extension it needs, beyond its command's.
    pub ext: Option<&'static str>,
    /// The kind of its own argument, if it takes one.
    pub arg: Option<Kind>,
    /// At most one tag of a non-empty group (`match`, `comparator`, ...).
    pub group: &'static str,
}

/// How many tests a command or test takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tests {
    /// None.
    None,
    /// Exactly one.
    One,
    /// One or more (a test list).
    List,
}

/// One command or test of the table.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// The identifier.
    pub name: &'static str,
    /// True for a test, false for a command.
    pub test: bool,
    /// The extension it needs (`None`: base RFC 5228).
    pub ext: Option<&'static str>,
    /// Its tags, as groups of tag tables.
    pub tags: &'static [&'static [TagSpec]],
    /// A tag group one of which must be there (`size`).
    pub required_group: Option<&'static str>,
    /// Its positional arguments in order.
    pub positional: &'static [PosSpec],
    /// Its tests.
    pub tests: Tests,
    /// Whether it takes a block.
    pub block: bool,
}

const fn tag(
    name: &'static str,
    ext: Option<&'static str>,
    arg: Option<Kind>,
    group: &'static str,
) -> TagSpec {
    TagSpec {
        name,
        ext,
        arg,
        group,
    }
}

const fn req(kind: Kind, role: Role) -> PosSpec {
    PosSpec {
        kind,
        opt: Opt::Req,
        role,
    }
}

const MATCH: &[TagSpec] = &[
    tag("is", None, None, "match"),
    tag("contains", None, None, "match"),
    tag("matches", None, None, "match"),
    tag("regex", Some("regex"), None, "match"),
    tag("value", Some("relational"), Some(Kind::Str), "match"),
    tag("count", Some("relational"), Some(Kind::Str), "match"),
];
const COMPARATOR: &[TagSpec] = &[tag("comparator", None, Some(Kind::Str), "comparator")];
const ADDRESS_PART: &[TagSpec] = &[
    tag("all", None, None, "address part"),
    tag("localpart", None, None, "address part"),
    tag("domain", None, None, "address part"),
    tag("user", Some("subaddress"), None, "address part"),
    tag("detail", Some("subaddress"), None, "address part"),
];
const INDEX: &[TagSpec] = &[
    tag("index", Some("index"), Some(Kind::Num), ""),
    tag("last", Some("index"), None, ""),
];
const FLAGS: &[TagSpec] = &[tag("flags", Some("imap4flags"), Some(Kind::List), "")];
const COPY: &[TagSpec] = &[tag("copy", Some("copy"), None, "")];
const FILEINTO: &[TagSpec] = &[
    tag("create", Some("mailbox"), None, ""),
    tag("specialuse", Some("special-use"), Some(Kind::Str), ""),
];
const SIZE: &[TagSpec] = &[
    tag("over", None, None, "size"),
    tag("under", None, None, "size"),
];
const BODY: &[TagSpec] = &[
    tag("raw", None, None, "transform"),
    tag("content", None, Some(Kind::List), "transform"),
    tag("text", None, None, "transform"),
];
const SET: &[TagSpec] = &[
    tag("lower", None, None, "modifier 40"),
    tag("upper", None, None, "modifier 40"),
    tag("lowerfirst", None, None, "modifier 30"),
    tag("upperfirst", None, None, "modifier 30"),
    tag("quotewildcard", None, None, "modifier 20"),
    tag("quoteregex", Some("regex"), None, "modifier 20"),
    tag("length", None, None, "modifier 10"),
];
const ZONE: &[TagSpec] = &[
    tag("zone", None, Some(Kind::Str), "zone"),
    tag("originalzone", None, None, "zone"),
];
const CURRENT_ZONE: &[TagSpec] = &[tag("zone", None, Some(Kind::Str), "zone")];
const INCLUDE: &[TagSpec] = &[
    tag("personal", None, None, "location"),
    tag("global", None, None, "location"),
    tag("once", None, None, ""),
    tag("optional", None, None, ""),
];
const LAST: &[TagSpec] = &[tag("last", None, None, "")];
const VACATION: &[TagSpec] = &[
    tag("days", None, Some(Kind::Num), "period"),
    tag(
        "seconds",
        Some("vacation-seconds"),
        Some(Kind::Num),
        "period",
    ),
    tag("subject", None, Some(Kind::Str), ""),
    tag("from", None, Some(Kind::Str), ""),
    tag("addresses", None, Some(Kind::List), ""),
    tag("mime", None, None, ""),
    tag("handle", None, Some(Kind::Str), ""),
];
const DUPLICATE: &[TagSpec] = &[
    tag("handle", None, Some(Kind::Str), ""),
    tag("header", None, Some(Kind::Str), "unique id"),
    tag("uniqueid", None, Some(Kind::Str), "unique id"),
    tag("seconds", None, Some(Kind::Num), ""),
    tag("last", None, None, ""),
];
const DELETE_INDEX: &[TagSpec] = &[
    tag("index", None, Some(Kind::Num), ""),
    tag("last", None, None, ""),
];

const STR: PosSpec = req(Kind::Str, Role::Plain);
const LIST: PosSpec = req(Kind::List, Role::Plain);
const KEYS: PosSpec = req(Kind::List, Role::Keys);
const HEADERS: PosSpec = req(Kind::List, Role::HeaderNames);

const fn command(
    name: &'static str,
    ext: Option<&'static str>,
    tags: &'static [&'static [TagSpec]],
    positional: &'static [PosSpec],
) -> Spec {
    Spec {
        name,
        test: false,
        ext,
        tags,
        required_group: None,
        positional,
        tests: Tests::None,
        block: false,
    }
}

const fn test(
    name: &'static str,
    ext: Option<&'static str>,
    tags: &'static [&'static [TagSpec]],
    positional: &'static [PosSpec],
) -> Spec {
    let mut spec = command(name, ext, tags, positional);
    spec.test = true;
    spec
}

const FLAG_COMMAND: &[PosSpec] = &[
    PosSpec {
        kind: Kind::Str,
        opt: Opt::Lead,
        role: Role::VarName,
    },
    LIST,
];

/// Every command and test the engine knows, with what it accepts.
pub const SPECS: &[Spec] = &[
    // RFC 5228 §3, §4
    command("require", None, &[], &[req(Kind::List, Role::Extensions)]),
    Spec {
        tests: Tests::One,
        block: true,
        ..command("if", None, &[], &[])
    },
    Spec {
        tests: Tests::One,
        block: true,
        ..command("elsif", None, &[], &[])
    },
    Spec {
        block: true,
        ..command("else", None, &[], &[])
    },
    command("stop", None, &[], &[]),
    command("keep", None, &[FLAGS], &[]),
    command("discard", None, &[], &[]),
    command("redirect", None, &[COPY], &[STR]),
    command(
        "fileinto",
        Some("fileinto"),
        &[COPY, FLAGS, FILEINTO],
        &[STR],
    ),
    // RFC 5230, RFC 6131
    command("vacation", Some("vacation"), &[VACATION], &[STR]),
    // RFC 5429
    command("reject", Some("reject"), &[], &[STR]),
    command("ereject", Some("ereject"), &[], &[STR]),
    // RFC 5232
    command("setflag", Some("imap4flags"), &[], FLAG_COMMAND),
    command("addflag", Some("imap4flags"), &[], FLAG_COMMAND),
    command("removeflag", Some("imap4flags"), &[], FLAG_COMMAND),
    // RFC 5229
    command(
        "set",
        Some("variables"),
        &[SET],
        &[req(Kind::Str, Role::VarName), STR],
    ),
    // RFC 6609
    command(
        "include",
        Some("include"),
        &[INCLUDE],
        &[req(Kind::Str, Role::ScriptName)],
    ),
    command("return", Some("include"), &[], &[]),
    command(
        "global",
        Some("include"),
        &[],
        &[req(Kind::List, Role::VarName)],
    ),
    // RFC 5293
    command(
        "addheader",
        Some("editheader"),
        &[LAST],
        &[req(Kind::Str, Role::FieldName), STR],
    ),
    command(
        "deleteheader",
        Some("editheader"),
        &[DELETE_INDEX, COMPARATOR, MATCH],
        &[
            req(Kind::Str, Role::FieldName),
            PosSpec {
                kind: Kind::List,
                opt: Opt::Trail,
                role: Role::Keys,
            },
        ],
    ),
    // RFC 5228 §5
    test(
        "address",
        None,
        &[COMPARATOR, ADDRESS_PART, MATCH, INDEX],
        &[HEADERS, KEYS],
    ),
    test(
        "header",
        None,
        &[COMPARATOR, MATCH, INDEX],
        &[HEADERS, KEYS],
    ),
    test(
        "envelope",
        Some("envelope"),
        &[COMPARATOR, ADDRESS_PART, MATCH],
        &[req(Kind::List, Role::EnvelopePart), KEYS],
    ),
    test("exists", None, &[], &[HEADERS]),
    Spec {
        required_group: Some("size"),
        ..test("size", None, &[SIZE], &[req(Kind::Num, Role::Plain)])
    },
    test("true", None, &[], &[]),
    test("false", None, &[], &[]),
    Spec {
        tests: Tests::One,
        ..test("not", None, &[], &[])
    },
    Spec {
        tests: Tests::List,
        ..test("allof", None, &[], &[])
    },
    Spec {
        tests: Tests::List,
        ..test("anyof", None, &[], &[])
    },
    // RFC 5232
    test(
        "hasflag",
        Some("imap4flags"),
        &[COMPARATOR, MATCH],
        &[
            PosSpec {
                kind: Kind::List,
                opt: Opt::Lead,
                role: Role::VarRef,
            },
            KEYS,
        ],
    ),
    // RFC 5173
    test("body", Some("body"), &[COMPARATOR, MATCH, BODY], &[KEYS]),
    // RFC 5229
    test(
        "string",
        Some("variables"),
        &[COMPARATOR, MATCH],
        &[LIST, KEYS],
    ),
    // RFC 5490
    test("mailboxexists", Some("mailbox"), &[], &[LIST]),
    // RFC 5260
    test(
        "date",
        Some("date"),
        &[ZONE, COMPARATOR, MATCH, INDEX],
        &[
            req(Kind::Str, Role::HeaderNames),
            req(Kind::Str, Role::DatePart),
            KEYS,
        ],
    ),
    test(
        "currentdate",
        Some("date"),
        &[CURRENT_ZONE, COMPARATOR, MATCH],
        &[req(Kind::Str, Role::DatePart), KEYS],
    ),
    // RFC 5183
    test(
        "environment",
        Some("environment"),
        &[COMPARATOR, MATCH],
        &[STR, KEYS],
    ),
    // RFC 7352
    test("duplicate", Some("duplicate"), &[DUPLICATE], &[]),
    // RFC 8579
    test(
        "specialuse_exists",
        Some("special-use"),
        &[],
        &[
            PosSpec {
                kind: Kind::Str,
                opt: Opt::Lead,
                role: Role::Plain,
            },
            req(Kind::List, Role::SpecialUse),
        ],
    ),
];

/// Is `v` usable as vacation's `:from`: an addr-spec, or `phrase <addr-spec>`?
pub fn valid_from(v: &str) -> bool {
    let v = v.trim();
    match (v.rfind('<'), v.ends_with('>')) {
        (Some(i), true) => crate::sieve::interp::redirect_address(&v[i..]).is_some(),
        _ => crate::sieve::interp::redirect_address(v).is_some(),
    }
}

/// The extensions `require` accepts.
pub const EXTENSIONS: &[&str] = &[
    "fileinto",
    "reject",
    "ereject",
    "envelope",
    "encoded-character",
    "subaddress",
    "copy",
    "imap4flags",
    "body",
    "variables",
    "relational",
    "comparator-i;ascii-numeric",
    "comparator-i;octet",
    "comparator-i;ascii-casemap",
    "mailbox",
    "date",
    "index",
    "include",
    "regex",
    "environment",
    "editheader",
    "special-use",
    "vacation",
    "vacation-seconds",
    "duplicate",
];

/// Extensions known but not implemented yet: `require` of one is a clear error.
pub const NOT_YET: &[&str] = &[
    "enotify",
    "notify",
    "ihave",
    "spamtest",
    "spamtestplus",
    "virustest",
    "foreverypart",
    "mime",
    "extracttext",
    "extlists",
    "convert",
    "imapsieve",
    "mboxmetadata",
    "servermetadata",
    "fcc",
    "envelope-dsn",
    "envelope-deliverby",
    "redirect-dsn",
    "redirect-deliverby",
    "enclose",
    "replace",
    "imapflags",
];

/// The date parts of RFC 5260 §4.
pub const DATE_PARTS: &[&str] = &[
    "year", "month", "day", "date", "julian", "hour", "minute", "second", "time", "iso8601",
    "std11", "zone", "weekday",
];

/// Does the tag `name` take an argument of its own (the next argument)? The same for every
/// command that accepts the tag.
pub fn tag_takes_argument(name: &str) -> bool {
    matches!(
        name,
        "comparator"
            | "value"
            | "count"
            | "flags"
            | "specialuse"
            | "content"
            | "zone"
            | "index"
            | "days"
            | "seconds"
            | "subject"
            | "from"
            | "addresses"
            | "handle"
            | "header"
            | "uniqueid"
    )
}

/// The arguments of a validated command or test, split into tags and positionals.
#[derive(Debug, Default)]
pub struct SplitArgs<'a> {
    /// Each tag with its own argument, if it takes one.
    pub tags: Vec<(&'a str, Option<&'a Argument>)>,
    /// The positional arguments in order.
    pub positional: Vec<&'a Argument>,
}

impl<'a> SplitArgs<'a> {
    /// Is tag `name` there?
    pub fn has(&self, name: &str) -> bool {
        self.tags.iter().any(|(n, _)| *n == name)
    }

    /// The argument of tag `name`, when the tag is there and takes one.
    pub fn tag_arg(&self, name: &str) -> Option<&'a Argument> {
        self.tags
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, a)| *a)
    }
}

/// Splits `args` (of a validated command or test) into tags and positionals.
pub fn split_args(args: &[Argument]) -> SplitArgs<'_> {
    let mut out = SplitArgs::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a {
            Argument::Tag { name, .. } => {
                let own = if tag_takes_argument(name) {
                    it.next()
                } else {
                    None
                };
                out.tags.push((name.as_str(), own));
            }
            other => out.positional.push(other),
        }
    }
    out
}

struct Validator<'l> {
    requires: Vec<String>,
    errors: Vec<CompileError>,
    prepared: Prepared,
    limits: &'l Limits,
}

fn is_identifier(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// RFC 5229 §3 `variable-name = num-variable / identifier *("." identifier)`.
fn is_variable_name(s: &str) -> bool {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())) || s.split('.').all(is_identifier)
}

/// RFC 5322 §3.6.8 field-name: printable US-ASCII except `:`.
fn is_field_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// RFC 6154 use-attr: `\\` then an IMAP atom (no controls, space or `(){%*"\\]`).
fn is_special_use(s: &str) -> bool {
    s.strip_prefix('\\').is_some_and(|a| {
        !a.is_empty()
            && a.bytes()
                .all(|b| (33..=126).contains(&b) && !b"(){%*\"\\]".contains(&b))
    })
}

fn is_zone(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 5
        && matches!(b.first(), Some(b'+' | b'-'))
        && b.iter().skip(1).all(u8::is_ascii_digit)
        && matches!(b.get(3), Some(b'0'..=b'5'))
}

/// `message` as one line of at most [`MAX_MESSAGE`] characters: control characters
/// escaped (a script's value may hold line breaks), the rest cut with `...`.
fn one_line(message: &str) -> String {
    let mut out = String::new();
    for (n, c) in message.chars().enumerate() {
        if n >= MAX_MESSAGE {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The longest error message, in characters.
pub const MAX_MESSAGE: usize = 200;

fn strings(a: &Argument) -> &[String] {
    match a {
        Argument::Strings { values, .. } => values,
        _ => &[],
    }
}

fn kind_name(a: &Argument) -> &'static str {
    match a {
        Argument::Strings { single: true, .. } => "a string",
        Argument::Strings { .. } => "a string list",
        Argument::Number { .. } => "a number",
        Argument::Tag { .. } => "a tag",
    }
}

fn fits(kind: Kind, a: &Argument) -> bool {
    matches!(
        (kind, a),
        (Kind::Str, Argument::Strings { single: true, .. })
            | (Kind::List, Argument::Strings { .. })
            | (Kind::Num, Argument::Number { .. })
    )
}

fn kind_text(k: Kind) -> &'static str {
    match k {
        Kind::Str => "a string",
        Kind::List => "a string list",
        Kind::Num => "a number",
    }
}

/// Decodes RFC 5228 §2.4.2.4 encoded characters in `s`. A sequence not matching the
/// grammar is left as it is; a bad code point or invalid UTF-8 is an error.
fn decode_encoded(s: &str) -> Result<Option<String>, String> {
    if !s.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut changed = false;
    while let Some(i) = rest.find("${") {
        out.push_str(rest.get(..i).unwrap_or(""));
        let after = rest.get(i + 2..).unwrap_or("");
        let (unicode, prefix) = if after
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("hex:"))
        {
            (false, 4)
        } else if after
            .get(..8)
            .is_some_and(|p| p.eq_ignore_ascii_case("unicode:"))
        {
            (true, 8)
        } else {
            out.push_str("${");
            rest = after;
            continue;
        };
        let tail = after.get(prefix..).unwrap_or("");
        // The body is hex digits and blanks up to `}`; it stops at the first other
        // character, so a failed attempt costs no more than the characters it looked at.
        let len = tail
            .bytes()
            .take_while(|b| b.is_ascii_hexdigit() || matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            .count();
        let body = tail.get(..len).unwrap_or("");
        let groups: Vec<&str> = body
            .split([' ', '\t', '\r', '\n'])
            .filter(|g| !g.is_empty())
            .collect();
        let well_formed = tail.get(len..).is_some_and(|t| t.starts_with('}'))
            && !groups.is_empty()
            && (unicode || groups.iter().all(|g| g.len() <= 2));
        if !well_formed {
            out.push_str("${");
            rest = after;
            continue;
        }
        if unicode {
            for g in groups {
                let trimmed = g.trim_start_matches('0');
                let cp = match trimmed {
                    "" => Some(0),
                    t if t.len() <= 6 => u32::from_str_radix(t, 16).ok(),
                    _ => None,
                };
                match cp.and_then(char::from_u32) {
                    Some(c) => out.push(c),
                    None => return Err(format!("encoded character: invalid code point {g}")),
                }
            }
        } else {
            let bytes: Vec<u8> = groups
                .iter()
                .filter_map(|g| u8::from_str_radix(g, 16).ok())
                .collect();
            match String::from_utf8(bytes) {
                Ok(t) => out.push_str(&t),
                Err(_) => return Err("encoded character: ${hex:...} is not valid UTF-8".to_owned()),
            }
        }
        changed = true;
        rest = tail.get(len + 1..).unwrap_or("");
    }
    out.push_str(rest);
    Ok(changed.then_some(out))
}

impl Validator<'_> {
    fn has(&self, ext: &str) -> bool {
        self.requires.iter().any(|r| r == ext)
    }

    fn error(&mut self, pos: Pos, message: impl Into<String>) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(CompileError {
                pos,
                message: one_line(&message.into()),
            });
        }
    }

    /// Is `s` free of variable references (RFC 5229: only special with "variables")?
    fn constant(&self, s: &str) -> bool {
        !(self.has("variables") && s.contains("${"))
    }

    /// Every top-level `require`'s extensions; misplaced ones are reported by [`Self::block`].
    fn collect_requires(&mut self, cmds: &[Command]) {
        for c in cmds.iter().filter(|c| c.name == "require") {
            for a in &c.args {
                for v in strings(a) {
                    // Only known names are kept: the list stays short whatever the script.
                    let ext = v.to_ascii_lowercase();
                    if EXTENSIONS.contains(&ext.as_str()) && !self.requires.contains(&ext) {
                        self.requires.push(ext);
                    }
                }
            }
        }
    }

    fn decode_args(&mut self, args: &mut [Argument]) {
        for a in args {
            if let Argument::Strings { values, pos, .. } = a {
                let pos = *pos;
                for v in values.iter_mut() {
                    match decode_encoded(v) {
                        Ok(Some(d)) => *v = d,
                        Ok(None) => {}
                        Err(e) => self.error(pos, e),
                    }
                }
            }
        }
    }

    fn decode_test(&mut self, t: &mut Test) {
        self.decode_args(&mut t.args);
        for t in t.tests.iter_mut() {
            self.decode_test(t);
        }
    }

    fn decode_command(&mut self, c: &mut Command) {
        if c.name == "require" {
            return;
        }
        self.decode_args(&mut c.args);
        for t in c.tests.iter_mut() {
            self.decode_test(t);
        }
        if let Some(b) = c.block.as_mut() {
            for c in b.iter_mut() {
                self.decode_command(c);
            }
        }
    }

    fn block(&mut self, cmds: &mut [Command], top: bool) {
        let mut seen_other = false;
        let mut prev: Option<String> = None;
        for c in cmds.iter_mut() {
            if c.name == "require" {
                if !top || seen_other {
                    self.error(
                        c.pos,
                        "'require' must come before other commands (RFC 5228 §3.2)",
                    );
                }
            } else {
                seen_other = true;
            }
            if (c.name == "elsif" || c.name == "else")
                && !matches!(prev.as_deref(), Some("if" | "elsif"))
            {
                self.error(c.pos, format!("'{}' must follow 'if' or 'elsif'", c.name));
            }
            self.command(c);
            prev = Some(c.name.clone());
        }
    }

    fn command(&mut self, c: &mut Command) {
        let Some(spec) = SPECS.iter().find(|s| s.name == c.name) else {
            self.error(c.pos, format!("unknown command '{}'", c.name));
            return;
        };
        if spec.test {
            self.error(c.pos, format!("'{}' is a test, not a command", c.name));
            return;
        }
        self.node(spec, c.pos, &mut c.args, c.tests.len());
        if c.name == "require" {
            self.require(&c.args);
        }
        for t in c.tests.iter_mut() {
            self.test(t);
        }
        match (&mut c.block, spec.block) {
            (Some(b), true) => self.block(b, false),
            (None, true) => self.error(c.pos, format!("'{}' needs a block", c.name)),
            (Some(_), false) => {
                self.error(c.pos, format!("'{}' takes no block; expected ';'", c.name))
            }
            (None, false) => {}
        }
    }

    fn test(&mut self, t: &mut Test) {
        let Some(spec) = SPECS.iter().find(|s| s.name == t.name) else {
            self.error(t.pos, format!("unknown test '{}'", t.name));
            return;
        };
        if !spec.test {
            self.error(t.pos, format!("'{}' is a command, not a test", t.name));
            return;
        }
        self.node(spec, t.pos, &mut t.args, t.tests.len());
        for t in t.tests.iter_mut() {
            self.test(t);
        }
    }

    fn require(&mut self, args: &[Argument]) {
        for a in args {
            for v in strings(a) {
                let ext = v.to_ascii_lowercase();
                if NOT_YET.contains(&ext.as_str()) {
                    self.error(a.pos(), format!("extension \"{v}\" is not supported yet"));
                } else if !EXTENSIONS.contains(&ext.as_str()) {
                    self.error(
                        a.pos(),
                        format!("unknown extension \"{v}\" (RFC 5228 §3.2)"),
                    );
                }
            }
        }
    }

    /// Checks one command or test against its spec (tags, positionals, test count) and the
    /// constant values; lower-cases the values the interpreter compares by name.
    fn node(&mut self, spec: &Spec, pos: Pos, args: &mut [Argument], ntests: usize) {
        let name = spec.name;
        if let Some(ext) = spec.ext {
            if !self.has(ext) {
                self.error(pos, format!("'{name}' needs require \"{ext}\""));
            }
        }
        if name == "global" && !self.has("variables") {
            self.error(pos, "'global' needs require \"variables\" (RFC 6609 §3.3)");
        }
        // Tags.
        let mut seen: Vec<(&'static TagSpec, Option<usize>)> = Vec::new();
        let mut positional: Vec<usize> = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let (tag_name, tpos) = match args.get(i) {
                Some(Argument::Tag { name, pos }) => (name.clone(), *pos),
                Some(_) => {
                    positional.push(i);
                    i += 1;
                    continue;
                }
                None => break,
            };
            i += 1;
            if !positional.is_empty() {
                self.error(
                    tpos,
                    format!(
                        "tag ':{tag_name}' must come before the positional arguments of '{name}'"
                    ),
                );
            }
            let Some(ts) = spec
                .tags
                .iter()
                .flat_map(|g| g.iter())
                .find(|t| t.name == tag_name)
            else {
                self.error(tpos, format!("unknown tag ':{tag_name}' for '{name}'"));
                continue;
            };
            if let Some(ext) = ts.ext {
                if !self.has(ext) {
                    self.error(tpos, format!("':{tag_name}' needs require \"{ext}\""));
                }
            }
            if seen.iter().any(|(s, _)| s.name == ts.name) {
                self.error(tpos, format!("':{tag_name}' given twice"));
            } else if !ts.group.is_empty() && seen.iter().any(|(s, _)| s.group == ts.group) {
                self.error(
                    tpos,
                    format!("only one {} allowed (':{tag_name}')", ts.group),
                );
            }
            let mut own = None;
            if let Some(kind) = ts.arg {
                match args.get(i) {
                    Some(a) if fits(kind, a) => {
                        own = Some(i);
                        i += 1;
                    }
                    Some(a) => {
                        let found = kind_name(a);
                        self.error(
                            a.pos(),
                            format!(
                                "':{tag_name}' needs {} argument, found {found}",
                                kind_text(kind)
                            ),
                        );
                        if !matches!(a, Argument::Tag { .. }) {
                            i += 1;
                        }
                    }
                    None => self.error(
                        tpos,
                        format!("':{tag_name}' needs {} argument", kind_text(kind)),
                    ),
                }
            }
            seen.push((ts, own));
        }
        if let Some(g) = spec.required_group {
            if !seen.iter().any(|(s, _)| s.group == g) {
                let names: Vec<String> = spec
                    .tags
                    .iter()
                    .flat_map(|t| t.iter())
                    .filter(|t| t.group == g)
                    .map(|t| format!(":{}", t.name))
                    .collect();
                self.error(pos, format!("'{name}' needs one of {}", names.join(" or ")));
            }
        }
        let has_tag = |n: &str| seen.iter().any(|(s, _)| s.name == n);
        if has_tag("last") && !has_tag("index") && name != "addheader" && name != "duplicate" {
            self.error(pos, "':last' needs ':index'");
        }
        // Positionals: match the given count to the spec's optional ones.
        let required = spec.positional.iter().filter(|p| p.opt == Opt::Req).count();
        let optional = spec.positional.len() - required;
        let n = positional.len();
        let mut matched: Vec<(PosSpec, usize)> = Vec::new();
        if n < required || n > spec.positional.len() {
            let expect = if optional == 0 {
                format!("{required}")
            } else {
                format!("{required} to {}", spec.positional.len())
            };
            self.error(
                pos,
                format!("'{name}' takes {expect} positional argument(s), found {n}"),
            );
        } else {
            let mut extra = n - required;
            let mut given = positional.iter();
            for p in spec.positional {
                if p.opt != Opt::Req {
                    if extra == 0 {
                        continue;
                    }
                    extra -= 1;
                }
                if let Some(&idx) = given.next() {
                    matched.push((*p, idx));
                }
            }
        }
        for &(p, idx) in &matched {
            if let Some(a) = args.get(idx) {
                if !fits(p.kind, a) {
                    let found = kind_name(a);
                    self.error(
                        a.pos(),
                        format!("'{name}' expects {} here, found {found}", kind_text(p.kind)),
                    );
                }
            }
        }
        // Tests.
        match spec.tests {
            Tests::None if ntests > 0 => self.error(pos, format!("'{name}' takes no test")),
            Tests::One if ntests != 1 => self.error(
                pos,
                format!("'{name}' takes exactly one test, found {ntests}"),
            ),
            Tests::List if ntests == 0 => {
                self.error(pos, format!("'{name}' needs a list of tests"))
            }
            _ => {}
        }
        // Values of tags.
        let mut comparator = Comparator::AsciiCasemap;
        for &(ts, own) in &seen {
            let Some(Argument::Strings {
                values, pos: apos, ..
            }) = own.and_then(|o| args.get_mut(o))
            else {
                if let Some(Argument::Number { value, pos: npos }) = own.and_then(|o| args.get(o)) {
                    if ts.name == "index" && *value == 0 {
                        let npos = *npos;
                        self.error(npos, "':index' counts from 1");
                    }
                }
                continue;
            };
            let apos = *apos;
            let Some(v) = values.first_mut() else {
                continue;
            };
            match ts.name {
                "comparator" => {
                    let lower = v.to_ascii_lowercase();
                    match Comparator::from_name(&lower) {
                        Some(Comparator::AsciiNumeric)
                            if !self
                                .requires
                                .iter()
                                .any(|r| r == "comparator-i;ascii-numeric") =>
                        {
                            self.error(apos, "comparator \"i;ascii-numeric\" needs require \"comparator-i;ascii-numeric\"");
                        }
                        Some(c) => comparator = c,
                        None => self.error(apos, format!("unknown comparator \"{v}\"")),
                    }
                    *v = lower;
                }
                "value" | "count" => {
                    let lower = v.to_ascii_lowercase();
                    if !matches!(lower.as_str(), "gt" | "ge" | "lt" | "le" | "eq" | "ne") {
                        self.error(
                            apos,
                            format!("unknown relation \"{v}\" (gt, ge, lt, le, eq or ne)"),
                        );
                    }
                    *v = lower;
                }
                "from" if name == "vacation" && self.constant(v) && !valid_from(v) => {
                    self.error(
                        apos,
                        format!("vacation :from \"{v}\" is not an address (RFC 5230 §4.4)"),
                    );
                }
                "specialuse" if self.constant(v) && !is_special_use(v) => {
                    self.error(
                        apos,
                        format!(
                            "invalid special-use flag \"{v}\" (RFC 8579: a backslash and an atom)"
                        ),
                    );
                }
                "zone" if self.constant(v) && !is_zone(v) => {
                    self.error(apos, format!("invalid time zone \"{v}\" (+hhmm or -hhmm)"));
                }
                _ => {}
            }
        }
        let match_tag = seen
            .iter()
            .find(|(s, _)| s.group == "match")
            .map(|(s, _)| s.name);
        if comparator == Comparator::AsciiNumeric
            && matches!(match_tag, Some("contains" | "matches" | "regex"))
        {
            self.error(
                pos,
                format!(
                    "comparator \"i;ascii-numeric\" cannot do ':{}' (RFC 4790 §9.1.1)",
                    match_tag.unwrap_or("")
                ),
            );
        }
        if matches!(name, "setflag" | "addflag" | "removeflag" | "hasflag")
            && n == spec.positional.len()
            && !self.has("variables")
        {
            self.error(
                pos,
                format!("the variable argument of '{name}' needs require \"variables\""),
            );
        }
        // Values of positionals.
        for &(p, idx) in &matched {
            let Some(Argument::Strings {
                values, pos: apos, ..
            }) = args.get_mut(idx)
            else {
                continue;
            };
            let apos = *apos;
            let vars = self.has("variables");
            let include = self.has("include");
            for (k, v) in values.iter_mut().enumerate() {
                let constant = !(vars && v.contains("${"));
                match p.role {
                    Role::Plain if name == "redirect" && constant => {
                        if crate::sieve::interp::redirect_address(v).is_none() {
                            self.error(
                                apos,
                                format!("redirect \"{v}\" is not a valid address (RFC 5228 §4.2)"),
                            );
                        }
                    }
                    Role::Plain | Role::Extensions => {}
                    Role::Keys => {
                        if match_tag == Some("regex")
                            && constant
                            && comparator != Comparator::AsciiNumeric
                        {
                            match compile_regex(v, comparator, self.limits.max_regex_size) {
                                Ok(re) => {
                                    self.prepared.regexes.insert((apos, k), Arc::new(re));
                                }
                                Err(e) => self.error(apos, e),
                            }
                        }
                    }
                    Role::SpecialUse => {
                        if constant && !is_special_use(v) {
                            self.error(
                                apos,
                                format!(
                                    "invalid special-use flag \"{v}\" (RFC 8579: a backslash and an atom)"
                                ),
                            );
                        }
                    }
                    Role::HeaderNames => {
                        if constant && !is_field_name(v) {
                            self.error(
                                apos,
                                format!("invalid header field name \"{v}\" (RFC 5228 §2.4.2.2)"),
                            );
                        }
                    }
                    Role::FieldName => {
                        if constant && !is_field_name(v) {
                            self.error(apos, format!("invalid header field name \"{v}\""));
                        }
                    }
                    Role::VarName => {
                        let ok = is_identifier(v)
                            || (name == "set"
                                && include
                                && v.get(..7)
                                    .is_some_and(|p| p.eq_ignore_ascii_case("global."))
                                && v.get(7..).is_some_and(is_identifier));
                        if !ok {
                            self.error(apos, format!("invalid variable name \"{v}\""));
                        }
                    }
                    Role::VarRef => {
                        if constant && !is_variable_name(v) {
                            self.error(apos, format!("invalid variable name \"{v}\""));
                        }
                    }
                    Role::ScriptName => {
                        if constant && (v.is_empty() || v.contains('/')) {
                            self.error(
                                apos,
                                format!("invalid script name \"{v}\" (empty or with '/')"),
                            );
                        }
                    }
                    Role::DatePart => {
                        if constant {
                            let lower = v.to_ascii_lowercase();
                            if DATE_PARTS.contains(&lower.as_str()) {
                                *v = lower;
                            } else {
                                self.error(apos, format!("unknown date part \"{v}\""));
                            }
                        }
                    }
                    Role::EnvelopePart => {
                        if constant
                            && !matches!(v.to_ascii_lowercase().as_str(), "from" | "to" | "auth")
                        {
                            self.error(
                                apos,
                                format!("unknown envelope part \"{v}\" (from, to or auth)"),
                            );
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests;
