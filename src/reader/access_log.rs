//! Servers' access logs: one request per line, read into the client endpoint and time the
//! NAT question needs.
//!
//! Accepted formats, exactly:
//!
//! - **common** — Apache/nginx `%h %l %u %t "%r" %>s %b`:
//!   `203.0.113.7 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326`.
//!   Quoted fields after the size (as in the combined format) are accepted and ignored.
//! - **combined** — common followed by `"%{Referer}i" "%{User-agent}i"`; at least these
//!   two quoted fields must be present, further quoted fields (nginx's
//!   `"$http_x_forwarded_for"`, say) are ignored.
//! - **json** — one object per line; the fields are named by [`JsonFields`] (nginx
//!   `escape=json` style). The time may be any form [`parse_time`] accepts or a number of
//!   epoch seconds (fractions are kept to the microsecond); ports may be numbers or
//!   strings (`""` and `"-"` mean absent); the server fields are optional. A string field
//!   named `request` becomes [`AccessRecord::request`] when it has no escapes.
//!
//! The client's source port — the piece that makes the NAT answer unique — can be given
//! two ways in the text formats, and both are accepted:
//!
//! - in the client field itself, `%h` written as `IP:PORT` (nginx
//!   `$remote_addr:$remote_port`);
//! - as one extra unquoted all-digit token after the format's last field (Apache
//!   `%{remote}p` appended to the format: `... 200 2326 40213`, or
//!   `... "Mozilla/5.0" 40213` for combined).
//!
//! If both are present they must agree. Client addresses written as IPv4-mapped IPv6
//! (`::ffff:203.0.113.7`, as dual-stack servers log them) are read as IPv4. IPv6 clients
//! and host names are refused with [`LineError::NotIpv4`]: they did not pass through a
//! NAT44.
//!
//! Common and combined lines are parsed without allocating; the time goes through a
//! [`ClfTimeCache`], so lines logged in the same minute skip the date arithmetic.

use std::borrow::Cow;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::reader::time::{ClfTimeCache, TimeError, parse_time};

/// Which shape an access log has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Detect from the first line that parses: an object is JSON; otherwise combined if
    /// it has at least two quoted fields after the size, else common.
    #[default]
    Auto,
    Common,
    Combined,
    Json,
}

impl LogFormat {
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Auto => "auto",
            LogFormat::Common => "common",
            LogFormat::Combined => "combined",
            LogFormat::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A log format name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log format {0:?}: expected auto, common, combined or json")]
pub struct UnknownLogFormat(pub String);

impl FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(LogFormat::Auto),
            "common" | "clf" => Ok(LogFormat::Common),
            "combined" => Ok(LogFormat::Combined),
            "json" => Ok(LogFormat::Json),
            _ => Err(UnknownLogFormat(text.to_owned())),
        }
    }
}

/// The names of the fields a JSON access log uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonFields {
    /// Client address, `IP` or `IP:PORT`.
    pub client_ip: String,
    /// Client source port (number or string); optional.
    pub client_port: String,
    /// Request time: any form `parse_time` accepts, or a number of epoch seconds.
    pub time: String,
    /// The server's own address (the NAT session's destination); optional.
    pub server_ip: String,
    /// The server's port; optional, used only with `server_ip`.
    pub server_port: String,
}

impl Default for JsonFields {
    fn default() -> Self {
        JsonFields {
            client_ip: "remote_addr".to_owned(),
            client_port: "remote_port".to_owned(),
            time: "time".to_owned(),
            server_ip: "server_addr".to_owned(),
            server_port: "server_port".to_owned(),
        }
    }
}

/// One request read from an access log; borrows from the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRecord<'a> {
    pub line_no: u64,
    pub client_ip: Ipv4Addr,
    pub client_port: Option<u16>,
    /// Nanoseconds since the Unix epoch, UTC.
    pub time_ns: u64,
    /// The server's own address and port, when the log has them (JSON only).
    pub server: Option<(Ipv4Addr, Option<u16>)>,
    /// The request line as logged, without its quotes (escapes left as they are); `""`
    /// when the log has none.
    pub request: &'a str,
}

