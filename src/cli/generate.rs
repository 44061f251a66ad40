//! `tracenat gen send` and `tracenat gen sink`: the AF_XDP traffic generator and sink.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use tracenat::config::{parse_duration, parse_mac};
use tracenat::generator::frames::{Proto, SizeMix};
use tracenat::generator::send::{SendOptions, SendReport, Sender};
use tracenat::generator::sink::{Sink, SinkOptions, SinkReport};
use tracenat::generator::stats::HistFormat;

use super::commands::Failure;
use super::signals;

#[derive(Debug, Args)]
pub struct GenCommand {
    #[command(subcommand)]
    pub command: GenSubcommand,
}

#[derive(Debug, Subcommand)]
pub enum GenSubcommand {
    /// Send stamped UDP or TCP frames from N subscribers × M flows to servers, paced,
    /// through AF_XDP; with --expect-replies also receive and time the round trips.
    ///
    /// In the veth lab: `tracenat lab exec access -- tracenat gen send --interface
    /// tn-in-peer --gateway 100.64.0.1 --dst 198.51.100.10:7 …` (frames straight to the
    /// NAT's tn-in), with a reflecting sink in tn-inet on tn-out-peer. On veth there is
    /// no RSS: a frame arrives on the peer's rx queue with the index of the tx queue it
    /// was sent on, so each subscriber is sent on the queue of the NAT worker that owns
    /// it (Fibonacci hash of the address modulo --queues).
    Send(SendArgs),
    /// Receive on every queue of an interface: packets, bytes, loss per flow from
    /// sequence gaps, one-way latency; with --reflect send every frame back, turned around.
    Sink(SinkArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProtoArg {
    Udp,
    Tcp,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum HistFormatArg {
    /// HdrHistogram interval log (one histogram per second).
    Log,
    /// The whole run's histogram, V2 serialized (binary).
    V2,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// The interface to send on (in this network namespace).
    #[arg(long, value_name = "IF")]
    pub interface: String,
    /// Queues to send on (default: the interface's rx queue count).
    #[arg(long)]
    pub queues: Option<u16>,
    /// Source MAC (default: the interface's).
    #[arg(long, value_name = "MAC")]
    pub src_mac: Option<String>,
    /// Destination MAC (default: the MAC of --gateway from the neighbour table).
    #[arg(long, value_name = "MAC")]
    pub dst_mac: Option<String>,
    /// The next hop whose MAC frames are sent to, resolved by ARP.
    #[arg(long, value_name = "IP")]
    pub gateway: Option<Ipv4Addr>,
    /// Subscribers (consecutive addresses from --subscriber-base).
    #[arg(long, default_value_t = 1)]
    pub subscribers: u32,
    #[arg(long, value_name = "IP", default_value = "100.64.2.1")]
    pub subscriber_base: Ipv4Addr,
    /// Flows per subscriber.
    #[arg(long, default_value_t = 1)]
    pub flows: u32,
    /// Servers, dealt to the flows round robin: IP:PORT[,IP:PORT…].
    #[arg(
        long,
        value_name = "IP:PORT,...",
        value_delimiter = ',',
        required = true
    )]
    pub dst: Vec<SocketAddrV4>,
    #[arg(long, value_enum, default_value = "udp")]
    pub proto: ProtoArg,
    /// Frame size on the wire with FCS (64 to 1518), or IMIX (64/594/1518 in 7:4:1).
    #[arg(long, default_value = "64")]
    pub size: String,
    /// Packets per second (`50000`, `50k`, `1.5M`) or `max`.
    #[arg(long, default_value = "1000")]
    pub rate: String,
    /// New flows (new 5-tuples, each a new NAT session) per second.
    #[arg(long, value_name = "R", default_value_t = 0.0)]
    pub new_flows_per_sec: f64,
    /// How long to send (`1s`, `500ms`, `2m`).
    #[arg(long, value_name = "DUR")]
    pub duration: Option<String>,
    /// How many packets to send.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Receive the replies (a reflecting sink on the far side): round trips and loss.
    #[arg(long)]
    pub expect_replies: bool,
    /// How long to wait for the last replies.
    #[arg(long, value_name = "DUR", default_value = "500ms")]
    pub reply_wait: String,
    /// Most packets per batch.
    #[arg(long, default_value_t = 64)]
    pub batch: u32,
    /// Write the round-trip histogram here.
    #[arg(long, value_name = "FILE")]
    pub hist_out: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "log")]
    pub hist_format: HistFormatArg,
    /// Do not try zero-copy (copy mode only).
    #[arg(long)]
    pub copy: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SinkArgs {
    /// The interface to receive on (in this network namespace).
    #[arg(long, value_name = "IF")]
    pub interface: String,
    /// Queues to receive on (default: the interface's rx queue count).
    #[arg(long)]
    pub queues: Option<u16>,
    /// How long to run (`5s`, `1m`).
    #[arg(long, value_name = "DUR")]
    pub duration: String,
    /// Send every generated frame back out, MACs, addresses and ports swapped.
    #[arg(long)]
    pub reflect: bool,
    /// Write the one-way latency histogram here.
    #[arg(long, value_name = "FILE")]
    pub hist_out: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "log")]
    pub hist_format: HistFormatArg,
    /// Do not try zero-copy (copy mode only).
    #[arg(long)]
    pub copy: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(command: GenCommand) -> Result<ExitCode, Failure> {
    match command.command {
        GenSubcommand::Send(args) => send(args),
        GenSubcommand::Sink(args) => sink(args),
    }
}

