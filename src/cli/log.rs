//! `tracenat log …`: the reader's commands.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;

use tracenat::config::parse_duration;
use tracenat::identity::IdentityRecord;
use tracenat::reader::ReaderError;
use tracenat::reader::access_log::{AccessLogParser, JsonFields, LogFormat};
use tracenat::reader::actor::ActorField;
use tracenat::reader::attribute::{self, AttributeOptions};
use tracenat::reader::fleet::{self, Fleet};
use tracenat::reader::identity::Holders;
use tracenat::reader::logdir::{self, LogDir};
use tracenat::reader::model::{Answer, Candidate, MappingSource, Question, Verdict, endpoint_text};
use tracenat::reader::server_clock::{self, ServerClock};
use tracenat::reader::time::{format_time, parse_time};

use super::args::{
    AttributeCommand, DecodeCommand, DirArg, LogCommand, QueryCommand, StatsCommand,
};
use super::commands::Failure;

/// Exit statuses of `log query` (documented in README and docs/mapping-log.md).
pub const EXIT_AMBIGUOUS: u8 = 3;
pub const EXIT_NONE: u8 = 4;
/// `log verify` found damage.
pub const EXIT_DAMAGED: u8 = 5;

pub fn run(command: LogCommand) -> Result<ExitCode, Failure> {
    match command {
        LogCommand::Query(c) => query(c),
        LogCommand::Attribute(c) => attribute(c),
        LogCommand::Decode(c) => decode(c),
        LogCommand::Stats(c) => stats(c),
        LogCommand::Verify(c) => verify(c),
        LogCommand::Export(c) => super::export::run(c),
    }
}

fn usage(what: &str, text: &str, why: impl std::fmt::Display) -> Failure {
    Failure::Usage(format!("{what} {text:?}: {why}"))
}

/// The one log directory a command reads.
pub(super) fn open(dir: &DirArg) -> Result<LogDir, Failure> {
    match fleet::log_paths(&dir.dir)
        .map_err(Failure::Reader)?
        .as_slice()
    {
        [one] => LogDir::open(one).map_err(Failure::Reader),
        many => Err(Failure::Usage(format!(
            "--dir names {} log directories; this command reads one",
            many.len()
        ))),
    }
}

/// Every log directory named (folders of them expanded), answering as one.
fn open_fleet(dir: &DirArg) -> Result<Fleet, Failure> {
    Fleet::open(&dir.dir).map_err(Failure::Reader)
}

/// `IP` or `IP:PORT`.
fn endpoint(what: &str, text: &str) -> Result<(Ipv4Addr, Option<u16>), Failure> {
    if let Ok(sa) = text.parse::<SocketAddrV4>() {
        return Ok((*sa.ip(), Some(sa.port())));
    }
    text.parse::<Ipv4Addr>().map(|ip| (ip, None)).map_err(|_| {
        usage(
            what,
            text,
            "expected an IPv4 address, optionally with :PORT",
        )
    })
}

fn protocol(text: &str) -> Result<u8, Failure> {
    match text.to_ascii_lowercase().as_str() {
        "tcp" => Ok(6),
        "udp" => Ok(17),
        "icmp" => Ok(1),
        n => n
            .parse()
            .map_err(|_| usage("--proto", text, "expected tcp, udp, icmp or a number")),
    }
}

fn duration_ns(what: &str, text: &str) -> Result<u64, Failure> {
    parse_duration(text)
        .map(|d| d.as_nanos() as u64)
        .map_err(|e| usage(what, text, e))
}

/// `--from` and `--to`, open-ended where not given.
pub(super) fn time_range(from: Option<&str>, to: Option<&str>) -> Result<(u64, u64), Failure> {
    Ok((
        from.map(|t| time("--from", t)).transpose()?.unwrap_or(0),
        to.map(|t| time("--to", t)).transpose()?.unwrap_or(u64::MAX),
    ))
}

pub(super) fn time(what: &str, text: &str) -> Result<u64, Failure> {
    parse_time(text).map_err(|e| usage(what, text, e))
}

