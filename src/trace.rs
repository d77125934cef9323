//! The trace header block that starts each recipient's copy: `Return-Path`, `X-Original-To`
//! (when the client gave DSN `ORCPT`), `Delivered-To` and `Received` (RFC 5321 §4.4), with
//! an RFC 5322 date in UTC (numeric zone `+0000`).

use std::fmt::Write as _;
use std::time::SystemTime;

use lmtpd_store::{date, Envelope, Recipient};

/// Builds the trace headers for one recipient's copy, LF line endings.
///
/// ```text
/// Return-Path: <sender>
/// Delivered-To: <rcpt>
/// Received: from <lhlo> ([ip]) by <host> with LMTP id <id>
///     for <rcpt>; Mon, 30 Nov 2026 04:21:51 +0000
/// ```
pub fn headers(env: &Envelope, rcpt: &Recipient, hostname: &str, now: SystemTime) -> Vec<u8> {
    let mut s = String::with_capacity(256);
    let _ = writeln!(s, "Return-Path: <{}>", clean(env.sender_or_empty()));
    // Postfix's header name for the recipient as the MTA first saw it (DSN ORCPT).
    if let Some(orig) = &rcpt.orcpt {
        let _ = writeln!(s, "X-Original-To: {}", clean(orig));
    }
    let _ = writeln!(s, "Delivered-To: {}", clean(&rcpt.address));
    let _ = write!(s, "Received: from {}", clean(&env.lhlo));
    if let Some(ip) = env.peer {
        match ip {
            std::net::IpAddr::V4(v4) => {
                let _ = write!(s, " ([{v4}])");
            }
            std::net::IpAddr::V6(v6) => {
                let _ = write!(s, " ([IPv6:{v6}])");
            }
        }
    }
    let proto = if env.smtputf8 { "UTF8LMTP" } else { "LMTP" };
    let _ = writeln!(
        s,
        " by {} with {proto} id {}",
        clean(hostname),
        clean(&env.id)
    );
    let _ = writeln!(
        s,
        "\tfor <{}>; {}",
        clean(&rcpt.address),
        date::rfc5322(now)
    );
    s.into_bytes()
}

/// `trace` with the original client XFORWARD named (`name[addr]`) as a comment on its
/// `Received:` line: `Received: from mx (...) (originally name[addr]) by ...`.
pub fn with_original_client(trace: Vec<u8>, client: &str) -> Vec<u8> {
    let Some(at) = trace
        .windows(10)
        .position(|w| w == b"Received: ")
        .and_then(|r| {
            trace[r..]
                .windows(4)
                .position(|w| w == b" by ")
                .map(|b| r + b)
        })
    else {
        return trace;
    };
    let mut out = Vec::with_capacity(trace.len() + client.len() + 16);
    out.extend_from_slice(&trace[..at]);
    out.extend_from_slice(format!(" (originally {})", clean(client)).as_bytes());
    out.extend_from_slice(&trace[at..]);
    out
}

/// The trace fields a message forwarded from `rcpt`'s mailbox starts with: `Delivered-To`
/// (the loop marker that makes a message coming back be recognised) and `Received`, without
/// `Return-Path` (RFC 5321 §4.4: only final delivery adds it).
pub fn forwarded(env: &Envelope, rcpt: &Recipient, hostname: &str, now: SystemTime) -> Vec<u8> {
    let without_orcpt = Recipient {
        orcpt: None,
        ..rcpt.clone()
    };
    let all = headers(env, &without_orcpt, hostname, now);
    let first = all.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
    all[first..].to_vec()
}

/// Header values must not break the header block: CR, LF and other controls become spaces.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// A recipient of alice@example.org who wrote `addr` in RCPT TO.
    fn rcpt(addr: &str) -> Recipient {
        Recipient {
            address: addr.into(),
            ..Recipient::new("alice", "example.org")
        }
    }

    #[test]
    fn trace_block_over_tcp() {
        let env = Envelope {
            sender: Some("bob@example.net".into()),
            lhlo: "mx.example.net".into(),
            peer: Some("127.0.0.1".parse().expect("ip")),
            smtputf8: false,
            eight_bit: false,
            id: "ABC123".into(),
        };
        let t = UNIX_EPOCH + Duration::from_secs(1_796_012_511);
        let h = String::from_utf8(headers(&env, &rcpt("alice+x@example.org"), "lmtp.local", t))
            .expect("utf8");
        assert_eq!(
            h,
            "Return-Path: <bob@example.net>\n\
             Delivered-To: alice+x@example.org\n\
             Received: from mx.example.net ([127.0.0.1]) by lmtp.local with LMTP id ABC123\n\
             \tfor <alice+x@example.org>; Mon, 30 Nov 2026 04:21:51 +0000\n"
        );
    }

    #[test]
    fn null_sender_unix_socket_and_smtputf8() {
        let env = Envelope {
            sender: None,
            lhlo: "mx\r\nX-Evil: 1".into(),
            peer: None,
            smtputf8: true,
            eight_bit: true,
            id: "I".into(),
        };
        let h = String::from_utf8(headers(&env, &rcpt("ü@example.org"), "h", UNIX_EPOCH))
            .expect("utf8");
        assert!(h.starts_with("Return-Path: <>\n"));
        assert!(h.contains("Received: from mx  X-Evil: 1 by h with UTF8LMTP id I\n"));
        assert_eq!(h.matches('\n').count(), 4, "no injected header lines");
    }

    #[test]
    fn the_original_client_is_a_comment_of_the_received_line() {
        let env = Envelope {
            sender: Some("bob@example.net".into()),
            lhlo: "mta.example.org".into(),
            peer: None,
            smtputf8: false,
            eight_bit: false,
            id: "X1".into(),
        };
        let t = headers(&env, &rcpt("alice@example.org"), "lmtp.local", UNIX_EPOCH);
        let t = String::from_utf8(with_original_client(t, "mx.example.net[192.0.2.1]")).unwrap();
        assert!(
            t.contains("Received: from mta.example.org (originally mx.example.net[192.0.2.1]) by lmtp.local with LMTP id X1\n"),
            "{t}"
        );
    }

    #[test]
    fn rfc3461_orcpt_is_x_original_to_before_delivered_to() {
        let env = Envelope::default();
        let mut r = rcpt("alice@example.org");
        r.orcpt = Some("alias@example.org".into());
        let t = String::from_utf8(headers(&env, &r, "h", UNIX_EPOCH)).unwrap();
        assert!(
            t.starts_with("Return-Path: <>\nX-Original-To: alias@example.org\nDelivered-To: alice@example.org\n"),
            "{t}"
        );
        let f = String::from_utf8(forwarded(&env, &r, "h", UNIX_EPOCH)).unwrap();
        assert!(
            !f.contains("X-Original-To") && !f.contains("Return-Path"),
            "{f}"
        );
    }
}
