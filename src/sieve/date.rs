//! Dates for the `date` and `currentdate` tests (RFC 5260): RFC 5322 §3.3 date-time parsing
//! (with the obsolete forms), zone conversion and the date parts of RFC 5260 §4.2.
//!
//! The calendar is the proleptic Gregorian one, computed with the days-from-civil
//! arithmetic (no time-zone database: a zone is an offset in minutes).

/// A moment in a particular zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    /// Seconds since the Unix epoch (UTC).
    pub unix: i64,
    /// The zone offset from UTC in minutes in which the parts are shown.
    pub offset_minutes: i32,
}

/// The days from 1970-01-01 to the civil date `y-m-d` (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of day `z` counted from 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// The Modified Julian Day of 1970-01-01.
const MJD_EPOCH: i64 = 40_587;

/// `+hhmm` / `-hhmm` for an offset in minutes.
fn zone_string(offset: i32, colon: bool) -> String {
    let sign = if offset < 0 { '-' } else { '+' };
    let a = offset.unsigned_abs();
    if colon {
        format!("{sign}{:02}:{:02}", a / 60, a % 60)
    } else {
        format!("{sign}{:02}{:02}", a / 60, a % 60)
    }
}

impl DateTime {
    /// The same moment shown in zone `offset_minutes`.
    pub fn in_zone(self, offset_minutes: i32) -> DateTime {
        DateTime {
            unix: self.unix,
            offset_minutes,
        }
    }

    /// The local civil fields: (year, month, day, hour, minute, second, days since epoch).
    fn fields(self) -> (i64, u32, u32, u32, u32, u32, i64) {
        let local = self
            .unix
            .saturating_add(i64::from(self.offset_minutes) * 60);
        let days = local.div_euclid(86_400);
        let secs = local.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        (
            y,
            m,
            d,
            (secs / 3600) as u32,
            (secs / 60 % 60) as u32,
            (secs % 60) as u32,
            days,
        )
    }

    /// The date part `name` (RFC 5260 §4.2: `year`, `month`, `day`, `date`, `julian`, `hour`,
    /// `minute`, `second`, `time`, `iso8601`, `std11`, `zone`, `weekday`), case-insensitive;
    /// `None` for an unknown part.
    ///
    /// `julian` is the Modified Julian Day of the local date; `iso8601` is RFC 3339's
    /// `yyyy-mm-ddThh:mm:ss+hh:mm` (`Z` for offset zero, as Pigeonhole writes it); `std11` is RFC 5322's `Tue, 01 Jul 2003 10:52:37 +0200`;
    /// `weekday` counts from `0` for Sunday.
    pub fn part(self, name: &str) -> Option<String> {
        let (y, mo, d, h, mi, s, days) = self.fields();
        let part = name.to_ascii_lowercase();
        Some(match part.as_str() {
            "year" => format!("{y:04}"),
            "month" => format!("{mo:02}"),
            "day" => format!("{d:02}"),
            "date" => format!("{y:04}-{mo:02}-{d:02}"),
            "julian" => (days + MJD_EPOCH).to_string(),
            "hour" => format!("{h:02}"),
            "minute" => format!("{mi:02}"),
            "second" => format!("{s:02}"),
            "time" => format!("{h:02}:{mi:02}:{s:02}"),
            "iso8601" => format!(
                "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{}",
                if self.offset_minutes == 0 {
                    "Z".to_owned()
                } else {
                    zone_string(self.offset_minutes, true)
                }
            ),
            "std11" => format!(
                "{}, {d:02} {} {y:04} {h:02}:{mi:02}:{s:02} {}",
                DAYS.get(days.rem_euclid(7).wrapping_add(4) as usize % 7)
                    .unwrap_or(&"Sun"),
                MONTHS.get(mo.wrapping_sub(1) as usize).unwrap_or(&"Jan"),
                zone_string(self.offset_minutes, false)
            ),
            "zone" => zone_string(self.offset_minutes, false),
            "weekday" => ((days.rem_euclid(7) + 4) % 7).to_string(),
            _ => return None,
        })
    }
}