fn query(c: QueryCommand) -> Result<ExitCode, Failure> {
    let (public_ip, public_port) = endpoint("--public", &c.public)?;
    let at = time("--at", &c.at)?;
    let tolerance = duration_ns("--tolerance", &c.tolerance)?;
    let dest = c
        .dest
        .as_deref()
        .map(|d| endpoint("--dest", d))
        .transpose()?;
    let question = Question {
        public_ip,
        public_port,
        from_ns: at.saturating_sub(tolerance),
        to_ns: at.saturating_add(tolerance),
        dest_ip: dest.map(|(ip, _)| ip),
        dest_port: dest.and_then(|(_, p)| p),
        protocol: c.proto.as_deref().map(protocol).transpose()?,
    };
    let mut log = open_fleet(&c.dir)?;
    let answer = log.answer(&question).map_err(Failure::Reader)?;
    let mut out = io::stdout().lock();
    let written = if c.json {
        writeln!(out, "{}", answer_json(&question, &answer))
    } else {
        write_answer(&mut out, &question, &answer)
    };
    written.map_err(Failure::Output)?;
    Ok(match answer.verdict {
        Verdict::Unique => ExitCode::SUCCESS,
        Verdict::Ambiguous => ExitCode::from(EXIT_AMBIGUOUS),
        Verdict::None => ExitCode::from(EXIT_NONE),
    })
}

fn opt_time(ns: Option<u64>, missing: &str) -> String {
    ns.map_or_else(|| missing.to_owned(), format_time)
}

fn protocol_name(p: u8) -> String {
    match p {
        0 => "any".into(),
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        n => n.to_string(),
    }
}

fn write_answer(out: &mut impl Write, q: &Question, a: &Answer) -> io::Result<()> {
    let public = match q.public_port {
        Some(p) => format!("{}:{p}", q.public_ip),
        None => q.public_ip.to_string(),
    };
    let n = a.candidates.len();
    writeln!(
        out,
        "{public} between {} and {}: {} ({n} candidate mapping{})",
        format_time(q.from_ns),
        format_time(q.to_ns),
        a.verdict.name(),
        if n == 1 { "" } else { "s" }
    )?;
    for c in &a.candidates {
        writeln!(out, "  {}", candidate_line(c))?;
        if let Some(customer) = c.holders.describe(*c.subscriber.ip()) {
            writeln!(out, "    {customer}")?;
        }
    }
    if n > 0
        && a.candidates
            .iter()
            .all(|c| c.holders == Holders::NotTracked)
    {
        writeln!(
            out,
            "note: this log holds no identity records ([identity] was never configured): answers end at inside addresses"
        )?;
    }
    if a.clock.stepped_ns > 0 {
        writeln!(
            out,
            "note: the NAT's wall clock stepped by {:.3} s in all during the run that logged this; the window was widened by as much on both sides",
            a.clock.stepped_ns as f64 / 1e9
        )?;
    }
    if a.clock.unsynchronised {
        writeln!(
            out,
            "note: the NAT's clock was not synchronised when some of this was logged; widen --tolerance"
        )?;
    } else if a.clock.max_error_us > 0 {
        writeln!(
            out,
            "clock: the NAT's clock was within {} ms of true time",
            a.clock.max_error_us.div_ceil(1000)
        )?;
    }
    Ok(())
}

fn candidate_line(c: &Candidate) -> String {
    let public = match c.ports {
        Some((lo, hi)) => format!("{}:{lo}-{hi}", c.public.ip()),
        None => c.public.to_string(),
    };
    let subscriber = endpoint_text(c.subscriber);
    let dest = c
        .dest
        .map(|d| format!(" to {}", endpoint_text(d)))
        .unwrap_or_default();
    let active = c
        .last_active_ns
        .map(|t| format!(" (last packet {})", format_time(t)))
        .unwrap_or_default();
    let on_box = c
        .box_name
        .as_deref()
        .map(|b| format!(" on {b}"))
        .unwrap_or_default();
    format!(
        "subscriber {subscriber:<21} public {public:<21} {:<4} {} .. {}{active}{dest}  [{}]{on_box}",
        protocol_name(c.protocol),
        opt_time(c.start_ns, "(before the log)"),
        opt_time(c.end_ns, "(still held)"),
        c.evidence.name()
    )
}

