//! Arguments, as clap reads them. `--help` is generated from the doc comments here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Carrier-grade NAT44 that keeps a verifiable record of every mapping.
///
/// tracenat translates subscriber addresses (typically 100.64.0.0/10) to a pool of public
/// addresses, sharing ports between subscribers by one of three allocation modes, and
/// records every mapping it hands out, so that any public address, port and time can be
/// traced back to the subscriber who used it.
#[derive(Debug, Parser)]
#[command(
    name = "tracenat",
    version,
    after_long_help = "Exit status:\n  0  success\n  1  runtime failure (e.g. an unreadable capture or a replay error)\n  2  invalid configuration or command-line usage"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Translate captured traffic offline and write the translated capture and mapping log.
    Replay(ReplayCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load and validate a configuration file, then print a summary of it.
    ///
    /// On error, prints the offending key and the reason and exits with status 2.
    Check {
        /// Configuration file (see tracenat.example.toml).
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct ReplayCommand {
    /// Configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Capture of traffic arriving on the inside (subscriber) interface.
    #[arg(long, value_name = "IN.pcap")]
    pub inside: PathBuf,
    /// Capture of traffic arriving on the outside interface, merged by timestamp.
    #[arg(long, value_name = "OUT.pcap")]
    pub outside: Option<PathBuf>,
    /// Directory for the translated captures and the mapping log.
    #[arg(long = "out", value_name = "DIR")]
    pub out_dir: PathBuf,
}