fn duration(flag: &str, text: &str) -> Result<Duration, Failure> {
    parse_duration(text).map_err(|e| Failure::Usage(format!("{flag} {text:?}: {e}")))
}

fn mac(flag: &str, text: &Option<String>) -> Result<Option<[u8; 6]>, Failure> {
    text.as_deref()
        .map(|t| parse_mac(t).ok_or_else(|| Failure::Usage(format!("{flag} {t:?}: not a MAC"))))
        .transpose()
}

/// `max`, `50000`, `50k`, `1.5M`.
fn parse_rate(text: &str) -> Result<Option<u64>, Failure> {
    if text.eq_ignore_ascii_case("max") {
        return Ok(None);
    }
    let (number, scale) = match text.char_indices().last() {
        Some((i, 'k' | 'K')) => (&text[..i], 1e3),
        Some((i, 'm' | 'M')) => (&text[..i], 1e6),
        _ => (text, 1.0),
    };
    match number.parse::<f64>() {
        Ok(v) if v * scale >= 1.0 && (v * scale).is_finite() => Ok(Some((v * scale) as u64)),
        _ => Err(Failure::Usage(format!(
            "--rate {text:?}: expected packets per second (50000, 50k, 1.5M) or max"
        ))),
    }
}

fn hist_format(f: HistFormatArg) -> HistFormat {
    match f {
        HistFormatArg::Log => HistFormat::IntervalLog,
        HistFormatArg::V2 => HistFormat::V2,
    }
}

fn failed(e: tracenat::generator::GenError) -> Failure {
    Failure::Runtime(format!("gen: {e}"))
}

fn print_json<T: serde::Serialize>(report: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(report).map_err(|e| Failure::Usage(e.to_string()))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").map_err(Failure::Output)
}