fn candidate_json(c: &Candidate) -> serde_json::Value {
    serde_json::json!({
        "subscriber": endpoint_text(c.subscriber),
        "public": endpoint_text(c.public),
        "ports": c.ports.map(|(lo, hi)| [lo, hi]),
        "dest": c.dest.map(|d| d.to_string()),
        "protocol": c.protocol,
        "start": c.start_ns.map(format_time),
        "end": c.end_ns.map(format_time),
        "start_ns": c.start_ns,
        "end_ns": c.end_ns,
        "last_active": c.last_active_ns.map(format_time),
        "last_active_ns": c.last_active_ns,
        "evidence": c.evidence.name(),
        "holder": c.holders.to_json(),
        "box": c.box_name,
    })
}

fn answer_json(q: &Question, a: &Answer) -> serde_json::Value {
    serde_json::json!({
        "question": {
            "public_ip": q.public_ip.to_string(),
            "public_port": q.public_port,
            "from": format_time(q.from_ns),
            "to": format_time(q.to_ns),
            "dest_ip": q.dest_ip.map(|ip| ip.to_string()),
            "dest_port": q.dest_port,
            "protocol": q.protocol,
        },
        "verdict": a.verdict.name(),
        "candidates": a.candidates.iter().map(candidate_json).collect::<Vec<_>>(),
        "clock": {
            "unsynchronised": a.clock.unsynchronised,
            "max_error_us": a.clock.max_error_us,
            "stepped_ns": a.clock.stepped_ns,
        },
    })
}

fn attribute(c: AttributeCommand) -> Result<ExitCode, Failure> {
    let format: LogFormat = c
        .format
        .parse()
        .map_err(|e| usage("--format", &c.format, e))?;
    let fields = JsonFields {
        client_ip: c.json_ip_field.clone(),
        client_port: c.json_port_field.clone(),
        time: c.json_time_field.clone(),
        ..JsonFields::default()
    };
    let (skew_ns, offset) = clock_arguments(&c)?;
    let mut options = AttributeOptions {
        skew_ns,
        server: c
            .server
            .as_deref()
            .map(|s| endpoint("--server", s))
            .transpose()?,
        json: c.json,
        correlate: c.correlate.as_deref().map(ActorField::new),
        groups_only: c.groups_only,
        server_clock: ServerClock::Trusted,
    };
    if let Some(field) = &options.correlate {
        field
            .check(format)
            .map_err(|e| Failure::Usage(e.to_string()))?;
    }
    let open_input = || {
        File::open(&c.access_log)
            .map(|file| BufReader::with_capacity(1 << 16, file))
            .map_err(|source| {
                Failure::Reader(ReaderError::Io {
                    path: c.access_log.clone(),
                    source,
                })
            })
    };
    let mut log = open_fleet(&c.dir)?;
    options.server_clock = match offset {
        Offset::Trusted => ServerClock::Trusted,
        Offset::Given(ns) => ServerClock::Fixed(ns),
        Offset::Measure(max_offset_ns) => {
            // A first pass over the file; the second, below, attributes.
            let mut parser = AccessLogParser::new(format, fields.clone());
            let measured = server_clock::measure(
                open_input()?,
                &mut parser,
                &mut log,
                &options,
                max_offset_ns,
            )
            .map_err(reader_failure)?;
            ServerClock::Measured(measured)
        }
    };
    let mut parser = AccessLogParser::new(format, fields);
    let out = io::stdout().lock();
    attribute::attribute(
        open_input()?,
        &mut parser,
        &mut log,
        &options,
        &mut BufWriter::new(out),
    )
    .map_err(reader_failure)?;
    Ok(ExitCode::SUCCESS)
}

