//! The streaming body walker behind the `body` test (RFC 5173): reads the message once with a
//! bounded buffer, follows the MIME structure (RFC 2045/2046 multiparts, nested), undoes
//! base64 and quoted-printable, converts text to UTF-8, and hands each part's text to the
//! matcher. Memory stays bounded whatever the message size.
//!
//! How the walk reads RFC 5173 and RFC 2046:
//! - The message is read in chunks of at most [`CHUNK`] bytes into one buffer of that size;
//!   lines longer than that are handled in pieces (such a line is never a boundary).
//! - Of each part header only `Content-Type` and `Content-Transfer-Encoding` are kept, each
//!   at most [`MAX_FIELD`] bytes; a part without `Content-Type` is `text/plain`, or
//!   `message/rfc822` inside `multipart/digest` (RFC 2046 §5.1.5).
//! - Multiparts nest up to [`MAX_DEPTH`] levels (message/rfc822 counts as one); deeper
//!   parts are leaves. A boundary of an outer multipart also ends the inner ones, and the end
//!   of the message ends every part (a missing final boundary is tolerated). The line break
//!   before a boundary belongs to the boundary (RFC 2046 §5.1.1).
//! - `:raw` is the body after the top-level header section, nothing decoded or converted
//!   except that invalid UTF-8 is replaced.
//! - `:text` (RFC 5173 §5.3) is the decoded content of every `text/*` part, converted from
//!   its charset (unknown charsets read as UTF-8, invalid sequences replaced).
//! - `:content` (RFC 5173 §5.2) selects parts by type: `""` every part, `"text"` every
//!   `text/*`, `"text/html"` that type only. A selected multipart is tested on its prologue
//!   and epilogue (its parts are tested on their own), a selected `message/rfc822` on the
//!   header section of the enclosed message (whose parts are then walked on their own).
//! - Each selected piece of text goes to `visit` whole when it fits in `max_part` bytes,
//!   else in overlapping windows.

use std::io::{self, Read};

use crate::sieve::message::{encoding_for, hex_val};

/// The read buffer's size: the most the walker asks a reader for at once.
pub const CHUNK: usize = 64 << 10;

/// The deepest nesting of multiparts and enclosed messages followed.
pub const MAX_DEPTH: usize = 16;

/// The most bytes of one `Content-Type` or `Content-Transfer-Encoding` field kept.
pub const MAX_FIELD: usize = 8 << 10;

/// The most trailing white space quoted-printable decoding holds back at once.
const MAX_QP_SPACE: usize = 256;

/// The longest line that can be a boundary (RFC 2046 §5.1.1: a boundary is at most 70
/// characters; generous for transport padding).
const MAX_BOUNDARY_LINE: usize = 1024;

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

impl Transform {
    /// Does `:content` select a part of type `ty`/`sub` (both lower case)?
    fn selects(&self, ty: &str, sub: &str) -> bool {
        match self {
            Transform::Raw => false,
            Transform::Text => ty == "text",
            Transform::Content(keys) => keys.iter().any(|k| {
                let k = k.trim();
                match k.split_once('/') {
                    None => k.is_empty() || k.eq_ignore_ascii_case(ty),
                    Some((kt, ks)) => kt.eq_ignore_ascii_case(ty) && ks.eq_ignore_ascii_case(sub),
                }
            }),
        }
    }
}

/// A Content-Transfer-Encoding (RFC 2045 §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cte {
    /// 7bit, 8bit, binary or anything unknown: the bytes as they are.
    Identity,
    /// base64
    Base64,
    /// quoted-printable
    Qp,
}

/// Undoes a transfer encoding incrementally: a few bits or bytes of state between calls.
#[derive(Debug)]
struct TransferDecoder {
    cte: Cte,
    acc: u32,
    bits: u32,
    /// base64 padding seen: the rest is ignored.
    done: bool,
    /// quoted-printable: 0 normal, 1 after `=`, 2 after `=` and one hex digit (in `hi`).
    qp: u8,
    hi: u8,
    /// quoted-printable: white space held back, dropped if the line ends (RFC 2045 §6.7
    /// rule 3: trailing white space was added in transport).
    ws: Vec<u8>,
}

impl TransferDecoder {
    fn new(cte: Cte) -> TransferDecoder {
        TransferDecoder {
            cte,
            acc: 0,
            bits: 0,
            done: false,
            qp: 0,
            hi: 0,
            ws: Vec::new(),
        }
    }

    fn qp_byte(&mut self, c: u8, out: &mut Vec<u8>) {
        if c == b' ' || c == b'\t' {
            if self.qp == 2 {
                out.extend_from_slice(&[b'=', self.hi]);
                self.qp = 0;
            }
            if self.ws.len() >= MAX_QP_SPACE {
                if self.qp == 1 {
                    out.push(b'=');
                    self.qp = 0;
                }
                out.append(&mut self.ws);
            }
            self.ws.push(c);
            return;
        }
        if !self.ws.is_empty() {
            if self.qp == 1 {
                out.push(b'=');
                self.qp = 0;
            }
            out.append(&mut self.ws);
        }
        match self.qp {
            1 => {
                if hex_val(c).is_some() {
                    self.hi = c;
                    self.qp = 2;
                    return;
                }
                out.push(b'=');
                self.qp = 0;
            }
            2 => {
                if let (Some(h), Some(l)) = (hex_val(self.hi), hex_val(c)) {
                    out.push(h << 4 | l);
                    self.qp = 0;
                    return;
                }
                out.extend_from_slice(&[b'=', self.hi]);
                self.qp = 0;
            }
            _ => {}
        }
        if c == b'=' {
            self.qp = 1;
        } else {
            out.push(c);
        }
    }

