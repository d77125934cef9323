//! Unique Maildir file names (`<sec>.M<usec>P<pid>Q<n>R<hex>.<host>`) and host-name escaping.

use std::fs::File;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Deliveries (names handed out) by this process: the `Q` part.
static COUNTER: AtomicU64 = AtomicU64::new(0);
/// Per-process random seed for the `R` part.
static SEED: OnceLock<u64> = OnceLock::new();

/// Escapes a host name for the third part of a Maildir name: `/` → `\057`, `:` → `\072`,
/// `,` → `\054`, control characters → `\ooo`. An empty name becomes `localhost`.
pub(crate) fn escape_host(host: &str) -> String {
    let mut out = String::with_capacity(host.len());
    for c in host.chars() {
        match c {
            '/' => out.push_str("\\057"),
            ':' => out.push_str("\\072"),
            ',' => out.push_str("\\054"),
            c if c.is_control() => out.push_str(&format!("\\{:03o}", u32::from(c))),
            c => out.push(c),
        }
    }
    if out.is_empty() {
        out.push_str("localhost");
    }
    out
}

/// Reads 8 bytes from `/dev/urandom`, or falls back to time ^ pid.
fn seed() -> u64 {
    *SEED.get_or_init(|| {
        let mut buf = [0u8; 8];
        match File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)) {
            Ok(()) => u64::from_le_bytes(buf),
            Err(err) => {
                log::debug!("maildir: /dev/urandom unavailable ({err}); seeding from time and pid");
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                nanos ^ (u64::from(std::process::id()) << 32)
            }
        }
    })
}

/// SplitMix64 finaliser: spreads the seed/counter mix over all bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A fresh unique base name `<sec>.M<usec>P<pid>Q<n>R<8 hex>.<host>`; `host` must already
/// be escaped with [`escape_host`].
pub(crate) fn unique(host: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
    let random = mix(seed() ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15)) as u32;
    format!(
        "{}.M{}P{}Q{}R{:08x}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        n,
        random,
        host
    )
}
