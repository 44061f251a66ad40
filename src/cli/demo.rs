//! `tracenat demo` and `tracenat hw plan`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use tracenat::demo::{self, DemoOptions};
use tracenat::lab::Addressing;
use tracenat::rss::plan::{self, Profile};

use super::commands::Failure;

#[derive(Debug, Args)]
pub struct DemoCommand {
    /// Workers (and veth queues) of the NAT.
    #[arg(long, default_value_t = 2)]
    pub workers: u16,
    /// Subscriber hosts, each in its own namespace.
    #[arg(long, default_value_t = 8)]
    pub subscribers: u16,
    /// HTTP requests each subscriber makes.
    #[arg(long, default_value_t = 3)]
    pub requests: u16,
    /// Where the lab keeps its config, the mapping log and the access log.
    #[arg(long, default_value = "/run/tracenat-demo")]
    pub dir: PathBuf,
    /// Leave the lab up afterwards (take it down with `tracenat lab down --dir DIR`).
    #[arg(long)]
    pub keep: bool,
    /// Static subscriber addresses instead of DHCP leases from Kea: the story without
    /// customers and without the address that changes hands.
    #[arg(long = "static")]
    pub static_addresses: bool,
}

pub fn demo(c: DemoCommand) -> Result<ExitCode, Failure> {
    let exe = std::env::current_exe().map_err(Failure::Output)?;
    let addressing = if c.static_addresses {
        Addressing::Static
    } else {
        Addressing::Dhcp
    };
    let options = DemoOptions {
        workers: c.workers,
        subscribers: c.subscribers,
        requests_per_subscriber: c.requests,
        dir: c.dir,
        addressing,
        // The command replaces a lab left up by an earlier demo.
        force: true,
        keep: c.keep,
    };
    let report = demo::run(&exe, &options, &mut std::io::stdout())
        .map_err(|e| Failure::Runtime(format!("demo: {e}")))?;
    Ok(if report.succeeded(addressing) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[derive(Debug, Subcommand)]
pub enum HwCommand {
    /// Print the ethtool/sysfs commands that set a NIC's queues, RSS key, hash fields,
    /// indirection table, IRQ affinity and busy polling for tracenat.
    Plan {
        /// NIC profile: mlx5, ice, i40e, ixgbe or veth (hw/<name>.toml).
        #[arg(long)]
        profile: String,
        #[arg(long)]
        workers: u16,
        /// Inside (subscriber-facing) interface.
        #[arg(long)]
        inside: String,
        /// Outside (internet-facing) interface.
        #[arg(long)]
        outside: String,
        /// First core of the workers (worker i on core first + i).
        #[arg(long, default_value_t = 0)]
        first_core: usize,
    },
}

pub fn hw(c: HwCommand) -> Result<ExitCode, Failure> {
    match c {
        HwCommand::Plan {
            profile,
            workers,
            inside,
            outside,
            first_core,
        } => {
            let profile = Profile::builtin(&profile).map_err(|e| {
                let known: Vec<&str> = Profile::names().collect();
                Failure::Usage(format!("{e} (known profiles: {})", known.join(", ")))
            })?;
            print!(
                "{}",
                plan::plan(&profile, workers, &inside, &outside, first_core)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
