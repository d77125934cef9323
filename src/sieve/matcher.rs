//! Comparators (RFC 4790: `i;octet`, `i;ascii-casemap`, `i;ascii-numeric`) and match types
//! (RFC 5228 §2.7.1 `:is`/`:contains`/`:matches`, RFC 5231 `:value`/`:count`,
//! draft-ietf-sieve-regex `:regex`), with the match variables they capture (RFC 5229 §3.2).
//!
//! `:matches`: `*` matches any run of characters, `?` exactly one UTF-8 character, `\`
//! makes the next character literal. When several expansions are possible, each wildcard
//! takes the shortest expansion that lets the rest match, left to right (RFC 5229 §3.2's
//! example: `"[*] *"` on `"[acme-users] [fwd] version 1.0 is out"` gives `${1}` =
//! `acme-users`). The matcher keeps one backtracking point (the last `*`), so its work is
//! at most the product of value and pattern lengths.
//!
//! `:regex` uses the `regex` crate, not POSIX `regcomp`. Differences from POSIX ERE:
//! - alternation is leftmost-first (Perl), not leftmost-longest: `a|ab` on `ab` matches
//!   `a`, so captures can differ from a POSIX engine (whether a value matches does not);
//! - no back-references (`\1`), no look-around: the crate is linear-time;
//! - Perl classes (`\d`, `\w`, `\s`, `\b`) and escapes are understood, and `\` before a
//!   letter that is not a known escape is an error rather than the letter;
//! - POSIX bracket classes (`[[:alpha:]]`) work; collating elements (`[[.a.]]`, `[[=a=]]`)
//!   do not;
//! - with `i;ascii-casemap` the match is case-insensitive with Unicode simple case folding,
//!   a little wider than ASCII-only folding (e.g. `k` also matches the Kelvin sign);
//! - as with `regexec` without `REG_NEWLINE`, `.` matches a line feed and `^`/`$` anchor
//!   only at the ends of the value; the search is unanchored.

use std::cmp::Ordering;

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
        if name.eq_ignore_ascii_case("i;octet") {
            Some(Comparator::Octet)
        } else if name.eq_ignore_ascii_case("i;ascii-casemap") {
            Some(Comparator::AsciiCasemap)
        } else if name.eq_ignore_ascii_case("i;ascii-numeric") {
            Some(Comparator::AsciiNumeric)
        } else {
            None
        }
    }

    /// Does this comparator support substring operations (`:contains`, `:matches`,
    /// `:regex`)? RFC 4790 §9.1.1: `i;ascii-numeric` has equality and ordering only.
    pub fn supports_substring(self) -> bool {
        !matches!(self, Comparator::AsciiNumeric)
    }

    /// Are `a` and `b` equal under this comparator?
    pub fn equal(self, a: &str, b: &str) -> bool {
        match self {
            Comparator::Octet => a == b,
            Comparator::AsciiCasemap => a.eq_ignore_ascii_case(b),
            Comparator::AsciiNumeric => numeric_cmp(a, b) == Ordering::Equal,
        }
    }

    /// The ordering of `a` against `b` (RFC 4790: `i;octet` by octets, `i;ascii-casemap`
    /// by octets after upper-casing ASCII letters, `i;ascii-numeric` by number with
    /// non-numbers as positive infinity).
    pub fn compare(self, a: &str, b: &str) -> Ordering {
        match self {
            Comparator::Octet => a.as_bytes().cmp(b.as_bytes()),
            Comparator::AsciiCasemap => a
                .bytes()
                .map(|c| c.to_ascii_uppercase())
                .cmp(b.bytes().map(|c| c.to_ascii_uppercase())),
            Comparator::AsciiNumeric => numeric_cmp(a, b),
        }
    }
}

