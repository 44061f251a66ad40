//! Attribute a whole access log: for every request, who was behind the client address.
//!
//! Each request becomes a [`Question`]: the client address and port are the NAT's public
//! endpoint, the window is the request time ± the clock skew allowed between the server
//! and the NAT, the destination is the server (from [`AttributeOptions::server`], else the
//! line's own server fields), and the protocol is TCP (access logs are HTTP).
//!
//! # Text output
//!
//! One line per request, then a summary:
//!
//! ```text
//! line 12  203.0.113.7:40213      2026-11-25T10:11:12.000Z  GET /index.html  unique 100.64.0.23:51000 (session)
//! line 13  203.0.113.7            2026-11-25T10:11:13.000Z  GET /  ambiguous (3): 100.64.0.23, 100.64.0.40, 100.64.1.2
//! line 14  203.0.113.9:40000      2026-11-25T10:11:14.000Z  GET /  none
//! line 15: unparsed: client is not an IPv4 address (IPv6 or a host name)
//! 3 requests: 1 unique, 1 ambiguous, 1 none, 1 unparsed (4 lines, combined format)
//! ```
//!
//! A unique verdict names the subscriber address, with its port when every candidate
//! agrees on one, and the kinds of evidence in parentheses. An ambiguous verdict lists
//! the distinct subscriber addresses (at most [`MAX_LISTED`], then a count). When the
//! NAT's clock was unsynchronised, or its error bound exceeds the skew allowed, the line
//! says so in brackets. The request is shown without its protocol version, shortened to
//! [`MAX_REQUEST_SHOWN`] bytes, with control characters replaced by `?`. The first
//! [`MAX_UNPARSED_SHOWN`] unparsed lines are reported with their reason; later ones are
//! only counted. Blank lines are skipped and not counted.
//!
//! # JSON output (`AttributeOptions::json`)
//!
//! One object per line. For each request:
//!
//! - `line`: line number in the access log (1-based, blank lines included);
//! - `client`: the client endpoint as logged, `"IP:PORT"` or `"IP"` without a port;
//! - `time`: the request time, RFC 3339 UTC with nine fraction digits;
//! - `request`: the request line as logged (`""` if none);
//! - `dest`: the destination the question was narrowed to, `"IP:PORT"`, `"IP"` or `null`;
//! - `verdict`: `"unique"`, `"ambiguous"` or `"none"`;
//! - `subscribers`: the distinct subscriber addresses among the candidates, sorted;
//! - `candidates`: one object per piece of evidence:
//!   - `subscriber`: inside `"IP:PORT"`, or `"IP"` when the evidence has no port
//!     (blocks, deterministic ranges);
//!   - `public`: public `"IP:PORT"`, or `"IP"` when a range applies;
//!   - `ports`: `[first, last]` inclusive public port range, or `null`;
//!   - `dest`: the session's destination `"IP:PORT"`, or `null` when not logged;
//!   - `protocol`: IP protocol number, 0 for blocks and deterministic ranges;
//!   - `start`, `end`: RFC 3339 UTC (nine digits) or `null` (began before the log /
//!     still held at its end);
//!   - `evidence`: `"session"`, `"mapping"`, `"block"` or `"deterministic"`;
//! - `clock`: `{"unsynchronised": bool, "max_error_us": number}` for the NAT's clock
//!   while the evidence was written.
//!
//! With a measured or given server clock, then with `--correlate`, the clock report and
//! the groups follow the requests ([`server_clock`], [`correlate`]; docs/mapping-log.md
//! §9.5–9.6).
//!
//! For the first [`MAX_UNPARSED_SHOWN`] unparsed lines: `{"line": N, "unparsed":
//! "reason"}`. Last: `{"summary": {"lines", "requests", "unique", "ambiguous", "none",
//! "unparsed", "format"}}` where `lines` counts non-blank lines, `requests` those that
//! parsed, and `format` is the access-log format used or detected.

