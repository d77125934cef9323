//! The message as tests see it: the header section split into fields (RFC 5322 §2.2, folding
//! undone), values decoded per RFC 2047 (RFC 5228 §2.7.2), address lists parsed into
//! addresses and their parts (RFC 5228 §2.7.4, RFC 5233 `:user`/`:detail`), and the edits
//! `editheader` makes (RFC 5293).
//!
//! Every function here is linear in its input (comment nesting is counted, not recursed),
//! never panics on junk, and replaces invalid UTF-8.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};

/// One header field as it appears in the message.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Field {
    /// The field name as written (compare case-insensitively).
    pub name: String,
    /// The raw value after the colon, unfolded (CRLF/LF before white space removed), leading
    /// and trailing white space removed, not decoded; invalid UTF-8 replaced.
    pub value: String,
}

impl Field {
    /// A new field (as `addheader` makes it).
    pub fn new(name: &str, value: &str) -> Field {
        Field {
            name: name.to_owned(),
            value: value.to_owned(),
        }
    }
}

/// The header section: its fields in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    /// The fields, top to bottom.
    pub fields: Vec<Field>,
    /// Each parsed field's text exactly as it was (name, colon, value, folding; line ends as
    /// LF, no final line end), with its name and value: [`Headers::to_bytes`] writes a field
    /// that still has one of these names and values back as it was, so `editheader` can
    /// edit `fields` freely.
    originals: Vec<(Field, String)>,
}

/// Is `b` allowed in a field name (RFC 5322 §3.6.8 ftext: printable ASCII except `:`)?
fn is_ftext(b: u8) -> bool {
    (33..=126).contains(&b) && b != b':'
}

/// Splits a raw field (name, colon, value with folding; lines joined by LF) into its name
/// and unfolded, trimmed value; `None` when it is not a field.
fn split_field(raw: &str) -> Option<(&str, String)> {
    let colon = raw.find(':')?;
    let name = raw.get(..colon)?.trim_end_matches([' ', '\t']);
    if name.is_empty() || !name.bytes().all(is_ftext) {
        return None;
    }
    let rest = raw.get(colon + 1..)?;
    let mut value = String::with_capacity(rest.len());
    for (i, line) in rest.split('\n').enumerate() {
        if i > 0 && !(line.starts_with(' ') || line.starts_with('\t')) {
            // A line that does not continue the field is not part of it.
            return None;
        }
        value.push_str(line.strip_suffix('\r').unwrap_or(line));
    }
    Some((name, value.trim_matches([' ', '\t']).to_owned()))
}

impl Headers {
    /// Splits a raw header section (LF or CRLF line ends; stops at the first empty line or the
    /// end of `raw`). Lines that are not fields are skipped, as are continuation lines that
    /// follow no field.
    pub fn parse(raw: &[u8]) -> Headers {
        let mut fields = Vec::new();
        // The lines of the field being read.
        let mut cur: Option<String> = None;
        let flush = |cur: &mut Option<String>, fields: &mut Vec<(Field, String)>| {
            if let Some(text) = cur.take() {
                if let Some((name, value)) = split_field(&text) {
                    let name = name.to_owned();
                    fields.push((Field { name, value }, text));
                }
            }
        };
        let mut rest = raw;
        while !rest.is_empty() {
            let (line, next) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (
                    rest.get(..i).unwrap_or(&[]),
                    rest.get(i + 1..).unwrap_or(&[]),
                ),
                None => (rest, &[][..]),
            };
            rest = next;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                break;
            }
            let text = String::from_utf8_lossy(line);
            if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
                if let Some(c) = cur.as_mut() {
                    c.push('\n');
                    c.push_str(&text);
                }
                continue;
            }
            flush(&mut cur, &mut fields);
            let is_field = match line.iter().position(|&b| b == b':') {
                Some(colon) => {
                    let name = line.get(..colon).unwrap_or(&[]);
                    let name = name.strip_suffix(b" ").unwrap_or(name);
                    !name.is_empty() && name.iter().all(|&b| is_ftext(b) || b == b' ' || b == b'\t')
                }
                None => false,
            };
            if is_field {
                cur = Some(text.into_owned());
            }
        }
        flush(&mut cur, &mut fields);
        Headers {
            fields: fields.iter().map(|(f, _)| f.clone()).collect(),
            originals: fields,
        }
    }

    /// The fields named `name` (case-insensitive), top to bottom.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Field> + 'a {
        self.fields
            .iter()
            .filter(move |f| f.name.eq_ignore_ascii_case(name))
    }

    /// The section serialised again with LF line ends and the final empty line, folding long
    /// values added by `addheader` (RFC 5293 §4), for a copy that `editheader` changed.
    /// A field with the name and value of a parsed one is written as it was in the message
    /// (each original once, in order, for repeated identical fields).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut unused: HashMap<&Field, VecDeque<&str>> = HashMap::new();
        for (f, raw) in &self.originals {
            unused.entry(f).or_default().push_back(raw);
        }
        let mut out = String::new();
        for f in &self.fields {
            match unused.get_mut(f).and_then(VecDeque::pop_front) {
                Some(raw) => out.push_str(raw),
                None => fold_field(&mut out, &f.name, &f.value),
            }
            out.push('\n');
        }
        out.push('\n');
        out.into_bytes()
    }
}

