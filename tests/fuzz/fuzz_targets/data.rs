//! Fuzz target: the DATA decoder on arbitrary bytes in arbitrary chunkings.
//!
//! The first two bytes pick a size limit and the chunking seed. Invariants: no panic; at
//! most `chunk + 1` octets out per call; the same output, size, flags and consumed count
//! whatever the chunking; and the result equals a simple whole-buffer reference model
//! (first `CRLF . CRLF` ends the data, a dot after CRLF is unstuffed, CRLF becomes LF).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmtpd::proto::DataDecoder;

#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    out: Vec<u8>,
    consumed: usize,
    done: bool,
    size: u64,
    bare_cr: bool,
    bare_lf: bool,
    over: bool,
}

fn run(max: u64, input: &[u8], mut seed: u64) -> Decoded {
    let mut d = DataDecoder::new(max);
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < input.len() && !d.is_done() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let n = 1 + (seed % 97) as usize;
        let end = (pos + n).min(input.len());
        let before = out.len();
        let used = d.decode(&input[pos..end], &mut out);
        assert!(used <= end - pos);
        assert!(out.len() - before <= end - pos + 1);
        if used < end - pos {
            assert!(d.is_done());
        }
        pos += used;
    }
    Decoded {
        out,
        consumed: pos,
        done: d.is_done(),
        size: d.size(),
        bare_cr: d.saw_bare_cr(),
        bare_lf: d.saw_bare_lf(),
        over: d.over_limit(),
    }
}

/// The reference: where the data ends and what the unstuffed content is.
fn reference(input: &[u8]) -> (Vec<u8>, Option<usize>) {
    let mut p = b"\r\n".to_vec();
    p.extend_from_slice(input);
    let Some(j) = p.windows(5).position(|w| w == b"\r\n.\r\n") else {
        return (Vec::new(), None);
    };
    if j == 0 {
        return (Vec::new(), Some(3));
    }
    let content = &input[..j - 2];
    let mut out = Vec::new();
    let mut rest = content;
    loop {
        let (line, next) = match rest.windows(2).position(|w| w == b"\r\n") {
            Some(i) => (&rest[..i], Some(&rest[i + 2..])),
            None => (rest, None),
        };
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        out.push(b'\n');
        match next {
            Some(n) => rest = n,
            None => break,
        }
    }
    (out, Some(j + 3))
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let max = [0u64, 1, 64, 4096][usize::from(data[0] & 3)];
    let input = &data[2..];
    let whole = {
        let mut d = DataDecoder::new(max);
        let mut out = Vec::new();
        let consumed = d.decode(input, &mut out);
        Decoded {
            out,
            consumed,
            done: d.is_done(),
            size: d.size(),
            bare_cr: d.saw_bare_cr(),
            bare_lf: d.saw_bare_lf(),
            over: d.over_limit(),
        }
    };
    let chunked = run(max, input, u64::from(data[1]) | 0x100);
    if !whole.over {
        assert_eq!(whole, chunked);
    } else {
        assert!(chunked.over);
        assert_eq!(
            (whole.consumed, whole.done, whole.size),
            (chunked.consumed, chunked.done, chunked.size)
        );
    }
    let (want, end) = reference(input);
    assert_eq!(whole.done, end.is_some());
    if let Some(end) = end {
        assert_eq!(whole.consumed, end);
        if !whole.over {
            assert_eq!(whole.out, want);
        }
    } else {
        assert_eq!(whole.consumed, input.len());
    }
});