/// What `--skew` and `--server-offset` ask of the server's clock.
enum Offset {
    Trusted,
    /// Server minus NAT, ns.
    Given(i64),
    /// Measure it, searching up to this far (ns).
    Measure(u64),
}

/// `--skew DUR|auto`, `--server-offset DUR|auto` and `--max-offset DUR`: the skew and
/// what to do with the server's clock.
fn clock_arguments(c: &AttributeCommand) -> Result<(u64, Offset), Failure> {
    let auto_skew = c.skew.trim().eq_ignore_ascii_case("auto");
    // `auto`: the offset is measured; what remains is the log's own resolution (whole
    // seconds in the common log format).
    let skew_ns = if auto_skew {
        1_000_000_000
    } else {
        duration_ns("--skew", &c.skew)?
    };
    let max_offset = duration_ns("--max-offset", &c.max_offset)?;
    let offset = match c.server_offset.as_deref().map(str::trim) {
        None if auto_skew => Offset::Measure(max_offset),
        None => Offset::Trusted,
        Some(text) if text.eq_ignore_ascii_case("auto") => Offset::Measure(max_offset),
        Some(_) if auto_skew => {
            return Err(Failure::Usage(
                "--skew auto measures the server's offset: it cannot be combined with a given --server-offset".into(),
            ));
        }
        Some(text) => Offset::Given(signed_duration_ns("--server-offset", text)?),
    };
    Ok((skew_ns, offset))
}

/// A duration with an optional sign: `-160s`, `+2m`, `500ms`.
fn signed_duration_ns(what: &str, text: &str) -> Result<i64, Failure> {
    let (negative, magnitude) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let ns =
        i64::try_from(duration_ns(what, magnitude)?).map_err(|_| usage(what, text, "too large"))?;
    Ok(if negative { -ns } else { ns })
}

