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
    after_long_help = "Exit status:\n  0  success\n  1  runtime failure (e.g. an unreadable capture or a replay error)\n  2  invalid configuration or command-line usage\n  3  log query: ambiguous\n  4  log query: nobody held it\n  5  log verify: the log is damaged"
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
    /// Read a mapping log: who had a public address and port, attribute a server's access
    /// log, decode, statistics, verification.
    #[command(subcommand)]
    Log(LogCommand),
    /// Who the customer was: the holder of an inside address at a time, and importing
    /// DHCP lease and RADIUS detail files into a log directory.
    #[command(subcommand)]
    Identity(super::identity::IdentityCommand),
    /// Run the NAT on its interfaces (AF_XDP), logging every mapping.
    Run(super::run::RunCommand),
    /// Print the counters of a running NAT (Prometheus text).
    Stats(super::run::StatsCommand),
    /// The whole story on this machine: lab up, the NAT running, real traffic, every
    /// request in the server's access log traced back to its subscriber, lab down.
    Demo(super::demo::DemoCommand),
    /// Traffic generator and sink (AF_XDP): flows, rates, latency histograms, loss.
    #[command(name = "gen")]
    Generate(super::generate::GenCommand),
    /// NIC set-up for tracenat (RSS alignment, queues, IRQs).
    #[command(subcommand)]
    Hw(super::demo::HwCommand),
    /// The veth lab: network namespaces with subscribers, the NAT and an "internet".
    #[command(subcommand)]
    Lab(super::lab::LabCommand),
}

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Who held a public address (and port) at a time: `unique`, `ambiguous` or `none`,
    /// with every candidate mapping.
    Query(QueryCommand),
    /// Trace every request of a server's access log back to its subscriber.
    Attribute(AttributeCommand),
    /// Print the records of the log (text, JSON lines or CSV).
    Decode(DecodeCommand),
    /// Records, bytes per record, compression ratio and time span, per worker.
    Stats(StatsCommand),
    /// Check every CRC and the hash chain; names the first bad block and exits 5.
    Verify(DirArg),
    /// Export events for a time range as IPFIX (RFC 8158) or syslog (RFC 5424): into a
    /// file, or to collectors.
    Export(super::export::ExportCommand),
}

#[derive(Debug, Args)]
pub struct DirArg {
    /// The mapping log directory (logging.dir, or replay's --log-dir). `query`,
    /// `attribute`, `decode`, `stats` and `verify` take several (`--dir A --dir B`) or a
    /// folder of them, and answer across the boxes that wrote them.
    #[arg(long, value_name = "DIR", required = true)]
    pub dir: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct QueryCommand {
    #[command(flatten)]
    pub dir: DirArg,
    /// Public address, with the port when the server logged it: 203.0.113.7 or 203.0.113.7:40213.
    #[arg(long, value_name = "IP[:PORT]")]
    pub public: String,
    /// When: RFC 3339 with offset, epoch seconds (fraction allowed) or
    /// [10/Oct/2000:13:55:36 -0700].
    #[arg(long, value_name = "TIME")]
    pub at: String,
    /// How far the time may be off (the server's clock against the NAT's).
    #[arg(long, value_name = "DUR", default_value = "2s")]
    pub tolerance: String,
    /// Only sessions towards this server (address and port, when logged).
    #[arg(long, value_name = "IP[:PORT]")]
    pub dest: Option<String>,
    /// tcp, udp, icmp or a protocol number.
    #[arg(long, value_name = "P")]
    pub proto: Option<String>,
    /// One JSON object (schema in docs/mapping-log.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AttributeCommand {
    #[command(flatten)]
    pub dir: DirArg,
    /// The server's access log.
    #[arg(long, value_name = "FILE")]
    pub access_log: PathBuf,
    /// auto, common, combined or json.
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// The server's address (and port): the sessions' destination.
    #[arg(long, value_name = "IP[:PORT]")]
    pub server: Option<String>,
    /// How far the server's clock may be from the NAT's; `auto`: measure the server's
    /// clock from the log first (= `--server-offset auto --skew 1s`).
    #[arg(long, value_name = "DUR|auto", default_value = "2s")]
    pub skew: String,
    /// The server's clock minus the NAT's, applied to every request (`-160s`: the server
    /// is 160 s slow), or `auto` to measure it per server from the requests with ports.
    #[arg(long, value_name = "DUR|auto", allow_hyphen_values = true)]
    pub server_offset: Option<String>,
    /// With a measured offset: the largest offset searched for.
    #[arg(long, value_name = "DUR", default_value = "10m")]
    pub max_offset: String,
    /// JSON lines: field holding the client address.
    #[arg(long, default_value = "remote_addr")]
    pub json_ip_field: String,
    /// JSON lines: field holding the client port.
    #[arg(long, default_value = "remote_port")]
    pub json_port_field: String,
    /// JSON lines: field holding the time.
    #[arg(long, default_value = "time")]
    pub json_time_field: String,
    /// One JSON object per request, then a summary object.
    #[arg(long)]
    pub json: bool,
    /// Group requests naming the same actor and intersect their candidates: user, ident,
    /// request, path, referer, user-agent (common/combined), or any key of a JSON log.
    #[arg(long, value_name = "FIELD")]
    pub correlate: Option<String>,
    /// With --correlate: print only the groups and the summaries, no line per request.
    #[arg(long, requires = "correlate")]
    pub groups_only: bool,
}

#[derive(Debug, Args)]
pub struct DecodeCommand {
    #[command(flatten)]
    pub dir: DirArg,
    /// Only records at or after this time.
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Only records at or before this time.
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// text, json or csv.
    #[arg(long, default_value = "text")]
    pub format: String,
}

#[derive(Debug, Args)]
pub struct StatsCommand {
    #[command(flatten)]
    pub dir: DirArg,
    #[arg(long)]
    pub json: bool,
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
    /// Directory for the translated captures, events.jsonl and counters.json.
    #[arg(long = "out", value_name = "DIR")]
    pub out_dir: PathBuf,
    /// Also write the durable mapping log into this directory, as `tracenat run` does, so
    /// the capture can be traced with `tracenat log`.
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
}
