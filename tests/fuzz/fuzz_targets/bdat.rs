//! Fuzz target: BDAT framing. The input is turned into a conversation of BDAT chunks
//! (LHLO, MAIL, RCPTs, then chunks whose announced size is right, short or long, sometimes
//! LAST, with commands between them) and run through the whole session like the `session`
//! target: no panic, the same transcript for every chunking, exactly one reply per non-LAST
//! chunk and one per accepted recipient after LAST (checked by `lmtpd::proto::testing`).
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
        bare_newline: if data[0] & 0x80 != 0 {
            BareNewline::Reject
        } else {
            BareNewline::Normalize
        },
        ..SessionConfig::default()
    };
    let mut conv = b"LHLO x\r\nMAIL FROM:<s@x>\r\nRCPT TO:<b1@x>\r\nRCPT TO:<c2@x>\r\n".to_vec();
    let mut rest = &data[2..];
    while let Some((&op, tail)) = rest.split_first() {
        let len = usize::from(op & 0x1f).min(tail.len());
        let (content, next) = tail.split_at(len);
        // Announced size: right, one short, one long.
        let size = match (op >> 5) & 3 {
            0 | 1 => len,
            2 => len.saturating_sub(1),
            _ => len + 1,
        };
        let last = if op & 0x80 != 0 { " LAST" } else { "" };
        conv.extend_from_slice(format!("BDAT {size}{last}\r\n").as_bytes());
        conv.extend_from_slice(content);
        if op & 0x80 != 0 {
            conv.extend_from_slice(b"MAIL FROM:<s@x>\r\nRCPT TO:<e6@x>\r\n");
        }
        rest = next;
    }
    let whole = fuzz_drive(&cfg, &conv, &[conv.len().max(1)]);
    assert_eq!(whole, fuzz_drive(&cfg, &conv, &[1]));
    let sizes: Vec<usize> = data.iter().map(|&b| 1 + usize::from(b % 37)).collect();
    assert_eq!(whole, fuzz_drive(&cfg, &conv, &sizes));
});
