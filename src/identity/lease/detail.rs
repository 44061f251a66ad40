//! FreeRADIUS `detail` accounting files: one record per request, separated by blank lines;
//! a date line, then TAB-indented `Attribute = value` lines.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::Parsed;
use super::text::{
    month_number, parse_clock, parse_hex_plain, printable_or_hex, secs_to_ns, utc_epoch,
};
use crate::identity::{Change, Identity, IdentityRecord, Source};

/// The length of the first record in `buf` with the blank line that ends it, if the
/// blank line is there.
pub(crate) fn unit_len(buf: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    while let Some(n) = memchr::memchr(b'\n', &buf[line_start..]) {
        let line_end = line_start + n + 1;
        let line = &buf[line_start..line_end];
        let blank = line.iter().all(u8::is_ascii_whitespace);
        // A blank line ends a record only after the record has begun.
        let begun = buf[..line_start].iter().any(|b| !b.is_ascii_whitespace());
        if blank && begun {
            return Some(line_end);
        }
        line_start = line_end;
    }
    None
}

/// Reads a detail file record by record.
#[derive(Debug, Default)]
pub struct DetailParser;

impl DetailParser {
    pub fn new() -> DetailParser {
        DetailParser
    }

    /// One record (its date line and attributes). `None` when it is only white space.
    pub fn parse_record(&mut self, record: &str) -> Option<Parsed> {
        let mut lines = record.lines().filter(|l| !l.trim().is_empty());
        let first = lines.next()?;
        if first.starts_with([' ', '\t']) {
            return Some(Parsed::skipped("record does not begin with a date line"));
        }
        let mut attrs: HashMap<String, String> = HashMap::new();
        for line in lines {
            match attribute(line) {
                // The last of a repeated attribute wins, as the RADIUS source reads them.
                Some((name, value)) => {
                    attrs.insert(name.to_ascii_lowercase(), value);
                }
                None => {
                    return Some(Parsed::skipped(format!(
                        "not an `Attribute = value` line: {:?}",
                        line.chars().take(60).collect::<String>()
                    )));
                }
            }
        }
        Some(record_from(&attrs).unwrap_or_else(Parsed::Skipped))
    }
}

/// `Name = value`, the value unquoted.
fn attribute(line: &str) -> Option<(String, String)> {
    let (name, value) = line.trim().split_once(" = ")?;
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    Some((name.to_string(), unquote(value.trim())))
}

/// FreeRADIUS quotes strings and escapes `\"`, `\\`, `\n`, `\r`, `\t` and octal.
fn unquote(value: &str) -> String {
    let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return value.to_string();
    };
    let mut out = Vec::with_capacity(inner.len());
    let bytes = inner.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' || i + 1 == bytes.len() {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let octal = bytes[i + 1..]
            .iter()
            .take(3)
            .take_while(|c| (b'0'..=b'7').contains(c))
            .count();
        if octal == 3 {
            let v = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |a, d| a * 8 + u32::from(d - b'0'));
            out.push(v as u8);
            i += 4;
            continue;
        }
        out.push(match bytes[i + 1] {
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            c => c,
        });
        i += 2;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The change an Acct-Status-Type makes: `None` if the type is unknown, `Some(None)` for
/// accounting that says nothing about who holds an address.
fn change_of(status: &str) -> Option<Option<Change>> {
    Some(match status {
        "Start" | "1" => Some(Change::Start),
        "Stop" | "2" => Some(Change::Stop),
        "Interim-Update" | "Alive" | "3" => Some(Change::Update),
        "Accounting-On" | "Accounting-Off" | "7" | "8" => Some(Change::NasReset),
        // Failed, Tunnel-*, …: accounting, but not of who holds an address.
        "Failed" | "15" | "Tunnel-Start" | "Tunnel-Stop" | "Tunnel-Reject"
        | "Tunnel-Link-Start" | "Tunnel-Link-Stop" | "Tunnel-Link-Reject" | "9" | "10" | "11"
        | "12" | "13" | "14" => None,
        _ => return None,
    })
}

