//! The streaming body walker behind the `body` test (RFC 5173): reads the message once with a
//! bounded buffer, follows the MIME structure (RFC 2045/2046 multiparts, nested), undoes
//! base64 and quoted-printable, converts text to UTF-8, and hands each part's text to the
//! matcher. Memory stays bounded whatever the message size.

use std::io::{self, Read};

/// The body transform (RFC 5173 §5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transform {
    /// `:raw`: the body as it is (after the header section), nothing decoded.
    Raw,
    /// `:content "type", ...`: the decoded content of the parts whose Content-Type matches
    /// one of these (a type without `/` matches all its subtypes; `""` matches every part).
    Content(Vec<String>),
    /// `:text` (the default): the decoded text of the `text/*` parts.
    Text,
}

/// Walks the message from its first byte and calls `visit(text, whole)` for each selected
/// part: once with `whole = true` when the part's text is at most `max_part` bytes, else in
/// windows of at most `max_part` bytes that overlap by `overlap` bytes with `whole = false`
/// (enough for `:contains` of keys up to `overlap + 1` bytes). Stops and returns true as soon
/// as `visit` returns true.
pub fn scan(
    message: &mut dyn Read,
    transform: &Transform,
    max_part: usize,
    overlap: usize,
    visit: &mut dyn FnMut(&str, bool) -> bool,
) -> io::Result<bool> {
    let _ = (message, transform, max_part, overlap, visit);
    unimplemented!()
}
