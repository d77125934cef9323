//! Fuzz target: the whole sans-IO session on arbitrary bytes, fed in arbitrary chunkings,
//! with recipient verdicts and delivery outcomes drawn from the input itself (from the
//! recipient's local part), so every chunking sees the same store behaviour.
//!
//! The first byte picks the configuration, the second seeds the chunking. Invariants: no
//! panic; the same transcript (replies, message bodies, events) for the whole input at once,
//! one byte at a time and the random chunking; exactly one post-DATA reply per accepted
//! RCPT; Body chunks and output bounded by the input just received. The driver and its
//! checks are `lmtpd::proto::testing`, the one the unit and hardening tests use too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmtpd::proto::testing::fuzz_drive;
use lmtpd::proto::{BareNewline, SessionConfig};

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let cfg = SessionConfig {
        max_message_size: [0, 10, 200, 5000][usize::from(data[0] & 3)],
        max_recipients: 1 + usize::from((data[0] >> 2) & 3),
        max_errors: [0, 3, 20][usize::from(data[0] >> 4) % 3],
        bare_newline: if data[0] & 0x80 != 0 {
            BareNewline::Reject
        } else {
            BareNewline::Normalize
        },
        ..SessionConfig::default()
    };
    let input = &data[2..];
    let whole = fuzz_drive(&cfg, input, &[input.len().max(1)]);
    let ones = fuzz_drive(&cfg, input, &[1]);
    assert_eq!(whole, ones);
    let mut x = u64::from(data[1]) | 0x9E37_79B9_0000_0000;
    let random: Vec<usize> = (0..input.len())
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            1 + (x % 64) as usize
        })
        .collect();
    assert_eq!(whole, fuzz_drive(&cfg, input, &random));
});