    /// Decodes `src` (part of a line, no line end) onto `out`.
    fn data(&mut self, src: &[u8], out: &mut Vec<u8>) {
        match self.cte {
            Cte::Identity => out.extend_from_slice(src),
            Cte::Qp => {
                for &c in src {
                    self.qp_byte(c, out);
                }
            }
            Cte::Base64 => {
                for &c in src {
                    if self.done {
                        return;
                    }
                    if c == b'=' {
                        self.done = true;
                        return;
                    }
                    let Some(v) = crate::sieve::message::base64_value(c) else {
                        continue;
                    };
                    self.acc = (self.acc << 6) | u32::from(v);
                    self.bits += 6;
                    if self.bits >= 8 {
                        self.bits -= 8;
                        out.push((self.acc >> self.bits) as u8);
                        self.acc &= (1 << self.bits) - 1;
                    }
                }
            }
        }
    }

    /// A line end `eol` in the encoded text.
    fn eol(&mut self, eol: &[u8], out: &mut Vec<u8>) {
        match self.cte {
            Cte::Identity => out.extend_from_slice(eol),
            Cte::Base64 => {}
            Cte::Qp => {
                self.ws.clear();
                match self.qp {
                    // `=` at the end of a line (maybe with white space): a soft line break.
                    1 => {}
                    2 => {
                        out.extend_from_slice(&[b'=', self.hi]);
                        out.extend_from_slice(eol);
                    }
                    _ => out.extend_from_slice(eol),
                }
                self.qp = 0;
            }
        }
    }

    /// The end of the encoded text.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.cte == Cte::Qp {
            self.ws.clear();
            match self.qp {
                1 => out.push(b'='),
                2 => out.extend_from_slice(&[b'=', self.hi]),
                _ => {}
            }
            self.qp = 0;
        }
    }
}

/// Collects a piece's text and hands it to `visit` whole or in overlapping windows.
#[derive(Debug)]
struct Sink {
    buf: String,
    max: usize,
    overlap: usize,
    /// A window was handed out: the rest goes out as windows too.
    windowed: bool,
    /// `buf` holds text no window showed yet.
    unseen: bool,
    /// The most bytes `buf` held.
    peak: usize,
}

/// The largest char boundary of `s` at or below `i`.
fn floor_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

type Visit<'v> = &'v mut dyn FnMut(&str, bool) -> bool;

impl Sink {
    fn push(&mut self, text: &str, visit: Visit<'_>) -> bool {
        if text.is_empty() {
            return false;
        }
        self.buf.push_str(text);
        self.unseen = true;
        self.peak = self.peak.max(self.buf.len());
        while self.buf.len() > self.max {
            let mut cut = floor_boundary(&self.buf, self.max);
            if cut == 0 {
                cut = self
                    .buf
                    .char_indices()
                    .nth(1)
                    .map_or(self.buf.len(), |(i, _)| i);
            }
            if visit(self.buf.get(..cut).unwrap_or(""), false) {
                return true;
            }
            self.windowed = true;
            let mut keep = floor_boundary(&self.buf, cut.saturating_sub(self.overlap));
            if keep == 0 {
                keep = cut;
            }
            self.buf.drain(..keep);
            self.unseen = self.buf.len() > cut - keep;
        }
        false
    }

    fn finish(&mut self, visit: Visit<'_>) -> bool {
        let stop = if !self.windowed {
            visit(&self.buf, true)
        } else {
            self.unseen && visit(&self.buf, false)
        };
        self.buf.clear();
        self.windowed = false;
        self.unseen = false;
        stop
    }
}

/// One selected piece of the message: transfer decoding, charset conversion and the sink.
struct Segment {
    te: TransferDecoder,
    dec: encoding_rs::Decoder,
    sink: Sink,
    bytes: Vec<u8>,
    text: String,
    /// The most bytes the scratch buffers held.
    peak_scratch: usize,
}

impl Segment {
    fn new(cte: Cte, charset: Option<&str>, max: usize, overlap: usize) -> Segment {
        let enc = charset.and_then(encoding_for).unwrap_or(encoding_rs::UTF_8);
        Segment {
            te: TransferDecoder::new(cte),
            dec: enc.new_decoder_without_bom_handling(),
            sink: Sink {
                buf: String::new(),
                max,
                overlap,
                windowed: false,
                unseen: false,
                peak: 0,
            },
            bytes: Vec::new(),
            text: String::new(),
            peak_scratch: 0,
        }
    }

