//! The DATA content decoder: a streaming byte state machine that finds the one true end of
//! data (`CR LF . CR LF`), undoes dot-stuffing, converts CRLF to LF, flags bare CR/LF and
//! counts the RFC 1870 message size.

/// Where the decoder is within the content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the start of a line (after CRLF, or right after the DATA command).
    LineStart,
    /// Saw `.` at a line start.
    Dot,
    /// Saw `.` CR at a line start.
    DotCr,
    /// Inside a line.
    Mid,
    /// Saw CR inside a line (not yet known whether LF follows).
    Cr,
    /// The final `CR LF . CR LF` has been consumed.
    Done,
}

/// Streaming decoder for DATA content.
///
/// Output conventions: CRLF becomes LF; a bare LF stays LF (a line break) and is flagged; a bare
/// CR (CR followed by anything but LF) stays CR and is flagged. Only a dot at the start of a
/// line that follows a CRLF is unstuffed, and only `CRLF . CRLF` ends the data — `LF . LF`,
/// `CR . CR`, `LF . CRLF`, `CRLF . LF`, `CRLF . CR CR LF` never do.
#[derive(Clone, Debug)]
pub struct DataDecoder {
    state: State,
    size: u64,
    max_size: u64,
    bare_cr: bool,
    bare_lf: bool,
}

impl DataDecoder {
    /// A decoder positioned right after the CRLF of the DATA command. `max_size` is the fixed
    /// size limit in octets (0 = unlimited); once it is exceeded, no more output is produced.
    pub fn new(max_size: u64) -> Self {
        DataDecoder {
            state: State::LineStart,
            size: 0,
            max_size,
            bare_cr: false,
            bare_lf: false,
        }
    }

    /// Message size so far as RFC 1870 counts it: received octets excluding stuffing dots and
    /// the final `.` CRLF (CRLF counts as two octets).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the size limit has been exceeded.
    pub fn over_limit(&self) -> bool {
        self.max_size != 0 && self.size > self.max_size
    }

    /// Whether a bare CR has been seen.
    pub fn saw_bare_cr(&self) -> bool {
        self.bare_cr
    }

    /// Whether a bare LF has been seen.
    pub fn saw_bare_lf(&self) -> bool {
        self.bare_lf
    }

    /// Whether a bare CR or bare LF has been seen.
    pub fn saw_bare_newline(&self) -> bool {
        self.bare_cr || self.bare_lf
    }

    /// Whether the end of data has been reached.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes `input`, appending content to `out` (at most `input.len() + 1` octets). Stops
    /// right after the end-of-data marker; returns the number of input octets consumed (all of
    /// them unless the end was reached). Content past the size limit is counted, not emitted.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        let start_len = out.len();
        let mut i = 0;
        while i < input.len() && self.state != State::Done {
            // Fast path: copy a run of ordinary bytes in the middle of a line.
            if self.state == State::Mid {
                let rest = input.get(i..).unwrap_or(&[]);
                let run = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
                if run > 0 {
                    self.emit(out, rest.get(..run).unwrap_or(&[]));
                    i += run;
                    continue;
                }
            }
            let Some(&b) = input.get(i) else { break };
            i += 1;
            self.step(b, out);
        }
        if self.over_limit() {
            out.truncate(start_len);
        }
        i
    }

    fn emit(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        self.count(bytes.len() as u64);
        if !self.over_limit() {
            out.extend_from_slice(bytes);
        }
    }

    fn count(&mut self, n: u64) {
        self.size = self.size.saturating_add(n);
    }

    /// Emits a byte that counts as `n` received octets.
    fn put(&mut self, out: &mut Vec<u8>, byte: u8, n: u64) {
        self.count(n);
        if !self.over_limit() {
            out.push(byte);
        }
    }

    fn step(&mut self, b: u8, out: &mut Vec<u8>) {
        match self.state {
            State::LineStart => {
                if b == b'.' {
                    self.state = State::Dot;
                } else {
                    self.mid(b, out);
                }
            }
            State::Dot => {
                // The dot was a stuffing dot unless CR LF follows.
                if b == b'\r' {
                    self.state = State::DotCr;
                } else {
                    self.mid(b, out);
                }
            }
            State::DotCr => {
                if b == b'\n' {
                    self.state = State::Done;
                } else {
                    // `.` CR x: the dot was stuffing, the CR is bare.
                    self.bare_cr = true;
                    self.put(out, b'\r', 1);
                    self.state = State::Mid;
                    self.mid(b, out);
                }
            }
            State::Mid => self.mid(b, out),
            State::Cr => {
                if b == b'\n' {
                    self.put(out, b'\n', 2);
                    self.state = State::LineStart;
                } else {
                    self.bare_cr = true;
                    self.put(out, b'\r', 1);
                    self.state = State::Mid;
                    self.mid(b, out);
                }
            }
            State::Done => {}
        }
    }

    /// Handles a byte in the middle of a line.
    fn mid(&mut self, b: u8, out: &mut Vec<u8>) {
        match b {
            b'\r' => self.state = State::Cr,
            b'\n' => {
                // A bare LF is a line break in the output but not a line start for
                // dot handling.
                self.bare_lf = true;
                self.put(out, b'\n', 1);
                self.state = State::Mid;
            }
            _ => {
                self.put(out, b, 1);
                self.state = State::Mid;
            }
        }
    }
}