/// A usage error found while reading (a `--correlate` field the detected format lacks)
/// exits as usage errors do.
fn reader_failure(error: ReaderError) -> Failure {
    match error {
        ReaderError::Usage(message) => Failure::Usage(message),
        other => Failure::Reader(other),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum DecodeFormat {
    Text,
    Json,
    Csv,
}

fn decode(c: DecodeCommand) -> Result<ExitCode, Failure> {
    let format = match c.format.as_str() {
        "text" => DecodeFormat::Text,
        "json" => DecodeFormat::Json,
        "csv" => DecodeFormat::Csv,
        other => return Err(usage("--format", other, "expected text, json or csv")),
    };
    let (from, to) = time_range(c.from.as_deref(), c.to.as_deref())?;
    let fleet = open_fleet(&c.dir)?;
    let labelled = fleet.logs.len() > 1;
    let mut out = BufWriter::new(io::stdout().lock());
    if format == DecodeFormat::Csv {
        writeln!(
            out,
            "{}kind,ts_ns,time,worker,protocol,inside,public,dest,block_first,block_last",
            if labelled { "box," } else { "" }
        )
        .map_err(Failure::Output)?;
    }
    for log in &fleet.logs {
        let label = labelled.then_some(log.box_name.as_str());
        decode_one(log, label, format, from, to, &mut out)?;
    }
    out.flush().map_err(Failure::Output)?;
    Ok(ExitCode::SUCCESS)
}

/// A decoded line with its box in front, when records of several boxes are mixed: a
/// `box` key first in a JSON object, a first column in CSV, a `box NAME` prefix in text.
fn labelled_line(label: Option<&str>, format: DecodeFormat, line: String) -> String {
    match (label, format) {
        (None, _) => line,
        (Some(b), DecodeFormat::Json) => {
            format!("{{\"box\":{},{}", serde_json::Value::from(b), &line[1..])
        }
        (Some(b), DecodeFormat::Csv) => format!("{},{line}", csv_field(b)),
        (Some(b), DecodeFormat::Text) => format!("{b} {line}"),
    }
}

fn decode_one(
    log: &LogDir,
    label: Option<&str>,
    format: DecodeFormat,
    from: u64,
    to: u64,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let progress = progress_bar(log);
    let mut failed: io::Result<()> = Ok(());
    let mut bad = Vec::new();
    logdir::for_each_record(
        log,
        from,
        to,
        |worker, r| {
            if failed.is_err() {
                return;
            }
            let line = match format {
                DecodeFormat::Json => r.to_json(worker),
                DecodeFormat::Csv => format!(
                    "{},{},{},{worker},{},{},{},{},{},{}",
                    r.kind.name(),
                    r.ts_ns,
                    format_time(r.ts_ns),
                    r.protocol,
                    r.inside(),
                    r.public(),
                    r.dest(),
                    r.block_first,
                    r.block_last
                ),
                DecodeFormat::Text => format!(
                    "{} w{worker} {:<24} {:<4} {:<21} -> {:<21} dest {}{}",
                    format_time(r.ts_ns),
                    r.kind.name(),
                    protocol_name(r.protocol),
                    r.inside().to_string(),
                    r.public().to_string(),
                    r.dest(),
                    if r.kind.has_block() {
                        format!(" ports {}-{}", r.block_first, r.block_last)
                    } else {
                        String::new()
                    }
                ),
            };
            failed = writeln!(out, "{}", labelled_line(label, format, line));
            if let Some(p) = &progress {
                p.inc(1);
            }
        },
        |seg, b, e| bad.push(logdir::describe_bad_block(seg, b, &e)),
    );
    logdir::for_each_identity(
        log,
        from,
        to,
        |r| {
            if failed.is_ok() {
                failed = identity_line(format, r)
                    .and_then(|line| writeln!(out, "{}", labelled_line(label, format, line)));
            }
        },
        |seg, b, e| bad.push(logdir::describe_bad_block(seg, b, &e)),
    );
    failed.map_err(Failure::Output)?;
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    report_damage(log, &bad);
    Ok(())
}

/// One identity record in `decode`'s format (CSV rows put the identity in `inside`'s
/// place and its fields, `name=value` joined by `;`, in `dest`'s).
fn identity_line(format: DecodeFormat, r: &IdentityRecord) -> io::Result<String> {
    Ok(match format {
        DecodeFormat::Json => r.to_json(),
        DecodeFormat::Csv => {
            let fields: Vec<String> = r
                .identity
                .fields()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!(
                "{},{},{},identity,0,{},{},{},,",
                r.change.name(),
                r.at_ns,
                format_time(r.at_ns),
                r.inside_ip,
                r.source.name(),
                csv_field(&fields.join(";"))
            )
        }
        DecodeFormat::Text => format!(
            "{} identity {:<18} {:<15} {:<15} {}",
            format_time(r.at_ns),
            r.change.name(),
            r.source.name(),
            r.inside_ip,
            r.identity
        ),
    })
}

/// A CSV field, quoted when it holds a separator or a quote.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// A progress bar over the records, on stderr, only when a person is watching.
fn progress_bar(log: &LogDir) -> Option<indicatif::ProgressBar> {
    if !io::stdout().is_terminal() || !io::stderr().is_terminal() {
        return None;
    }
    let total: u64 = logdir::stats(log).iter().map(|s| s.records).sum();
    (total > 1_000_000).then(|| indicatif::ProgressBar::new(total))
}

/// Damage is reported on stderr: what could not be read, and that everything else was.
fn report_damage(log: &LogDir, bad_blocks: &[String]) {
    let damage = log.damage();
    for line in damage.iter().chain(bad_blocks) {
        eprintln!("warning: {line}");
    }
    if !damage.is_empty() || !bad_blocks.is_empty() {
        eprintln!(
            "warning: everything else was read; run `tracenat log verify` for the full check"
        );
    }
}

fn stats(c: StatsCommand) -> Result<ExitCode, Failure> {
    let fleet = open_fleet(&c.dir)?;
    let labelled = fleet.logs.len() > 1;
    for log in &fleet.logs {
        if labelled && !c.json {
            println!("box {} ({}):", log.box_name, log.root.display());
        }
        stats_one(log, c.json, labelled)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn stats_one(log: &LogDir, json: bool, labelled: bool) -> Result<(), Failure> {
    let workers = logdir::stats(log);
    let identity = logdir::identity_stats(log);
    let mut out = io::stdout().lock();
    let written = if json {
        let total_records: u64 = workers.iter().map(|w| w.records).sum();
        let total_bytes: u64 = workers.iter().map(|w| w.bytes).sum();
        writeln!(
            out,
            "{}",
            serde_json::json!({
                "records": total_records,
                "bytes": total_bytes,
                "bytes_per_record": ratio(total_bytes, total_records),
                "workers": workers,
                "identity": identity,
                "box": labelled.then_some(&log.box_name),
                "dir": labelled.then(|| log.root.display().to_string()),
            })
        )
    } else {
        write_stats(&mut out, &workers).and_then(|_| match &identity {
            Some(i) => writeln!(
                out,
                "identity chain: {} records in {} blocks, {} segments, {} bytes ({:.2} bytes/record), {} .. {}",
                i.records,
                i.blocks,
                i.segments,
                i.bytes,
                ratio(i.bytes, i.records),
                opt_time(i.first_ts_ns, "-"),
                opt_time(i.last_ts_ns, "-")
            ),
            None => Ok(()),
        })
    };
    written.map_err(Failure::Output)
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

fn write_stats(out: &mut impl Write, workers: &[logdir::WorkerStats]) -> io::Result<()> {
    writeln!(
        out,
        "worker  segments  blocks   records  bytes/record  compression  from .. to"
    )?;
    for w in workers {
        writeln!(
            out,
            "{:>6}  {:>8}  {:>6}  {:>8}  {:>12.2}  {:>10.1}x  {} .. {}",
            w.worker,
            w.segments,
            w.blocks,
            w.records,
            ratio(w.bytes, w.records),
            ratio(w.raw_payload_bytes, w.compressed_payload_bytes),
            opt_time(w.first_ts_ns, "-"),
            opt_time(w.last_ts_ns, "-")
        )?;
    }
    let records: u64 = workers.iter().map(|w| w.records).sum();
    let bytes: u64 = workers.iter().map(|w| w.bytes).sum();
    writeln!(
        out,
        "total: {records} records in {bytes} bytes ({:.2} bytes/record, checkpoints and indexes included)",
        ratio(bytes, records)
    )
}

fn verify(c: DirArg) -> Result<ExitCode, Failure> {
    let mut damaged = false;
    for path in fleet::log_paths(&c.dir).map_err(Failure::Reader)? {
        let log = LogDir::open(&path).map_err(Failure::Reader)?;
        damaged |= !verify_one(&log)?;
    }
    Ok(if damaged {
        ExitCode::from(EXIT_DAMAGED)
    } else {
        ExitCode::SUCCESS
    })
}

/// Verifies one log directory and says so; false if it is damaged.
fn verify_one(log: &LogDir) -> Result<bool, Failure> {
    let blocks: u64 = logdir::stats(log).iter().map(|s| s.blocks).sum();
    let bar = (io::stdout().is_terminal() && io::stderr().is_terminal() && blocks > 10_000)
        .then(|| indicatif::ProgressBar::new(blocks));
    let problems = logdir::verify_with_progress(log, |n| {
        if let Some(bar) = &bar {
            bar.inc(n);
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let mut out = io::stdout().lock();
    let written = (|| {
        if problems.is_empty() {
            writeln!(
                out,
                "{}: ok, {blocks} blocks, every CRC and the hash chain intact",
                log.root.display()
            )
        } else {
            writeln!(out, "{}: DAMAGED — first bad block:", log.root.display())?;
            writeln!(out, "  {}", problems[0])?;
            for p in &problems[1..] {
                writeln!(out, "  also: {p}")?;
            }
            Ok(())
        }
    })();
    written.map_err(Failure::Output)?;
    Ok(problems.is_empty())
}
