//! Fuzz target: the command-line parser (`command::parse`) on arbitrary bytes.
//!
//! The first byte picks the parse context (SMTPUTF8 on/off, a size limit). Invariants: no
//! panic; an error is a 4xx/5xx reply whose enhanced class matches its first digit and
//! whose wire form is one CRLF-terminated line of at most 512 octets; an accepted RCPT or
//! MAIL path prints back to a command that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmtpd::proto::command::{parse, ParseContext};
use lmtpd::proto::Command;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, line)) = data.split_first() else {
        return;
    };
    let ctx = ParseContext {
        max_message_size: [0, 1, 1000, u64::MAX][usize::from(flags & 3)],
        smtputf8: flags & 4 != 0,
    };
    match parse(line, &ctx) {
        Err(r) => {
            assert!((400..600).contains(&r.code), "{r:?}");
            if let Some(e) = r.enhanced {
                assert_eq!(u16::from(e.0), r.code / 100, "{r:?}");
            }
            let wire = r.to_bytes();
            assert!(wire.ends_with(b"\r\n"));
            for l in wire.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                assert!(l.len() < 512 && l.ends_with(b"\r"));
                assert!(!l[..l.len() - 1].contains(&b'\r'));
            }
        }
        Ok(Command::Rcpt(m)) => {
            let again = format!("RCPT TO:<{m}>");
            assert_eq!(
                parse(again.as_bytes(), &ctx),
                Ok(Command::Rcpt(m)),
                "{again:?}"
            );
        }
        Ok(Command::Lhlo(name)) => {
            assert!(!name.is_empty() && !name.chars().any(char::is_control));
        }
        Ok(_) => {}
    }
});