/// Why a line could not be read as a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("line longer than {} KiB: skipped", crate::reader::input::MAX_LINE_BYTES >> 10)]
    TooLong,
    #[error("empty line")]
    Empty,
    #[error("no client address")]
    NoClient,
    #[error("client is not an IPv4 address (IPv6 or a host name)")]
    NotIpv4,
    #[error("bad port")]
    BadPort,
    #[error("the client field and the trailing field give different ports")]
    ConflictingPorts,
    #[error("no timestamp")]
    NoTimestamp,
    #[error("bad timestamp: {0}")]
    BadTime(#[from] TimeError),
    #[error("no quoted request line after the timestamp")]
    NoRequest,
    #[error("a quoted field has no closing quote")]
    Unterminated,
    #[error("no status code after the request")]
    BadStatus,
    #[error("no response size after the status")]
    BadSize,
    #[error("not the combined format: the referer and user-agent fields are missing")]
    NotCombined,
    #[error("unexpected field after the format's last field: {0}")]
    Unexpected(&'static str),
    #[error("server is not an IPv4 address")]
    ServerNotIpv4,
    #[error("not a JSON object: {0}")]
    Json(String),
}

/// Reads access-log lines of one format, detecting it first when asked to.
#[derive(Debug, Clone)]
pub struct AccessLogParser {
    format: LogFormat,
    fields: JsonFields,
    clf_time: ClfTimeCache,
}

impl AccessLogParser {
    pub fn new(format: LogFormat, json_fields: JsonFields) -> AccessLogParser {
        AccessLogParser {
            format,
            fields: json_fields,
            clf_time: ClfTimeCache::new(),
        }
    }

    /// The format in use: the one given, or the one detected (`Auto` until a line parses).
    pub fn format(&self) -> LogFormat {
        self.format
    }

    /// Reads one line (trailing `\r`/`\n` and surrounding blanks are ignored).
    pub fn parse<'a>(
        &mut self,
        line_no: u64,
        line: &'a str,
    ) -> Result<AccessRecord<'a>, LineError> {
        let line = line.trim_ascii();
        if line.is_empty() {
            return Err(LineError::Empty);
        }
        match self.format {
            LogFormat::Json => self.parse_json(line_no, line),
            LogFormat::Common | LogFormat::Combined => self
                .parse_text(line_no, line, self.format)
                .map(|(record, _)| record),
            LogFormat::Auto => {
                if line.starts_with('{') {
                    let record = self.parse_json(line_no, line)?;
                    self.format = LogFormat::Json;
                    Ok(record)
                } else {
                    let (record, detected) = self.parse_text(line_no, line, LogFormat::Auto)?;
                    self.format = detected;
                    Ok(record)
                }
            }
        }
    }

    /// Common or combined; returns the shape the line has.
    fn parse_text<'a>(
        &mut self,
        line_no: u64,
        line: &'a str,
        want: LogFormat,
    ) -> Result<(AccessRecord<'a>, LogFormat), LineError> {
        let bytes = line.as_bytes();
        let host_end = memchr::memchr2(b' ', b'\t', bytes).ok_or(LineError::NoTimestamp)?;
        let (client_ip, host_port) = parse_client(&line[..host_end])?;

        let open =
            memchr::memchr(b'[', &bytes[host_end..]).ok_or(LineError::NoTimestamp)? + host_end;
        let close = memchr::memchr(b']', &bytes[open..]).ok_or(LineError::NoTimestamp)? + open;
        let time_ns = self.clf_time.parse(&line[open + 1..close])?;

        let mut tail = Tail {
            text: line,
            at: close + 1,
        };
        let request = match tail.next()? {
            Some(Token::Quoted(request)) => request,
            _ => return Err(LineError::NoRequest),
        };
        match tail.next()? {
            Some(Token::Bare(status)) if status.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => return Err(LineError::BadStatus),
        }
        match tail.next()? {
            Some(Token::Bare(size)) if size == "-" || size.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => return Err(LineError::BadSize),
        }
        let mut quoted = 0usize;
        let mut trailing: Option<&str> = None;
        while let Some(token) = tail.next()? {
            match token {
                Token::Quoted(_) if trailing.is_some() => {
                    return Err(LineError::Unexpected("a quoted field after the port"));
                }
                Token::Quoted(_) => quoted += 1,
                Token::Bare(_) if trailing.is_some() => {
                    return Err(LineError::Unexpected("more than one unquoted field"));
                }
                Token::Bare(token) => trailing = Some(token),
            }
        }
        let shape = if quoted >= 2 {
            LogFormat::Combined
        } else if quoted == 0 {
            LogFormat::Common
        } else {
            // One quoted field is neither common (none) nor combined (two).
            match want {
                LogFormat::Common => LogFormat::Common,
                _ => return Err(LineError::NotCombined),
            }
        };
        if want == LogFormat::Combined && shape != LogFormat::Combined {
            return Err(LineError::NotCombined);
        }
        let tail_port = match trailing {
            Some(token) => Some(parse_port(token).ok_or(LineError::BadPort)?),
            None => None,
        };
        let client_port = match (host_port, tail_port) {
            (Some(a), Some(b)) if a != b => return Err(LineError::ConflictingPorts),
            (a, b) => a.or(b),
        };
        let record = AccessRecord {
            line_no,
            client_ip,
            client_port,
            time_ns,
            server: None,
            request,
        };
        Ok((
            record,
            if want == LogFormat::Common {
                want
            } else {
                shape
            },
        ))
    }

    fn parse_json<'a>(
        &mut self,
        line_no: u64,
        line: &'a str,
    ) -> Result<AccessRecord<'a>, LineError> {
        let mut deserializer = serde_json::Deserializer::from_str(line);
        let found = (JsonLine {
            names: &self.fields,
        })
        .deserialize(&mut deserializer)
        .and_then(|found| deserializer.end().map(|()| found))
        .map_err(|error| LineError::Json(error.to_string()))?;

        let (client_ip, address_port) = match &found.client_ip {
            Some(Scalar::Str(text)) => parse_client(text.trim())?,
            Some(Scalar::Null) | None => return Err(LineError::NoClient),
            Some(_) => return Err(LineError::NotIpv4),
        };
        // The port field, when present, is the more explicit of the two.
        let client_port = json_port(found.client_port.as_ref())?.or(address_port);
        let time_ns = match &found.time {
            Some(Scalar::Str(text)) => {
                let text = text.trim();
                if text.len() == 26 && text.as_bytes()[2] == b'/' {
                    self.clf_time.parse(text)?
                } else {
                    parse_time(text)?
                }
            }
            Some(Scalar::Int(secs)) => {
                secs.checked_mul(1_000_000_000).ok_or(TimeError::TooLate {
                    text: secs.to_string(),
                })?
            }
            Some(Scalar::Float(secs)) => float_secs_ns(*secs)?,
            _ => return Err(LineError::NoTimestamp),
        };
        let server_ip = match &found.server_ip {
            Some(Scalar::Str(text)) => match text.trim() {
                "" | "-" => None,
                text => Some(parse_ipv4(text).ok_or(LineError::ServerNotIpv4)?),
            },
            Some(Scalar::Null) | None => None,
            Some(_) => return Err(LineError::ServerNotIpv4),
        };
        let server_port = json_port(found.server_port.as_ref())?;
        let request = match found.request {
            Some(Scalar::Str(Cow::Borrowed(text))) => text,
            _ => "",
        };
        Ok(AccessRecord {
            line_no,
            client_ip,
            client_port,
            time_ns,
            server: server_ip.map(|ip| (ip, server_port)),
            request,
        })
    }
}

