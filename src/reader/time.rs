//! Timestamps as operators paste them and as servers log them.
//!
//! Every time is nanoseconds since the Unix epoch, UTC, as a `u64` (enough until 2554).
//! [`parse_time`] reads the forms people paste; [`format_time`] and [`format_time_ns`]
//! write RFC 3339 UTC; [`ClfTimeCache`] is the fast path the access-log parser uses for the
//! common-log-format times that repeat from one line to the next.
//!
//! A time without a UTC offset is refused: servers often log in local time, and a local
//! time read as UTC is off by hours, which points at the wrong subscriber.

use std::fmt;

const NS_PER_SEC: u64 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;

/// The forms [`parse_time`] accepts, named in its error messages.
pub const ACCEPTED_FORMS: &str = "accepted forms: RFC 3339 with an offset \
     (2026-11-25T10:11:12Z, 2026-11-25 10:11:12.5+01:00), epoch seconds \
     (1700000000, 1700000000.25), common-log-format time ([10/Oct/2000:13:55:36 -0700])";

/// Why a time could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("no time given; {ACCEPTED_FORMS}")]
    Empty,
    #[error(
        "{text:?} has no UTC offset: add Z or an offset such as +01:00 or -0700 \
         (server logs written in local time are a classic trap: read as UTC they are \
         hours off and point at the wrong subscriber)"
    )]
    NoOffset { text: String },
    #[error("{text:?} is before 1970-01-01T00:00:00Z")]
    BeforeEpoch { text: String },
    #[error("{text:?} is too late (times end in 2554)")]
    TooLate { text: String },
    #[error("{text:?}: {reason}; {ACCEPTED_FORMS}")]
    Invalid { text: String, reason: &'static str },
    #[error("{text:?} is not a time; {ACCEPTED_FORMS}")]
    Unrecognised { text: String },
}

/// An error before it is tied to its text, so that the fast paths do not allocate until
/// they must report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fail {
    NoOffset,
    BeforeEpoch,
    TooLate,
    Invalid(&'static str),
    Unrecognised,
}

impl Fail {
    fn with_text(self, text: &str) -> TimeError {
        let text = text.to_owned();
        match self {
            Fail::NoOffset => TimeError::NoOffset { text },
            Fail::BeforeEpoch => TimeError::BeforeEpoch { text },
            Fail::TooLate => TimeError::TooLate { text },
            Fail::Invalid(reason) => TimeError::Invalid { text, reason },
            Fail::Unrecognised => TimeError::Unrecognised { text },
        }
    }
}

// ---------------------------------------------------------------------------
// Calendar arithmetic (proleptic Gregorian)

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(year) => 29,
        _ => 28,
    }
}

/// Leap years among years 1..=year (extended below 1 by floor division).
fn leap_years_through(year: i64) -> i64 {
    year.div_euclid(4) - year.div_euclid(100) + year.div_euclid(400)
}

/// Days from 1970-01-01 to January 1st of `year`.
fn days_before_year(year: i64) -> i64 {
    365 * (year - 1970) + leap_years_through(year - 1) - leap_years_through(1969)
}

/// Days of the year before the first of `month` (1..=12).
fn days_before_month(year: i64, month: u32) -> i64 {
    const CUMULATIVE: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let leap_day = i64::from(month > 2 && is_leap(year));
    CUMULATIVE[(month - 1) as usize] + leap_day
}

/// Days from 1970-01-01 to the given date (negative before).
fn days_from_date(year: i64, month: u32, day: u32) -> i64 {
    days_before_year(year) + days_before_month(year, month) + i64::from(day) - 1
}

/// The date `days` days after 1970-01-01.
fn date_from_days(days: i64) -> (i64, u32, u32) {
    // 366 days a year underestimates the year; step up to the right one.
    let mut year = 1970 + days.div_euclid(366);
    while days_before_year(year + 1) <= days {
        year += 1;
    }
    let mut day_of_year = days - days_before_year(year);
    let mut month = 1;
    loop {
        let length = i64::from(days_in_month(year, month));
        if day_of_year < length || month == 12 {
            break;
        }
        day_of_year -= length;
        month += 1;
    }
    (year, month, day_of_year as u32 + 1)
}

