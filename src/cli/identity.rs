//! `tracenat identity …`: who held an inside address (reverse lookup), and importing
//! lease and accounting files into a log directory after the fact.

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use tracenat::identity::lease::{self, LeaseFormat};
use tracenat::maplog::clock::wall_clock_ns;
use tracenat::maplog::identity_log::{IdentityLog, stored};
use tracenat::maplog::writer::LogSettings;
use tracenat::reader::identity::{Holders, IdentityBook};
use tracenat::reader::time::{format_time, parse_time};

use super::commands::Failure;
use super::log::{EXIT_AMBIGUOUS, EXIT_NONE};

#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Who held an inside (subscriber) address at a time: the customer, by the identity
    /// records in the log (RADIUS accounting, DHCP leases).
    Query(IdentityQuery),
    /// Import a DHCP lease file or a RADIUS detail file into a log directory's identity
    /// records (what `tracenat run` learns live, after the fact).
    Import(IdentityImport),
}

#[derive(Debug, Args)]
pub struct IdentityQuery {
    /// The log directory (logging.dir).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The inside address, e.g. 100.64.1.1.
    #[arg(long, value_name = "IP")]
    pub inside: String,
    /// When: RFC 3339 with offset, epoch seconds, or [10/Oct/2000:13:55:36 -0700].
    #[arg(long, value_name = "TIME")]
    pub at: String,
    /// How far the time may be off: every holding in the window is shown.
    #[arg(long, value_name = "DUR", default_value = "0s")]
    pub tolerance: String,
    /// One JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct IdentityImport {
    /// What the file is: kea-csv (Kea memfile leases), isc-dhcpd (dhcpd.leases),
    /// radius-detail (FreeRADIUS detail accounting file).
    #[arg(long, value_name = "FORMAT")]
    pub format: LeaseFormat,
    /// The file to import.
    pub file: PathBuf,
    /// The log directory to store the records in (created if new).
    #[arg(long, value_name = "DIR")]
    pub log_dir: PathBuf,
}

pub fn run(command: IdentityCommand) -> Result<ExitCode, Failure> {
    match command {
        IdentityCommand::Query(q) => query(q),
        IdentityCommand::Import(i) => import(i),
    }
}

fn query(q: IdentityQuery) -> Result<ExitCode, Failure> {
    let inside: Ipv4Addr = q
        .inside
        .parse()
        .map_err(|_| Failure::Usage(format!("--inside {}: not an IPv4 address", q.inside)))?;
    let at = parse_time(&q.at).map_err(|e| Failure::Usage(format!("--at {}: {e}", q.at)))?;
    let tolerance = tracenat::config::parse_duration(&q.tolerance)
        .map_err(|e| Failure::Usage(format!("--tolerance {}: {e}", q.tolerance)))?
        .as_nanos() as u64;
    tracenat::maplog::dir::check(&q.dir).map_err(|e| {
        Failure::Reader(tracenat::reader::ReaderError::Io {
            path: q.dir.clone(),
            source: e,
        })
    })?;
    let (from, to) = (at.saturating_sub(tolerance), at.saturating_add(tolerance));
    // Read an hour past the window, so a holding that ended soon after shows its end.
    const READ_AHEAD_NS: u64 = 3600 * 1_000_000_000;
    let book = IdentityBook::load(&q.dir, from, to.saturating_add(READ_AHEAD_NS))
        .map_err(Failure::Reader)?;
    for damage in &book.damaged {
        eprintln!("warning: {damage}");
    }
    let holders = book.holders(inside, from, to);
    let mut out = io::stdout().lock();
    let written = if q.json {
        let answer = serde_json::json!({
            "inside": inside.to_string(),
            "from": format_time(from),
            "to": format_time(to),
            "holder": holders.to_json(),
        });
        writeln!(out, "{answer}")
    } else {
        write_holders(&mut out, inside, from, to, &holders)
    };
    written.map_err(Failure::Output)?;
    Ok(match holders.verdict() {
        "known" => ExitCode::SUCCESS,
        "overlap" => ExitCode::from(EXIT_AMBIGUOUS),
        _ => ExitCode::from(EXIT_NONE),
    })
}

fn write_holders(
    out: &mut impl Write,
    inside: Ipv4Addr,
    from: u64,
    to: u64,
    holders: &Holders,
) -> io::Result<()> {
    let when = if from == to {
        format!("at {}", format_time(from))
    } else {
        format!("between {} and {}", format_time(from), format_time(to))
    };
    writeln!(out, "{inside} {when}: {}", holders.verdict())?;
    match holders.describe(inside) {
        Some(line) => writeln!(out, "  {line}"),
        None => writeln!(
            out,
            "  this log holds no identity records: configure [identity] in `tracenat run`, or `tracenat identity import`"
        ),
    }
}

fn import(i: IdentityImport) -> Result<ExitCode, Failure> {
    let file =
        File::open(&i.file).map_err(|e| Failure::Runtime(format!("{}: {e}", i.file.display())))?;
    let settings = LogSettings::defaults(&i.log_dir);
    let mut log = IdentityLog::open(&settings)
        .map_err(|e| Failure::Runtime(format!("{}: {e}", i.log_dir.display())))?;
    for note in &log.recovered {
        eprintln!("recovered: {note}");
    }
    let report = lease::import(i.format, BufReader::new(file), &mut log, wall_clock_ns())
        .map_err(|e| Failure::Runtime(format!("{}: {e}", i.file.display())))?;
    log.close()
        .map_err(|e| Failure::Runtime(format!("{}: {e}", i.log_dir.display())))?;
    let c = &report.counts;
    println!(
        "{}: {} records read ({}), {} stored, {} unchanged, {} ignored, {} skipped",
        i.file.display(),
        c.records,
        i.format.name(),
        stored(&log.stats()),
        c.unchanged,
        c.ignored,
        c.skipped
    );
    for skip in &c.first_skips {
        eprintln!("  skipped line {}: {}", skip.line, skip.reason);
    }
    Ok(ExitCode::SUCCESS)
}