use std::fmt;
use std::io::{self, BufRead, BufWriter, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;

use crate::reader::ReaderError;
use crate::reader::access_log::{AccessLogParser, AccessRecord, LineError};
use crate::reader::actor::ActorField;
use crate::reader::correlate::{self, Groups};
use crate::reader::identity::Holders;
use crate::reader::input::Chunk;
use crate::reader::model::{Answer, Evidence, MappingSource, Question, Verdict};
use crate::reader::server_clock::{self, ServerClock};
use crate::reader::time::TimeDisplay;

/// Unparsed lines reported one by one before they are only counted.
pub const MAX_UNPARSED_SHOWN: u64 = 10;
/// Subscriber addresses listed on an ambiguous text line.
pub const MAX_LISTED: usize = 8;
/// Bytes of the request line shown in text output.
pub const MAX_REQUEST_SHOWN: usize = 100;

/// TCP: access logs are HTTP.
pub(crate) const TCP: u8 = 6;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AttributeOptions {
    /// How far the server's clock may be from the NAT's: the window is time ± skew.
    pub skew_ns: u64,
    /// The server's own address (and port): the NAT session's destination. Overrides the
    /// server fields of the log's lines.
    pub server: Option<(Ipv4Addr, Option<u16>)>,
    /// One JSON object per line instead of text.
    pub json: bool,
    /// Group requests by this field and intersect their candidates ([`crate::reader::correlate`]).
    pub correlate: Option<ActorField>,
    /// With `correlate`: only the groups and the summaries, no line per request.
    pub groups_only: bool,
    /// The server's clock against the NAT's: trusted, given or measured.
    pub server_clock: ServerClock,
}

/// Counts over one access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Non-blank lines read: `unique + ambiguous + none + unparsed`.
    pub lines: u64,
    pub unique: u64,
    pub ambiguous: u64,
    pub none: u64,
    pub unparsed: u64,
}

impl Summary {
    /// Lines that parsed as requests.
    pub fn requests(&self) -> u64 {
        self.unique + self.ambiguous + self.none
    }
}

fn output_error(source: io::Error) -> ReaderError {
    ReaderError::Io {
        path: PathBuf::from("<output>"),
        source,
    }
}

/// The question one request asks.
pub fn question_for(record: &AccessRecord<'_>, options: &AttributeOptions) -> Question {
    let dest = options.server.or(record.server);
    let (from_ns, to_ns) = options
        .server_clock
        .window(record.time_ns, dest, options.skew_ns);
    Question {
        public_ip: record.client_ip,
        public_port: record.client_port,
        from_ns,
        to_ns,
        dest_ip: dest.map(|(ip, _)| ip),
        dest_port: dest.and_then(|(_, port)| port),
        protocol: Some(TCP),
    }
}

/// Reads `input` line by line, asks `source` about each request, writes one result per
/// request to `out`, then the summary. Returns the summary.
///
/// Output is buffered here; `out` need not be. Lines that are not valid UTF-8 are read
/// with replacement characters; lines longer than 64 KiB are skipped and counted as
/// unparsed ([`crate::reader::input`]). A failing source or output stops the run with its
/// error.
pub fn attribute<R: BufRead, W: Write>(
    mut input: R,
    parser: &mut AccessLogParser,
    source: &mut impl MappingSource,
    options: &AttributeOptions,
    out: &mut W,
) -> Result<Summary, ReaderError> {
    let mut run = Run {
        out: BufWriter::with_capacity(1 << 16, out),
        options,
        scratch: Vec::new(),
        time_text: TimeText::new(options.json),
        candidate_times: TimeText::new(true),
        summary: Summary::default(),
        groups: options.correlate.as_ref().map(|_| Groups::default()),
    };
    let mut chunk = Chunk::default();
    let mut line_no = 0u64;
    while chunk.read(&mut input, &mut line_no)? {
        run.chunk(&chunk, parser, source)?;
    }
    server_clock::write_report(&mut run.out, &options.server_clock, options.json)
        .map_err(output_error)?;
    if let (Some(groups), Some(field)) = (&run.groups, &options.correlate) {
        write_groups(&mut run.out, groups, field.name(), options.json).map_err(output_error)?;
    }
    write_summary(&mut run.out, options, &run.summary, parser.format().name())
        .map_err(output_error)?;
    run.out.flush().map_err(output_error)?;
    Ok(run.summary)
}