/// A civil time with its offset from UTC, checked field by field.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    offset_secs: i64,
}

impl Civil {
    fn check(&self) -> Result<(), Fail> {
        if !(1..=12).contains(&self.month) {
            return Err(Fail::Invalid("the month is out of range"));
        }
        if self.day == 0 || self.day > days_in_month(self.year, self.month) {
            return Err(Fail::Invalid("the day is out of range for its month"));
        }
        if self.hour > 23 {
            return Err(Fail::Invalid("the hour is out of range"));
        }
        if self.minute > 59 {
            return Err(Fail::Invalid("the minute is out of range"));
        }
        // 60 is a leap second; it counts as the first second of the next minute.
        if self.second > 60 {
            return Err(Fail::Invalid("the second is out of range"));
        }
        Ok(())
    }

    /// Seconds since the epoch in UTC, possibly negative.
    fn epoch_secs(&self) -> Result<i64, Fail> {
        self.check()?;
        let days = days_from_date(self.year, self.month, self.day);
        let secs = days * SECS_PER_DAY
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        Ok(secs - self.offset_secs)
    }
}

fn to_ns(secs: i64, fraction_ns: u64) -> Result<u64, Fail> {
    let secs = u64::try_from(secs).map_err(|_| Fail::BeforeEpoch)?;
    secs.checked_mul(NS_PER_SEC)
        .and_then(|ns| ns.checked_add(fraction_ns))
        .ok_or(Fail::TooLate)
}

// ---------------------------------------------------------------------------
// Parsing

/// Reads `count` ASCII digits at `at`.
fn digits(bytes: &[u8], at: usize, count: usize) -> Option<u32> {
    let field = bytes.get(at..at + count)?;
    field.iter().try_fold(0u32, |value, &b| {
        b.is_ascii_digit().then(|| value * 10 + u32::from(b - b'0'))
    })
}

/// Reads the digits of a decimal fraction as nanoseconds; digits past the ninth are
/// dropped (truncation), others must be digits.
fn fraction_ns(field: &[u8]) -> Result<u64, Fail> {
    if field.is_empty() {
        return Err(Fail::Invalid("a decimal point needs digits after it"));
    }
    let mut ns = 0u64;
    for (index, &b) in field.iter().enumerate() {
        if !b.is_ascii_digit() {
            return Err(Fail::Invalid("the fraction of a second is not a number"));
        }
        if index < 9 {
            ns = ns * 10 + u64::from(b - b'0');
        }
    }
    for _ in field.len()..9 {
        ns *= 10;
    }
    Ok(ns)
}

/// Parses a time in any accepted form (see [`ACCEPTED_FORMS`]) into nanoseconds since the
/// Unix epoch, UTC.
///
/// - RFC 3339 with an offset: `2026-11-25T10:11:12Z`, `2026-11-25T10:11:12.123456789+01:00`;
///   `t`/`z` may be lower case, a space may replace the `T`, the offset may also be
///   written `+0100`, `UTC` or `GMT`, optionally after a space. Fractions beyond nine
///   digits are truncated.
/// - Epoch seconds with an optional fraction: `1700000000`, `1700000000.25`.
/// - Common-log-format time, with or without brackets: `[10/Oct/2000:13:55:36 -0700]`.
///
/// A time without an offset is refused ([`TimeError::NoOffset`]), as is any time before
/// 1970 or after 2554.
pub fn parse_time(text: &str) -> Result<u64, TimeError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(TimeError::Empty);
    }
    parse_inner(trimmed).map_err(|fail| fail.with_text(text))
}

