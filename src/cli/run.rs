//! `tracenat run` (the appliance) and `tracenat stats` (its counters while it runs).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;

use tracenat::config::Config;
use tracenat::dataplane::metrics::{self, Snapshot};
use tracenat::dataplane::run::{self, RunReport};
use tracenat::dataplane::worker::Forwarding;
use tracenat::engine::DropReason;
use tracenat::engine::counters::Activity;
use tracenat::maplog::runs::PreviousRun;
use tracenat::reader::time::format_time;

use super::commands::Failure;
use super::signals;

#[derive(Debug, Args)]
pub struct RunCommand {
    /// Configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Benchmark only: forward without translating (TTL rewrite only), to measure the
    /// dataplane's own ceiling (docs/performance.md). Not a NAT; not settable in a config.
    #[arg(long, hide = true)]
    pub bench_ceiling: bool,
}

#[derive(Debug, Args)]
pub struct StatsCommand {
    /// The running NAT's configuration (its dataplane.metrics address is read).
    #[arg(long, value_name = "FILE", conflicts_with = "metrics")]
    pub config: Option<PathBuf>,
    /// The metrics address, e.g. 127.0.0.1:9917.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
}

pub fn run(command: RunCommand) -> Result<ExitCode, Failure> {
    let config = Config::load(&command.config).map_err(Failure::Config)?;
    let text = std::fs::read_to_string(&command.config).ok();
    // Before any thread exists, so that every thread inherits it.
    if let Err(e) = tracenat::dataplane::privileges::forbid_new_privileges() {
        eprintln!("tracenat: cannot forbid new privileges: {e}");
    }
    signals::install();
    let terminal = std::io::stdout().is_terminal();
    println!(
        "tracenat: {} worker(s) on {} (inside) and {} (outside); Ctrl-C or SIGTERM stops",
        config.workers.count, config.interfaces.inside, config.interfaces.outside
    );
    let mut earlier: Option<(Snapshot, Instant)> = None;
    let on_start = |previous: Option<&PreviousRun>| {
        if let Some(line) = previous.map(describe_previous) {
            println!("tracenat: {line}");
        }
    };
    let options = run::RunOptions {
        forwarding: if command.bench_ceiling {
            Forwarding::Ceiling
        } else {
            Forwarding::Translate
        },
    };
    if command.bench_ceiling {
        println!("tracenat: --bench-ceiling: forwarding WITHOUT translation (benchmark only)");
    }
    let report = run::run(&config, text, options, &signals::STOP, on_start, |now| {
        if let Some((before, at)) = &earlier
            && terminal
        {
            print!("\r{}", now.status_line(before, at.elapsed().as_secs_f64()));
            let _ = std::io::stdout().flush();
        }
        earlier = Some((now.clone(), Instant::now()));
    })
    .map_err(|e| Failure::Runtime(e.to_string()))?;
    if terminal {
        println!();
    }
    print_report(&report);
    Ok(ExitCode::SUCCESS)
}

/// One line for the operator: how the previous run ended and what rests because of it.
fn describe_previous(p: &PreviousRun) -> String {
    let ended = if p.previous.clean {
        "stopped cleanly"
    } else {
        "did not stop cleanly (a crash or kill -9); its sessions end at this start"
    };
    let ports: u64 = p
        .resting
        .iter()
        .map(|r| u64::from(r.last - r.first) + 1)
        .sum();
    format!(
        "the previous run {ended}; {ports} ports resting from the previous run until {} (RFC 6888 REQ-8)",
        format_time(p.rest_until_ns)
    )
}

fn print_report(r: &RunReport) {
    let t = r.snapshot.total();
    println!(
        "xdp: inside {:?}, outside {:?}; sockets: {}",
        r.started.xdp_modes[0],
        r.started.xdp_modes[1],
        if r.started.bind.zero_copy {
            "zero-copy"
        } else {
            "copy mode"
        }
    );
    println!(
        "packets: {} in from inside, {} in from outside, {} out to inside, {} out to outside",
        t.rx[0], t.rx[1], t.tx[0], t.tx[1]
    );
    println!(
        "sessions: {} created, {} still open at the stop (ended then in the log)",
        t.engine.get(Activity::SessionsCreated),
        r.ended_at_stop
    );
    println!(
        "dropped: {} (by reason in `tracenat stats` while running); by the kernel at the sockets, before a worker saw them: {}; handoffs: {}",
        t.engine.total_drops(),
        t.socket_drops_total(),
        r.snapshot.handoffs.iter().map(|h| h.2).sum::<u64>()
    );
    println!(
        "refused: {} new sessions at subscriber limits, {} for exhausted ports; {} of them logged in interval summaries",
        t.engine.drops(DropReason::SubscriberSessionLimit)
            + t.engine.drops(DropReason::SubscriberPortLimit),
        t.engine.drops(DropReason::PortsExhausted),
        t.engine.get(Activity::RefusalsAggregated)
    );
    println!(
        "mapping log: {} records in {} blocks, {} bytes ({}); all flushed",
        r.log.records, r.log.blocks, r.log.bytes, r.log.io
    );
    for note in &r.log.recovered {
        println!("mapping log recovered: {note}");
    }
    if let Some(i) = &r.identity {
        println!(
            "identities: {} records stored, {} repeats not stored again, {} holdings open at the stop (they stay open)",
            i.stored, i.repeats, i.open
        );
    }
    for (name, tally) in &r.export {
        println!(
            "export {name}: {} records sent in {} messages ({} bytes), {} lost{}",
            tally.sent,
            tally.messages,
            tally.bytes,
            tally.lost,
            tally
                .last_error
                .as_deref()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default()
        );
    }
    if !r.export.is_empty() {
        println!(
            "export: {} records dropped because export could not keep up (the log has them)",
            r.export_dropped
        );
    }
    let leaked: isize = r.leaked_frames.iter().sum();
    println!("UMEM frames unaccounted for at exit: {leaked}");
}

pub fn stats(command: StatsCommand) -> Result<ExitCode, Failure> {
    let addr = match (command.metrics, command.config) {
        (Some(addr), _) => addr,
        (None, Some(path)) => {
            let config = Config::load(&path).map_err(Failure::Config)?;
            config.dataplane.metrics.ok_or_else(|| {
                Failure::Usage(format!("{}: dataplane.metrics is not set", path.display()))
            })?
        }
        (None, None) => {
            return Err(Failure::Usage(
                "give --config FILE or --metrics ADDR".into(),
            ));
        }
    };
    let text = metrics::fetch(addr)
        .map_err(|e| Failure::Runtime(format!("no tracenat answering on {addr}: {e}")))?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