/// The offset in minutes of an RFC 5322 zone: `+hhmm`/`-hhmm`, or an obsolete name
/// (§4.3: `UT`, `GMT`, `Z`, the US zones; other alphabetic zones, the military letters
/// included, mean `-0000`, i.e. UTC with no local offset known).
fn zone_offset(z: &str) -> Option<i32> {
    if let Some(m) = parse_zone(z) {
        return Some(m);
    }
    if !z.bytes().all(|b| b.is_ascii_alphabetic()) || z.is_empty() || z.len() > 5 {
        return None;
    }
    let hours = match z.to_ascii_uppercase().as_str() {
        "EDT" => -4,
        "EST" | "CDT" => -5,
        "CST" | "MDT" => -6,
        "MST" | "PDT" => -7,
        "PST" => -8,
        _ => 0,
    };
    Some(hours * 60)
}

/// RFC 5322 text with comments (nested, with quoted pairs) replaced by spaces.
fn strip_comments(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut depth = 0usize;
    let mut it = value.chars();
    while let Some(c) = it.next() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    out.push(' ');
                }
            }
            '\\' if depth > 0 => {
                it.next();
            }
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

fn number(s: &str, max_len: usize) -> Option<u32> {
    if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses an RFC 5322 date-time such as `Tue, 1 Jul 2003 10:52:37 +0200` (the day name and
/// seconds optional, obsolete zone names accepted); `None` when it is not one.
///
/// Obsolete forms (RFC 5322 §4.3): two-digit years are 2000–2049 for `00`–`49` and
/// 1950–1999 for `50`–`99`, three-digit years add 1900; comments and extra white space are
/// ignored. The day name, when present, is not checked against the date. A leap second
/// (`:60`) is accepted and counts as the next second.
pub fn parse(value: &str) -> Option<DateTime> {
    let text = strip_comments(value).replace(',', " , ");
    let mut toks: Vec<&str> = text.split_whitespace().collect();
    // The optional day name.
    if toks
        .first()
        .is_some_and(|t| t.len() >= 3 && t.bytes().all(|b| b.is_ascii_alphabetic()))
    {
        let name = toks.remove(0);
        if !DAYS
            .iter()
            .any(|d| name.get(..3).is_some_and(|p| p.eq_ignore_ascii_case(d)))
        {
            return None;
        }
        if toks.first() == Some(&",") {
            toks.remove(0);
        }
    }
    let mut it = toks.into_iter();
    let day = number(it.next()?, 2)?;
    let month_name = it.next()?;
    let month = MONTHS.iter().position(|m| {
        month_name.len() >= 3
            && month_name
                .get(..3)
                .is_some_and(|p| p.eq_ignore_ascii_case(m))
    })? as u32
        + 1;
    let year_text = it.next()?;
    let year = i64::from(number(year_text, 4)?);
    let year = match year_text.len() {
        1 | 2 if year < 50 => year + 2000,
        1 | 2 => year + 1900,
        3 => year + 1900,
        _ => year,
    };
    let time = it.next()?;
    let mut hms = time.split(':');
    let hour = number(hms.next()?, 2)?;
    let minute = number(hms.next()?, 2)?;
    let second = match hms.next() {
        Some(s) => number(s, 2)?,
        None => 0,
    };
    if hms.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    if day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let offset = zone_offset(it.next()?)?;
    let local = days_from_civil(year, month, day) * 86_400
        + i64::from(hour) * 3600
        + i64::from(minute) * 60
        + i64::from(second);
    Some(DateTime {
        unix: local - i64::from(offset) * 60,
        offset_minutes: offset,
    })
}

/// Parses a `:zone` argument (`+0100`, `-0830`) into minutes: a sign and four digits
/// (RFC 5260 §4.1, RFC 5322 §3.3), minutes at most 59; hours are not bounded further, as
/// RFC 5322's `zone` does not bound them.
pub fn parse_zone(zone: &str) -> Option<i32> {
    let b = zone.as_bytes();
    let sign = match b.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits = zone.get(1..)?;
    if digits.len() != 4 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let hh: i32 = digits.get(..2)?.parse().ok()?;
    let mm: i32 = digits.get(2..)?.parse().ok()?;
    if mm > 59 {
        return None;
    }
    Some(sign * (hh * 60 + mm))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn p(v: &str, part: &str) -> String {
        parse(v).unwrap().part(part).unwrap()
    }

    #[test]
    fn civil_arithmetic_round_trips() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1858, 11, 17), -MJD_EPOCH);
        for z in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn rfc5322_3_3_date_time() {
        let d = parse("Tue, 1 Jul 2003 10:52:37 +0200").unwrap();
        assert_eq!(d.unix, 1_057_049_557);
        assert_eq!(d.offset_minutes, 120);
        assert_eq!(parse("1 Jul 2003 10:52 +0200").unwrap().unix, 1_057_049_520);
        assert_eq!(
            parse("Fri, 21 Nov 1997 09:55:06 -0600").unwrap().unix,
            880_127_706
        );
    }

    #[test]
    fn rfc5322_3_3_comments_and_white_space() {
        let d = parse("Thu,\r\n 13\r\n   Feb\r\n  1969\r\n  23:32\r\n  -0330 (Newfoundland Time)")
            .unwrap();
        assert_eq!(d.offset_minutes, -210);
        assert_eq!(d.part("date").unwrap(), "1969-02-13");
        assert_eq!(d.part("time").unwrap(), "23:32:00");
    }

    #[test]
    fn rfc5322_4_3_two_and_three_digit_years() {
        // RFC 5322 Appendix A.6.1: "21 Nov 97 09:55:06 GMT".
        assert_eq!(p("21 Nov 97 09:55:06 GMT", "year"), "1997");
        assert_eq!(p("1 Jan 49 00:00 GMT", "year"), "2049");
        assert_eq!(p("1 Jan 103 00:00 GMT", "year"), "2003");
    }

    #[test]
    fn rfc5322_4_3_obsolete_zone_names() {
        assert_eq!(parse("1 Jan 2020 00:00 GMT").unwrap().offset_minutes, 0);
        assert_eq!(parse("1 Jan 2020 00:00 UT").unwrap().offset_minutes, 0);
        assert_eq!(parse("1 Jan 2020 00:00 Z").unwrap().offset_minutes, 0);
        assert_eq!(parse("1 Jan 2020 00:00 EST").unwrap().offset_minutes, -300);
        assert_eq!(parse("1 Jan 2020 00:00 EDT").unwrap().offset_minutes, -240);
        assert_eq!(parse("1 Jan 2020 00:00 cst").unwrap().offset_minutes, -360);
        assert_eq!(parse("1 Jan 2020 00:00 PDT").unwrap().offset_minutes, -420);
        assert_eq!(parse("1 Jan 2020 00:00 PST").unwrap().offset_minutes, -480);
        // Military and unknown alphabetic zones mean -0000.
        assert_eq!(parse("1 Jan 2020 00:00 A").unwrap().offset_minutes, 0);
        assert_eq!(parse("1 Jan 2020 00:00 CEST").unwrap().offset_minutes, 0);
    }

    #[test]
    fn rfc5322_3_3_invalid_dates_refused() {
        for bad in [
            "",
            "yesterday",
            "31 Feb 2003 10:00 +0000",
            "29 Feb 2003 10:00 +0000",
            "1 Foo 2003 10:00 +0000",
            "1 Jul 2003 24:00 +0000",
            "1 Jul 2003 10:60 +0000",
            "1 Jul 2003 10:52:37",
            "1 Jul 2003 10:52:37 +02",
            "Xyz, 1 Jul 2003 10:52:37 +0200",
            "1 Jul 20031 10:52 +0000",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert!(parse("29 Feb 2004 10:00 +0000").is_some());
    }

    #[test]
    fn rfc5260_4_2_every_part() {
        let d = parse("Tue, 1 Jul 2003 10:52:37 +0200").unwrap();
        let want = [
            ("year", "2003"),
            ("month", "07"),
            ("day", "01"),
            ("date", "2003-07-01"),
            ("julian", "52821"),
            ("hour", "10"),
            ("minute", "52"),
            ("second", "37"),
            ("time", "10:52:37"),
            ("iso8601", "2003-07-01T10:52:37+02:00"),
            ("std11", "Tue, 01 Jul 2003 10:52:37 +0200"),
            ("zone", "+0200"),
            ("weekday", "2"),
        ];
        for (part, value) in want {
            assert_eq!(d.part(part).unwrap(), value, "{part}");
        }
        assert_eq!(d.part("YEAR").unwrap(), "2003");
        assert_eq!(d.part("fortnight"), None);
    }

    #[test]
    fn rfc5260_4_2_julian_is_modified_julian_day() {
        // RFC 5260 §4.2 gives the computation; MJD 0 is 1858-11-17, 51544 is 2000-01-01.
        assert_eq!(p("17 Nov 1858 00:00 +0000", "julian"), "0");
        assert_eq!(p("1 Jan 2000 12:00 +0000", "julian"), "51544");
        assert_eq!(p("1 Jan 1970 00:00 +0000", "julian"), "40587");
        assert_eq!(p("16 Nov 1858 00:00 +0000", "julian"), "-1");
    }

    #[test]
    fn rfc5260_4_2_weekday_zero_is_sunday() {
        assert_eq!(p("Sun, 4 Jan 1970 00:00 +0000", "weekday"), "0");
        assert_eq!(p("Thu, 1 Jan 1970 00:00 +0000", "weekday"), "4");
        assert_eq!(p("Sat, 31 Dec 2022 23:59:59 +0000", "weekday"), "6");
        assert_eq!(
            p("1 Jan 1969 00:00 +0000", "std11"),
            "Wed, 01 Jan 1969 00:00:00 +0000"
        );
    }

    #[test]
    fn rfc5260_4_2_parts_in_the_zone() {
        let d = parse("Tue, 1 Jul 2003 01:30:00 +0200").unwrap();
        let utc = d.in_zone(0);
        assert_eq!(utc.part("date").unwrap(), "2003-06-30");
        assert_eq!(utc.part("time").unwrap(), "23:30:00");
        assert_eq!(utc.part("weekday").unwrap(), "1");
        assert_eq!(utc.part("zone").unwrap(), "+0000");
        assert_eq!(utc.part("iso8601").unwrap(), "2003-06-30T23:30:00Z");
        let nf = d.in_zone(-210);
        assert_eq!(nf.part("iso8601").unwrap(), "2003-06-30T20:00:00-03:30");
        assert_eq!(nf.part("zone").unwrap(), "-0330");
    }

    #[test]
    fn rfc5260_4_1_zone_argument() {
        assert_eq!(parse_zone("+0100"), Some(60));
        assert_eq!(parse_zone("-0830"), Some(-510));
        assert_eq!(parse_zone("+0000"), Some(0));
        assert_eq!(parse_zone("0100"), None);
        assert_eq!(parse_zone("+01:00"), None);
        assert_eq!(parse_zone("+0160"), None);
        assert_eq!(parse_zone("+１２３４"), None);
        assert_eq!(parse_zone(""), None);
    }

    #[test]
    fn rfc5260_leap_years() {
        assert_eq!(p("29 Feb 2000 00:00 +0000", "julian"), "51603");
        assert!(parse("29 Feb 1900 00:00 +0000").is_none());
        assert_eq!(p("31 Dec 2004 00:00 +0000", "date"), "2004-12-31");
    }

    #[test]
    fn extreme_values_do_not_panic() {
        let d = DateTime {
            unix: i64::MAX,
            offset_minutes: i32::MAX,
        };
        let _ = d.part("std11");
        let d = DateTime {
            unix: i64::MIN,
            offset_minutes: i32::MIN,
        };
        let _ = d.part("iso8601");
        assert!(parse(&"(".repeat(100_000)).is_none());
    }
}