fn parse_inner(text: &str) -> Result<u64, Fail> {
    let bytes = text.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err(Fail::Unrecognised);
    };
    if first == b'[' {
        let inner = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .ok_or(Fail::Invalid("the opening bracket has no closing one"))?;
        return parse_clf(inner.trim().as_bytes());
    }
    if first == b'-' && bytes.get(1).is_some_and(u8::is_ascii_digit) {
        return Err(Fail::BeforeEpoch);
    }
    if bytes.iter().all(|&b| b.is_ascii_digit() || b == b'.') {
        return parse_epoch(bytes);
    }
    if bytes.get(2) == Some(&b'/') || bytes.get(1) == Some(&b'/') {
        return parse_clf(bytes);
    }
    if bytes.len() >= 10 && bytes[4] == b'-' && bytes[7] == b'-' {
        return parse_rfc3339(bytes);
    }
    Err(Fail::Unrecognised)
}

fn parse_epoch(bytes: &[u8]) -> Result<u64, Fail> {
    let (whole, fraction) = match memchr::memchr(b'.', bytes) {
        Some(dot) => (&bytes[..dot], Some(&bytes[dot + 1..])),
        None => (bytes, None),
    };
    if whole.is_empty() {
        return Err(Fail::Invalid(
            "epoch seconds need digits before the decimal point",
        ));
    }
    // 11 digits of seconds reach the year 5138; more are milliseconds or microseconds.
    if whole.len() > 11 {
        return Err(Fail::Invalid(
            "too many digits for epoch seconds (milliseconds? divide by 1000)",
        ));
    }
    let secs = whole
        .iter()
        .fold(0i64, |value, &b| value * 10 + i64::from(b - b'0'));
    let fraction = match fraction {
        Some(field) => fraction_ns(field)?,
        None => 0,
    };
    to_ns(secs, fraction)
}

fn parse_rfc3339(bytes: &[u8]) -> Result<u64, Fail> {
    const SHAPE: Fail = Fail::Invalid("expected yyyy-mm-ddThh:mm:ss[.fraction] then an offset");
    if bytes.len() == 10 {
        return Err(Fail::Invalid("a date needs a time of day and an offset"));
    }
    let separator_ok = matches!(bytes[10], b'T' | b't' | b' ');
    let fields_ok = bytes.get(13) == Some(&b':') && bytes.get(16) == Some(&b':');
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        digits(bytes, 0, 4),
        digits(bytes, 5, 2),
        digits(bytes, 8, 2),
        digits(bytes, 11, 2),
        digits(bytes, 14, 2),
        digits(bytes, 17, 2),
    ) else {
        return Err(SHAPE);
    };
    if !separator_ok || !fields_ok {
        return Err(SHAPE);
    }
    let mut rest = &bytes[19..];
    let mut fraction = 0;
    if let Some(after_dot) = rest.strip_prefix(b".") {
        let end = after_dot
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(after_dot.len());
        fraction = fraction_ns(&after_dot[..end])?;
        rest = &after_dot[end..];
    }
    let offset_secs = parse_offset(rest)?;
    let civil = Civil {
        year: i64::from(year),
        month,
        day,
        hour,
        minute,
        second,
        offset_secs,
    };
    to_ns(civil.epoch_secs()?, fraction)
}

/// Reads `Z`, `z`, `UTC`, `GMT`, `+hh:mm`, `-hh:mm`, `+hhmm`, `-hhmm`, `+hh`, optionally
/// after one space, into seconds east of UTC.
fn parse_offset(text: &[u8]) -> Result<i64, Fail> {
    let text = text.strip_prefix(b" ").unwrap_or(text);
    match text {
        [] => return Err(Fail::NoOffset),
        b"Z" | b"z" | b"UTC" | b"GMT" | b"utc" | b"gmt" => return Ok(0),
        _ => {}
    }
    let sign = match text[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return Err(Fail::Invalid("the offset must be Z or start with + or -")),
    };
    let body = &text[1..];
    let (hours, minutes) = match body.len() {
        2 => (digits(body, 0, 2), Some(0)),
        4 => (digits(body, 0, 2), digits(body, 2, 2)),
        5 if body[2] == b':' => (digits(body, 0, 2), digits(body, 3, 2)),
        _ => (None, None),
    };
    match (hours, minutes) {
        (Some(h), Some(m)) if h <= 23 && m <= 59 => Ok(sign * i64::from(h * 3600 + m * 60)),
        _ => Err(Fail::Invalid("the offset must be ±hh:mm or ±hhmm")),
    }
}

