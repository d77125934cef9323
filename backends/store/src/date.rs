//! Calendar dates without a time-zone database, all in UTC: the asctime() form of mbox
//! separator lines and the RFC 5322 form of trace headers.

use std::time::{SystemTime, UNIX_EPOCH};

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Seconds since 1970-01-01 UTC, negative before it.
fn unix_secs(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// The parts of `time`: (year, month 1–12, day 1–31, weekday 0 = Sunday, seconds of day).
fn parts(time: SystemTime) -> (i64, usize, i64, usize, i64) {
    let secs = unix_secs(time);
    let days = secs.div_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let weekday = (days + 4).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    (year, month, day, weekday, secs.rem_euclid(86_400))
}

/// Proleptic Gregorian (year, month 1–12, day 1–31) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, usize, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as usize, day)
}

/// `time` in asctime() form, UTC, without the newline: 24 characters such as
/// `Sat Jan  3 01:05:34 1996` (day of month space-padded).
pub fn asctime(time: SystemTime) -> String {
    let (year, month, day, weekday, tod) = parts(time);
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        DAYS[weekday],
        MONTHS[month - 1],
        day,
        tod / 3600,
        tod % 3600 / 60,
        tod % 60,
        year
    )
}

/// `time` as an RFC 5322 date-time in UTC: `Mon, 30 Nov 2026 04:21:51 +0000`.
pub fn rfc5322(time: SystemTime) -> String {
    let (year, month, day, weekday, tod) = parts(time);
    format!(
        "{}, {day} {} {year} {:02}:{:02}:{:02} +0000",
        DAYS[weekday],
        MONTHS[month - 1],
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn asctime_and_rfc5322_agree_on_known_dates() {
        assert_eq!(asctime(at(0)), "Thu Jan  1 00:00:00 1970");
        assert_eq!(asctime(at(951_782_400)), "Tue Feb 29 00:00:00 2000");
        assert_eq!(asctime(at(1_700_000_000)), "Tue Nov 14 22:13:20 2023");
        assert_eq!(rfc5322(at(0)), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322(at(951_782_400)), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(
            rfc5322(at(1_700_000_000)),
            "Tue, 14 Nov 2023 22:13:20 +0000"
        );
        assert_eq!(
            asctime(UNIX_EPOCH - Duration::from_secs(1)),
            "Wed Dec 31 23:59:59 1969"
        );
    }

    #[test]
    fn civil_from_days_round_trips_leap_years_and_centuries() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(47_540), (2100, 2, 28));
        assert_eq!(civil_from_days(47_541), (2100, 3, 1));
    }
}