/// Every line of a chunk: its number, its text and what it parsed as.
pub(crate) fn parse_lines<'c>(
    chunk: &'c Chunk,
    parser: &mut AccessLogParser,
) -> Vec<(u64, &'c str, Result<AccessRecord<'c>, LineError>)> {
    chunk
        .lines
        .iter()
        .map(|line| {
            let parsed = if line.too_long {
                Err(LineError::TooLong)
            } else {
                parser.parse(line.no, chunk.line(line))
            };
            (line.no, chunk.line(line), parsed)
        })
        .collect()
}

/// State carried from chunk to chunk.
struct Run<'o, W: Write> {
    out: BufWriter<W>,
    options: &'o AttributeOptions,
    scratch: Vec<Ipv4Addr>,
    time_text: TimeText,
    candidate_times: TimeText,
    summary: Summary,
    /// With `--correlate`: the groups so far (they span chunks).
    groups: Option<Groups>,
}

impl<W: Write> Run<'_, W> {
    fn chunk(
        &mut self,
        chunk: &Chunk,
        parser: &mut AccessLogParser,
        source: &mut impl MappingSource,
    ) -> Result<(), ReaderError> {
        let parsed = parse_lines(chunk, parser);
        let questions: Vec<Question> = parsed
            .iter()
            .filter_map(|(_, _, p)| p.as_ref().ok())
            .map(|record| question_for(record, self.options))
            .collect();
        let mut answers = source.answer_all(&questions)?.into_iter();
        let mut asked = questions.iter();
        for (line_no, text, result) in &parsed {
            self.summary.lines += 1;
            match result {
                Err(error) => self.unparsed(*line_no, error)?,
                Ok(record) => {
                    let (Some(question), Some(answer)) = (asked.next(), answers.next()) else {
                        return Err(ReaderError::Log("a source gave too few answers".into()));
                    };
                    self.answered(record, question, &answer)?;
                    self.correlate(parser, text, *line_no, &answer)?;
                }
            }
        }
        Ok(())
    }

    /// Adds the request to its actor's group.
    fn correlate(
        &mut self,
        parser: &AccessLogParser,
        line: &str,
        line_no: u64,
        answer: &Answer,
    ) -> Result<(), ReaderError> {
        let (Some(groups), Some(field)) = (&mut self.groups, &self.options.correlate) else {
            return Ok(());
        };
        let value = field
            .value(parser.format(), line)
            .map_err(|e| ReaderError::Usage(e.to_string()))?;
        groups.add(value.as_deref(), line_no, answer);
        Ok(())
    }

    fn unparsed(&mut self, line_no: u64, error: &dyn fmt::Display) -> Result<(), ReaderError> {
        self.summary.unparsed += 1;
        if self.summary.unparsed <= MAX_UNPARSED_SHOWN {
            write_unparsed(
                &mut self.out,
                self.options,
                line_no,
                error,
                self.summary.unparsed,
            )
            .map_err(output_error)?;
        }
        Ok(())
    }

    fn answered(
        &mut self,
        record: &AccessRecord<'_>,
        question: &Question,
        answer: &Answer,
    ) -> Result<(), ReaderError> {
        match answer.verdict {
            Verdict::Unique => self.summary.unique += 1,
            Verdict::Ambiguous => self.summary.ambiguous += 1,
            Verdict::None => self.summary.none += 1,
        }
        if self.options.groups_only {
            return Ok(());
        }
        correlate::subscriber_addresses(&answer.candidates, &mut self.scratch);
        let time = self.time_text.get(record.time_ns);
        if self.options.json {
            let shown = Shown {
                time,
                subscribers: &self.scratch,
            };
            write_json(
                &mut self.out,
                record,
                shown,
                &mut self.candidate_times,
                question,
                answer,
            )
        } else {
            write_text(
                &mut self.out,
                self.options,
                record,
                time,
                answer,
                &self.scratch,
            )
        }
        .map_err(output_error)
    }
}