fn send(a: SendArgs) -> Result<ExitCode, Failure> {
    if a.duration.is_none() && a.count.is_none() {
        return Err(Failure::Usage(
            "give --duration or --count: runs are bounded".into(),
        ));
    }
    let mut o = SendOptions::new(&a.interface, a.dst.clone());
    o.queues = a.queues;
    o.src_mac = mac("--src-mac", &a.src_mac)?;
    o.dst_mac = mac("--dst-mac", &a.dst_mac)?;
    o.gateway = a.gateway;
    o.subscribers = a.subscribers;
    o.subscriber_base = a.subscriber_base;
    o.flows = a.flows;
    o.proto = match a.proto {
        ProtoArg::Udp => Proto::Udp,
        ProtoArg::Tcp => Proto::Tcp,
    };
    o.size = SizeMix::parse(&a.size).map_err(Failure::Usage)?;
    o.rate = parse_rate(&a.rate)?;
    if !(a.new_flows_per_sec >= 0.0 && a.new_flows_per_sec.is_finite()) {
        return Err(Failure::Usage("--new-flows-per-sec must be ≥ 0".into()));
    }
    o.new_flows_per_sec = a.new_flows_per_sec;
    o.duration = a
        .duration
        .as_deref()
        .map(|d| duration("--duration", d))
        .transpose()?;
    o.count = a.count;
    o.expect_replies = a.expect_replies;
    o.reply_wait = duration("--reply-wait", &a.reply_wait)?;
    o.batch = a.batch;
    o.hist_out = a.hist_out;
    o.hist_format = hist_format(a.hist_format);
    o.zero_copy = !a.copy;
    signals::install();
    let sender = Sender::open(&o).map_err(failed)?;
    let report = sender.run(&signals::STOP).map_err(failed)?;
    if a.json {
        print_json(&report)?;
    } else {
        print_send(&report).map_err(Failure::Output)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_send(r: &SendReport) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "sent {} packets ({} bytes) in {:.3} s on {} ({} queue(s), {}): {:.0} pps, {:.1} Mbit/s",
        r.sent,
        r.bytes,
        r.duration_s,
        r.interface,
        r.queues,
        if r.zero_copy {
            "zero-copy"
        } else {
            "copy mode"
        },
        r.pps,
        r.bps / 1e6
    )?;
    writeln!(
        out,
        "flows: {} active, {} started; {} -> {}; per queue {:?}; stalls {}",
        r.flows, r.flows_started, r.src_mac, r.dst_mac, r.per_queue, r.stalls
    )?;
    writeln!(out, "per second: {:?}", r.per_second)?;
    writeln!(out, "sizes: {:?}", r.sizes)?;
    if let Some(rep) = &r.replies {
        writeln!(
            out,
            "replies: {} received, {} lost ({:.4}%), {} out of order, {} foreign",
            rep.received,
            rep.lost,
            rep.loss_ratio * 100.0,
            rep.gaps.out_of_order,
            rep.foreign
        )?;
        writeln!(out, "round trip: {}", rep.rtt.describe())?;
    }
    Ok(())
}

fn sink(a: SinkArgs) -> Result<ExitCode, Failure> {
    let mut o = SinkOptions::new(&a.interface, duration("--duration", &a.duration)?);
    o.queues = a.queues;
    o.reflect = a.reflect;
    o.hist_out = a.hist_out;
    o.hist_format = hist_format(a.hist_format);
    o.zero_copy = !a.copy;
    signals::install();
    let sink = Sink::open(&o).map_err(failed)?;
    eprintln!(
        "tracenat gen sink: ready on {} for {:?}{}",
        a.interface,
        o.duration,
        if o.reflect { ", reflecting" } else { "" }
    );
    let report = sink.run(&signals::STOP).map_err(failed)?;
    if a.json {
        print_json(&report)?;
    } else {
        print_sink(&report).map_err(Failure::Output)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_sink(r: &SinkReport) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "received {} frames ({} bytes) on {} ({} queue(s), {}, XDP {}): {} stamped, {} foreign; {:.0} pps",
        r.received,
        r.bytes,
        r.interface,
        r.queues,
        if r.zero_copy {
            "zero-copy"
        } else {
            "copy mode"
        },
        r.xdp,
        r.stamped,
        r.foreign,
        r.pps
    )?;
    writeln!(
        out,
        "loss: {} lost in {} flows ({} with loss), {} out of order",
        r.loss.lost, r.loss.flows, r.loss.flows_with_loss, r.loss.out_of_order
    )?;
    writeln!(out, "one-way latency: {}", r.latency.describe())?;
    if r.reflected + r.reflect_dropped > 0 {
        writeln!(
            out,
            "reflected {} ({} dropped)",
            r.reflected, r.reflect_dropped
        )?;
    }
    writeln!(
        out,
        "per second: {:?}; per queue {:?}",
        r.per_second, r.per_queue
    )?;
    writeln!(out, "sizes: {:?}", r.sizes)?;
    let shown: Vec<String> = r.sources.iter().take(8).map(|s| s.to_string()).collect();
    writeln!(
        out,
        "sources: {} distinct ({}{})",
        r.sources.len(),
        shown.join(", "),
        if r.sources.len() > 8 { ", …" } else { "" }
    )
}