fn record_from(attrs: &HashMap<String, String>) -> Result<Parsed, String> {
    let get = |name: &str| attrs.get(name).map(String::as_str);
    let status = get("acct-status-type").ok_or("no Acct-Status-Type")?;
    let change = match change_of(status) {
        Some(Some(c)) => c,
        Some(None) => return Ok(Parsed::Ignored { counted: true }),
        None => return Err(format!("unknown Acct-Status-Type {status:?}")),
    };
    let nas_ip = get("nas-ip-address")
        .map(|v| {
            v.parse::<Ipv4Addr>()
                .map_err(|_| format!("NAS-IP-Address {v:?} is not IPv4"))
        })
        .transpose()?;
    let (at_ns, source_ns) = times(attrs)?;
    let mut identity = Identity {
        nas_ip,
        ..Identity::default()
    };
    let inside_ip = if change == Change::NasReset {
        if nas_ip.is_none() {
            return Err(format!(
                "{status} without NAS-IP-Address: which NAS is unknown"
            ));
        }
        Ipv4Addr::UNSPECIFIED
    } else {
        let ip = get("framed-ip-address").ok_or("no Framed-IP-Address")?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("Framed-IP-Address {ip:?} is not IPv4"))?;
        if ip.is_unspecified() {
            return Err("Framed-IP-Address 0.0.0.0".into());
        }
        identity = subscriber(attrs, nas_ip);
        if identity.is_empty() {
            return Err(format!(
                "{status} for {ip} names no one (no user, session or NAS)"
            ));
        }
        ip
    };
    Ok(Parsed::Record(IdentityRecord {
        change,
        source: Source::RadiusDetail,
        inside_ip,
        at_ns,
        learned_ns: 0,
        source_ns,
        expires_ns: 0,
        identity,
    }))
}

fn subscriber(attrs: &HashMap<String, String>, nas_ip: Option<Ipv4Addr>) -> Identity {
    let text = |name: &str| attrs.get(name).filter(|v| !v.is_empty()).cloned();
    Identity {
        user: text("user-name"),
        calling_station_id: text("calling-station-id"),
        nas_ip,
        nas_port_id: text("nas-port-id"),
        session_id: text("acct-session-id"),
        class: text("class").map(|c| binary_value(&c)),
        ..Identity::default()
    }
}

/// `0x616263` as FreeRADIUS prints octets: the text when printable, else colon hex.
fn binary_value(value: &str) -> String {
    match value.strip_prefix("0x").and_then(parse_hex_plain) {
        Some(bytes) if !bytes.is_empty() => printable_or_hex(&bytes),
        _ => value.to_string(),
    }
}

/// `(at_ns, source_ns)`: Event-Timestamp when given; else the server's Timestamp less
/// Acct-Delay-Time.
fn times(attrs: &HashMap<String, String>) -> Result<(u64, u64), String> {
    if let Some(v) = attrs.get("event-timestamp") {
        let secs =
            event_timestamp(v).ok_or_else(|| format!("Event-Timestamp {v:?} not understood"))?;
        return Ok((secs_to_ns(secs), secs_to_ns(secs)));
    }
    let ts = attrs
        .get("timestamp")
        .ok_or("neither Event-Timestamp nor Timestamp")?;
    let ts: u64 = ts
        .parse()
        .map_err(|_| format!("Timestamp {ts:?} is not a number"))?;
    let delay: u64 = match attrs.get("acct-delay-time") {
        Some(d) => d
            .parse()
            .map_err(|_| format!("Acct-Delay-Time {d:?} is not a number"))?,
        None => 0,
    };
    Ok((secs_to_ns(ts.saturating_sub(delay)), secs_to_ns(ts)))
}

/// Seconds, or `Nov 30 2026 05:00:00 UTC` as FreeRADIUS prints dates. Only UTC/GMT is
/// accepted: another zone's offset is not in the file.
fn event_timestamp(value: &str) -> Option<u64> {
    if let Ok(secs) = value.parse() {
        return Some(secs);
    }
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [month, day, year, clock, zone] = parts.as_slice() else {
        return None;
    };
    if !matches!(*zone, "UTC" | "GMT") {
        return None;
    }
    let (h, m, s) = parse_clock(clock)?;
    utc_epoch(
        year.parse().ok()?,
        month_number(month)?,
        day.parse().ok()?,
        h,
        m,
        s,
    )
}
