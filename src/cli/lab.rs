//! `tracenat lab …`: build, inspect, use and remove the veth lab (`tracenat::lab`).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use tracenat::lab::{self, LabError, UpOptions};

use super::commands::Failure;

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build the lab and write DIR/tracenat.toml for `tracenat run` in it.
    ///
    /// Namespaces tn-nat (the NAT), tn-access (the subscribers' router), tn-inet (the
    /// "internet") and tn-sub-1..N (one per subscriber host), their veth links, addresses
    /// and routes; DIR/tracenat.toml and DIR/lab.json. Exits 1 if a lab (or what a crash
    /// left of one) is already there, unless --force.
    Up(UpArgs),
    /// Remove the lab, also what a crashed `up` left.
    ///
    /// The namespaces tn-nat, tn-access, tn-inet and tn-sub-* (ending processes still in
    /// them), any lab interface left in the root namespace, and DIR/lab.json; the mapping
    /// log and tracenat.toml stay. Exits 0 when nothing was there.
    Down(LabDir),
    /// Namespaces, interfaces with addresses and queue counts, the config path.
    Status(StatusArgs),
    /// Run a command in one of the lab's namespaces.
    ///
    /// stdin, stdout, stderr and the exit status are the command's:
    /// `tracenat lab exec sub:1 -- curl http://198.51.100.10/`.
    Exec(ExecArgs),
    /// A tiny HTTP/1.1 server writing an Apache combined access log with client ports.
    #[command(hide = true)]
    ServeHttp(ServeHttpArgs),
    /// A UDP echo server.
    #[command(hide = true)]
    UdpEcho(UdpEchoArgs),
}

#[derive(Debug, Args)]
pub struct LabDir {
    /// Where the lab keeps tracenat.toml, lab.json and the mapping log (log/).
    #[arg(long, value_name = "DIR", default_value = lab::DEFAULT_DIR)]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// NAT workers: the rx/tx queue count of tn-in and tn-out, and workers.count.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub workers: u16,
    /// Subscriber hosts (tn-sub-1 .. tn-sub-N, 100.64.1.1 .. 100.64.1.N), at most 64.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub subscribers: u16,
    /// Take down a lab that is already there first.
    #[arg(long)]
    pub force: bool,
    /// Subscribers get their addresses from a Kea DHCP server in tn-access (dhclient in
    /// each, host name = customer name); leases in DIR/kea/kea-leases4.csv.
    #[arg(long)]
    pub dhcp: bool,
    #[command(flatten)]
    pub dir: LabDir,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One JSON object (schema in `tracenat::lab::status`).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub dir: LabDir,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// sub:N, access, nat or inet (or a full tn-… namespace name).
    #[arg(value_name = "WHERE")]
    pub target: String,
    /// The command and its arguments (after `--`).
    #[arg(
        value_name = "CMD",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServeHttpArgs {
    #[arg(long, value_name = "IP:PORT")]
    pub listen: SocketAddr,
    #[arg(long, value_name = "FILE")]
    pub access_log: PathBuf,
}

#[derive(Debug, Args)]
pub struct UdpEchoArgs {
    #[arg(long, value_name = "IP:PORT")]
    pub listen: SocketAddr,
}

/// Why a lab command failed: the lab's own error, or stdout went away.
enum Error {
    Lab(LabError),
    Output(std::io::Error),
}

impl From<LabError> for Error {
    fn from(error: LabError) -> Error {
        Error::Lab(error)
    }
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Error {
        Error::Output(error)
    }
}

/// Runs a lab command. Usage mistakes exit 2; everything else that fails exits 1.
pub fn run(command: LabCommand) -> Result<ExitCode, Failure> {
    match dispatch(command) {
        Ok(code) => Ok(code),
        Err(Error::Lab(LabError::Usage(message))) => Err(Failure::Usage(message)),
        Err(Error::Lab(error)) => Err(Failure::Runtime(error.to_string())),
        Err(Error::Output(error)) => Err(Failure::Output(error)),
    }
}

fn dispatch(command: LabCommand) -> Result<ExitCode, Error> {
    let mut note = |line: &str| eprintln!("lab: {line}");
    let mut out = std::io::stdout().lock();
    match command {
        LabCommand::Up(args) => {
            let options = UpOptions {
                workers: args.workers,
                subscribers: args.subscribers,
                dir: args.dir.dir,
                force: args.force,
            };
            let addressing = if args.dhcp {
                lab::Addressing::Dhcp
            } else {
                lab::Addressing::Static
            };
            let built = lab::up_with(&options, addressing, &mut note)?;
            write!(out, "{}", describe_up(&built))?;
        }
        LabCommand::Down(args) => {
            let report = lab::down(&args.dir, &mut note)?;
            if !report.removed_anything() {
                writeln!(out, "no lab to take down")?;
            }
            if !report.namespaces.is_empty() {
                writeln!(out, "removed namespaces: {}", report.namespaces.join(" "))?;
            }
            if !report.root_interfaces.is_empty() {
                let names = report.root_interfaces.join(" ");
                writeln!(out, "removed interfaces: {names}")?;
            }
            if report.description_removed {
                let path = lab::Topology::description_path(&args.dir);
                writeln!(out, "removed {}", path.display())?;
            }
        }
        LabCommand::Status(args) => {
            let status = lab::status(&args.dir.dir)?;
            if args.json {
                let text = serde_json::to_string_pretty(&status).expect("status serialises");
                writeln!(out, "{text}")?;
            } else {
                write!(out, "{}", status.render())?;
            }
        }
        LabCommand::Exec(args) => return Err(lab::exec(&args.target, &args.command).into()),
        LabCommand::ServeHttp(args) => lab::serve::serve_http(args.listen, &args.access_log)?,
        LabCommand::UdpEcho(args) => lab::serve::udp_echo(args.listen)?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn describe_up(built: &lab::Topology) -> String {
    let subscribers = built.subscribers;
    let last = if subscribers > 1 {
        format!("..tn-sub-{subscribers}")
    } else {
        String::new()
    };
    let config = built.config.display();
    let access_log = built.dir.join("access.log");
    let dhcp = if built.dhcp {
        format!(
            "\x20 dhcp:       kea-dhcp4 in tn-access, leases {}\n",
            lab::dhcp::lease_file(&built.dir).display()
        )
    } else {
        String::new()
    };
    format!(
        "lab up: {workers} worker(s), {subscribers} subscriber(s)\n\
         \x20 namespaces: tn-nat tn-access tn-inet tn-sub-1{last}\n\
         \x20 config:     {config}\n\
         \x20 log:        {log}\n\
         {dhcp}\
         next:\n\
         \x20 tracenat lab exec nat -- tracenat run --config {config}\n\
         \x20 tracenat lab exec inet -- tracenat lab serve-http --listen 198.51.100.10:80 \
         --access-log {access_log} &\n\
         \x20 tracenat lab exec sub:1 -- curl -s http://198.51.100.10/\n",
        workers = built.workers,
        log = built.log_dir.display(),
        access_log = access_log.display(),
    )
}