/// The column folding aims at (RFC 5322 §2.1.1: lines SHOULD be at most 78 characters).
const FOLD_AT: usize = 78;

/// Writes `name: value` folded at white space so that lines stay within [`FOLD_AT`]
/// characters where the value allows (a longer word stays whole). Line breaks inside
/// `value` become spaces, so a value cannot start a new field.
fn fold_field(out: &mut String, name: &str, value: &str) {
    let value: String = value
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    out.push_str(name);
    out.push(':');
    let mut col = name.chars().count() + 1;
    // Words with the white space before each (the first gets one space).
    let mut first = true;
    let mut rest = value.as_str();
    while !rest.is_empty() {
        let ws_len = rest.len() - rest.trim_start_matches([' ', '\t']).len();
        let (ws, after) = rest.split_at(ws_len);
        let word_len = after.find([' ', '\t']).unwrap_or(after.len());
        let (word, next) = after.split_at(word_len);
        rest = next;
        if word.is_empty() {
            break;
        }
        let ws = if first || ws.is_empty() { " " } else { ws };
        first = false;
        let w = ws.chars().count() + word.chars().count();
        if col + w > FOLD_AT && col > name.len() + 1 {
            out.push('\n');
            col = 0;
        }
        out.push_str(ws);
        out.push_str(word);
        col += w;
    }
}

