//! Comparators (RFC 4790: `i;octet`, `i;ascii-casemap`, `i;ascii-numeric`) and match types
//! (RFC 5228 §2.7.1 `:is`/`:contains`/`:matches`, RFC 5231 `:value`/`:count`,
//! draft-ietf-sieve-regex `:regex`), with the match variables they capture (RFC 5229 §3.2).

/// A comparator (RFC 5228 §2.7.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparator {
    /// `i;octet`: bytes as they are.
    Octet,
    /// `i;ascii-casemap`: ASCII letters case-folded (the default).
    AsciiCasemap,
    /// `i;ascii-numeric` (RFC 4790 §9.1.1): leading decimal digits as a number; a value
    /// without leading digits is positive infinity.
    AsciiNumeric,
}

impl Comparator {
    /// The comparator named `name` (`"i;octet"`, ...), case-insensitively.
    pub fn from_name(name: &str) -> Option<Comparator> {
        let _ = name;
        unimplemented!()
    }
}

/// A relational operator (RFC 5231 §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    /// `gt`
    Gt,
    /// `ge`
    Ge,
    /// `lt`
    Lt,
    /// `le`
    Le,
    /// `eq`
    Eq,
    /// `ne`
    Ne,
}

impl Relation {
    /// The relation named `name` (`"gt"`, ...), case-insensitively.
    pub fn from_name(name: &str) -> Option<Relation> {
        let _ = name;
        unimplemented!()
    }
}

/// A match type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchType {
    /// `:is`
    Is,
    /// `:contains`
    Contains,
    /// `:matches` (`*`, `?`, `\` escapes)
    Matches,
    /// `:regex` (POSIX extended syntax as the regex crate reads it)
    Regex,
    /// `:value <relation>`
    Value(Relation),
    /// `:count <relation>`: compares the number of values, not the values.
    Count(Relation),
}

/// Does `value` match `key`? For `:matches` and `:regex`, `captures` (when given) is
/// replaced by the match variables on success: index 0 the whole value, then each `*`/`?`
/// (or regex group) in order. `regex` is the compiled key for `:regex` (from
/// [`compile_regex`]). `:count` is not handled here (see [`count_matches`]).
pub fn matches(
    cmp: Comparator,
    mt: MatchType,
    value: &str,
    key: &str,
    regex: Option<&regex::Regex>,
    captures: Option<&mut Vec<String>>,
) -> bool {
    let _ = (cmp, mt, value, key, regex, captures);
    unimplemented!()
}

/// `:count`: does the number of values `count` stand in `rel` to the number in `key`
/// (compared with `cmp`, which RFC 5231 requires to be `i;ascii-numeric` for a sensible
/// result)?
pub fn count_matches(cmp: Comparator, rel: Relation, count: usize, key: &str) -> bool {
    let _ = (cmp, rel, count, key);
    unimplemented!()
}

/// Compiles a `:regex` key for `cmp` (case-insensitive for `i;ascii-casemap`), refusing one
/// whose compiled size would exceed `size_limit` bytes. The error is one line.
pub fn compile_regex(pattern: &str, cmp: Comparator, size_limit: usize) -> Result<regex::Regex, String> {
    let _ = (pattern, cmp, size_limit);
    unimplemented!()
}
