//! Fuzz target: the RFC 5321 path parser (`parse_path`) on arbitrary bytes.
//!
//! Invariants: no panic; the rest is a suffix of the input; an accepted mailbox has a
//! non-empty local part of at most 64 octets, a domain of at most 255, no control
//! characters, and its display form `<m>` parses back to the same mailbox with nothing left.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmtpd::proto::address::{parse_path, PathKind, MAX_DOMAIN, MAX_LOCAL_PART};

fuzz_target!(|data: &[u8]| {
    for kind in [PathKind::Reverse, PathKind::Forward] {
        let Ok((m, rest)) = parse_path(data, kind) else {
            continue;
        };
        assert!(data.ends_with(rest));
        let Some(m) = m else {
            assert_eq!(kind, PathKind::Reverse);
            continue;
        };
        assert!(!m.local.is_empty() && m.local.len() <= MAX_LOCAL_PART);
        assert!(m.domain.as_ref().map_or(true, |d| d.len() <= MAX_DOMAIN));
        assert!(!m.local.chars().any(char::is_control));
        let again = format!("<{m}>");
        match parse_path(again.as_bytes(), kind) {
            Ok((Some(m2), rest2)) => {
                assert_eq!(m2, m, "{again:?}");
                assert!(rest2.is_empty());
            }
            other => panic!("{again:?} does not parse back: {other:?}"),
        }
    }
});