/// A port from 1 to 65535, all digits.
fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|&port| port != 0)
}

/// An IPv4 address, also when written IPv4-mapped (`::ffff:a.b.c.d`).
fn parse_ipv4(text: &str) -> Option<Ipv4Addr> {
    let text = match text.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("::ffff:") => &text[7..],
        _ => text,
    };
    Ipv4Addr::from_str(text).ok()
}

/// `IP` or `IP:PORT`; IPv4-mapped addresses are read as IPv4.
fn parse_client(text: &str) -> Result<(Ipv4Addr, Option<u16>), LineError> {
    if let Some(ip) = parse_ipv4(text) {
        return Ok((ip, None));
    }
    let Some((address, port)) = text.rsplit_once(':') else {
        return Err(LineError::NotIpv4);
    };
    // `[v6]:port` and bare IPv6 end up here with a non-IPv4 address part.
    let ip = parse_ipv4(address).ok_or(LineError::NotIpv4)?;
    let port = parse_port(port).ok_or(LineError::BadPort)?;
    Ok((ip, Some(port)))
}

fn json_port(value: Option<&Scalar<'_>>) -> Result<Option<u16>, LineError> {
    match value {
        None | Some(Scalar::Null) => Ok(None),
        Some(Scalar::Str(text)) => match text.trim() {
            "" | "-" => Ok(None),
            text => parse_port(text).map(Some).ok_or(LineError::BadPort),
        },
        Some(Scalar::Int(port)) => u16::try_from(*port)
            .ok()
            .filter(|&port| port != 0)
            .map(Some)
            .ok_or(LineError::BadPort),
        Some(_) => Err(LineError::BadPort),
    }
}