/// Streaming decoder for BDAT content (RFC 3030 §2: exactly the announced octets, no
/// dot-stuffing, no end marker). The output follows the DATA conventions so the spool and the
/// stores see the same thing either way: CRLF becomes LF (also when the CR ends one chunk and
/// the LF starts the next), a bare LF stays LF, a bare CR stays CR, and both are flagged.
#[derive(Clone, Debug, Default)]
pub struct ChunkDecoder {
    /// The last octet seen was a CR whose successor is not known yet.
    cr: bool,
    bare_cr: bool,
    bare_lf: bool,
}

impl ChunkDecoder {
    /// A decoder at the start of a message.
    pub fn new() -> Self {
        ChunkDecoder::default()
    }

    /// Decodes all of `input` (chunk octets), appending at most `input.len() + 1` octets to
    /// `out`; a trailing CR is held back until the next octet (or [`ChunkDecoder::finish`]).
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut rest = input;
        while let Some((&b, tail)) = rest.split_first() {
            if std::mem::take(&mut self.cr) {
                if b == b'\n' {
                    out.push(b'\n');
                    rest = tail;
                    continue;
                }
                self.bare_cr = true;
                out.push(b'\r');
            }
            match b {
                b'\r' => {
                    self.cr = true;
                    rest = tail;
                }
                b'\n' => {
                    self.bare_lf = true;
                    out.push(b'\n');
                    rest = tail;
                }
                _ => {
                    let run = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
                    out.extend_from_slice(rest.get(..run).unwrap_or(&[]));
                    rest = rest.get(run..).unwrap_or(&[]);
                }
            }
        }
    }

    /// The message ended: a CR held back is a bare CR (appended to `out`). Idempotent.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.cr) {
            self.bare_cr = true;
            out.push(b'\r');
        }
    }

    /// Whether a bare CR or bare LF has been seen.
    pub fn saw_bare_newline(&self) -> bool {
        self.bare_cr || self.bare_lf
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Decodes `input` in the given chunk sizes; returns (output, consumed, done, decoder).
    fn decode_chunked(input: &[u8], chunk: usize, max: u64) -> (Vec<u8>, usize, DataDecoder) {
        let mut d = DataDecoder::new(max);
        let mut out = Vec::new();
        let mut consumed = 0;
        for c in input.chunks(chunk.max(1)) {
            let mut buf = Vec::new();
            let n = d.decode(c, &mut buf);
            assert!(buf.len() <= c.len() + 1);
            out.extend_from_slice(&buf);
            consumed += n;
            if d.is_done() {
                break;
            }
            assert_eq!(n, c.len());
        }
        (out, consumed, d)
    }

    /// Same result for every chunk size.
    fn decode_all_ways(input: &[u8]) -> (Vec<u8>, usize, DataDecoder) {
        let whole = decode_chunked(input, input.len(), 0);
        for chunk in 1..input.len() {
            let (o, n, d) = decode_chunked(input, chunk, 0);
            assert_eq!(o, whole.0, "chunk {chunk}");
            assert_eq!(n, whole.1, "chunk {chunk}");
            assert_eq!(d.is_done(), whole.2.is_done());
            assert_eq!(d.size(), whole.2.size());
            assert_eq!(d.saw_bare_cr(), whole.2.saw_bare_cr());
            assert_eq!(d.saw_bare_lf(), whole.2.saw_bare_lf());
        }
        whole
    }

    #[test]
    fn crlf_dot_crlf_ends_data_and_crlf_becomes_lf() {
        let (o, n, d) = decode_all_ways(b"a\r\nb\r\n.\r\nQUIT\r\n");
        assert_eq!(o, b"a\nb\n");
        assert_eq!(n, 9);
        assert!(d.is_done());
        assert!(!d.saw_bare_newline());
    }

    #[test]
    fn empty_message_is_dot_crlf_right_after_data() {
        let (o, n, d) = decode_all_ways(b".\r\n");
        assert!(o.is_empty());
        assert_eq!(n, 3);
        assert!(d.is_done());
        assert_eq!(d.size(), 0);
    }

    #[test]
    fn dot_stuffing_is_undone_only_at_line_start() {
        let (o, _, d) = decode_all_ways(b"..foo\r\n..\r\n.x\r\na.b\r\n.\r\n");
        assert_eq!(o, b".foo\n.\nx\na.b\n");
        assert!(d.is_done());
    }

    #[test]
    fn lf_dot_lf_does_not_end_data() {
        let (o, _, d) = decode_all_ways(b"body\n.\nMAIL FROM:<evil@x>\r\n.\r\n");
        assert_eq!(o, b"body\n.\nMAIL FROM:<evil@x>\n");
        assert!(d.is_done());
        assert!(d.saw_bare_lf());
    }

    #[test]
    fn lf_dot_crlf_does_not_end_data() {
        let (o, _, d) = decode_all_ways(b"body\n.\r\nmore\r\n.\r\n");
        assert_eq!(o, b"body\n.\nmore\n");
        assert!(d.saw_bare_lf());
    }

    #[test]
    fn crlf_dot_lf_does_not_end_data() {
        let (o, _, d) = decode_all_ways(b"body\r\n.\nmore\r\n.\r\n");
        // The dot at the start of a CRLF line followed by more characters is a stuffing dot.
        assert_eq!(o, b"body\n\nmore\n");
        assert!(d.saw_bare_lf());
        assert!(d.is_done());
    }

    #[test]
    fn cr_dot_cr_does_not_end_data() {
        let (o, _, d) = decode_all_ways(b"body\r.\rmore\r\n.\r\n");
        assert_eq!(o, b"body\r.\rmore\n");
        assert!(d.saw_bare_cr());
        assert!(!d.saw_bare_lf());
    }

    #[test]
    fn crlf_dot_cr_cr_lf_does_not_end_data() {
        let (o, _, d) = decode_all_ways(b"body\r\n.\r\r\nmore\r\n.\r\n");
        assert_eq!(o, b"body\n\r\nmore\n");
        assert!(d.saw_bare_cr());
        assert!(d.is_done());
    }

    #[test]
    fn unterminated_input_is_not_done() {
        for s in [
            &b"abc\r\n.\r"[..],
            b"abc\r\n.",
            b"abc\r\n",
            b"abc\r",
            b"\n.\n",
            b"",
        ] {
            let (_, n, d) = decode_all_ways(s);
            assert!(!d.is_done(), "{s:?}");
            assert_eq!(n, s.len());
        }
    }

    #[test]
    fn bare_cr_at_chunk_boundary_is_handled() {
        let mut d = DataDecoder::new(0);
        let mut out = Vec::new();
        d.decode(b"a\r", &mut out);
        assert_eq!(out, b"a");
        d.decode(b"b\r", &mut out);
        assert_eq!(out, b"a\rb");
        d.decode(b"\n.\r\n", &mut out);
        assert_eq!(out, b"a\rb\n");
        assert!(d.is_done() && d.saw_bare_cr() && !d.saw_bare_lf());
    }

    #[test]
    fn size_counts_rfc1870_octets() {
        // "..x\r\n" = 5 octets received, 1 stuffing dot -> 4; "ab\r\n" -> 4; final ".\r\n" -> 0.
        let (_, _, d) = decode_all_ways(b"..x\r\nab\r\n.\r\n");
        assert_eq!(d.size(), 8);
        let (_, _, d) = decode_all_ways(b"a\nb\r\r\n.\r\n");
        assert_eq!(d.size(), 6);
    }

    #[test]
    fn over_limit_stops_output_but_reads_to_the_real_end() {
        let input = b"0123456789\r\n0123456789\r\n.\r\nNOOP\r\n";
        for chunk in 1..input.len() {
            let (o, n, d) = decode_chunked(input, chunk, 15);
            assert!(o.len() <= 15, "chunk {chunk}");
            assert!(d.is_done());
            assert!(d.over_limit());
            assert_eq!(n, input.len() - 6);
            assert_eq!(d.size(), 24);
        }
        let (o, _, d) = decode_chunked(input, input.len(), 24);
        assert!(!d.over_limit());
        assert_eq!(o, b"0123456789\n0123456789\n");
    }

    #[test]
    fn long_lines_are_fine() {
        let mut input = vec![b'x'; 10_000];
        input.extend_from_slice(b"\r\n.\r\n");
        let (o, _, d) = decode_chunked(&input, 4096, 0);
        assert_eq!(o.len(), 10_001);
        assert!(d.is_done());
    }

    #[test]
    fn eight_bit_and_control_octets_pass_unchanged() {
        let mut body: Vec<u8> = (0u8..=255).filter(|&b| b != b'\r' && b != b'\n').collect();
        body.extend_from_slice(b"\r\n.\r\n");
        let (o, _, d) = decode_all_ways(&body);
        let mut want: Vec<u8> = (0u8..=255).filter(|&b| b != b'\r' && b != b'\n').collect();
        want.push(b'\n');
        assert_eq!(o, want);
        assert!(!d.saw_bare_newline());
    }

    /// Decodes `input` as BDAT chunks of the given sizes (cycled), then finishes.
    fn chunks_decoded(input: &[u8], size: usize) -> (Vec<u8>, bool) {
        let mut d = ChunkDecoder::new();
        let mut out = Vec::new();
        for c in input.chunks(size.max(1)) {
            let before = out.len();
            d.decode(c, &mut out);
            assert!(out.len() - before <= c.len() + 1);
        }
        d.finish(&mut out);
        d.finish(&mut out);
        (out, d.saw_bare_newline())
    }

    #[test]
    fn chunk_content_crlf_becomes_lf_across_chunk_boundaries() {
        let input = b"a\r\nb\r\n.\r\n..x\r\n";
        for size in 1..=input.len() {
            let (o, bare) = chunks_decoded(input, size);
            assert_eq!(o, b"a\nb\n.\n..x\n", "chunk {size}");
            assert!(!bare);
        }
    }

    #[test]
    fn chunk_content_bare_cr_and_lf_are_kept_and_flagged() {
        for (input, want) in [
            (&b"a\rb"[..], &b"a\rb"[..]),
            (b"a\nb", b"a\nb"),
            (b"a\r", b"a\r"),
            (b"\r\r\n", b"\r\n"),
        ] {
            for size in 1..=input.len() {
                let (o, bare) = chunks_decoded(input, size);
                assert_eq!(o, want, "{input:?} chunk {size}");
                assert!(bare, "{input:?}");
            }
        }
    }
}
