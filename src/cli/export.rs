//! `tracenat log export`: a mapping log's events as IPFIX or syslog, to a file or to
//! collectors.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use tracenat::config::export::{
    Collector, DEFAULT_FACILITY, DEFAULT_TEMPLATE_REFRESH, facility_code,
};
use tracenat::export::lake;
use tracenat::export::offline::{self, OfflineOptions, Stamp};
use tracenat::export::output::{Format, Output};
use tracenat::export::sender::Sender;
use tracenat::export::syslog::{SyslogFormat, system_hostname};

use super::args::DirArg;
use super::commands::Failure;
use super::log::{open, time_range};

#[derive(Debug, Args)]
pub struct ExportCommand {
    #[command(flatten)]
    pub dir: DirArg,
    /// ipfix (RFC 7011 messages with RFC 8158 elements; a file is RFC 5655's format),
    /// syslog (RFC 5424 lines) or parquet (a directory of Hive-partitioned tables).
    #[arg(long, value_name = "FORMAT", required_unless_present_any = ["ipfix", "syslog"])]
    pub format: Option<String>,
    /// Write into this file (with --format; a directory for parquet).
    #[arg(long, value_name = "FILE", requires = "format")]
    pub out: Option<PathBuf>,
    /// Parquet: the box these events came from, in the partition path (default: the box
    /// the log names in runs.jsonl).
    #[arg(long = "box", value_name = "NAME")]
    pub box_name: Option<String>,
    /// Send IPFIX to this collector: HOST:PORT (UDP) or tcp://HOST:PORT. Repeatable.
    #[arg(long, value_name = "COLLECTOR")]
    pub ipfix: Vec<String>,
    /// Send syslog to this collector: HOST:PORT (UDP) or tcp://HOST:PORT (octet
    /// counting, RFC 6587). Repeatable.
    #[arg(long, value_name = "COLLECTOR")]
    pub syslog: Vec<String>,
    /// Only events at or after this time.
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Only events at or before this time.
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Events per second at most to collectors (a UDP collector drops what it cannot
    /// take in); 0: no limit. Files are never paced.
    #[arg(long, value_name = "N", default_value_t = 50_000)]
    pub rate: u64,
    /// IPFIX: worker w exports as observation domain N + w.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub observation_domain: u32,
    /// Syslog HOSTNAME (default: this machine's name).
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Syslog facility.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_FACILITY)]
    pub facility: String,
}

pub fn run(c: ExportCommand) -> Result<ExitCode, Failure> {
    let (from, to) = time_range(c.from.as_deref(), c.to.as_deref())?;
    if c.format.as_deref() == Some("parquet") {
        return parquet(&c, from, to);
    }
    let ipfix = Format::Ipfix {
        domain_base: c.observation_domain,
    };
    let syslog = Format::Syslog(SyslogFormat {
        hostname: c.hostname.clone().unwrap_or_else(system_hostname),
        facility: facility_code(&c.facility).ok_or_else(|| {
            Failure::Usage(format!("--facility {:?}: unknown facility", c.facility))
        })?,
    });
    let mut outputs = Vec::new();
    let to_file = c.out.is_some();
    match (&c.format, &c.out) {
        (Some(format), Some(path)) => {
            let format = match format.as_str() {
                "ipfix" => ipfix.clone(),
                "syslog" => syslog.clone(),
                other => {
                    return Err(Failure::Usage(format!(
                        "--format {other:?}: expected ipfix or syslog"
                    )));
                }
            };
            let sender = Sender::create_file(path)
                .map_err(|e| Failure::Runtime(format!("{}: {e}", path.display())))?;
            outputs.push(Output::new(path.display().to_string(), format, sender));
        }
        (Some(_), None) if c.ipfix.is_empty() && c.syslog.is_empty() => {
            return Err(Failure::Usage("--format needs --out FILE".into()));
        }
        _ => {}
    }
    for (list, format, what) in [(&c.ipfix, &ipfix, "ipfix"), (&c.syslog, &syslog, "syslog")] {
        for text in list {
            let collector = Collector::parse(text)
                .map_err(|why| Failure::Usage(format!("--{what} {text:?}: {why}")))?;
            let sender = Sender::open(collector)
                .map_err(|e| Failure::Runtime(format!("{collector}: {e}")))?;
            outputs.push(Output::new(
                format!("{what} {collector}"),
                format.clone(),
                sender,
            ));
        }
    }
    let log = open(&c.dir)?;
    let options = OfflineOptions {
        from_ns: from,
        to_ns: to,
        rate: (!to_file || outputs.len() > 1).then_some(c.rate),
        stamp: if to_file && outputs.len() == 1 {
            Stamp::EventTime
        } else {
            Stamp::WallClock
        },
        template_refresh: DEFAULT_TEMPLATE_REFRESH.min(Duration::from_secs(10)),
    };
    let report = offline::export(&log, &mut outputs, &options);
    for bad in &report.bad_blocks {
        eprintln!("tracenat: skipped a damaged block: {bad}");
    }
    let mut failed = false;
    for o in &outputs {
        eprintln!(
            "{}: {} of {} events sent in {} messages ({} bytes), {} lost",
            o.name, o.tally.sent, report.events, o.tally.messages, o.tally.bytes, o.tally.lost
        );
        if let Some(e) = &o.tally.last_error {
            eprintln!("tracenat: {e}");
            failed = true;
        }
    }
    if failed {
        return Err(Failure::Runtime("some events could not be exported".into()));
    }
    Ok(ExitCode::SUCCESS)
}

fn parquet(c: &ExportCommand, from: u64, to: u64) -> Result<ExitCode, Failure> {
    let Some(dir) = &c.out else {
        return Err(Failure::Usage("--format parquet needs --out DIR".into()));
    };
    let log = open(&c.dir)?;
    // The box the log says wrote it, unless told otherwise.
    let box_name = c.box_name.clone().unwrap_or_else(|| log.box_name.clone());
    if !lake::valid_box_name(&box_name) {
        return Err(Failure::Usage(format!(
            "--box {box_name:?}: use letters, digits, '-', '_' and '.'"
        )));
    }
    let report = lake::export(&log, dir, &box_name, from, to)
        .map_err(|e| Failure::Runtime(format!("{}: {e}", dir.display())))?;
    for bad in &report.bad_blocks {
        eprintln!("tracenat: skipped a damaged block: {bad}");
    }
    let bytes: u64 = report
        .files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    eprintln!(
        "{}: {} events, {} sessions and port blocks, in {} files ({bytes} bytes)",
        dir.display(),
        report.events,
        report.sessions,
        report.files.len()
    );
    Ok(ExitCode::SUCCESS)
}