    /// Converts `self.bytes` and hands the text on.
    fn convert(&mut self, last: bool, visit: Visit<'_>) -> bool {
        self.text.clear();
        let mut src = self.bytes.as_slice();
        loop {
            let need = self
                .dec
                .max_utf8_buffer_length(src.len())
                .unwrap_or(src.len() * 3 + 16);
            self.text.reserve(need);
            let (res, read, _) = self.dec.decode_to_string(src, &mut self.text, last);
            src = src.get(read..).unwrap_or(&[]);
            if res == encoding_rs::CoderResult::InputEmpty {
                break;
            }
        }
        self.peak_scratch = self
            .peak_scratch
            .max(self.text.capacity())
            .max(self.bytes.capacity());
        self.bytes.clear();
        self.sink.push(&self.text, visit)
    }

    fn data(&mut self, src: &[u8], visit: Visit<'_>) -> bool {
        self.te.data(src, &mut self.bytes);
        self.convert(false, visit)
    }

    fn eol(&mut self, eol: &[u8], visit: Visit<'_>) -> bool {
        self.te.eol(eol, &mut self.bytes);
        self.convert(false, visit)
    }

    fn finish(&mut self, visit: Visit<'_>) -> bool {
        self.te.finish(&mut self.bytes);
        self.convert(true, visit) || self.sink.finish(visit)
    }
}

/// Which kept field a header line continues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kept {
    ContentType,
    Cte,
}

/// What a part header says about its body.
#[derive(Debug, Default)]
struct PartHeader {
    content_type: String,
    cte: String,
    cur: Option<Kept>,
}

impl PartHeader {
    fn append(&mut self, which: Kept, text: &[u8]) {
        let f = match which {
            Kept::ContentType => &mut self.content_type,
            Kept::Cte => &mut self.cte,
        };
        if f.len() + text.len() <= MAX_FIELD {
            f.push_str(&String::from_utf8_lossy(text));
        }
    }

    /// A header line: `start` when it begins a line (else it continues a long one).
    fn line(&mut self, start: bool, content: &[u8]) {
        if start && !content.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            self.cur = None;
            let colon = content.iter().position(|&b| b == b':');
            let Some(colon) = colon else { return };
            let name = content.get(..colon).unwrap_or(&[]);
            let name = name.strip_suffix(b" ").unwrap_or(name);
            let which = if name.eq_ignore_ascii_case(b"content-type") {
                Kept::ContentType
            } else if name.eq_ignore_ascii_case(b"content-transfer-encoding") {
                Kept::Cte
            } else {
                return;
            };
            // A repeated field: the first one counts.
            let f = match which {
                Kept::ContentType => &self.content_type,
                Kept::Cte => &self.cte,
            };
            if !f.is_empty() {
                return;
            }
            self.cur = Some(which);
            self.append(which, content.get(colon + 1..).unwrap_or(&[]));
        } else if let Some(which) = self.cur {
            if start {
                self.append(which, b" ");
            }
            self.append(which, content);
        }
    }

    fn transfer_encoding(&self) -> Cte {
        let v = self.cte.trim();
        if v.eq_ignore_ascii_case("base64") {
            Cte::Base64
        } else if v.eq_ignore_ascii_case("quoted-printable") {
            Cte::Qp
        } else {
            Cte::Identity
        }
    }
}

/// A media type's lower-case type and subtype.
type MediaType = (String, String);

/// Parameters as (lower-case name, value without quotes).
type Params = Vec<(String, String)>;

