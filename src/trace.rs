//! The trace header block that starts each recipient's copy: `Return-Path`, `Delivered-To`
//! and `Received` (RFC 5321 §4.4), with an RFC 5322 date in UTC (numeric zone `+0000`).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use lmtpd_store::{Envelope, Recipient};

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
    let _ = writeln!(s, "\tfor <{}>; {}", clean(&rcpt.address), rfc5322_date(now));
    s.into_bytes()
}

/// Header values must not break the header block: CR, LF and other controls become spaces.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Formats a time as an RFC 5322 date-time in UTC: `Mon, 30 Nov 2026 04:21:51 +0000`.
pub fn rfc5322_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days.rem_euclid(7)) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    format!(
        "{wd}, {d} {mon} {y} {:02}:{:02}:{:02} +0000",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month 1–12, day 1–31), proleptic Gregorian
/// (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lmtpd_store::Quota;
    use std::time::Duration;

    fn rcpt(addr: &str) -> Recipient {
        Recipient {
            address: addr.into(),
            user: addr.into(),
            local: "alice".into(),
            domain: "example.org".into(),
            detail: None,
            quota: Quota::default(),
            trace: Vec::new(),
        }
    }

    #[test]
    fn dates_are_rfc5322_with_numeric_zone() {
        let t = UNIX_EPOCH + Duration::from_secs(1_796_012_511); // 2026-11-30 04:21:51 UTC
        assert_eq!(rfc5322_date(t), "Mon, 30 Nov 2026 04:21:51 +0000");
        assert_eq!(rfc5322_date(UNIX_EPOCH), "Thu, 1 Jan 1970 00:00:00 +0000");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc5322_date(leap), "Tue, 29 Feb 2000 00:00:00 +0000");
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
}
