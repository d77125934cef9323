//! Message-ID and Subject for listing, from a bounded read of the header section only.

use std::io::{self, Read};

use crate::Body;

/// At most this many bytes of the body are read to find the headers.
pub const HEADER_LIMIT: u64 = 64 * 1024;

/// The listing fields of a message (raw header values, unfolded, not RFC 2047-decoded).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// The first `Message-ID:` value, trimmed.
    pub message_id: Option<String>,
    /// The first `Subject:` value, unfolded and trimmed.
    pub subject: Option<String>,
}

/// Reads at most [`HEADER_LIMIT`] bytes of `body` and extracts the listing fields.
pub fn extract(body: &dyn Body) -> io::Result<Meta> {
    let mut head = Vec::new();
    body.open()?.take(HEADER_LIMIT).read_to_end(&mut head)?;
    let complete = (head.len() as u64) < HEADER_LIMIT;
    Ok(parse(&head, complete))
}

/// Parses a header section. When `complete` is false the data was cut at the limit and its
/// last, possibly partial, line is ignored.
pub fn parse(head: &[u8], complete: bool) -> Meta {
    let mut lines: Vec<&[u8]> = head.split_inclusive(|&b| b == b'\n').collect();
    if !complete && lines.last().is_some_and(|l| !l.ends_with(b"\n")) {
        lines.pop();
    }
    let mut meta = Meta::default();
    let mut field: Vec<u8> = Vec::new();
    for line in lines {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.first().is_some_and(|&b| b == b' ' || b == b'\t') && !field.is_empty() {
            field.extend_from_slice(text); // unfolding: drop the line break, keep the WSP
            continue;
        }
        take(&field, &mut meta);
        field.clear();
        if text.is_empty() {
            return meta; // end of the header section
        }
        field.extend_from_slice(text);
    }
    take(&field, &mut meta);
    meta
}

fn take(field: &[u8], meta: &mut Meta) {
    let Some(colon) = field.iter().position(|&b| b == b':') else {
        return;
    };
    let name = field[..colon].trim_ascii();
    let value = || Some(String::from_utf8_lossy(field[colon + 1..].trim_ascii()).into_owned());
    if name.eq_ignore_ascii_case(b"message-id") && meta.message_id.is_none() {
        meta.message_id = value();
    } else if name.eq_ignore_ascii_case(b"subject") && meta.subject.is_none() {
        meta.subject = value();
    }
}