/// The request time's text, kept while consecutive requests share it (they mostly do:
/// access logs have whole seconds).
struct TimeText {
    nanos: bool,
    ns: Option<u64>,
    text: String,
}

impl TimeText {
    fn new(nanos: bool) -> TimeText {
        TimeText {
            nanos,
            ns: None,
            text: String::with_capacity(32),
        }
    }

    fn get(&mut self, ns: u64) -> &str {
        if self.ns != Some(ns) {
            use std::fmt::Write as _;
            self.text.clear();
            let shown = if self.nanos {
                TimeDisplay::nanos(ns)
            } else {
                TimeDisplay::millis(ns)
            };
            let _ = write!(self.text, "{shown}");
            self.ns = Some(ns);
        }
        &self.text
    }
}

fn write_unparsed(
    out: &mut impl Write,
    options: &AttributeOptions,
    line_no: u64,
    error: &dyn fmt::Display,
    count: u64,
) -> io::Result<()> {
    if options.json {
        write!(out, "{{\"line\":{line_no},\"unparsed\":")?;
        serde_json::to_writer(&mut *out, &error.to_string())?;
        out.write_all(b"}\n")
    } else if count == MAX_UNPARSED_SHOWN {
        writeln!(
            out,
            "line {line_no}: unparsed: {error} (later unparsed lines are only counted)"
        )
    } else {
        writeln!(out, "line {line_no}: unparsed: {error}")
    }
}

/// Every group, then their summary.
fn write_groups(out: &mut impl Write, groups: &Groups, field: &str, json: bool) -> io::Result<()> {
    for (index, group) in groups.results().iter().enumerate() {
        if json {
            correlate::write_group_json(out, field, group)?;
        } else {
            correlate::write_group_text(out, index + 1, field, group)?;
        }
    }
    correlate::write_group_summary(out, field, &groups.summary(), json)
}

fn write_summary(
    out: &mut impl Write,
    options: &AttributeOptions,
    summary: &Summary,
    format: &str,
) -> io::Result<()> {
    let Summary {
        lines,
        unique,
        ambiguous,
        none,
        unparsed,
    } = *summary;
    let requests = summary.requests();
    if options.json {
        writeln!(
            out,
            "{{\"summary\":{{\"lines\":{lines},\"requests\":{requests},\"unique\":{unique},\
             \"ambiguous\":{ambiguous},\"none\":{none},\"unparsed\":{unparsed},\
             \"format\":\"{format}\"}}}}"
        )
    } else {
        writeln!(
            out,
            "{requests} requests: {unique} unique, {ambiguous} ambiguous, {none} none, \
             {unparsed} unparsed ({lines} lines, {format} format)"
        )
    }
}

// ---------------------------------------------------------------------------
// Text

/// `IP` or `IP:PORT` rendered on the stack; honours width and alignment.
struct Endpoint {
    buf: [u8; 21],
    len: usize,
}

impl Endpoint {
    fn new(ip: Ipv4Addr, port: Option<u16>) -> Endpoint {
        let mut buf = [0u8; 21];
        let mut cursor: &mut [u8] = &mut buf;
        // 21 bytes hold the longest, 255.255.255.255:65535.
        let _ = match port {
            Some(port) => write!(cursor, "{ip}:{port}"),
            None => write!(cursor, "{ip}"),
        };
        let len = 21 - cursor.len();
        Endpoint { buf, len }
    }

