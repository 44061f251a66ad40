//! Small text helpers the lease parsers share: hex, times, escapes.

/// Seconds to nanoseconds; saturates rather than wrapping for absurd times.
pub(crate) fn secs_to_ns(secs: u64) -> u64 {
    secs.saturating_mul(1_000_000_000)
}

/// `01:02:0a` from bytes.
pub(crate) fn hex_colon(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The bytes as text when every one is printable ASCII, otherwise `hex_colon`, as the
/// identity model keeps binary values.
pub(crate) fn printable_or_hex(bytes: &[u8]) -> String {
    if !bytes.is_empty() && bytes.iter().all(|b| (0x20..0x7f).contains(b)) {
        String::from_utf8_lossy(bytes).into_owned()
    } else {
        hex_colon(bytes)
    }
}

/// Bytes from colon-separated hex (`2:0:5e:0:53:1` or `02:00:5e`), as dhcpd and Kea
/// print hardware addresses and client ids. `None` if anything else is in the way.
pub(crate) fn parse_hex_colon(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    text.split(':')
        .map(|part| {
            if part.is_empty() || part.len() > 2 {
                return None;
            }
            u8::from_str_radix(part, 16).ok()
        })
        .collect()
}

/// Bytes from plain hex, with or without a `0x` prefix (`0x0104AABB`).
pub(crate) fn parse_hex_plain(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    if !digits.len().is_multiple_of(2) || !digits.is_ascii() {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).ok())
        .collect()
}

/// Seconds since the Unix epoch of a UTC civil time, or `None` if out of range.
pub(crate) fn utc_epoch(year: i64, month: u32, day: u32, h: u32, m: u32, s: u32) -> Option<u64> {
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    // Leap seconds (60) are written by some servers; they fold into the next second.
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(h * 3600 + m * 60 + s);
    u64::try_from(secs).ok()
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `Jan` … `Dec` to 1 … 12.
pub(crate) fn month_number(abbr: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(abbr))
        .map(|i| i as u32 + 1)
}

/// `HH:MM:SS` (fractions of a second dropped).
pub(crate) fn parse_clock(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.split(':');
    let h = parts.next()?.parse().ok()?;
    let m = parts.next()?.parse().ok()?;
    let s_text = parts.next()?;
    let s = s_text.split('.').next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((h, m, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_of_known_dates() {
        assert_eq!(utc_epoch(1970, 1, 1, 0, 0, 0), Some(0));
        assert_eq!(utc_epoch(2000, 3, 1, 0, 0, 0), Some(951_868_800));
        assert_eq!(utc_epoch(2026, 11, 30, 5, 0, 0), Some(1_796_014_800));
        assert_eq!(utc_epoch(2026, 2, 29, 0, 0, 0), None);
        assert_eq!(utc_epoch(1969, 12, 31, 0, 0, 0), None);
    }

    #[test]
    fn hex_forms() {
        assert_eq!(
            parse_hex_colon("2:0:5e:0:53:1"),
            Some(vec![2, 0, 0x5e, 0, 0x53, 1])
        );
        assert_eq!(parse_hex_colon("02:0g"), None);
        assert_eq!(parse_hex_colon("1::2"), None);
        assert_eq!(parse_hex_plain("0x0104AaBb"), Some(vec![1, 4, 0xaa, 0xbb]));
        assert_eq!(parse_hex_plain("0x010"), None);
        assert_eq!(printable_or_hex(b"eth0/1"), "eth0/1");
        assert_eq!(printable_or_hex(&[1, 2, 0x0a]), "01:02:0a");
    }
}