/// The value of one base64 character (RFC 4648 §4); `None` for `=` and anything outside
/// the alphabet.
pub(crate) fn base64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decodes base64 leniently (characters outside the alphabet skipped, stops at `=`).
pub(crate) fn base64_decode(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in text {
        if c == b'=' {
            break;
        }
        let Some(v) = base64_value(c) else {
            continue;
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// The value of one hexadecimal digit.
pub(crate) fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The RFC 2047 §4.2 "Q" encoding: `_` is a space, `=XX` an octet.
fn q_decode(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while let Some(&c) = text.get(i) {
        match c {
            b'_' => out.push(b' '),
            b'=' => {
                let hi = text.get(i + 1).copied().and_then(hex_val);
                let lo = text.get(i + 2).copied().and_then(hex_val);
                if let (Some(h), Some(l)) = (hi, lo) {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                out.push(b'=');
            }
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// The text of `bytes` in `charset` as UTF-8 (invalid sequences replaced); `None` for a
/// charset we do not know.
pub(crate) fn charset_decode(charset: &str, bytes: &[u8]) -> Option<String> {
    let enc = encoding_for(charset)?;
    Some(enc.decode_without_bom_handling(bytes).0.into_owned())
}

/// The encoding named `charset` (WHATWG labels, which include the MIME names; `us-ascii`
/// reads as windows-1252, a superset), or `None`.
pub(crate) fn encoding_for(charset: &str) -> Option<&'static encoding_rs::Encoding> {
    let charset = charset.trim().trim_matches('"');
    encoding_rs::Encoding::for_label_no_replacement(charset.as_bytes())
}

/// The longest encoded-word [`decode`] recognises (generous: senders exceed RFC 2047's 75).
const MAX_ENCODED_WORD: usize = 1024;

/// One RFC 2047 encoded-word at the start of `s`: its length, charset and decoded octets.
fn encoded_word(s: &str) -> Option<(usize, &str, Vec<u8>)> {
    // Encoded-words are short (RFC 2047 §2: 75 characters); looking further than this for
    // the end keeps decoding linear on junk.
    let mut window = s.len().min(MAX_ENCODED_WORD);
    while !s.is_char_boundary(window) {
        window -= 1;
    }
    let body = s.get(..window)?.strip_prefix("=?")?;
    let q1 = body.find('?')?;
    let charset = body.get(..q1)?;
    // RFC 2231 §5: a language after `*`.
    let charset = charset.split('*').next().unwrap_or(charset);
    if charset.is_empty() || charset.contains([' ', '\t']) {
        return None;
    }
    let rest = body.get(q1 + 1..)?;
    let enc = rest.get(..1)?;
    let rest = rest.get(1..)?.strip_prefix('?')?;
    let end = rest.find("?=")?;
    let text = rest.get(..end)?;
    if text.contains([' ', '\t']) {
        return None;
    }
    let bytes = if enc.eq_ignore_ascii_case("b") {
        base64_decode(text.as_bytes())
    } else if enc.eq_ignore_ascii_case("q") {
        q_decode(text.as_bytes())
    } else {
        return None;
    };
    let len = 2 + q1 + 1 + 2 + end + 2;
    Some((len, charset, bytes))
}

/// A header value as tests compare it: RFC 2047 encoded-words decoded to UTF-8 (any charset
/// the decoder knows), white space between adjacent encoded-words dropped. An encoded-word
/// in an unknown charset or a broken one is left as it is. Adjacent encoded-words in one
/// charset are decoded together, so a character split between them survives.
pub fn decode(value: &str) -> String {
    if !value.contains("=?") {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len());
    // Octets of adjacent encoded-words in one charset, not yet converted.
    let mut pending: Option<(&str, Vec<u8>)> = None;
    // White space seen after an encoded-word (dropped if another follows).
    let mut gap = "";
    let mut rest = value;
    let flush = |pending: &mut Option<(&str, Vec<u8>)>, out: &mut String| {
        if let Some((cs, bytes)) = pending.take() {
            out.push_str(&charset_decode(cs, &bytes).unwrap_or_default());
        }
    };
    while !rest.is_empty() {
        if rest.starts_with("=?") {
            if let Some((len, cs, bytes)) = encoded_word(rest) {
                if encoding_for(cs).is_some() {
                    match pending.as_mut() {
                        Some((pcs, pbytes)) if pcs.eq_ignore_ascii_case(cs) => pbytes.extend(bytes),
                        _ => {
                            flush(&mut pending, &mut out);
                            pending = Some((cs, bytes));
                        }
                    }
                    gap = "";
                    rest = rest.get(len..).unwrap_or("");
                    continue;
                }
                // Unknown charset: the word stays as it is.
                flush(&mut pending, &mut out);
                out.push_str(gap);
                gap = "";
                out.push_str(rest.get(..len).unwrap_or(""));
                rest = rest.get(len..).unwrap_or("");
                continue;
            }
        }
        let ws = rest.len() - rest.trim_start_matches([' ', '\t', '\r', '\n']).len();
        if ws > 0 && pending.is_some() && gap.is_empty() {
            gap = rest.get(..ws).unwrap_or("");
            rest = rest.get(ws..).unwrap_or("");
            continue;
        }
        flush(&mut pending, &mut out);
        out.push_str(gap);
        gap = "";
        let c = rest.chars().next().unwrap_or(' ');
        out.push(c);
        rest = rest.get(c.len_utf8()..).unwrap_or("");
    }
    flush(&mut pending, &mut out);
    out.push_str(gap);
    out
}

/// One address of an address list (RFC 5322 §3.4): groups flattened, display names and
/// comments dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    /// The local part, quotes removed.
    pub local: String,
    /// The domain; `None` for an address without `@`.
    pub domain: Option<String>,
}

/// A token of an address list.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    /// An atom or dot-atom (or a quoted string, quotes removed), with whether white space
    /// or a comment came before it.
    Word {
        text: String,
        quoted: bool,
        space_before: bool,
    },
    /// `[...]`, brackets kept.
    Literal(String),
    /// One of `< > @ , : ;`.
    Special(u8),
    /// Something that cannot be in an address (an unclosed quote, a stray `>`...).
    Junk,
}

/// Splits an address list into tokens with their byte offsets, dropping comments and white
/// space.
fn tokens(value: &str) -> Vec<(usize, Tok)> {
    let b = value.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut space = false;
    while let Some(&c) = b.get(i) {
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                space = true;
                i += 1;
            }
            b'(' => {
                // A comment, nested, with quoted pairs.
                let mut depth = 0usize;
                while let Some(&c) = b.get(i) {
                    i += 1;
                    match c {
                        b'\\' => i += 1,
                        b'(' => depth += 1,
                        b')' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                space = true;
            }
            b'"' => {
                let start = i;
                i += 1;
                let mut text = Vec::new();
                let mut closed = false;
                while let Some(&c) = b.get(i) {
                    i += 1;
                    match c {
                        b'\\' => {
                            if let Some(&n) = b.get(i) {
                                text.push(n);
                                i += 1;
                            }
                        }
                        b'"' => {
                            closed = true;
                            break;
                        }
                        b'\r' | b'\n' => {}
                        c => text.push(c),
                    }
                }
                let tok = if closed {
                    let text = String::from_utf8_lossy(&text).into_owned();
                    Tok::Word {
                        text,
                        quoted: true,
                        space_before: space,
                    }
                } else {
                    Tok::Junk
                };
                out.push((start, tok));
                space = false;
            }
            b'[' => {
                let start = i;
                let end = b.get(i..).and_then(|r| r.iter().position(|&c| c == b']'));
                match end {
                    Some(e) => {
                        let lit = value.get(i..i + e + 1).unwrap_or("");
                        let lit: String = lit.chars().filter(|c| !c.is_whitespace()).collect();
                        out.push((start, Tok::Literal(lit)));
                        i += e + 1;
                    }
                    None => {
                        out.push((start, Tok::Junk));
                        i = b.len();
                    }
                }
                space = false;
            }
            b'<' | b'>' | b'@' | b',' | b':' | b';' => {
                out.push((i, Tok::Special(c)));
                i += 1;
                space = false;
            }
            b']' | b'\\' => {
                out.push((i, Tok::Junk));
                i += 1;
                space = false;
            }
            _ => {
                let start = i;
                // An encoded-word in a display name may hold specials (`,` in Q text,
                // against RFC 2047 §5 but common): it is one word.
                if let Some((len, _, _)) = value.get(i..).and_then(encoded_word) {
                    i += len;
                }
                while let Some(&c) = b.get(i) {
                    if matches!(
                        c,
                        b' ' | b'\t' | b'\r' | b'\n' | b'(' | b')' | b'"' | b'[' | b']' | b'\\'
                    ) || matches!(c, b'<' | b'>' | b'@' | b',' | b':' | b';')
                    {
                        break;
                    }
                    i += 1;
                }
                if c == b')' && i == start {
                    // A stray closing parenthesis.
                    out.push((start, Tok::Junk));
                    i += 1;
                } else {
                    let text = value.get(start..i).unwrap_or("").to_owned();
                    out.push((
                        start,
                        Tok::Word {
                            text,
                            quoted: false,
                            space_before: space,
                        },
                    ));
                }
                space = false;
            }
        }
    }
    out
}

/// Joins the words of a local part or domain: words separated by white space must meet at
/// a `.` (RFC 5322 §4.4 obs-local-part, obs-domain). `None` when they do not.
fn join_words(toks: &[&Tok]) -> Option<String> {
    let mut s = String::new();
    for (i, t) in toks.iter().enumerate() {
        match t {
            Tok::Word {
                text, space_before, ..
            } => {
                if i > 0 && *space_before && !s.ends_with('.') && !text.starts_with('.') {
                    return None;
                }
                s.push_str(text);
            }
            Tok::Literal(l) if i == 0 && toks.len() == 1 => s.push_str(l),
            _ => return None,
        }
    }
    Some(s)
}

/// An addr-spec (`local@domain`, or a lone local part) from its tokens.
fn addr_spec(toks: &[&Tok]) -> Option<Address> {
    let at: Vec<usize> = toks
        .iter()
        .enumerate()
        .filter(|(_, t)| ***t == Tok::Special(b'@'))
        .map(|(i, _)| i)
        .collect();
    match at.as_slice() {
        [] => {
            // A lone word: an address without a domain.
            if toks.len() != 1 {
                return None;
            }
            let local = join_words(toks)?;
            (!local.is_empty()).then_some(Address {
                local,
                domain: None,
            })
        }
        [a] => {
            let local = join_words(toks.get(..*a)?)?;
            let domain = join_words(toks.get(a + 1..)?)?;
            if local.is_empty() || domain.is_empty() {
                return None;
            }
            Some(Address {
                local,
                domain: Some(domain),
            })
        }
        _ => None,
    }
}

/// One mailbox from its tokens (between `,`, `:` or `;`): an angle address (with optional
/// display name and obs-route) or a bare addr-spec. `None` when unparsable.
fn mailbox(toks: &[&Tok]) -> Option<Address> {
    let open = toks.iter().position(|t| **t == Tok::Special(b'<'));
    let Some(open) = open else {
        return addr_spec(toks);
    };
    // The display name before `<` must be words only.
    if !toks
        .get(..open)?
        .iter()
        .all(|t| matches!(t, Tok::Word { .. }))
    {
        return None;
    }
    let close = open
        + 1
        + toks
            .get(open + 1..)?
            .iter()
            .position(|t| **t == Tok::Special(b'>'))?;
    if close + 1 != toks.len() {
        return None;
    }
    let mut inner = toks.get(open + 1..close)?;
    // RFC 5322 §4.4 obs-route: `@a,@b:` before the address.
    if inner.first().is_some_and(|t| **t == Tok::Special(b'@')) {
        let colon = inner.iter().position(|t| **t == Tok::Special(b':'))?;
        inner = inner.get(colon + 1..)?;
    }
    addr_spec(inner)
}

/// The items of an address list in order: each address, or the raw text (trimmed) of a
/// piece that is not one. RFC 5228 §2.7.4: an invalid address is not matched by
/// `:localpart` or `:domain` (nor `:user`/`:detail`); the caller may still compare its text
/// with `:all`. Empty pieces (`a@b,,c@d`, an empty group `undisclosed-recipients:;`)
/// give nothing.
pub fn address_items(value: &str) -> Vec<Result<Address, String>> {
    let toks = tokens(value);
    let mut out = Vec::new();
    let mut piece: Vec<&Tok> = Vec::new();
    let mut start: Option<usize> = None;
    let mut in_angle = false;
    let mut end_piece = |piece: &mut Vec<&Tok>, start: &mut Option<usize>, end: usize| {
        if let Some(s) = start.take() {
            match mailbox(piece) {
                Some(a) => out.push(Ok(a)),
                None => out.push(Err(value.get(s..end).unwrap_or("").trim().to_owned())),
            }
        }
        piece.clear();
    };
    for (pos, t) in &toks {
        match t {
            Tok::Special(b'<') => in_angle = true,
            Tok::Special(b'>') => in_angle = false,
            Tok::Special(b',') | Tok::Special(b';') if !in_angle => {
                end_piece(&mut piece, &mut start, *pos);
                continue;
            }
            // A group's display name: words only (else the piece is junk).
            Tok::Special(b':')
                if !in_angle && piece.iter().all(|t| matches!(t, Tok::Word { .. })) =>
            {
                piece.clear();
                start = None;
                continue;
            }
            _ => {}
        }
        start.get_or_insert(*pos);
        piece.push(t);
    }
    end_piece(&mut piece, &mut start, value.len());
    out
}

/// The addresses in a header value such as `To:` (RFC 2047-decoded display names do not
/// matter here). Unparsable pieces are skipped (see [`address_items`] to have them).
pub fn addresses(value: &str) -> Vec<Address> {
    address_items(value)
        .into_iter()
        .filter_map(Result::ok)
        .collect()
}

/// The part of an address a test compares (RFC 5228 §2.7.4, RFC 5233 §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressPart {
    /// `:all` (the default)
    All,
    /// `:localpart`
    LocalPart,
    /// `:domain`
    Domain,
    /// `:user`: the local part up to the first delimiter
    User,
    /// `:detail`: after the first delimiter; absent without one (RFC 5233 §4)
    Detail,
}

/// The `part` of `addr` with `delimiters` as the subaddress separators; `None` when the part
/// does not exist (`:detail` without a delimiter; `:domain` of an address without one).
///
/// RFC 5233 §4: the first occurrence of any delimiter character splits the local part;
/// without one `:user` is the whole local part and `:detail` does not exist (the test
/// fails), while a delimiter at the end gives an empty `:detail`, which `""` matches.
/// With no delimiters configured there is never a detail.
pub fn address_part(addr: &Address, part: AddressPart, delimiters: &str) -> Option<String> {
    let split = || {
        addr.local
            .char_indices()
            .find(|(_, c)| delimiters.contains(*c))
            .map(|(i, c)| {
                (
                    addr.local.get(..i).unwrap_or(""),
                    addr.local.get(i + c.len_utf8()..).unwrap_or(""),
                )
            })
    };
    match part {
        AddressPart::All => Some(match &addr.domain {
            Some(d) => format!("{}@{}", addr.local, d),
            None => addr.local.clone(),
        }),
        AddressPart::LocalPart => Some(addr.local.clone()),
        AddressPart::Domain => addr.domain.clone(),
        AddressPart::User => {
            Some(split().map_or_else(|| addr.local.clone(), |(u, _)| u.to_owned()))
        }
        AddressPart::Detail => split().map(|(_, d)| d.to_owned()),
    }
}

/// Parses a bare address as the envelope gives it (`local@domain`, no brackets; brackets
/// and a quoted local part are tolerated); the empty string (null sender) gives `None`.
pub fn parse_envelope_address(addr: &str) -> Option<Address> {
    let a = addr.trim();
    let a = a
        .strip_prefix('<')
        .and_then(|x| x.strip_suffix('>'))
        .unwrap_or(a)
        .trim();
    if a.is_empty() {
        return None;
    }
    let (local, domain) = match a.rfind('@') {
        Some(i) => (
            a.get(..i).unwrap_or(""),
            Some(a.get(i + 1..).unwrap_or("").to_owned()),
        ),
        None => (a, None),
    };
    let local: Cow<'_, str> = match local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        Some(q) => {
            let mut s = String::with_capacity(q.len());
            let mut it = q.chars();
            while let Some(c) = it.next() {
                s.push(if c == '\\' {
                    it.next().unwrap_or('\\')
                } else {
                    c
                });
            }
            Cow::Owned(s)
        }
        None => Cow::Borrowed(local),
    };
    Some(Address {
        local: local.into_owned(),
        domain,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn addr(local: &str, domain: Option<&str>) -> Address {
        Address {
            local: local.to_owned(),
            domain: domain.map(str::to_owned),
        }
    }

    #[test]
    fn rfc5322_2_2_fields_split_crlf_and_lf() {
        let h = Headers::parse(b"From: a@b\r\nTo: c@d\nSubject:  hi \r\n\r\nBody: no\r\n");
        let names: Vec<_> = h
            .fields
            .iter()
            .map(|f| (f.name.as_str(), f.value.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![("From", "a@b"), ("To", "c@d"), ("Subject", "hi")]
        );
    }

    #[test]
    fn rfc5322_2_2_3_unfolding() {
        let h = Headers::parse(b"Subject: a long\r\n  subject\r\n\tline\r\nX: y\r\n\r\n");
        assert_eq!(h.fields[0].value, "a long  subject\tline");
        assert_eq!(h.fields[1].value, "y");
        assert_eq!(h.named("SUBJECT").count(), 1);
    }

    #[test]
    fn rfc5322_3_6_8_junk_lines_skipped() {
        let raw = b"  orphan continuation\nFrom nobody Mon Jan 1 00:00:00 2024\nno colon here\n: empty name\nGood: yes\n";
        let h = Headers::parse(raw);
        assert_eq!(h.fields.len(), 1);
        assert_eq!(
            (h.fields[0].name.as_str(), h.fields[0].value.as_str()),
            ("Good", "yes")
        );
    }

    #[test]
    fn rfc5322_4_5_obs_space_before_colon() {
        let h = Headers::parse(b"Subject : old style\n");
        assert_eq!(h.fields[0].name, "Subject");
        assert_eq!(h.fields[0].value, "old style");
    }

    #[test]
    fn header_invalid_utf8_replaced() {
        let h = Headers::parse(b"Subject: caf\xe9\n");
        assert_eq!(h.fields[0].value, "caf\u{fffd}");
    }

    #[test]
    fn rfc5293_untouched_fields_written_back_byte_for_byte() {
        let raw = "Received: from x\r\n\tby y; Tue, 1 Jul 2003 10:52:37 +0200\r\nSubject:   spaced   \r\nX-Long: a\r\n b\r\n\r\n";
        let mut h = Headers::parse(raw.as_bytes());
        h.fields.insert(0, Field::new("X-Added", "yes"));
        let out = String::from_utf8(h.to_bytes()).unwrap();
        assert_eq!(
            out,
            "X-Added: yes\nReceived: from x\n\tby y; Tue, 1 Jul 2003 10:52:37 +0200\nSubject:   spaced   \nX-Long: a\n b\n\n"
        );
        // A changed value is written fresh.
        h.fields[2].value = "new".to_owned();
        let out = String::from_utf8(h.to_bytes()).unwrap();
        assert!(out.contains("\nSubject: new\n"), "{out}");
    }

    #[test]
    fn rfc5293_deleting_and_adding_keeps_other_fields_as_they_were() {
        let raw = "A: 1\r\n  folded\r\nB: 2\r\nA: 1  folded\r\nC:  3\r\n\r\n";
        let mut h = Headers::parse(raw.as_bytes());
        // deleteheader :index 2 "B", then addheader :last "D" "4".
        h.fields.remove(1);
        h.fields.push(Field::new("D", "4"));
        let out = String::from_utf8(h.to_bytes()).unwrap();
        assert_eq!(out, "A: 1\n  folded\nA: 1  folded\nC:  3\nD: 4\n\n");
        // Deleting the first of two equal fields writes an original for the other.
        let mut h = Headers::parse(b"X: same\nX: same\n");
        h.fields.remove(0);
        assert_eq!(h.to_bytes(), b"X: same\n\n");
    }

    #[test]
    fn rfc5293_4_long_added_values_folded_at_78() {
        let value = "word ".repeat(40);
        let mut h = Headers::default();
        h.fields.push(Field::new("X-Fold", value.trim()));
        let out = String::from_utf8(h.to_bytes()).unwrap();
        for line in out.lines() {
            assert!(line.chars().count() <= 78, "{line:?}");
        }
        let again = Headers::parse(out.as_bytes());
        assert_eq!(again.fields[0].value, value.trim());
        // A newline in a value cannot start a new field.
        let mut h = Headers::default();
        h.fields
            .push(Field::new("X-A", "one\nBcc: evil@example.com"));
        let again = Headers::parse(&h.to_bytes());
        assert_eq!(again.fields.len(), 1);
    }

    #[test]
    fn long_unbreakable_word_stays_whole() {
        let word = "x".repeat(200);
        let mut h = Headers::default();
        h.fields.push(Field::new("X", &format!("a {word} b")));
        let again = Headers::parse(&h.to_bytes());
        assert_eq!(again.fields[0].value, format!("a {word} b"));
    }

    #[test]
    fn rfc2047_b_and_q_decoded() {
        assert_eq!(decode("=?utf-8?B?SGVsbG8gV8O2cmxk?="), "Hello Wörld");
        assert_eq!(decode("=?ISO-8859-1?Q?Andr=E9_Pirard?="), "André Pirard");
        assert_eq!(decode("Re: =?iso-8859-1?q?caf=E9?= ok"), "Re: café ok");
    }

    #[test]
    fn rfc2047_8_examples_whitespace_between_words() {
        // RFC 2047 §8's examples.
        assert_eq!(decode("(=?ISO-8859-1?Q?a?=)"), "(a)");
        assert_eq!(decode("(=?ISO-8859-1?Q?a?= b)"), "(a b)");
        assert_eq!(decode("(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)"), "(ab)");
        assert_eq!(decode("(=?ISO-8859-1?Q?a?=  =?ISO-8859-1?Q?b?=)"), "(ab)");
        assert_eq!(
            decode("(=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?=)"),
            "(ab)"
        );
        assert_eq!(decode("(=?ISO-8859-1?Q?a_b?=)"), "(a b)");
        assert_eq!(decode("(=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=)"), "(a b)");
    }

    #[test]
    fn rfc2047_split_multibyte_character_joined() {
        // "é" (C3 A9) split across two words.
        assert_eq!(decode("=?utf-8?Q?caf=C3?= =?utf-8?Q?=A9?="), "café");
    }

    #[test]
    fn rfc2047_unknown_charset_left_as_is() {
        assert_eq!(
            decode("=?x-unknown?Q?abc?= rest"),
            "=?x-unknown?Q?abc?= rest"
        );
        assert_eq!(decode("=?utf-8?X?abc?="), "=?utf-8?X?abc?=");
        assert_eq!(decode("=?utf-8?Q?unterminated"), "=?utf-8?Q?unterminated");
        assert_eq!(decode("plain text"), "plain text");
    }

    #[test]
    fn rfc2231_5_charset_language_ignored() {
        assert_eq!(decode("=?US-ASCII*EN?Q?Keith_Moore?="), "Keith Moore");
    }

    #[test]
    fn rfc5322_3_4_display_names_and_angle_addresses() {
        let a = addresses("\"Joe Q. Public\" <john.q.public@example.com>, Mary Smith <mary@x.test>, jdoe@one.test");
        assert_eq!(
            a,
            vec![
                addr("john.q.public", Some("example.com")),
                addr("mary", Some("x.test")),
                addr("jdoe", Some("one.test"))
            ]
        );
    }

    #[test]
    fn rfc5322_3_4_1_quoted_local_part() {
        let a = addresses("<\"john doe\"@example.com>, \"a\\\"b\"@c.d");
        assert_eq!(
            a,
            vec![
                addr("john doe", Some("example.com")),
                addr("a\"b", Some("c.d"))
            ]
        );
    }

    #[test]
    fn rfc5322_3_4_groups_including_empty() {
        // RFC 5322 Appendix A.1.3.
        let a = addresses("A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;, undisclosed-recipients:;");
        assert_eq!(
            a,
            vec![
                addr("c", Some("a.test")),
                addr("joe", Some("where.test")),
                addr("jdoe", Some("one.test"))
            ]
        );
        assert!(address_items("undisclosed-recipients:;").is_empty());
    }

    #[test]
    fn rfc5322_3_2_2_comments_dropped() {
        // RFC 5322 Appendix A.5.
        let a = addresses("Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>");
        assert_eq!(a, vec![addr("pete", Some("silly.test"))]);
        let a = addresses("(Empty list)(start)Hidden recipients  :(nobody(that I know))  ;");
        assert!(a.is_empty());
    }

    #[test]
    fn rfc5322_4_4_obs_route_and_obs_local() {
        let a = addresses("<@route1.test,@route2.test:jdoe@one.test>, john . doe @ example . com");
        assert_eq!(
            a,
            vec![
                addr("jdoe", Some("one.test")),
                addr("john.doe", Some("example.com"))
            ]
        );
    }

    #[test]
    fn rfc2047_5_encoded_word_display_name_with_specials() {
        let a = addresses("=?utf-8?Q?Doe,_John?= <jd@x.test>, b@y.test");
        assert_eq!(
            a,
            vec![addr("jd", Some("x.test")), addr("b", Some("y.test"))]
        );
    }

    #[test]
    fn rfc5322_3_4_1_domain_literal() {
        assert_eq!(
            addresses("user@[192.0.2.1]"),
            vec![addr("user", Some("[192.0.2.1]"))]
        );
    }

    #[test]
    fn rfc5228_2_7_4_invalid_addresses_reported_raw() {
        let items = address_items("good@x.test, not an address, a@@b, <unclosed@x, \"open");
        assert_eq!(items[0], Ok(addr("good", Some("x.test"))));
        assert_eq!(items[1], Err("not an address".to_owned()));
        assert_eq!(items[2], Err("a@@b".to_owned()));
        // An unclosed `<` takes the rest of the list with it.
        assert_eq!(items.len(), 4);
        assert!(items[3].is_err());
        assert!(address_items("\"open").iter().all(|i| i.is_err()));
        assert_eq!(addresses("not an address"), vec![]);
        assert_eq!(addresses("root"), vec![addr("root", None)]);
    }

    #[test]
    fn rfc5228_2_7_4_address_parts() {
        let a = addr("Ken.Murchison", Some("Example.COM"));
        assert_eq!(
            address_part(&a, AddressPart::All, "+").unwrap(),
            "Ken.Murchison@Example.COM"
        );
        assert_eq!(
            address_part(&a, AddressPart::LocalPart, "+").unwrap(),
            "Ken.Murchison"
        );
        assert_eq!(
            address_part(&a, AddressPart::Domain, "+").unwrap(),
            "Example.COM"
        );
        let b = addr("root", None);
        assert_eq!(address_part(&b, AddressPart::Domain, "+"), None);
        assert_eq!(address_part(&b, AddressPart::All, "+").unwrap(), "root");
    }

    #[test]
    fn rfc5233_4_user_and_detail() {
        let a = addr("ken+sieve", Some("example.com"));
        assert_eq!(address_part(&a, AddressPart::User, "+").unwrap(), "ken");
        assert_eq!(address_part(&a, AddressPart::Detail, "+").unwrap(), "sieve");
        // Only the first delimiter splits.
        let a = addr("ken+a+b", Some("x"));
        assert_eq!(address_part(&a, AddressPart::Detail, "+").unwrap(), "a+b");
    }

    #[test]
    fn rfc5233_4_detail_absent_without_delimiter() {
        let a = addr("ken", Some("example.com"));
        assert_eq!(address_part(&a, AddressPart::User, "+").unwrap(), "ken");
        assert_eq!(address_part(&a, AddressPart::Detail, "+"), None);
        assert_eq!(address_part(&a, AddressPart::Detail, ""), None);
    }

    #[test]
    fn rfc5233_4_detail_empty_with_trailing_delimiter() {
        let a = addr("ken+", Some("example.com"));
        assert_eq!(address_part(&a, AddressPart::User, "+").unwrap(), "ken");
        assert_eq!(address_part(&a, AddressPart::Detail, "+").unwrap(), "");
    }

    #[test]
    fn rfc5233_4_several_delimiter_characters() {
        let a = addr("ken-list+x", Some("example.com"));
        assert_eq!(address_part(&a, AddressPart::User, "+-").unwrap(), "ken");
        assert_eq!(
            address_part(&a, AddressPart::Detail, "+-").unwrap(),
            "list+x"
        );
    }

    #[test]
    fn rfc5228_5_4_envelope_addresses() {
        assert_eq!(parse_envelope_address(""), None);
        assert_eq!(parse_envelope_address("<>"), None);
        assert_eq!(
            parse_envelope_address("a+b@x.test"),
            Some(addr("a+b", Some("x.test")))
        );
        assert_eq!(
            parse_envelope_address("<a@x.test>"),
            Some(addr("a", Some("x.test")))
        );
        assert_eq!(
            parse_envelope_address("\"a b\"@x"),
            Some(addr("a b", Some("x")))
        );
        assert_eq!(
            parse_envelope_address("postmaster"),
            Some(addr("postmaster", None))
        );
    }

    #[test]
    fn parsing_junk_is_bounded_and_panic_free() {
        let mut junk = Vec::new();
        for i in 0..20_000u32 {
            junk.push((i.wrapping_mul(2654435761) >> 13) as u8);
        }
        let h = Headers::parse(&junk);
        for f in &h.fields {
            let _ = decode(&f.value);
            let _ = address_items(&f.value);
        }
        let s = String::from_utf8_lossy(&junk);
        let _ = address_items(&s);
        let _ = decode(&s);
        let deep = "(".repeat(100_000) + "a@b";
        assert!(addresses(&deep).is_empty());
        let _ = decode(&"=?".repeat(10_000));
        let _ = decode(&"=?a?q?x".repeat(100_000));
    }
}