    /// The port is left out when it is 0 (evidence without a port).
    fn of(address: std::net::SocketAddrV4) -> Endpoint {
        let port = Some(address.port()).filter(|&p| p != 0);
        Endpoint::new(*address.ip(), port)
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The request as shown on a text line: no protocol version, bounded, no control
/// characters (a crafted request must not drive the operator's terminal).
fn write_request(out: &mut impl Write, request: &str) -> io::Result<()> {
    let mut shown = request.trim();
    if let Some((head, version)) = shown.rsplit_once(' ')
        && version.starts_with("HTTP/")
    {
        shown = head;
    }
    if shown.is_empty() {
        return out.write_all(b"-");
    }
    let mut cut = shown.len().min(MAX_REQUEST_SHOWN);
    while !shown.is_char_boundary(cut) {
        cut -= 1;
    }
    let truncated = cut < shown.len();
    let shown = &shown[..cut];
    if shown.bytes().any(|b| b < 0x20 || b == 0x7f) || shown.contains(['\u{85}', '\u{9b}']) {
        for c in shown.chars() {
            let c = if c.is_control() { '?' } else { c };
            write!(out, "{c}")?;
        }
    } else {
        out.write_all(shown.as_bytes())?;
    }
    if truncated {
        out.write_all("…".as_bytes())?;
    }
    Ok(())
}

fn evidence_bit(evidence: Evidence) -> u8 {
    match evidence {
        Evidence::Session => 1,
        Evidence::Mapping => 2,
        Evidence::Block => 4,
        Evidence::Deterministic => 8,
    }
}

fn write_text(
    out: &mut impl Write,
    options: &AttributeOptions,
    record: &AccessRecord<'_>,
    time: &str,
    answer: &Answer,
    subscribers: &[Ipv4Addr],
) -> io::Result<()> {
    write!(
        out,
        "line {}  {:<21}  {}  ",
        record.line_no,
        Endpoint::new(record.client_ip, record.client_port),
        time
    )?;
    write_request(out, record.request)?;
    out.write_all(b"  ")?;
    match answer.verdict {
        Verdict::None => out.write_all(b"none")?,
        Verdict::Unique => {
            let first = answer.candidates[0].subscriber;
            let same_port = answer
                .candidates
                .iter()
                .all(|c| c.subscriber.port() == first.port());
            let port = Some(first.port()).filter(|&p| same_port && p != 0);
            write!(out, "unique {}", Endpoint::new(*first.ip(), port))?;
            if let Some(name) = answer.candidates[0].holders.short_name() {
                write!(out, " = {name}")?;
            }
            let kinds = answer
                .candidates
                .iter()
                .fold(0u8, |bits, c| bits | evidence_bit(c.evidence));
            let mut separator = " (";
            for evidence in [
                Evidence::Session,
                Evidence::Mapping,
                Evidence::Block,
                Evidence::Deterministic,
            ] {
                if kinds & evidence_bit(evidence) != 0 {
                    write!(out, "{separator}{}", evidence.name())?;
                    separator = ", ";
                }
            }
            out.write_all(b")")?;
        }
        Verdict::Ambiguous => {
            write!(out, "ambiguous ({}): ", subscribers.len())?;
            for (index, ip) in subscribers.iter().take(MAX_LISTED).enumerate() {
                if index > 0 {
                    out.write_all(b", ")?;
                }
                write!(out, "{ip}")?;
                let holder = answer.candidates.iter().find(|c| c.subscriber.ip() == ip);
                if let Some(name) = holder.and_then(|c| c.holders.short_name()) {
                    write!(out, " = {name}")?;
                }
            }
            if subscribers.len() > MAX_LISTED {
                write!(out, ", … ({} more)", subscribers.len() - MAX_LISTED)?;
            }
        }
    }
    let clock = answer.clock;
    if clock.unsynchronised {
        write!(
            out,
            "  [NAT clock unsynchronised, max error {} ms]",
            clock.max_error_us / 1000
        )?;
    } else if u64::from(clock.max_error_us) * 1000 > options.skew_ns {
        write!(
            out,
            "  [NAT clock error up to {} ms exceeds the skew allowed]",
            clock.max_error_us / 1000
        )?;
    }
    out.write_all(b"\n")
}

// ---------------------------------------------------------------------------
// JSON

fn json_string(out: &mut impl Write, text: &str) -> io::Result<()> {
    serde_json::to_writer(&mut *out, text).map_err(io::Error::from)
}

fn json_time(out: &mut impl Write, times: &mut TimeText, ns: Option<u64>) -> io::Result<()> {
    match ns {
        Some(ns) => {
            out.write_all(b"\"")?;
            out.write_all(times.get(ns).as_bytes())?;
            out.write_all(b"\"")
        }
        None => out.write_all(b"null"),
    }
}

/// What a JSON line shows beyond the record and the answer.
struct Shown<'a> {
    /// The request time's text.
    time: &'a str,
    /// The distinct subscriber addresses, sorted.
    subscribers: &'a [Ipv4Addr],
}

fn write_json(
    out: &mut impl Write,
    record: &AccessRecord<'_>,
    shown: Shown<'_>,
    candidate_times: &mut TimeText,
    question: &Question,
    answer: &Answer,
) -> io::Result<()> {
    let Shown { time, subscribers } = shown;
    write!(
        out,
        "{{\"line\":{},\"client\":\"{}\",\"time\":\"{}\",\"request\":",
        record.line_no,
        Endpoint::new(record.client_ip, record.client_port),
        time
    )?;
    json_string(out, record.request)?;
    out.write_all(b",\"dest\":")?;
    match question.dest_ip {
        Some(ip) => write!(out, "\"{}\"", Endpoint::new(ip, question.dest_port))?,
        None => out.write_all(b"null")?,
    }
    write!(
        out,
        ",\"verdict\":\"{}\",\"subscribers\":[",
        answer.verdict.name()
    )?;
    for (index, ip) in subscribers.iter().enumerate() {
        let comma = if index > 0 { "," } else { "" };
        write!(out, "{comma}\"{ip}\"")?;
    }
    out.write_all(b"],\"candidates\":[")?;
    for (index, c) in answer.candidates.iter().enumerate() {
        let comma = if index > 0 { "," } else { "" };
        write!(
            out,
            "{comma}{{\"subscriber\":\"{}\",\"public\":\"{}\",\"ports\":",
            Endpoint::of(c.subscriber),
            Endpoint::of(c.public)
        )?;
        match c.ports {
            Some((first, last)) => write!(out, "[{first},{last}]")?,
            None => out.write_all(b"null")?,
        }
        out.write_all(b",\"dest\":")?;
        match c.dest {
            Some(dest) => write!(out, "\"{dest}\"")?,
            None => out.write_all(b"null")?,
        }
        write!(out, ",\"protocol\":{},\"start\":", c.protocol)?;
        json_time(out, candidate_times, c.start_ns)?;
        out.write_all(b",\"end\":")?;
        json_time(out, candidate_times, c.end_ns)?;
        out.write_all(b",\"last_active\":")?;
        json_time(out, candidate_times, c.last_active_ns)?;
        write!(out, ",\"evidence\":\"{}\",\"holder\":", c.evidence.name())?;
        write_holder(out, &c.holders)?;
        if let Some(name) = &c.box_name {
            out.write_all(b",\"box\":")?;
            json_string(out, name)?;
        }
        out.write_all(b"}")?;
    }
    writeln!(
        out,
        "],\"clock\":{{\"unsynchronised\":{},\"max_error_us\":{}}}}}",
        answer.clock.unsynchronised, answer.clock.max_error_us
    )
}

/// A constant for the common case of a log without identities: no allocation per line.
fn write_holder(out: &mut impl Write, holders: &Holders) -> io::Result<()> {
    match holders {
        Holders::NotTracked => out.write_all(br#"{"verdict":"not_tracked","holders":[]}"#),
        h => serde_json::to_writer(&mut *out, &h.to_json()).map_err(io::Error::from),
    }
}

#[cfg(test)]
mod tests;
