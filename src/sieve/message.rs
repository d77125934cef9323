//! The message as tests see it: the header section split into fields (RFC 5322 §2.2, folding
//! undone), values decoded per RFC 2047 (RFC 5228 §2.7.2), address lists parsed into
//! addresses and their parts (RFC 5228 §2.7.4, RFC 5233 `:user`/`:detail`), and the edits
//! `editheader` makes (RFC 5293).

/// One header field as it appears in the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The field name as written (compare case-insensitively).
    pub name: String,
    /// The raw value after the colon, unfolded (CRLF/LF before white space removed), leading
    /// white space removed, not decoded; invalid UTF-8 replaced.
    pub value: String,
}

/// The header section: its fields in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    /// The fields, top to bottom.
    pub fields: Vec<Field>,
}

impl Headers {
    /// Splits a raw header section (LF or CRLF line ends; stops at the first empty line or the
    /// end of `raw`). Lines that are not fields are skipped.
    pub fn parse(raw: &[u8]) -> Headers {
        let _ = raw;
        unimplemented!()
    }

    /// The fields named `name` (case-insensitive), top to bottom.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Field> + 'a {
        self.fields.iter().filter(move |f| f.name.eq_ignore_ascii_case(name))
    }

    /// The section serialised again with LF line ends and the final empty line, folding long
    /// values added by `addheader` (RFC 5293 §4), for a copy that `editheader` changed.
    pub fn to_bytes(&self) -> Vec<u8> {
        unimplemented!()
    }
}

/// A header value as tests compare it: RFC 2047 encoded-words decoded to UTF-8 (any charset
/// the decoder knows), white space between adjacent encoded-words dropped.
pub fn decode(value: &str) -> String {
    let _ = value;
    unimplemented!()
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

/// The addresses in a header value such as `To:` (RFC 2047-decoded display names do not
/// matter here). Unparsable pieces are skipped.
pub fn addresses(value: &str) -> Vec<Address> {
    let _ = value;
    unimplemented!()
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
pub fn address_part(addr: &Address, part: AddressPart, delimiters: &str) -> Option<String> {
    let _ = (addr, part, delimiters);
    unimplemented!()
}

/// Parses a bare address as the envelope gives it (`local@domain`, no brackets); the empty
/// string (null sender) gives `None`.
pub fn parse_envelope_address(addr: &str) -> Option<Address> {
    let _ = addr;
    unimplemented!()
}