/// Epoch seconds as a JSON float, kept to the microsecond (a double holds no more at
/// today's epoch values).
fn float_secs_ns(secs: f64) -> Result<u64, LineError> {
    let text = || secs.to_string();
    if secs.is_nan() || secs < 0.0 {
        return Err(TimeError::BeforeEpoch { text: text() }.into());
    }
    if secs >= 18_446_744_073.0 {
        return Err(TimeError::TooLate { text: text() }.into());
    }
    let micros = (secs * 1e6).round() as u64;
    Ok(micros * 1000)
}

// ---------------------------------------------------------------------------
// Tokens after the timestamp

pub(crate) enum Token<'a> {
    /// Between the quotes, escapes left in.
    Quoted(&'a str),
    Bare(&'a str),
}

pub(crate) struct Tail<'a> {
    pub text: &'a str,
    pub at: usize,
}

impl<'a> Tail<'a> {
    pub(crate) fn next(&mut self) -> Result<Option<Token<'a>>, LineError> {
        let bytes = self.text.as_bytes();
        while self.at < bytes.len() && matches!(bytes[self.at], b' ' | b'\t') {
            self.at += 1;
        }
        if self.at >= bytes.len() {
            return Ok(None);
        }
        if bytes[self.at] == b'"' {
            let start = self.at + 1;
            let end = closing_quote(&bytes[start..]).ok_or(LineError::Unterminated)? + start;
            self.at = end + 1;
            return Ok(Some(Token::Quoted(&self.text[start..end])));
        }
        let start = self.at;
        let end = memchr::memchr2(b' ', b'\t', &bytes[start..]).map_or(bytes.len(), |n| n + start);
        self.at = end;
        Ok(Some(Token::Bare(&self.text[start..end])))
    }
}

/// Index of the quote closing a field whose text is `bytes`; a backslash escapes the
/// character after it (Apache writes `\"` inside quoted fields).
fn closing_quote(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let found = memchr::memchr2(b'"', b'\\', bytes.get(at..)?)? + at;
        if bytes[found] == b'"' {
            return Some(found);
        }
        at = found + 2;
    }
}

// ---------------------------------------------------------------------------
// JSON lines, read without building a tree

/// A JSON value as far as the access log needs it.
pub(crate) enum Scalar<'a> {
    Str(Cow<'a, str>),
    Int(u64),
    Float(f64),
    Null,
    /// Booleans, arrays, objects, negative integers: never what a field wants.
    Other,
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(u64::try_from(v).map_or(Scalar::Float(v as f64), Scalar::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
}

/// An object key, borrowed unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[derive(Default)]
struct JsonFound<'a> {
    client_ip: Option<Scalar<'a>>,
    client_port: Option<Scalar<'a>>,
    time: Option<Scalar<'a>>,
    server_ip: Option<Scalar<'a>>,
    server_port: Option<Scalar<'a>>,
    request: Option<Scalar<'a>>,
}

struct JsonLine<'f> {
    names: &'f JsonFields,
}

