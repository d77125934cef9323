//! Dates for the `date` and `currentdate` tests (RFC 5260): RFC 5322 §3.3 date-time parsing
//! (with the obsolete forms), zone conversion and the date parts of RFC 5260 §4.2.

/// A moment in a particular zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    /// Seconds since the Unix epoch (UTC).
    pub unix: i64,
    /// The zone offset from UTC in minutes in which the parts are shown.
    pub offset_minutes: i32,
}

impl DateTime {
    /// The same moment shown in zone `offset_minutes`.
    pub fn in_zone(self, offset_minutes: i32) -> DateTime {
        DateTime { unix: self.unix, offset_minutes }
    }

    /// The date part `name` (RFC 5260 §4.2: `year`, `month`, `day`, `date`, `julian`, `hour`,
    /// `minute`, `second`, `time`, `iso8601`, `std11`, `zone`, `weekday`), case-insensitive;
    /// `None` for an unknown part.
    pub fn part(self, name: &str) -> Option<String> {
        let _ = name;
        unimplemented!()
    }
}

/// Parses an RFC 5322 date-time such as `Tue, 1 Jul 2003 10:52:37 +0200` (the day name and
/// seconds optional, obsolete zone names accepted); `None` when it is not one.
pub fn parse(value: &str) -> Option<DateTime> {
    let _ = value;
    unimplemented!()
}

/// Parses a `:zone` argument (`+0100`, `-0830`) into minutes.
pub fn parse_zone(zone: &str) -> Option<i32> {
    let _ = zone;
    unimplemented!()
}