fn month_number(name: &[u8]) -> Option<u32> {
    const NAMES: [&[u8; 3]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    let lower = [
        name.first()?.to_ascii_lowercase(),
        name.get(1)?.to_ascii_lowercase(),
        name.get(2)?.to_ascii_lowercase(),
    ];
    NAMES
        .iter()
        .position(|n| **n == lower)
        .map(|index| index as u32 + 1)
}

/// `dd/Mon/yyyy:HH:MM:SS ±hhmm` → (seconds since the epoch at the start of that minute,
/// the second within it).
fn clf_fields(bytes: &[u8]) -> Result<(i64, u32), Fail> {
    const SHAPE: Fail = Fail::Invalid("expected dd/Mon/yyyy:hh:mm:ss ±hhmm");
    // A single-digit day is tolerated by padding the view.
    if bytes.get(1) == Some(&b'/') {
        if bytes.len() > 31 {
            return Err(SHAPE);
        }
        let mut padded = [b'0'; 32];
        padded[1..=bytes.len()].copy_from_slice(bytes);
        return clf_fields(&padded[..=bytes.len()]);
    }
    let shape_ok = bytes.get(2) == Some(&b'/')
        && bytes.get(6) == Some(&b'/')
        && bytes.get(11) == Some(&b':')
        && bytes.get(14) == Some(&b':')
        && bytes.get(17) == Some(&b':');
    let (Some(day), Some(month), Some(year), Some(hour), Some(minute), Some(second)) = (
        digits(bytes, 0, 2),
        bytes.get(3..6).and_then(month_number),
        digits(bytes, 7, 4),
        digits(bytes, 12, 2),
        digits(bytes, 15, 2),
        digits(bytes, 18, 2),
    ) else {
        return Err(SHAPE);
    };
    if !shape_ok {
        return Err(SHAPE);
    }
    let offset_secs = parse_offset(&bytes[20..])?;
    let civil = Civil {
        year: i64::from(year),
        month,
        day,
        hour,
        minute,
        second,
        offset_secs,
    };
    let secs = civil.epoch_secs()?;
    Ok((secs - i64::from(second), second))
}

fn parse_clf(bytes: &[u8]) -> Result<u64, Fail> {
    let (minute_secs, second) = clf_fields(bytes)?;
    to_ns(minute_secs + i64::from(second), 0)
}

/// Remembers the last common-log-format time it parsed, so that lines logged in the same
/// minute cost a comparison and two digits instead of a full parse.
///
/// Takes the text between the brackets: `10/Oct/2000:13:55:36 -0700`.
#[derive(Debug, Clone, Default)]
pub struct ClfTimeCache {
    /// The last 26-byte time parsed; meaningful when `valid`.
    key: [u8; 26],
    /// Nanoseconds since the epoch at second 00 of that minute.
    minute_ns: u64,
    valid: bool,
}

impl ClfTimeCache {
    pub fn new() -> ClfTimeCache {
        ClfTimeCache::default()
    }

    /// Parses `dd/Mon/yyyy:HH:MM:SS ±hhmm` (no brackets); other forms are left to
    /// [`parse_time`], so any form it accepts is accepted here too.
    pub fn parse(&mut self, text: &str) -> Result<u64, TimeError> {
        let bytes = text.as_bytes();
        if self.valid
            && bytes.len() == 26
            && bytes[..17] == self.key[..17]
            && bytes[19..] == self.key[19..]
            && let Some(second) = digits(bytes, 17, 2)
            && second < 60
        {
            return Ok(self.minute_ns + u64::from(second) * NS_PER_SEC);
        }
        if bytes.len() == 26 && bytes[2] == b'/' {
            let (minute_secs, second) = clf_fields(bytes).map_err(|f| f.with_text(text))?;
            let ns = to_ns(minute_secs + i64::from(second), 0).map_err(|f| f.with_text(text))?;
            if let Ok(minute_ns) = to_ns(minute_secs, 0) {
                self.key.copy_from_slice(bytes);
                self.minute_ns = minute_ns;
                self.valid = true;
            }
            return Ok(ns);
        }
        parse_time(text)
    }
}

// ---------------------------------------------------------------------------
// Formatting

/// Writes a time as RFC 3339 UTC without allocating: `2026-11-25T10:11:12.123Z`
/// ([`TimeDisplay::millis`]) or `2026-11-25T10:11:12.123456789Z` ([`TimeDisplay::nanos`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeDisplay {
    ns: u64,
    /// Digits of the fraction: 3 or 9.
    fraction_digits: usize,
}