impl<'de> DeserializeSeed<'de> for JsonLine<'_> {
    type Value = JsonFound<'de>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for JsonLine<'_> {
    type Value = JsonFound<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("one JSON object per line")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let names = self.names;
        let mut found = JsonFound::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let key: &str = &key;
            let slot = if key == names.client_ip {
                &mut found.client_ip
            } else if key == names.client_port {
                &mut found.client_port
            } else if key == names.time {
                &mut found.time
            } else if key == names.server_ip {
                &mut found.server_ip
            } else if key == names.server_port {
                &mut found.server_port
            } else if key == "request" {
                &mut found.request
            } else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            *slot = Some(map.next_value::<Scalar<'de>>()?);
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: u64 = 1_000_000_000;
    const T: u64 = 971_211_336 * S; // 10/Oct/2000:13:55:36 -0700

    fn parser(format: LogFormat) -> AccessLogParser {
        AccessLogParser::new(format, JsonFields::default())
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    #[test]
    fn format_names() {
        for format in [
            LogFormat::Auto,
            LogFormat::Common,
            LogFormat::Combined,
            LogFormat::Json,
        ] {
            assert_eq!(format.name().parse::<LogFormat>(), Ok(format));
        }
        assert!("xml".parse::<LogFormat>().is_err());
    }

    #[test]
    fn common_lines() {
        let mut p = parser(LogFormat::Common);
        let line = r#"203.0.113.7 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#;
        let record = p.parse(1, line).unwrap();
        assert_eq!(
            record,
            AccessRecord {
                line_no: 1,
                client_ip: ip("203.0.113.7"),
                client_port: None,
                time_ns: T,
                server: None,
                request: "GET /apache_pb.gif HTTP/1.0",
            }
        );
        // nginx $remote_addr:$remote_port in the client field.
        let line = r#"203.0.113.7:40213 - - [10/Oct/2000:13:55:37 -0700] "GET / HTTP/1.1" 304 -"#;
        let record = p.parse(2, line).unwrap();
        assert_eq!(record.client_port, Some(40213));
        assert_eq!(record.time_ns, T + S);
        // Apache %{remote}p appended.
        let line = r#"203.0.113.7 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 12 40213"#;
        assert_eq!(p.parse(3, line).unwrap().client_port, Some(40213));
        // Both, agreeing and not.
        let line =
            r#"203.0.113.7:40213 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 12 40213"#;
        assert_eq!(p.parse(4, line).unwrap().client_port, Some(40213));
        let line =
            r#"203.0.113.7:40213 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 12 40214"#;
        assert_eq!(p.parse(5, line), Err(LineError::ConflictingPorts));
        // Dual-stack servers log IPv4-mapped addresses; trailing CR is ignored.
        let line =
            "::ffff:203.0.113.7 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1\" 200 1\r\n";
        assert_eq!(p.parse(6, line).unwrap().client_ip, ip("203.0.113.7"));
        // Combined lines are readable as common.
        let line =
            r#"203.0.113.7 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 1 "-" "curl/8""#;
        assert_eq!(p.parse(7, line).unwrap().request, "GET / HTTP/1.1");
        assert_eq!(p.format(), LogFormat::Common);
    }

    #[test]
    fn combined_lines() {
        let mut p = parser(LogFormat::Combined);
        let line = r#"198.51.100.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a\"b HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)""#;
        let record = p.parse(9, line).unwrap();
        assert_eq!(record.client_ip, ip("198.51.100.4"));
        assert_eq!(record.request, r#"GET /a\"b HTTP/1.0"#);
        assert_eq!(record.time_ns, T);
        let line = r#"198.51.100.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326 "-" "Mozilla/5.0" 51000"#;
        assert_eq!(p.parse(10, line).unwrap().client_port, Some(51000));
        let line = r#"198.51.100.4:51000 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.0" 200 2326 "-" "ua" "10.0.0.1""#;
        let record = p.parse(11, line).unwrap();
        assert_eq!(record.client_port, Some(51000));
        assert_eq!(record.time_ns, T - 7 * 3600 * S);
        let line = r#"198.51.100.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326"#;
        assert_eq!(p.parse(12, line), Err(LineError::NotCombined));
    }

    #[test]
    fn auto_detection() {
        let mut p = parser(LogFormat::Auto);
        assert!(p.parse(1, "garbage").is_err());
        assert_eq!(p.format(), LogFormat::Auto);
        let line =
            r#"198.51.100.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326 "-" "ua""#;
        p.parse(2, line).unwrap();
        assert_eq!(p.format(), LogFormat::Combined);

        let mut p = parser(LogFormat::Auto);
        let line = r#"198.51.100.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326"#;
        p.parse(1, line).unwrap();
        assert_eq!(p.format(), LogFormat::Common);

        let mut p = parser(LogFormat::Auto);
        p.parse(1, r#"{"remote_addr":"198.51.100.4","time":1700000000}"#)
            .unwrap();
        assert_eq!(p.format(), LogFormat::Json);
    }

    #[test]
    fn json_lines() {
        let mut p = parser(LogFormat::Json);
        let line = r#"{"time":"2000-10-10T13:55:36-07:00","remote_addr":"203.0.113.7","remote_port":"40213","server_addr":"192.0.2.80","server_port":443,"request":"GET / HTTP/2.0","status":200,"extra":{"a":[1,2]}}"#;
        let record = p.parse(1, line).unwrap();
        assert_eq!(
            record,
            AccessRecord {
                line_no: 1,
                client_ip: ip("203.0.113.7"),
                client_port: Some(40213),
                time_ns: T,
                server: Some((ip("192.0.2.80"), Some(443))),
                request: "GET / HTTP/2.0",
            }
        );
        let line = r#"{"remote_addr":"203.0.113.7:1234","time":1700000000.25,"remote_port":"-"}"#;
        let record = p.parse(2, line).unwrap();
        assert_eq!(record.client_port, Some(1234));
        assert_eq!(record.time_ns, 1_700_000_000 * S + 250_000_000);
        assert_eq!(record.server, None);
        assert_eq!(record.request, "");
        let line =
            r#"{"remote_addr":"203.0.113.7","time":"10/Oct/2000:13:55:36 -0700","remote_port":5}"#;
        assert_eq!(p.parse(3, line).unwrap().time_ns, T);
        let line = r#"{"remote_addr":"203.0.113.7","time":"1700000000.5"}"#;
        assert_eq!(p.parse(4, line).unwrap().time_ns, 1_700_000_000 * S + S / 2);

        let fields = JsonFields {
            client_ip: "ip".into(),
            client_port: "port".into(),
            time: "ts".into(),
            server_ip: "dst".into(),
            server_port: "dport".into(),
        };
        let mut p = AccessLogParser::new(LogFormat::Json, fields);
        let line = r#"{"ip":"203.0.113.7","port":40213,"ts":1700000000,"dst":"192.0.2.80"}"#;
        let record = p.parse(5, line).unwrap();
        assert_eq!(record.client_port, Some(40213));
        assert_eq!(record.server, Some((ip("192.0.2.80"), None)));
    }

    #[test]
    fn json_refusals() {
        let mut p = parser(LogFormat::Json);
        let cases = [
            (r#"{"time":1700000000}"#, LineError::NoClient),
            (
                r#"{"remote_addr":"2001:db8::1","time":1700000000}"#,
                LineError::NotIpv4,
            ),
            (r#"{"remote_addr":"203.0.113.7"}"#, LineError::NoTimestamp),
            (
                r#"{"remote_addr":"203.0.113.7","time":1,"remote_port":70000}"#,
                LineError::BadPort,
            ),
            (
                r#"{"remote_addr":"203.0.113.7","time":1,"remote_port":"x"}"#,
                LineError::BadPort,
            ),
            (
                r#"{"remote_addr":"203.0.113.7","time":1,"server_addr":"::1"}"#,
                LineError::ServerNotIpv4,
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(p.parse(1, line), Err(expected), "{line}");
        }
        assert!(matches!(p.parse(1, "[1,2]"), Err(LineError::Json(_))));
        assert!(matches!(
            p.parse(1, r#"{"remote_addr":"#),
            Err(LineError::Json(_))
        ));
        assert!(matches!(p.parse(1, r#"{} {}"#), Err(LineError::Json(_))));
        assert!(matches!(
            p.parse(
                1,
                r#"{"remote_addr":"203.0.113.7","time":"2000-10-10 13:55:36"}"#
            ),
            Err(LineError::BadTime(TimeError::NoOffset { .. }))
        ));
        assert!(matches!(
            p.parse(1, r#"{"remote_addr":"203.0.113.7","time":-5}"#),
            Err(LineError::BadTime(TimeError::BeforeEpoch { .. }))
        ));
    }

    #[test]
    fn text_refusals() {
        let mut p = parser(LogFormat::Common);
        let cases = [
            ("", LineError::Empty),
            ("   \r\n", LineError::Empty),
            (
                r#"2001:db8::1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 1"#,
                LineError::NotIpv4,
            ),
            (
                r#"[2001:db8::1]:443 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 1"#,
                LineError::NotIpv4,
            ),
            (
                r#"example.com - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 1"#,
                LineError::NotIpv4,
            ),
            (
                r#"203.0.113.7:0 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 1"#,
                LineError::BadPort,
            ),
            (
                r#"203.0.113.7 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 1 99999"#,
                LineError::BadPort,
            ),
            (
                r#"203.0.113.7 - - "GET / HTTP/1.1" 200 1"#,
                LineError::NoTimestamp,
            ),
            (
                r#"203.0.113.7 - - [10/Oct/2000:13:55:36 -0700] 200 1"#,
                LineError::NoRequest,
            ),
            (
                r#"203.0.113.7 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1 200 1"#,
                LineError::Unterminated,
            ),
            (
                r#"203.0.113.7 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" OK 1"#,
                LineError::BadStatus,
            ),
            (
                r#"203.0.113.7 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200"#,
                LineError::BadSize,
            ),
            (
                r#"203.0.113.7 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 1 2 3"#,
                LineError::Unexpected("more than one unquoted field"),
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(p.parse(1, line), Err(expected), "{line}");
        }
        let error = p
            .parse(
                1,
                r#"203.0.113.7 - - [10/Oct/2000:13:55:36] "GET / HTTP/1.1" 200 1"#,
            )
            .unwrap_err();
        assert!(matches!(
            error,
            LineError::BadTime(TimeError::NoOffset { .. })
        ));
        assert!(error.to_string().contains("offset"));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(line in ".{0,120}") {
            for format in [LogFormat::Auto, LogFormat::Common, LogFormat::Combined, LogFormat::Json] {
                let _ = parser(format).parse(1, &line);
            }
        }

        #[test]
        fn log_like_garbage_never_panics(line in r#"[0-9. :\[\]"\\/a-zA-Z{},+-]{0,100}"#) {
            let mut p = parser(LogFormat::Auto);
            let _ = p.parse(1, r#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 1"#);
            let _ = p.parse(2, &line);
            let _ = parser(LogFormat::Json).parse(1, &line);
        }

        #[test]
        fn mutated_lines_never_panic(cut in 0usize..90, byte in any::<u8>()) {
            let line = r#"203.0.113.7:4000 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 1 "r" "u" 80"#;
            let mut bytes = line.as_bytes().to_vec();
            let at = cut.min(bytes.len() - 1);
            bytes[at] = byte;
            let mutated = String::from_utf8_lossy(&bytes);
            let _ = parser(LogFormat::Combined).parse(1, &mutated);
            let _ = parser(LogFormat::Common).parse(1, &line[..cut.min(line.len())]);
        }
    }
}
