//! Fuzz target: the DATA decoder on arbitrary bytes in arbitrary chunkings.
//!
//! The first two bytes pick a size limit and the chunking seed. Invariants: no panic; at
//! most `chunk + 1` octets out per call; the same output, size, flags and consumed count
//! whatever the chunking; and the result equals a simple whole-buffer reference model
//! (first `CRLF . CRLF` ends the data, a dot after CRLF is unstuffed, CRLF becomes LF). The
//! chunked driver and the reference are `lmtpd::proto::testing`, shared with the hardening
//! tests.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmtpd::proto::testing::{decode_chunked, reference_decode};

/// Chunk sizes 1..=97 from a xorshift seed, enough to cover `len` octets.
fn chunks(len: usize, mut seed: u64) -> Vec<usize> {
    (0..len.max(1))
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            1 + (seed % 97) as usize
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let max = [0u64, 1, 64, 4096][usize::from(data[0] & 3)];
    let input = &data[2..];
    let whole = decode_chunked(max, input, &[input.len().max(1)]);
    let chunked = decode_chunked(max, input, &chunks(input.len(), u64::from(data[1]) | 0x100));
    if !whole.over {
        assert_eq!(whole, chunked);
    } else {
        assert!(chunked.over);
        assert_eq!(
            (whole.consumed, whole.done, whole.size),
            (chunked.consumed, chunked.done, chunked.size)
        );
    }
    match reference_decode(input) {
        Some((want, end)) => {
            assert!(whole.done);
            assert_eq!(whole.consumed, end);
            if !whole.over {
                assert_eq!(whole.out, want);
            }
        }
        None => {
            assert!(!whole.done);
            assert_eq!(whole.consumed, input.len());
        }
    }
});