impl TimeDisplay {
    pub fn millis(ns: u64) -> TimeDisplay {
        TimeDisplay {
            ns,
            fraction_digits: 3,
        }
    }

    pub fn nanos(ns: u64) -> TimeDisplay {
        TimeDisplay {
            ns,
            fraction_digits: 9,
        }
    }

    /// The text in a stack buffer, and its length.
    fn render(self) -> ([u8; 30], usize) {
        fn put(buf: &mut [u8], mut value: u64) {
            for slot in buf.iter_mut().rev() {
                *slot = b'0' + (value % 10) as u8;
                value /= 10;
            }
        }
        let secs = self.ns / NS_PER_SEC;
        let days = (secs / SECS_PER_DAY as u64) as i64;
        let second_of_day = secs % SECS_PER_DAY as u64;
        let (year, month, day) = date_from_days(days);
        let mut buf = *b"0000-00-00T00:00:00.000000000Z";
        put(&mut buf[0..4], year as u64);
        put(&mut buf[5..7], u64::from(month));
        put(&mut buf[8..10], u64::from(day));
        put(&mut buf[11..13], second_of_day / 3600);
        put(&mut buf[14..16], second_of_day % 3600 / 60);
        put(&mut buf[17..19], second_of_day % 60);
        put(&mut buf[20..29], self.ns % NS_PER_SEC);
        let len = 20 + self.fraction_digits;
        buf[len] = b'Z';
        (buf, len + 1)
    }
}

impl fmt::Display for TimeDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (buf, len) = self.render();
        // Every byte written is ASCII.
        f.write_str(std::str::from_utf8(&buf[..len]).map_err(|_| fmt::Error)?)
    }
}

/// RFC 3339 UTC with millisecond precision (truncated): `2026-11-25T10:11:12.123Z`.
pub fn format_time(ns: u64) -> String {
    TimeDisplay::millis(ns).to_string()
}

