//! Fuzz target: the whole sans-IO session on arbitrary bytes, fed in arbitrary chunkings,
//! with recipient verdicts and delivery outcomes drawn from the input itself (from the
//! recipient's local part), so every chunking sees the same store behaviour.
//!
//! The first byte picks the configuration, the second seeds the chunking. Invariants: no
//! panic; the same transcript (replies, message bodies, events) for the whole input at once,
//! one byte at a time and the random chunking; exactly one post-DATA reply per accepted
//! RCPT; Body chunks and output bounded by the input just received.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmtpd::proto::{
    BareNewline, Enhanced, Event, Mailbox, Reply, Session, SessionConfig, MAX_COMMAND_LINE,
};

fn verdict(m: &Mailbox) -> Result<u32, Reply> {
    let b = m.local.as_bytes().first().copied().unwrap_or(0);
    match b % 4 {
        0 => Err(Reply::new(550, Enhanced(5, 1, 1), "unknown")),
        1 => Err(Reply::new(452, Enhanced(4, 2, 2), "full")),
        _ => Ok(u32::from(m.local.as_bytes().last().copied().unwrap_or(0))),
    }
}

fn outcome(seq: usize, r: u32) -> Reply {
    match r % 3 {
        0 => Reply::new(452, Enhanced(4, 3, 1), format!("fail {seq}")),
        _ => Reply::new(250, Enhanced(2, 0, 0), format!("saved {seq}")),
    }
}

fn drive(cfg: &SessionConfig, input: &[u8], chunks: &[usize]) -> Vec<u8> {
    let mut s: Session<u32> = Session::new(cfg.clone());
    // Events and replies are logged apart: their interleaving depends on the chunking.
    let mut log = Vec::new();
    let mut replies = Vec::new();
    // The body of the message being received: Body events before a size refusal depend
    // on the chunking, so the body is logged only when the message is accepted.
    let mut body = Vec::new();
    let mut seq = 0usize;
    let mut pos = 0;
    let mut last_chunk = 0usize;
    let mut ci = 0;
    loop {
        while let Some(ev) = s.poll() {
            match ev {
                Event::Recipient(m) => {
                    assert!(!m.local.is_empty());
                    let v = verdict(&m);
                    s.recipient_verdict(v);
                }
                Event::MessageStart => {
                    body.clear();
                    log.extend_from_slice(b"\n[start]\n");
                }
                Event::Body(b) => {
                    assert!(!b.is_empty() && b.len() <= last_chunk + MAX_COMMAND_LINE + 1);
                    body.extend_from_slice(b);
                }
                Event::MessageEnd(tx) => {
                    assert!(!tx.rcpts.is_empty());
                    log.append(&mut body);
                    log.extend_from_slice(b"\n[end]\n");
                    let before = s.output().len();
                    let mut want = Vec::new();
                    for &r in &tx.rcpts {
                        seq += 1;
                        let rp = outcome(seq, r);
                        rp.write_to(&mut want);
                        s.delivery_outcome(rp);
                    }
                    assert_eq!(&s.output()[before..], &want[..]);
                }
                Event::MessageDiscarded(tx, r) => {
                    assert!(!tx.rcpts.is_empty());
                    log.extend_from_slice(b"\n[discarded]\n");
                    assert!(s.output().ends_with(&r.to_bytes().repeat(tx.rcpts.len())));
                }
                Event::Close => log.extend_from_slice(b"\n[close]\n"),
            }
        }
        let out = s.take_output();
        assert!(out.len() <= 64 * (last_chunk + MAX_COMMAND_LINE) + 4096);
        assert!(out.is_empty() || out.ends_with(b"\r\n"));
        replies.extend_from_slice(&out);
        if pos >= input.len() {
            break;
        }
        let n = chunks.get(ci).copied().unwrap_or(1).clamp(1, 65536);
        ci += 1;
        let end = (pos + n).min(input.len());
        last_chunk = end - pos;
        s.receive(&input[pos..end]);
        pos = end;
    }
    s.eof();
    while let Some(ev) = s.poll() {
        if let Event::Close = ev {
            log.extend_from_slice(b"\n[close]\n");
        }
    }
    assert!(s.take_output().is_empty());
    log.extend_from_slice(b"\n[replies]\n");
    log.extend_from_slice(&replies);
    log
}

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
    let whole = drive(&cfg, input, &[input.len().max(1)]);
    let ones = drive(&cfg, input, &vec![1; input.len()]);
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
    assert_eq!(whole, drive(&cfg, input, &random));
});