/// Splits a Content-Type value into its lower-case type and subtype (`None` when it is not
/// `type/subtype`) and its parameters.
fn content_type(value: &str) -> (Option<MediaType>, Params) {
    let mut pieces = Vec::new();
    let (mut cur, mut quoted, mut escaped) = (String::new(), false, false);
    for c in value.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == ';' && !quoted {
            pieces.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    pieces.push(cur);
    let mut it = pieces.into_iter();
    let ty = it.next().unwrap_or_default();
    let ty = ty.trim().to_ascii_lowercase();
    let ty = match ty.split_once('/') {
        Some((t, s)) if !t.trim().is_empty() && !s.trim().is_empty() => {
            Some((t.trim().to_owned(), s.trim().to_owned()))
        }
        _ => None,
    };
    let params = it
        .filter_map(|p| {
            let (n, v) = p.split_once('=')?;
            Some((n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect();
    (ty, params)
}

/// A multipart being walked.
#[derive(Debug)]
struct Frame {
    /// `--` and the boundary.
    delim: Vec<u8>,
    /// `multipart/digest`: parts default to message/rfc822.
    digest: bool,
    /// Its prologue and epilogue are tested (`:content` selected the multipart).
    selected: bool,
    /// The close delimiter was seen: only the epilogue is left.
    closed: bool,
    /// The nesting level of its parts.
    level: usize,
}

/// Where in the structure the walker is.
enum Mode {
    /// In a header section: the top-level one, a part's, or an enclosed message's (whose
    /// text `seg` tests when `:content` selected the message/rfc822 part).
    Header {
        hdr: PartHeader,
        seg: Option<Segment>,
        digest_default: bool,
        level: usize,
    },
    /// In a leaf part's body (`seg` when selected).
    Body { seg: Option<Segment> },
    /// In a multipart's prologue or epilogue (`seg` when the multipart is selected).
    Between { seg: Option<Segment> },
    /// `:raw`: everything after the top-level header section.
    Raw { seg: Segment },
}

struct Walker<'t> {
    transform: &'t Transform,
    max: usize,
    overlap: usize,
    stack: Vec<Frame>,
    mode: Mode,
    /// The line end of the last content line, held back: before a boundary it belongs to
    /// the boundary.
    pending_eol: Vec<u8>,
    stats: Stats,
}

/// What a scan held at most (for the tests that bound memory).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Stats {
    /// The largest read asked of the reader.
    max_read: usize,
    /// The most text one sink held.
    max_text: usize,
    /// The most bytes one segment's scratch buffers held.
    max_scratch: usize,
    /// The longest kept header field.
    max_field: usize,
    /// The most multiparts open at once.
    max_stack: usize,
}

impl Walker<'_> {
    fn note(&mut self) {
        let st = &mut self.stats;
        st.max_stack = st.max_stack.max(self.stack.len());
        match &self.mode {
            Mode::Header { hdr, seg, .. } => {
                st.max_field = st.max_field.max(hdr.content_type.len()).max(hdr.cte.len());
                if let Some(s) = seg {
                    st.max_text = st.max_text.max(s.sink.peak);
                    st.max_scratch = st.max_scratch.max(s.peak_scratch);
                }
            }
            Mode::Body { seg: Some(s) } | Mode::Between { seg: Some(s) } | Mode::Raw { seg: s } => {
                st.max_text = st.max_text.max(s.sink.peak);
                st.max_scratch = st.max_scratch.max(s.peak_scratch);
            }
            _ => {}
        }
    }

    fn segment(&self, cte: Cte, charset: Option<&str>) -> Segment {
        Segment::new(cte, charset, self.max, self.overlap)
    }

    /// Ends whatever the walker is in (at a boundary or the end of the message).
    fn end_mode(&mut self, visit: Visit<'_>) -> bool {
        self.note();

        match &mut self.mode {
            Mode::Header { seg, .. } | Mode::Body { seg } | Mode::Between { seg } => {
                seg.as_mut().is_some_and(|s| s.finish(visit))
            }
            Mode::Raw { seg } => seg.finish(visit),
        }
    }

    /// The blank line after a header section: decides what the body is.
    fn header_end(&mut self, visit: Visit<'_>) -> bool {
        self.note();

        let Mode::Header {
            hdr,
            seg,
            digest_default,
            level,
        } = std::mem::replace(&mut self.mode, Mode::Body { seg: None })
        else {
            return false;
        };
        if let Some(mut s) = seg {
            if s.finish(visit) {
                return true;
            }
        }
        self.pending_eol.clear();
        if *self.transform == Transform::Raw {
            if level == 0 {
                self.mode = Mode::Raw {
                    seg: self.segment(Cte::Identity, None),
                };
            }
            return false;
        }
        let (ty, params) = content_type(&hdr.content_type);
        let (ty, sub) = ty.unwrap_or_else(|| {
            if digest_default {
                ("message".to_owned(), "rfc822".to_owned())
            } else {
                ("text".to_owned(), "plain".to_owned())
            }
        });
        let param = |name: &str| {
            params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        };
        let cte = hdr.transfer_encoding();
        let deeper = level + 1 < MAX_DEPTH;
        let selected = self.transform.selects(&ty, &sub);
        if ty == "multipart" && deeper {
            if let Some(b) = param("boundary") {
                let mut delim = b"--".to_vec();
                delim.extend_from_slice(b.as_bytes());
                self.stack.push(Frame {
                    delim,
                    digest: sub == "digest",
                    selected,
                    closed: false,
                    level: level + 1,
                });
                let seg = selected.then(|| self.segment(Cte::Identity, None));
                self.mode = Mode::Between { seg };
                return false;
            }
        }
        if ty == "message" && sub == "rfc822" && deeper && cte == Cte::Identity {
            let seg = selected.then(|| self.segment(Cte::Identity, None));
            self.mode = Mode::Header {
                hdr: PartHeader::default(),
                seg,
                digest_default: false,
                level: level + 1,
            };
            return false;
        }
        let charset = if ty == "text" { param("charset") } else { None };
        let seg = selected.then(|| self.segment(cte, charset));
        self.mode = Mode::Body { seg };
        false
    }

    /// Is `content` (a whole line without its end) a delimiter of an open multipart? The
    /// index of the frame and whether it is the close delimiter.
    fn boundary(&self, content: &[u8]) -> Option<(usize, bool)> {
        for (i, f) in self.stack.iter().enumerate().rev() {
            if f.closed {
                continue;
            }
            if let Some(rest) = content.strip_prefix(f.delim.as_slice()) {
                let rest = rest.trim_ascii_end();
                if rest.is_empty() {
                    return Some((i, false));
                }
                if rest == b"--" {
                    return Some((i, true));
                }
            }
        }
        None
    }

    fn on_boundary(&mut self, i: usize, close: bool, visit: Visit<'_>) -> bool {
        self.pending_eol.clear();
        if self.end_mode(visit) {
            return true;
        }
        self.stack.truncate(i + 1);
        let Some(f) = self.stack.last_mut() else {
            return false;
        };
        if close {
            f.closed = true;
            let selected = f.selected;
            let seg = selected.then(|| self.segment(Cte::Identity, None));
            self.mode = Mode::Between { seg };
        } else {
            self.mode = Mode::Header {
                hdr: PartHeader::default(),
                seg: None,
                digest_default: f.digest,
                level: f.level,
            };
        }
        false
    }

    /// One line (`start`: it begins a line; `eol`: its line end, empty for a piece of a long
    /// line or the last line without one).
    fn line(&mut self, start: bool, content: &[u8], eol: &[u8], visit: Visit<'_>) -> bool {
        if start && content.len() <= MAX_BOUNDARY_LINE && content.starts_with(b"--") {
            if let Some((i, close)) = self.boundary(content) {
                return self.on_boundary(i, close, visit);
            }
        }
        match &mut self.mode {
            Mode::Header { hdr, seg, .. } => {
                if start && content.is_empty() && !eol.is_empty() {
                    return self.header_end(visit);
                }
                hdr.line(start, content);
                match seg {
                    Some(s) => s.data(content, visit) || s.eol(eol, visit),
                    None => false,
                }
            }
            Mode::Body { seg } | Mode::Between { seg } => match seg {
                Some(s) => {
                    let pending = std::mem::take(&mut self.pending_eol);
                    if !pending.is_empty() && s.eol(&pending, visit) {
                        return true;
                    }
                    self.pending_eol.extend_from_slice(eol);
                    s.data(content, visit)
                }
                None => false,
            },
            Mode::Raw { seg } => {
                let pending = std::mem::take(&mut self.pending_eol);
                if !pending.is_empty() && seg.data(&pending, visit) {
                    return true;
                }
                self.pending_eol.extend_from_slice(eol);
                seg.data(content, visit)
            }
        }
    }

    /// The end of the message.
    fn eof(&mut self, visit: Visit<'_>) -> bool {
        if matches!(self.mode, Mode::Header { .. }) && self.header_end(visit) {
            return true;
        }
        let pending = std::mem::take(&mut self.pending_eol);
        let stop = match &mut self.mode {
            Mode::Body { seg: Some(s) } | Mode::Between { seg: Some(s) } => s.eol(&pending, visit),
            Mode::Raw { seg } => seg.data(&pending, visit),
            _ => false,
        };
        stop || self.end_mode(visit)
    }
}

/// Reads into `buf`, retrying on interruption.
fn read_some(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Splits a line into its content and its line end (`\r\n`, `\n` or none).
fn split_eol(line: &[u8]) -> (&[u8], &[u8]) {
    if let Some(c) = line.strip_suffix(b"\r\n") {
        (c, b"\r\n")
    } else if let Some(c) = line.strip_suffix(b"\n") {
        (c, b"\n")
    } else {
        (line, b"")
    }
}

/// Walks the message from its first byte and calls `visit(text, whole)` for each selected
/// part: once with `whole = true` when the part's text is at most `max_part` bytes, else in
/// windows of at most `max_part` bytes that overlap by `overlap` bytes with `whole = false`
/// (enough for `:contains` of keys up to `overlap + 1` bytes). Stops and returns true as soon
/// as `visit` returns true.
///
/// `max_part` is raised to 8 and `overlap` lowered to half of `max_part` when needed, so
/// that windows always advance. Memory: one [`CHUNK`] read buffer, at most `max_part` plus
/// one converted chunk of text, and the kept header fields.
pub fn scan(
    message: &mut dyn Read,
    transform: &Transform,
    max_part: usize,
    overlap: usize,
    visit: &mut dyn FnMut(&str, bool) -> bool,
) -> io::Result<bool> {
    scan_stats(message, transform, max_part, overlap, visit).map(|(stop, _)| stop)
}

/// [`scan`], also telling what it held at most.
fn scan_stats(
    message: &mut dyn Read,
    transform: &Transform,
    max_part: usize,
    overlap: usize,
    visit: &mut dyn FnMut(&str, bool) -> bool,
) -> io::Result<(bool, Stats)> {
    let max = max_part.max(8);
    let mut w = Walker {
        transform,
        max,
        overlap: overlap.min(max / 2),
        stack: Vec::new(),
        mode: Mode::Header {
            hdr: PartHeader::default(),
            seg: None,
            digest_default: false,
            level: 0,
        },
        pending_eol: Vec::new(),
        stats: Stats::default(),
    };
    let mut buf = vec![0u8; CHUNK];
    let (mut start, mut end) = (0usize, 0usize);
    let mut line_start = true;
    let mut eof = false;
    loop {
        let window = buf.get(start..end).unwrap_or(&[]);
        if let Some(i) = window.iter().position(|&b| b == b'\n') {
            let (content, eol) = split_eol(window.get(..=i).unwrap_or(&[]));
            if w.line(line_start, content, eol, visit) {
                return Ok((true, w.stats));
            }
            start += i + 1;
            line_start = true;
            continue;
        }
        if eof {
            if !window.is_empty() && w.line(line_start, window, b"", visit) {
                return Ok((true, w.stats));
            }
            let stop = w.eof(visit);
            return Ok((stop, w.stats));
        }
        if start > 0 {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        if end == buf.len() {
            // A line longer than the buffer: hand it on in pieces (never a boundary).
            if w.line(line_start, buf.get(..end).unwrap_or(&[]), b"", visit) {
                return Ok((true, w.stats));
            }
            line_start = false;
            end = 0;
            continue;
        }
        let dst = buf.get_mut(end..).unwrap_or(&mut []);
        w.stats.max_read = w.stats.max_read.max(dst.len());
        let n = read_some(message, dst)?;
        if n == 0 {
            eof = true;
        } else {
            end += n;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    /// Every (text, whole) pair `scan` hands out.
    fn collect(msg: &[u8], t: &Transform) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        let stop = scan(&mut &msg[..], t, 1 << 20, 64, &mut |s, whole| {
            out.push((s.to_owned(), whole));
            false
        })
        .unwrap();
        assert!(!stop);
        out
    }

    fn texts(msg: &[u8], t: &Transform) -> Vec<String> {
        collect(msg, t)
            .into_iter()
            .map(|(s, whole)| {
                assert!(whole);
                s
            })
            .collect()
    }

    fn content(types: &[&str]) -> Transform {
        Transform::Content(types.iter().map(|s| (*s).to_owned()).collect())
    }

    const MULTI: &[u8] = b"From: a@b\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
This is the prologue.\r\n\
--outer\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
caf=E9 au lait, a soft=\r\n\
\x20break\r\n\
--outer\r\n\
Content-Type: multipart/alternative;\r\n\
\tboundary=inner\r\n\
\r\n\
--inner\r\n\
Content-Type: text/html\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
PGI+Ym9sZDwv\r\n\
Yj4=\r\n\
--inner\r\n\
\r\n\
no content-type here\r\n\
--inner--\r\n\
inner epilogue\r\n\
--outer\r\n\
Content-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
AAEC\r\n\
--outer--\r\n\
The epilogue.\r\n";

    #[test]
    fn rfc5173_5_3_text_gives_text_parts_decoded() {
        assert_eq!(
            texts(MULTI, &Transform::Text),
            vec![
                "café au lait, a soft break",
                "<b>bold</b>",
                "no content-type here"
            ]
        );
    }

    #[test]
    fn rfc2045_5_2_no_content_type_is_text_plain() {
        let msg = b"Subject: plain\n\nJust text.\n";
        assert_eq!(texts(msg, &Transform::Text), vec!["Just text.\n"]);
        assert_eq!(texts(msg, &content(&["text/plain"])), vec!["Just text.\n"]);
        assert!(texts(msg, &content(&["text/html"])).is_empty());
    }

    #[test]
    fn rfc5173_5_1_raw_is_undecoded_body() {
        let got = texts(MULTI, &Transform::Raw);
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with("This is the prologue.\r\n--outer\r\n"));
        assert!(got[0].contains("caf=E9 au lait"));
        assert!(got[0].contains("PGI+Ym9sZDwv"));
        assert!(got[0].ends_with("The epilogue.\r\n"));
        assert!(!got[0].contains("From: a@b"));
    }

    #[test]
    fn rfc5173_5_2_content_type_and_subtype_matching() {
        assert_eq!(texts(MULTI, &content(&["text/html"])), vec!["<b>bold</b>"]);
        assert_eq!(texts(MULTI, &content(&["TEXT"])).len(), 3);
        assert_eq!(
            texts(MULTI, &content(&["application"])),
            vec!["\u{0}\u{1}\u{2}"]
        );
        assert!(texts(MULTI, &content(&["image"])).is_empty());
    }

    #[test]
    fn rfc5173_5_2_multipart_selected_tests_prologue_and_epilogue() {
        let got = texts(MULTI, &content(&["multipart/mixed"]));
        assert_eq!(got, vec!["This is the prologue.", "The epilogue.\r\n"]);
        let got = texts(MULTI, &content(&["multipart/alternative"]));
        assert_eq!(got, vec!["", "inner epilogue"]);
    }

    #[test]
    fn rfc5173_5_2_empty_type_matches_every_part() {
        let got = texts(MULTI, &content(&[""]));
        // prologue, QP text, inner prologue, html, untyped, inner epilogue, binary, epilogue
        assert_eq!(got.len(), 8, "{got:?}");
    }

    const RFC822: &[u8] = b"Content-Type: multipart/mixed; boundary=b\n\
\n\
--b\n\
Content-Type: text/plain\n\
\n\
outer text\n\
--b\n\
Content-Type: message/rfc822\n\
\n\
From: inner@example.com\n\
Subject: enclosed\n\
Content-Type: multipart/alternative; boundary=c\n\
\n\
--c\n\
Content-Type: text/plain\n\
\n\
enclosed text\n\
--c--\n\
--b--\n";

    #[test]
    fn rfc5173_5_2_message_rfc822_tests_enclosed_header() {
        let got = texts(RFC822, &content(&["message/rfc822"]));
        assert_eq!(
            got,
            vec!["From: inner@example.com\nSubject: enclosed\nContent-Type: multipart/alternative; boundary=c\n"]
        );
    }

    #[test]
    fn rfc5173_5_3_text_walks_into_enclosed_messages() {
        assert_eq!(
            texts(RFC822, &Transform::Text),
            vec!["outer text", "enclosed text"]
        );
    }

    #[test]
    fn rfc2046_5_1_5_digest_parts_default_to_message_rfc822() {
        let msg = b"Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: one\n\nbody one\n--d--\n";
        assert_eq!(texts(msg, &Transform::Text), vec!["body one"]);
        assert_eq!(texts(msg, &content(&["message"])), vec!["Subject: one\n"]);
    }

    #[test]
    fn rfc2046_5_1_1_missing_final_boundary_tolerated() {
        let msg = b"Content-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: text/plain\n\nunterminated\n";
        assert_eq!(texts(msg, &Transform::Text), vec!["unterminated\n"]);
    }

    #[test]
    fn rfc2046_5_1_1_boundary_must_match_exactly() {
        let msg = b"Content-Type: multipart/mixed; boundary=ab\n\n--ab\n\n--abc is not one\n--ab --\n--ab--  \n";
        assert_eq!(
            texts(msg, &Transform::Text),
            vec!["--abc is not one\n--ab --"]
        );
    }

    #[test]
    fn rfc2046_5_1_1_outer_boundary_closes_inner_parts() {
        let msg = b"Content-Type: multipart/mixed; boundary=o\n\n--o\n\
Content-Type: multipart/mixed; boundary=i\n\n--i\n\ninner\n--o\n\nsecond\n--o--\n";
        assert_eq!(texts(msg, &Transform::Text), vec!["inner", "second"]);
    }

    #[test]
    fn rfc2045_6_7_quoted_printable_rules() {
        let msg = b"Content-Transfer-Encoding: quoted-printable\n\nA=3Db =\nc=\nd =ZZ =4\n";
        assert_eq!(texts(msg, &Transform::Text), vec!["A=b cd =ZZ =4\n"]);
        // Rule 3: trailing white space is dropped; a soft break may have some after `=`.
        let msg = b"Content-Transfer-Encoding: quoted-printable\n\nend  \t\nsoft= \nly\ta b\n";
        assert_eq!(texts(msg, &Transform::Text), vec!["end\nsoftly\ta b\n"]);
    }

    #[test]
    fn rfc2045_6_8_base64_ignores_line_breaks_and_junk() {
        let msg = b"Content-Transfer-Encoding: BASE64\n\nSGVs\nbG8g!!V29y\r\nbGQ=\nignored after padding\n";
        assert_eq!(texts(msg, &Transform::Text), vec!["Hello World"]);
    }

    #[test]
    fn rfc2046_4_1_2_charset_converted_to_utf8() {
        let msg = b"Content-Type: text/plain; charset=\"KOI8-R\"\n\n\xf0\xd2\xc9\xd7\xc5\xd4";
        assert_eq!(texts(msg, &Transform::Text), vec!["Привет"]);
        let msg = b"Content-Type: text/plain; charset=x-nonsense\n\nok \xff";
        assert_eq!(texts(msg, &Transform::Text), vec!["ok \u{fffd}"]);
        let msg = b"Content-Type: text/plain; charset=utf-8\n\n\xe2\x82";
        assert_eq!(texts(msg, &Transform::Text), vec!["\u{fffd}"]);
    }

    #[test]
    fn header_only_message_has_one_empty_text_part() {
        assert_eq!(texts(b"Subject: x\n", &Transform::Text), vec![""]);
        assert_eq!(texts(b"", &Transform::Text), vec![""]);
        assert_eq!(texts(b"Subject: x\n\n", &Transform::Raw), vec![""]);
    }

    #[test]
    fn scan_stops_when_visit_says_so() {
        let mut n = 0;
        let stop = scan(
            &mut &MULTI[..],
            &Transform::Text,
            1 << 20,
            64,
            &mut |_, _| {
                n += 1;
                true
            },
        )
        .unwrap();
        assert!(stop);
        assert_eq!(n, 1);
    }

    #[test]
    fn long_parts_come_in_overlapping_windows() {
        let mut msg = b"Subject: big\n\n".to_vec();
        let body: String = (0..5000).map(|i| format!("{i:05}")).collect();
        msg.extend_from_slice(body.as_bytes());
        let got = {
            let mut out = Vec::new();
            scan(
                &mut &msg[..],
                &Transform::Text,
                1000,
                10,
                &mut |s, whole| {
                    out.push((s.to_owned(), whole));
                    false
                },
            )
            .unwrap();
            out
        };
        assert!(got.len() > 20);
        assert!(got.iter().all(|(s, whole)| !whole && s.len() <= 1000));
        // Each window starts with the last 10 bytes of the one before.
        for pair in got.windows(2) {
            let prev = &pair[0].0;
            assert!(pair[1].0.starts_with(&prev[prev.len() - 10..]));
        }
        // Together they cover the body.
        let mut joined = got[0].0.clone();
        for (s, _) in &got[1..] {
            joined.push_str(&s[10..]);
        }
        assert_eq!(joined, body);
    }

    #[test]
    fn windows_never_split_a_character() {
        let mut msg = b"Subject: big\n\n".to_vec();
        msg.extend_from_slice("é€𝄞".repeat(3000).as_bytes());
        scan(&mut &msg[..], &Transform::Text, 1001, 7, &mut |s, _| {
            assert!(s.len() <= 1001);
            false
        })
        .unwrap();
    }

    /// A reader of a generated message that records the largest read asked of it.
    struct Generated {
        head: Vec<u8>,
        pos: usize,
        size: usize,
        max_read: usize,
    }

    impl Read for Generated {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.max_read = self.max_read.max(buf.len());
            let mut n = 0;
            while n < buf.len() && self.pos < self.size {
                let b = match self.head.get(self.pos) {
                    Some(&b) => b,
                    // Body lines of 76 base64 characters.
                    None if (self.pos - self.head.len()) % 77 == 76 => b'\n',
                    None => b"QUJD"[(self.pos - self.head.len()) % 77 % 4],
                };
                buf[n] = b;
                n += 1;
                self.pos += 1;
            }
            Ok(n)
        }
    }

    #[test]
    fn twenty_mib_message_is_read_in_bounded_memory() {
        let head = b"Content-Type: multipart/mixed; boundary=z\n\n--z\n\
Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n"
            .to_vec();
        for t in [Transform::Text, Transform::Raw, content(&[""])] {
            let mut r = Generated {
                head: head.clone(),
                pos: 0,
                size: 20 << 20,
                max_read: 0,
            };
            let mut windows = 0usize;
            let mut last = String::new();
            let (stop, stats) = scan_stats(&mut r, &t, 1 << 20, 64, &mut |s, whole| {
                assert!(s.len() <= 1 << 20);
                if whole {
                    // Only the empty prologue and epilogue of `:content ""`.
                    assert!(s.is_empty(), "{s:?}");
                    return false;
                }
                windows += 1;
                last.clear();
                last.push_str(&s[s.len().saturating_sub(3)..]);
                false
            })
            .unwrap();
            assert!(!stop);
            assert!(windows >= 14, "{t:?}: {windows}");
            assert!(
                r.max_read <= CHUNK && stats.max_read <= CHUNK,
                "{t:?}: {}",
                r.max_read
            );
            assert!(stats.max_text <= (1 << 20) + 3 * CHUNK, "{t:?}: {stats:?}");
            assert!(stats.max_scratch <= 4 * CHUNK, "{t:?}: {stats:?}");
            assert!(stats.max_field <= MAX_FIELD);
            if t == Transform::Text {
                assert_eq!(last, "ABC");
            }
        }
    }

    #[test]
    fn one_huge_line_is_read_in_bounded_memory() {
        let mut msg = b"Subject: x\n\n".to_vec();
        msg.extend(std::iter::repeat_n(b'a', 3 << 20));
        let (_, stats) = scan_stats(&mut &msg[..], &Transform::Text, 1 << 16, 8, &mut |s, _| {
            assert!(s.bytes().all(|b| b == b'a'));
            false
        })
        .unwrap();
        assert!(stats.max_text <= (1 << 16) + 3 * CHUNK);
    }

    #[test]
    fn nesting_depth_and_header_fields_are_bounded() {
        let mut msg = Vec::new();
        for i in 0..100 {
            msg.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n").as_bytes(),
            );
        }
        msg.extend_from_slice(b"\ndeep text\n");
        let (_, stats) = scan_stats(&mut &msg[..], &Transform::Text, 1 << 20, 64, &mut |_, _| {
            false
        })
        .unwrap();
        assert!(stats.max_stack < MAX_DEPTH);
        let mut msg = b"Content-Type: text/plain;".to_vec();
        for _ in 0..100_000 {
            msg.extend_from_slice(b"\n x=y;");
        }
        msg.extend_from_slice(b"\n\nbody\n");
        let (_, stats) = scan_stats(&mut &msg[..], &Transform::Text, 1 << 20, 64, &mut |_, _| {
            false
        })
        .unwrap();
        assert!(stats.max_field <= MAX_FIELD);
    }

    #[test]
    fn random_structures_do_not_panic() {
        let pieces: [&[u8]; 16] = [
            b"Content-Type: multipart/mixed; boundary=a\n",
            b"Content-Type: message/rfc822\n",
            b"Content-Type: text/plain; charset=utf-16\n",
            b"Content-Transfer-Encoding: base64\n",
            b"Content-Transfer-Encoding: quoted-printable\n",
            b"\n",
            b"\r\n",
            b"--a\n",
            b"--a--\n",
            b"=\n",
            b"=4",
            b"\xff\xfe\xc3",
            b"text ",
            b" folded\n",
            b"Content-Type: multipart/digest; boundary=\"a\"\n",
            b"QUJD\n",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..300 {
            let mut msg = Vec::new();
            for _ in 0..60 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                msg.extend_from_slice(pieces[(seed % 16) as usize]);
            }
            for t in [
                Transform::Text,
                Transform::Raw,
                content(&[""]),
                content(&["message"]),
            ] {
                scan(&mut &msg[..], &t, 16, 5, &mut |s, _| {
                    assert!(s.len() <= 16);
                    false
                })
                .unwrap();
            }
        }
    }

    #[test]
    fn read_errors_are_passed_on() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let e = scan(&mut Failing, &Transform::Text, 100, 10, &mut |_, _| false).unwrap_err();
        assert_eq!(e.to_string(), "disk on fire");
    }
}