/// RFC 3339 UTC with all nine digits: `2026-11-25T10:11:12.123456789Z`; parses back to
/// the same value.
pub fn format_time_ns(ns: u64) -> String {
    TimeDisplay::nanos(ns).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: u64 = NS_PER_SEC;

    #[test]
    fn known_values() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_time("2000-10-10T20:55:36Z"), Ok(971_211_336 * S));
        assert_eq!(
            parse_time("[10/Oct/2000:13:55:36 -0700]"),
            Ok(971_211_336 * S)
        );
        assert_eq!(
            parse_time("10/Oct/2000:13:55:36 -0700"),
            Ok(971_211_336 * S)
        );
        assert_eq!(
            parse_time("  10/oct/2000:13:55:36 -0700 "),
            Ok(971_211_336 * S)
        );
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000 * S));
        assert_eq!(parse_time("1700000000"), Ok(1_700_000_000 * S));
        assert_eq!(
            parse_time("1700000000.25"),
            Ok(1_700_000_000 * S + 250_000_000)
        );
        assert_eq!(
            parse_time("1700000000.000000001"),
            Ok(1_700_000_000 * S + 1)
        );
        assert_eq!(
            parse_time("1700000000.1234567899"),
            Ok(1_700_000_000 * S + 123_456_789)
        );
        assert_eq!(parse_time("0"), Ok(0));
    }

    #[test]
    fn rfc3339_variants_and_offsets() {
        let base = parse_time("2026-11-25T10:11:12Z").unwrap();
        assert_eq!(parse_time("2026-11-25t10:11:12z"), Ok(base));
        assert_eq!(parse_time("2026-11-25 10:11:12Z"), Ok(base));
        assert_eq!(parse_time("2026-11-25 10:11:12 UTC"), Ok(base));
        assert_eq!(parse_time("2026-11-25T11:11:12+01:00"), Ok(base));
        assert_eq!(parse_time("2026-11-25T11:11:12+0100"), Ok(base));
        assert_eq!(parse_time("2026-11-25T11:11:12+01"), Ok(base));
        assert_eq!(parse_time("2026-11-25T04:41:12-05:30"), Ok(base));
        assert_eq!(parse_time("2026-11-26T00:11:12+14:00"), Ok(base));
        assert_eq!(
            parse_time("2026-11-25T10:11:12.123456789+00:00"),
            Ok(base + 123_456_789)
        );
        assert_eq!(parse_time("2026-11-25T10:11:12.5Z"), Ok(base + 500_000_000));
        // Crossing a day and year boundary through the offset.
        assert_eq!(
            parse_time("2026-12-31T23:30:00-01:00"),
            parse_time("2027-01-01T00:30:00Z")
        );
        // A leap second counts as the next minute's first second.
        assert_eq!(
            parse_time("2016-12-31T23:59:60Z"),
            parse_time("2017-01-01T00:00:00Z")
        );
    }

    #[test]
    fn leap_years() {
        let day = 86_400 * S;
        for (year, leap) in [(2000, true), (2024, true), (2100, false), (2023, false)] {
            let feb28 = parse_time(&format!("{year}-02-28T00:00:00Z")).unwrap();
            let mar01 = parse_time(&format!("{year}-03-01T00:00:00Z")).unwrap();
            let expected = if leap { 2 * day } else { day };
            assert_eq!(mar01 - feb28, expected, "{year}");
            let feb29 = parse_time(&format!("{year}-02-29T00:00:00Z"));
            assert_eq!(feb29.is_ok(), leap, "{year}");
        }
        assert_eq!(parse_time("2000-03-01T00:00:00Z"), Ok(951_868_800 * S));
        assert_eq!(parse_time("2100-03-01T00:00:00Z"), Ok(4_107_542_400 * S));
        assert_eq!(format_time(951_782_400 * S), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_time(4_107_456_000 * S), "2100-02-28T00:00:00.000Z");
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            parse_time("2026-11-25T10:11:12"),
            Err(TimeError::NoOffset { .. })
        ));
        assert!(matches!(
            parse_time("10/Oct/2000:13:55:36"),
            Err(TimeError::NoOffset { .. })
        ));
        let message = parse_time("2026-11-25 10:11:12").unwrap_err().to_string();
        assert!(
            message.contains("offset") && message.contains("local time"),
            "{message}"
        );
        assert!(matches!(
            parse_time("1969-12-31T23:59:59Z"),
            Err(TimeError::BeforeEpoch { .. })
        ));
        assert!(matches!(
            parse_time("1970-01-01T00:30:00+01:00"),
            Err(TimeError::BeforeEpoch { .. })
        ));
        assert!(matches!(
            parse_time("-5"),
            Err(TimeError::BeforeEpoch { .. })
        ));
        assert!(matches!(
            parse_time("9999-01-01T00:00:00Z"),
            Err(TimeError::TooLate { .. })
        ));
        assert!(matches!(parse_time(""), Err(TimeError::Empty)));
        assert!(parse_time("   ").is_err());
        for bad in [
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T10:60:00Z",
            "2026-11-25T10:11:61Z",
            "2026-11-25T10:11:12+25:00",
            "2026-11-25T10:11:12.Z",
            "2026-11-25X10:11:12Z",
            "2026-11-25",
            "10/Foo/2000:13:55:36 -0700",
            "[10/Oct/2000:13:55:36 -0700",
            "1700000000000",
            "1.2.3",
            "yesterday",
        ] {
            let error = parse_time(bad).unwrap_err();
            assert!(!error.to_string().is_empty(), "{bad}");
        }
        let message = parse_time("yesterday").unwrap_err().to_string();
        assert!(
            message.contains("RFC 3339") && message.contains("epoch"),
            "{message}"
        );
    }

    #[test]
    fn formatting() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_time(971_211_336 * S + 123_999_999),
            "2000-10-10T20:55:36.123Z"
        );
        assert_eq!(
            format_time_ns(971_211_336 * S + 123_999_999),
            "2000-10-10T20:55:36.123999999Z"
        );
        assert_eq!(format_time(u64::MAX), "2554-07-21T23:34:33.709Z");
        let text = "2026-11-25T10:11:12.123Z";
        assert_eq!(format_time(parse_time(text).unwrap()), text);
    }

    #[test]
    fn clf_cache_agrees_with_parse_time() {
        let mut cache = ClfTimeCache::new();
        let lines = [
            "10/Oct/2000:13:55:36 -0700",
            "10/Oct/2000:13:55:37 -0700",
            "10/Oct/2000:13:55:59 -0700",
            "10/Oct/2000:13:56:00 -0700",
            "10/Oct/2000:13:56:00 +0000",
            "31/Dec/2016:23:59:60 +0000",
            "31/Dec/2016:23:59:59 +0000",
            "1/Jan/2017:00:00:00 +0000",
            "2026-11-25T10:11:12Z",
        ];
        for text in lines {
            assert_eq!(cache.parse(text), parse_time(text), "{text}");
        }
        assert!(cache.parse("10/Oct/2000:13:56:0x +0000").is_err());
        assert!(cache.parse("10/Oct/2000:13:56:61 +0000").is_err());
        assert!(cache.parse("10/Oct/2000:13:56:00").is_err());
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(ns in 0u64..7_258_118_400 * S) {
            prop_assert_eq!(parse_time(&format_time_ns(ns)), Ok(ns));
            let millis = ns - ns % 1_000_000;
            prop_assert_eq!(parse_time(&format_time(ns)), Ok(millis));
        }

        #[test]
        fn clf_cache_matches(secs in 0u64..7_258_118_400, offset_min in -840i64..=840, step in 0u64..130) {
            let offset_secs = offset_min * 60;
            let render = |secs: u64| -> Option<String> {
                let local = secs as i64 + offset_secs;
                if local < 0 { return None; }
                let (y, mo, d) = date_from_days(local.div_euclid(SECS_PER_DAY));
                let sod = local.rem_euclid(SECS_PER_DAY);
                const M: [&str; 12] = ["Jan","Feb","Mar","Apr","May","Jun","Jul","Aug","Sep","Oct","Nov","Dec"];
                let sign = if offset_secs < 0 { '-' } else { '+' };
                let off = offset_secs.abs();
                Some(format!("{d:02}/{}/{y:04}:{:02}:{:02}:{:02} {sign}{:02}{:02}",
                    M[mo as usize - 1], sod / 3600, sod % 3600 / 60, sod % 60, off / 3600, off % 3600 / 60))
            };
            let mut cache = ClfTimeCache::new();
            for secs in [secs, secs + step, secs + step + 1] {
                if let Some(text) = render(secs) {
                    prop_assert_eq!(cache.parse(&text), Ok(secs * S), "{}", text);
                }
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,40}") {
            let _ = parse_time(&text);
            let _ = ClfTimeCache::new().parse(&text);
        }

        #[test]
        fn time_like_text_never_panics(text in "[0-9/:+\\-. TZa-z\\[\\]]{0,32}") {
            let _ = parse_time(&text);
            let mut cache = ClfTimeCache::new();
            let _ = cache.parse("10/Oct/2000:13:55:36 -0700");
            let _ = cache.parse(&text);
        }
    }
}