/// The leading digits of `s` without leading zeros (`Some("")` for zero), or `None`
/// (positive infinity) when `s` does not start with a digit.
fn numeric_digits(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let end = b
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(b.len());
    if end == 0 {
        return None;
    }
    let digits = s.get(..end)?;
    Some(digits.trim_start_matches('0'))
}

/// `i;ascii-numeric` ordering of arbitrarily long numbers.
fn numeric_cmp(a: &str, b: &str) -> Ordering {
    match (numeric_digits(a), numeric_digits(b)) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => x.len().cmp(&y.len()).then_with(|| x.cmp(y)),
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
        let all = [
            ("gt", Relation::Gt),
            ("ge", Relation::Ge),
            ("lt", Relation::Lt),
            ("le", Relation::Le),
            ("eq", Relation::Eq),
            ("ne", Relation::Ne),
        ];
        all.iter()
            .find(|(n, _)| name.eq_ignore_ascii_case(n))
            .map(|(_, r)| *r)
    }

    /// Does `ord` (value against key) satisfy this relation?
    pub fn holds(self, ord: Ordering) -> bool {
        match self {
            Relation::Gt => ord == Ordering::Greater,
            Relation::Ge => ord != Ordering::Less,
            Relation::Lt => ord == Ordering::Less,
            Relation::Le => ord != Ordering::Greater,
            Relation::Eq => ord == Ordering::Equal,
            Relation::Ne => ord != Ordering::Equal,
        }
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

/// The size limit a `:regex` key gets when [`matches`] has to compile it itself.
const FALLBACK_REGEX_SIZE: usize = 1 << 20;

/// Does `value` match `key`? For `:matches` and `:regex`, `captures` (when given) is
/// replaced by the match variables on success: index 0 the whole value, then each `*`/`?`
/// (or regex group) in order. `regex` is the compiled key for `:regex` (from
/// [`compile_regex`]). `:count` is not handled here (see [`count_matches`]).
///
/// For `:regex`, index 0 is the part of the value the expression matched and a group
/// that took no part in the match gives the empty string; without `regex` the key is
/// compiled here (an invalid one matches nothing). `i;ascii-numeric` supports neither
/// `:contains`, `:matches` nor `:regex` (RFC 4790 §9.1.1); they are false with it.
pub fn matches(
    cmp: Comparator,
    mt: MatchType,
    value: &str,
    key: &str,
    regex: Option<&regex::Regex>,
    captures: Option<&mut Vec<String>>,
) -> bool {
    match mt {
        MatchType::Is => cmp.equal(value, key),
        MatchType::Contains => cmp.supports_substring() && contains(cmp, value, key),
        MatchType::Value(rel) => rel.holds(cmp.compare(value, key)),
        MatchType::Count(_) => false,
        MatchType::Matches => {
            if !cmp.supports_substring() {
                return false;
            }
            let fold = cmp == Comparator::AsciiCasemap;
            match wildcard_match(value, key, fold) {
                Some(caps) => {
                    if let Some(out) = captures {
                        *out = caps;
                    }
                    true
                }
                None => false,
            }
        }
        MatchType::Regex => {
            if !cmp.supports_substring() {
                return false;
            }
            let owned;
            let re = match regex {
                Some(re) => re,
                None => match compile_regex(key, cmp, FALLBACK_REGEX_SIZE) {
                    Ok(re) => {
                        owned = re;
                        &owned
                    }
                    Err(_) => return false,
                },
            };
            match captures {
                None => re.is_match(value),
                Some(out) => match re.captures(value) {
                    Some(c) => {
                        *out = c
                            .iter()
                            .map(|g| g.map(|m| m.as_str().to_owned()).unwrap_or_default())
                            .collect();
                        true
                    }
                    None => false,
                },
            }
        }
    }
}

/// `:contains`: is `key` a substring of `value` under `cmp`? The empty key is a substring
/// of every value (RFC 5228 §2.7.1).
fn contains(cmp: Comparator, value: &str, key: &str) -> bool {
    if cmp != Comparator::AsciiCasemap {
        return value.contains(key);
    }
    let (v, k) = (value.as_bytes(), key.as_bytes());
    if k.is_empty() {
        return true;
    }
    let first = k.first().copied().unwrap_or(0);
    let (lo, hi) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
    v.windows(k.len()).any(|w| {
        let c = w.first().copied().unwrap_or(0);
        (c == lo || c == hi) && w.eq_ignore_ascii_case(k)
    })
}

/// One element of a `:matches` pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    /// A literal character.
    Lit(char),
    /// `?`: one character.
    One,
    /// `*`: any run of characters.
    Star,
}

/// Splits a `:matches` key into literals and wildcards (`\` quotes the next character; a
/// trailing `\` stands for itself).
fn wildcard_tokens(key: &str) -> Vec<Tok> {
    let mut out = Vec::with_capacity(key.len());
    let mut it = key.chars();
    while let Some(c) = it.next() {
        out.push(match c {
            '*' => Tok::Star,
            '?' => Tok::One,
            '\\' => Tok::Lit(it.next().unwrap_or('\\')),
            c => Tok::Lit(c),
        });
    }
    out
}

fn char_eq(a: char, b: char, fold: bool) -> bool {
    a == b || (fold && a.eq_ignore_ascii_case(&b))
}

/// The RFC 5228 §2.7.1 `:matches` with RFC 5229 §3.2 captures: `Some(captures)` (index 0
/// the whole value, then one per wildcard) when `value` matches `key`.
fn wildcard_match(value: &str, key: &str, fold: bool) -> Option<Vec<String>> {
    let pat = wildcard_tokens(key);
    // Character boundaries of the value: chars[i] starts at byte offsets[i].
    let chars: Vec<(usize, char)> = value.char_indices().collect();
    let n = chars.len();
    let off = |i: usize| chars.get(i).map(|&(o, _)| o).unwrap_or(value.len());
    // For each token, its number among the wildcards (meaningful for wildcards only).
    let wild_index: Vec<usize> = pat
        .iter()
        .scan(0usize, |k, t| {
            let i = *k;
            if !matches!(t, Tok::Lit(_)) {
                *k += 1;
            }
            Some(i)
        })
        .collect();
    let nwild = pat.iter().filter(|t| !matches!(t, Tok::Lit(_))).count();
    // Capture spans in character positions, per wildcard.
    let mut spans: Vec<(usize, usize)> = vec![(0, 0); nwild];
    let (mut p, mut v) = (0usize, 0usize);
    // The last star: its pattern index and the value position where it currently ends.
    let mut star: Option<(usize, usize)> = None;
    loop {
        match pat.get(p) {
            Some(Tok::Star) => {
                let w = wild_index.get(p).copied().unwrap_or(0);
                if let Some(s) = spans.get_mut(w) {
                    *s = (v, v);
                }
                star = Some((p, v));
                p += 1;
                continue;
            }
            Some(Tok::One) if v < n => {
                let w = wild_index.get(p).copied().unwrap_or(0);
                if let Some(s) = spans.get_mut(w) {
                    *s = (v, v + 1);
                }
                p += 1;
                v += 1;
                continue;
            }
            Some(Tok::Lit(c)) if chars.get(v).is_some_and(|&(_, vc)| char_eq(*c, vc, fold)) => {
                p += 1;
                v += 1;
                continue;
            }
            None if v == n => break,
            _ => {}
        }
        // Mismatch: let the last star take one more character, or fail.
        match star {
            Some((sp, sv)) if sv < n => {
                let w = wild_index.get(sp).copied().unwrap_or(0);
                let start = spans.get(w).map(|s| s.0).unwrap_or(0);
                if let Some(s) = spans.get_mut(w) {
                    *s = (start, sv + 1);
                }
                star = Some((sp, sv + 1));
                p = sp + 1;
                v = sv + 1;
            }
            _ => return None,
        }
    }
    let mut caps = Vec::with_capacity(nwild + 1);
    caps.push(value.to_owned());
    for (a, b) in spans {
        caps.push(value.get(off(a)..off(b)).unwrap_or("").to_owned());
    }
    Some(caps)
}

/// `:count`: does the number of values `count` stand in `rel` to the number in `key`
/// (compared with `cmp`, which RFC 5231 requires to be `i;ascii-numeric` for a sensible
/// result)?
pub fn count_matches(cmp: Comparator, rel: Relation, count: usize, key: &str) -> bool {
    rel.holds(cmp.compare(&count.to_string(), key))
}

/// Compiles a `:regex` key for `cmp` (case-insensitive for `i;ascii-casemap`), refusing one
/// whose compiled size would exceed `size_limit` bytes. The error is one line.
pub fn compile_regex(
    pattern: &str,
    cmp: Comparator,
    size_limit: usize,
) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .case_insensitive(cmp == Comparator::AsciiCasemap)
        .dot_matches_new_line(true)
        .size_limit(size_limit)
        .dfa_size_limit(size_limit)
        .build()
        .map_err(|e| {
            let text = e.to_string();
            let mut line: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            // The crate's multi-line errors end with the one-line reason.
            match line.pop() {
                Some(last) => format!("invalid regular expression: {last}"),
                None => "invalid regular expression".to_owned(),
            }
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn m(cmp: Comparator, mt: MatchType, value: &str, key: &str) -> bool {
        matches(cmp, mt, value, key, None, None)
    }

    fn caps(cmp: Comparator, mt: MatchType, value: &str, key: &str) -> Option<Vec<String>> {
        let mut c = vec!["stale".to_owned()];
        if matches(cmp, mt, value, key, None, Some(&mut c)) {
            Some(c)
        } else {
            assert_eq!(c, vec!["stale".to_owned()], "captures changed on failure");
            None
        }
    }

    use Comparator::{AsciiCasemap as Case, AsciiNumeric as Num, Octet};
    use MatchType::{Contains, Is, Matches, Regex};

    #[test]
    fn rfc5228_2_7_3_comparator_names() {
        assert_eq!(Comparator::from_name("i;octet"), Some(Octet));
        assert_eq!(Comparator::from_name("I;ASCII-CASEMAP"), Some(Case));
        assert_eq!(Comparator::from_name("i;ascii-numeric"), Some(Num));
        assert_eq!(Comparator::from_name("i;unicode-casemap"), None);
        assert_eq!(Relation::from_name("GE"), Some(Relation::Ge));
        assert_eq!(Relation::from_name("ne"), Some(Relation::Ne));
        assert_eq!(Relation::from_name("gte"), None);
    }

    #[test]
    fn rfc5228_2_7_3_octet_is_exact() {
        assert!(m(Octet, Is, "Frobnitzm", "Frobnitzm"));
        assert!(!m(Octet, Is, "Frobnitzm", "frobnitzm"));
        assert!(!m(Octet, Contains, "Frobnitzm", "FROB"));
    }

    #[test]
    fn rfc4790_9_2_ascii_casemap_folds_ascii_only() {
        assert!(m(Case, Is, "Frobnitzm", "FROBNITZM"));
        assert!(m(Case, Contains, "Hello World", "o wOR"));
        // Non-ASCII letters are not folded.
        assert!(!m(Case, Is, "\u{e9}t\u{e9}", "\u{c9}T\u{c9}"));
        assert!(m(Case, Is, "\u{e9}T\u{e9}", "\u{e9}t\u{e9}"));
        assert!(!m(Case, Matches, "\u{c9}", "\u{e9}"));
    }

    #[test]
    fn rfc4790_9_2_ascii_casemap_orders_upper_cased() {
        // "_" (0x5F) sorts after upper-case letters, so after "a" once folded to "A".
        assert_eq!(Case.compare("_", "a"), Ordering::Greater);
        assert_eq!(Octet.compare("_", "a"), Ordering::Less);
        assert_eq!(Case.compare("abc", "ABC"), Ordering::Equal);
    }

    #[test]
    fn rfc4790_9_1_1_ascii_numeric_leading_digits() {
        assert!(m(Num, Is, "123abc", "0123"));
        assert!(m(Num, Is, "00", "0"));
        assert!(!m(Num, Is, "12", "13"));
        assert_eq!(Num.compare("9", "10"), Ordering::Less);
        assert_eq!(
            Num.compare("99999999999999999999999", "100000000000000000000000"),
            Ordering::Less
        );
        assert_eq!(Num.compare("007", "7 days"), Ordering::Equal);
    }

    #[test]
    fn rfc4790_9_1_1_ascii_numeric_non_numbers_are_infinity() {
        assert!(m(Num, Is, "abc", "xyz"));
        assert!(m(Num, Is, "", "x"));
        assert!(!m(Num, Is, "abc", "5"));
        assert_eq!(Num.compare("abc", "99999999999"), Ordering::Greater);
        assert_eq!(Num.compare("1", " 1"), Ordering::Less);
    }

    #[test]
    fn rfc4790_9_1_1_ascii_numeric_has_no_substring_match() {
        assert!(!m(Num, Contains, "123", "2"));
        assert!(!m(Num, Matches, "123", "*"));
        assert!(!m(Num, Regex, "123", "2"));
        assert!(!Num.supports_substring());
    }

    #[test]
    fn rfc5228_2_7_1_contains_empty_key_matches_everything() {
        assert!(m(Case, Contains, "", ""));
        assert!(m(Case, Contains, "anything", ""));
        assert!(m(Octet, Contains, "anything", ""));
    }

    #[test]
    fn rfc5228_2_7_1_is_empty_key_matches_only_empty() {
        assert!(m(Case, Is, "", ""));
        assert!(!m(Case, Is, "x", ""));
        assert!(m(Case, Matches, "", ""));
        assert!(!m(Case, Matches, "x", ""));
        assert!(m(Case, Matches, "", "*"));
        assert!(!m(Case, Matches, "", "?"));
    }

    #[test]
    fn rfc5228_2_7_1_contains_is_substring() {
        assert!(m(Case, Contains, "MAKE MONEY FAST", "money"));
        assert!(!m(Case, Contains, "MAKE MONEY FAST", "moneys"));
        assert!(m(Case, Contains, "xxab", "AB"));
        assert!(!m(Case, Contains, "a", "ab"));
    }

    #[test]
    fn rfc5228_2_7_1_matches_wildcards() {
        assert!(m(Case, Matches, "frobnitzm@example.com", "*@example.com"));
        assert!(m(Case, Matches, "abc", "a?c"));
        assert!(!m(Case, Matches, "abbc", "a?c"));
        assert!(m(Case, Matches, "abbc", "a*c"));
        assert!(m(Case, Matches, "ac", "a*c"));
        assert!(!m(Case, Matches, "acd", "a*c"));
        assert!(m(Case, Matches, "ABC", "a*"));
        assert!(!m(Octet, Matches, "ABC", "a*"));
        assert!(m(Case, Matches, "aXbXc", "*x*x*"));
        assert!(m(Case, Matches, "mississippi", "*iss*ipp?"));
    }

    #[test]
    fn rfc5228_2_7_1_matches_backslash_escapes() {
        assert!(m(Case, Matches, "a*b", "a\\*b"));
        assert!(!m(Case, Matches, "axb", "a\\*b"));
        assert!(m(Case, Matches, "what?", "what\\?"));
        assert!(!m(Case, Matches, "whatx", "what\\?"));
        assert!(m(Case, Matches, "a\\b", "a\\\\b"));
        assert!(m(Case, Matches, "x\\", "x\\"));
    }

    #[test]
    fn rfc5228_2_7_1_matches_question_is_one_utf8_character() {
        assert!(m(Case, Matches, "\u{e9}", "?"));
        assert!(m(Case, Matches, "a\u{1F600}b", "a?b"));
        assert!(!m(Case, Matches, "\u{e9}", "??"));
        assert_eq!(caps(Case, Matches, "x\u{e9}y", "x?y").unwrap()[1], "\u{e9}");
    }

    #[test]
    fn rfc5229_3_2_matches_star_captures() {
        // RFC 5229 §3.2's example.
        let c = caps(
            Case,
            Matches,
            "[acme-users] [fwd] version 1.0 is out",
            "[*] *",
        )
        .unwrap();
        assert_eq!(
            c,
            vec![
                "[acme-users] [fwd] version 1.0 is out",
                "acme-users",
                "[fwd] version 1.0 is out"
            ]
        );
        let c = caps(Case, Matches, "Sieve list <sieve.example.org>", "*<*@*").map(|c| c.len());
        assert_eq!(c, None);
        let c = caps(Case, Matches, "coyote <coyote@example.org>", "*<*@*").unwrap();
        assert_eq!(
            c,
            vec![
                "coyote <coyote@example.org>",
                "coyote ",
                "coyote",
                "example.org>"
            ]
        );
    }

    #[test]
    fn rfc5229_3_2_index_zero_is_whole_value() {
        let c = caps(Case, Matches, "Hello", "h*").unwrap();
        assert_eq!(c, vec!["Hello", "ello"]);
        let c = caps(Case, Matches, "abc", "abc").unwrap();
        assert_eq!(c, vec!["abc"]);
    }

    #[test]
    fn rfc5229_3_2_matches_question_and_star_each_capture_in_order() {
        let c = caps(Case, Matches, "abcdef", "?b*e?").unwrap();
        assert_eq!(c, vec!["abcdef", "a", "cd", "f"]);
        let c = caps(Case, Matches, "ab", "a**b").unwrap();
        assert_eq!(c, vec!["ab", "", ""]);
        let c = caps(Case, Matches, "x", "*?*").unwrap();
        assert_eq!(c, vec!["x", "", "x", ""]);
    }

    #[test]
    fn rfc5229_3_2_captures_keep_value_case() {
        let c = caps(Case, Matches, "FOO.Bar", "foo.*").unwrap();
        assert_eq!(c[1], "Bar");
    }

    #[test]
    fn rfc5229_3_2_no_captures_on_failure() {
        assert_eq!(caps(Case, Matches, "abc", "x*"), None);
    }

    /// A plain recursive `:matches` (exponential, for small inputs): each wildcard tries its
    /// shortest expansion first, so the first success is the leftmost-shortest one.
    fn reference(v: &[char], p: &[Tok], caps: &mut Vec<String>) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some((Tok::Lit(c), rest)) => v.first() == Some(c) && reference(&v[1..], rest, caps),
            Some((Tok::One, rest)) => {
                if v.is_empty() {
                    return false;
                }
                caps.push(v[0].to_string());
                if reference(&v[1..], rest, caps) {
                    return true;
                }
                caps.pop();
                false
            }
            Some((Tok::Star, rest)) => {
                for k in 0..=v.len() {
                    caps.push(v[..k].iter().collect());
                    if reference(&v[k..], rest, caps) {
                        return true;
                    }
                    caps.pop();
                }
                false
            }
        }
    }

    #[test]
    fn rfc5229_3_2_captures_agree_with_a_reference_matcher() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..20_000 {
            let value: String = (0..next(8))
                .map(|_| ['a', 'b', '\u{e9}'][next(3) as usize])
                .collect();
            let key: String = (0..next(6))
                .map(|_| ['a', 'b', '*', '?'][next(4) as usize])
                .collect();
            let chars: Vec<char> = value.chars().collect();
            let mut want = vec![value.clone()];
            let ok = reference(&chars, &wildcard_tokens(&key), &mut want);
            let got = caps(Octet, Matches, &value, &key);
            assert_eq!(got.is_some(), ok, "{value:?} {key:?}");
            if let Some(got) = got {
                assert_eq!(got, want, "{value:?} {key:?}");
            }
        }
    }

    #[test]
    fn matches_work_is_bounded_on_pathological_pattern() {
        let value = "a".repeat(5000);
        let key = format!("{}b", "*a".repeat(200));
        assert!(!m(Case, Matches, &value, &key));
    }

    #[test]
    fn rfc5231_4_value_relations_use_comparator_ordering() {
        use MatchType::Value;
        assert!(m(Num, Value(Relation::Gt), "10", "9"));
        assert!(!m(Case, Value(Relation::Gt), "10", "9"));
        assert!(m(Case, Value(Relation::Lt), "apple", "Banana"));
        assert!(!m(Octet, Value(Relation::Lt), "apple", "Banana"));
        assert!(m(Num, Value(Relation::Ge), "5", "5"));
        assert!(m(Num, Value(Relation::Le), "5", "05"));
        assert!(m(Num, Value(Relation::Eq), "abc", "def"));
        assert!(m(Num, Value(Relation::Ne), "1", "2"));
        assert!(m(Num, Value(Relation::Gt), "x", "1000"));
    }

    #[test]
    fn rfc5231_5_count_compares_number_of_values() {
        assert!(count_matches(Num, Relation::Eq, 2, "2"));
        assert!(count_matches(Num, Relation::Gt, 10, "9"));
        assert!(count_matches(Num, Relation::Lt, 0, "1"));
        assert!(!count_matches(Num, Relation::Ne, 3, "3"));
        // With i;ascii-casemap the count compares as a string.
        assert!(!count_matches(Case, Relation::Gt, 10, "9"));
        assert!(!m(Num, MatchType::Count(Relation::Eq), "1", "1"));
    }

    #[test]
    fn regex_unanchored_search_and_captures() {
        let re = compile_regex("sp(a)m(x)?", Case, 1 << 20).unwrap();
        let mut c = Vec::new();
        assert!(matches(
            Case,
            Regex,
            "This is SPAM!",
            "",
            Some(&re),
            Some(&mut c)
        ));
        assert_eq!(c, vec!["SPAM", "A", ""]);
        assert!(!matches(Case, Regex, "ham", "", Some(&re), None));
    }

    #[test]
    fn regex_octet_is_case_sensitive() {
        let re = compile_regex("^yes$", Octet, 1 << 20).unwrap();
        assert!(matches(Octet, Regex, "yes", "", Some(&re), None));
        assert!(!matches(Octet, Regex, "YES", "", Some(&re), None));
    }

    #[test]
    fn regex_posix_classes_and_anchors() {
        assert!(m(Case, Regex, "X-Spam-Score: 12", "[[:digit:]]{2}$"));
        assert!(m(Case, Regex, "line1\nline2", "1.line"));
        assert!(!m(Case, Regex, "line1\nline2", "^line2"));
        assert!(m(Case, Regex, "Yes, hits=5.2", "^yes,"));
    }

    #[test]
    fn regex_compiled_without_key_when_not_given() {
        assert!(m(Case, Regex, "abc", "b"));
        assert!(!m(Case, Regex, "abc", "("));
    }

    #[test]
    fn regex_errors_are_one_line() {
        let e = compile_regex("a(b", Case, 1 << 20).unwrap_err();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.contains("unclosed"), "{e}");
    }

    #[test]
    fn regex_size_limit_refuses_large_expressions() {
        let e = compile_regex("(\\w{100}){100}", Case, 10_000).unwrap_err();
        assert!(!e.contains('\n'), "{e}");
        assert!(compile_regex("a+b", Case, 10_000).is_ok());
    }
}
