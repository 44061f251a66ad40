//! Replay: pushes captures through the engines in timestamp order, with the packet
//! timestamps as the clock, and writes what the NAT would have sent, its events and its
//! counters. Same captures and config give byte-identical outputs.
//!
//! Packets are steered to workers the way an RSS-aligned NIC would: outbound by subscriber
//! address, inbound by public address and port (later fragments follow their first one).
//! Handoffs between workers (hairpinning across workers) are followed and counted.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use hashbrown::HashMap;

use crate::config::Config;
use crate::engine::counters::Counters;
use crate::engine::event::{Event, EventSink, VecSink};
use crate::engine::{Engine, Side, Verdict};
use crate::maplog::runs::SeedOrigin;
use crate::maplog::writer::{LogError, LogSettings, MapLog, Producer, WriterReport};
use crate::pcap::{PcapError, PcapReader, PcapWriter};
use crate::wire::{ethernet, icmp, ipv4};

pub struct ReplayArgs {
    pub config: Config,
    pub inside: PathBuf,
    pub outside: Option<PathBuf>,
    pub out_dir: PathBuf,
    /// Also write the durable mapping log here (as `tracenat run` does).
    pub log_dir: Option<PathBuf>,
    /// The configuration file's text, stored in the log directory.
    pub config_text: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{path}: {source}")]
    Capture { path: PathBuf, source: PcapError },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0}")]
    Log(#[from] LogError),
}

/// What a replay did, for the operator.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplaySummary {
    pub packets_in: [u64; 2],
    pub packets_out: [u64; 2],
    pub replies: u64,
    pub to_kernel: u64,
    pub dropped: u64,
    pub handoffs: u64,
    pub events: u64,
    pub live_sessions: u64,
    pub out_dir: PathBuf,
    pub log: Option<(PathBuf, WriterReport)>,
}

impl std::fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "packets in:   {} from inside, {} from outside",
            self.packets_in[0], self.packets_in[1]
        )?;
        writeln!(
            f,
            "packets out:  {} to outside, {} to inside",
            self.packets_out[1], self.packets_out[0]
        )?;
        writeln!(f, "generated:    {} ICMP replies", self.replies)?;
        writeln!(
            f,
            "dropped:      {} (reasons in counters.json)",
            self.dropped
        )?;
        writeln!(f, "to kernel:    {}", self.to_kernel)?;
        writeln!(f, "handoffs:     {}", self.handoffs)?;
        writeln!(f, "events:       {}", self.events)?;
        writeln!(f, "live at end:  {} sessions", self.live_sessions)?;
        write!(f, "written to:   {}", self.out_dir.display())?;
        if let Some((dir, log)) = &self.log {
            write!(
                f,
                "\nmapping log:  {} ({} records in {} blocks, {} bytes, {})",
                dir.display(),
                log.records,
                log.blocks,
                log.bytes,
                log.io
            )?;
            for note in &log.recovered {
                write!(f, "\n  recovered:  {note}")?;
            }
        }
        Ok(())
    }
}

/// Replay's event sink: events for `events.jsonl`, and the durable log when asked for.
/// Replay is not real time, so when the log is behind it waits instead of refusing
/// sessions: the same capture must give the same translation.
#[derive(Default)]
pub struct ReplaySink {
    events: VecSink,
    log: Option<Producer>,
}

/// How long replay waits for the log writer before refusing a session after all (a disk
/// that stays full).
const LOG_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

impl EventSink for ReplaySink {
    fn has_room(&self, events: usize) -> bool {
        let Some(log) = &self.log else { return true };
        let start = std::time::Instant::now();
        while !log.has_room(events) {
            if start.elapsed() > LOG_PATIENCE {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        true
    }
    fn emit(&mut self, event: &Event) {
        self.events.emit(event);
        if let Some(log) = &mut self.log {
            log.emit(event);
        }
    }
}

/// Frames are copied into a buffer this large so a generated reply always fits.
const MIN_BUFFER: usize = 2048;
/// A frame is passed between workers at most this often (a hairpin takes one hop).
const MAX_HOPS: usize = 4;

struct Input {
    reader: PcapReader<BufReader<File>>,
    path: PathBuf,
    side: Side,
    next: Option<(u64, Vec<u8>)>,
}

impl Input {
    fn open(path: &Path, side: Side) -> Result<Input, ReplayError> {
        let capture = |source| ReplayError::Capture {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(|source| {
            capture(PcapError::Open {
                path: path.to_owned(),
                source,
            })
        })?;
        let reader = PcapReader::new(BufReader::new(file)).map_err(capture)?;
        let mut input = Input {
            reader,
            path: path.to_owned(),
            side,
            next: None,
        };
        input.advance()?;
        Ok(input)
    }

    fn advance(&mut self) -> Result<(), ReplayError> {
        let mut buf = Vec::new();
        self.next = match self.reader.next_packet(&mut buf) {
            Ok(Some(ts)) => Some((ts, buf)),
            Ok(None) => None,
            Err(source) => {
                return Err(ReplayError::Capture {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        Ok(())
    }
}

/// Outputs of a replay.
struct Outputs {
    to_inside: PcapWriter<BufWriter<File>>,
    to_outside: PcapWriter<BufWriter<File>>,
    events: BufWriter<File>,
    dir: PathBuf,
}

impl Outputs {
    fn create(dir: &Path) -> Result<Outputs, ReplayError> {
        let io_err = |path: PathBuf| move |source| ReplayError::Io { path, source };
        std::fs::create_dir_all(dir).map_err(io_err(dir.to_owned()))?;
        let create = |name: &str| {
            let path = dir.join(name);
            File::create(&path)
                .map(BufWriter::new)
                .map_err(io_err(path))
        };
        let pcap = |name: &str| -> Result<_, ReplayError> {
            PcapWriter::new(create(name)?).map_err(io_err(dir.join(name)))
        };
        Ok(Outputs {
            to_inside: pcap("to-inside.pcap")?,
            to_outside: pcap("to-outside.pcap")?,
            events: create("events.jsonl")?,
            dir: dir.to_owned(),
        })
    }

    fn write_frame(&mut self, side: Side, ts: u64, frame: &[u8]) -> Result<(), ReplayError> {
        let (writer, name) = match side {
            Side::Inside => (&mut self.to_inside, "to-inside.pcap"),
            Side::Outside => (&mut self.to_outside, "to-outside.pcap"),
        };
        writer
            .write_packet(ts, frame)
            .map_err(|source| ReplayError::Io {
                path: self.dir.join(name),
                source,
            })
    }
}

/// Chooses the worker a NIC with RSS-aligned queues would deliver a frame to.
struct Steering {
    /// (source, destination, IP id) of inbound first fragments → the worker that took them.
    fragments: HashMap<(u32, u32, u16), u16>,
}

impl Steering {
    fn worker<S: EventSink>(&mut self, engines: &[Engine<S>], frame: &[u8], from: Side) -> u16 {
        let ownership = engines[0].ownership();
        let Some(ip) = ipv4_of(frame) else { return 0 };
        match from {
            Side::Inside => ownership.owner_of_subscriber(ip.src_addr()),
            Side::Outside => {
                let key = (
                    u32::from(ip.src_addr()),
                    u32::from(ip.dst_addr()),
                    ip.ident(),
                );
                if ip.frag_offset() > 0 {
                    return self.fragments.get(&key).copied().unwrap_or(0);
                }
                let worker = public_port(&ip)
                    .and_then(|port| ownership.owner_of_public(ip.dst_addr(), port))
                    .unwrap_or(0);
                if ip.more_frags() {
                    self.fragments.insert(key, worker);
                }
                worker
            }
        }
    }
}

fn ipv4_of(frame: &[u8]) -> Option<ipv4::Packet<&[u8]>> {
    let l2 = ethernet::parse_l2(frame).ok()?;
    if l2.ethertype != ethernet::EtherType::IPV4 {
        return None;
    }
    ipv4::Packet::new_checked(&frame[l2.l3_offset..]).ok()
}

/// The public port an inbound packet is addressed to: the destination port, the echo
/// identifier, or for an ICMP error the source port of the packet it quotes.
fn public_port(ip: &ipv4::Packet<&[u8]>) -> Option<u16> {
    let l4 = ip.payload();
    let port_at = |b: &[u8], at: usize| b.get(at..at + 2).map(|p| u16::from_be_bytes([p[0], p[1]]));
    match ip.protocol() {
        ipv4::protocol::TCP | ipv4::protocol::UDP => port_at(l4, 2),
        ipv4::protocol::ICMP => match *l4.first()? {
            icmp::ECHO_REPLY => port_at(l4, 4),
            _ => {
                let quoted = l4.get(8..)?;
                let ihl = (*quoted.first()? & 0x0f) as usize * 4;
                let q = quoted.get(ihl..)?;
                if *quoted.get(9)? == ipv4::protocol::ICMP {
                    port_at(q, 4)
                } else {
                    port_at(q, 0)
                }
            }
        },
        _ => None,
    }
}

/// Replays the captures of `args` and writes the outputs into `args.out_dir`.
pub fn run(args: &ReplayArgs) -> Result<ReplaySummary, ReplayError> {
    let mut inputs = vec![Input::open(&args.inside, Side::Inside)?];
    if let Some(outside) = &args.outside {
        inputs.push(Input::open(outside, Side::Outside)?);
    }
    let start = inputs
        .iter()
        .filter_map(|i| i.next.as_ref().map(|(ts, _)| *ts))
        .min()
        .unwrap_or(0);
    let (maplog, mut producers) = match &args.log_dir {
        Some(dir) => {
            let mut settings = LogSettings::from_config(&args.config, dir);
            settings.record_time_only = true;
            settings.config_text = args.config_text.clone();
            if args.config.allocation.seed.is_none() {
                settings.seed = SeedOrigin::Default; // replays stay reproducible
            }
            let (log, producers) = MapLog::start(settings, args.config.workers.count, start)?;
            (Some(log), producers.into_iter().map(Some).collect())
        }
        None => (None, Vec::new()),
    };
    let mut engines = Engine::for_all_workers(&args.config, start, |w| ReplaySink {
        events: VecSink::default(),
        log: producers.get_mut(w as usize).and_then(Option::take),
    });
    // Appending to a log a run already wrote: its last ports rest, as in `tracenat run`.
    if let Some(previous) = maplog.as_ref().and_then(MapLog::previous_run) {
        for engine in engines.iter_mut() {
            engine.rest_ports(&previous.resting, previous.rest_until_ns);
        }
    }
    let mut out = Outputs::create(&args.out_dir)?;
    let mut steering = Steering {
        fragments: HashMap::new(),
    };
    let mut summary = ReplaySummary {
        out_dir: args.out_dir.clone(),
        ..Default::default()
    };
    let mut buf = Vec::new();
    let mut last_ts = 0;

    // Merge by timestamp; on a tie the inside capture goes first.
    while let Some(i) = (0..inputs.len())
        .filter(|&i| inputs[i].next.is_some())
        .min_by_key(|&i| inputs[i].next.as_ref().map(|(ts, _)| *ts))
    {
        let (ts, frame) = inputs[i].next.take().expect("chosen input has a packet");
        let from = inputs[i].side;
        last_ts = ts;
        inputs[i].advance()?;
        summary.packets_in[from as usize] += 1;
        for engine in engines.iter_mut() {
            engine.advance(ts);
        }
        buf.clear();
        buf.extend_from_slice(&frame);
        buf.resize(frame.len().max(MIN_BUFFER), 0);
        let worker = steering.worker(&engines, &frame, from);
        let verdict =
            process_following_handoffs(&mut engines, worker, &mut buf, frame.len(), from, ts);
        match verdict {
            Verdict::Forward(side) => {
                summary.packets_out[side as usize] += 1;
                out.write_frame(side, ts, &buf[..frame.len()])?;
            }
            Verdict::Reply { side, len } => {
                summary.replies += 1;
                out.write_frame(side, ts, &buf[..usize::from(len)])?;
            }
            Verdict::ToKernel => summary.to_kernel += 1,
            Verdict::Drop(_) => summary.dropped += 1,
            Verdict::Handoff { .. } => summary.dropped += 1,
        }
        summary.events += drain_events(&mut engines, &mut out, ts)?;
    }
    // The input ended: what the open refusal intervals counted is written now.
    for engine in engines.iter_mut() {
        engine.flush_refusals(last_ts);
    }
    summary.events += drain_events(&mut engines, &mut out, last_ts)?;
    if let Some(log) = maplog {
        for engine in engines.iter_mut() {
            if let Some(p) = &mut engine.sink_mut().log {
                p.finish();
            }
        }
        let report = log.close()?;
        summary.log = args.log_dir.clone().map(|d| (d, report));
    }
    finish(engines, out, summary)
}

fn process_following_handoffs(
    engines: &mut [Engine<ReplaySink>],
    mut worker: u16,
    buf: &mut [u8],
    len: usize,
    mut from: Side,
    ts: u64,
) -> Verdict {
    let mut verdict = Verdict::ToKernel;
    for _ in 0..MAX_HOPS {
        let Some(engine) = engines.get_mut(worker as usize) else {
            break;
        };
        verdict = engine.process(buf, len, from, ts);
        match verdict {
            Verdict::Handoff {
                worker: next,
                from: as_from,
            } => {
                worker = next;
                from = as_from;
            }
            _ => return verdict,
        }
    }
    verdict
}

fn drain_events(
    engines: &mut [Engine<ReplaySink>],
    out: &mut Outputs,
    now_ns: u64,
) -> Result<u64, ReplayError> {
    let mut n = 0;
    for engine in engines.iter_mut() {
        let sink = engine.sink_mut();
        if let Some(log) = &mut sink.log {
            log.poll(now_ns);
        }
        for event in sink.events.events.drain(..) {
            writeln!(out.events, "{}", event.to_json()).map_err(|source| ReplayError::Io {
                path: out.dir.join("events.jsonl"),
                source,
            })?;
            n += 1;
        }
    }
    Ok(n)
}

fn finish(
    engines: Vec<Engine<ReplaySink>>,
    out: Outputs,
    mut summary: ReplaySummary,
) -> Result<ReplaySummary, ReplayError> {
    let mut total = Counters::default();
    let mut workers = Vec::new();
    for e in &engines {
        total.merge(e.counters());
        summary.live_sessions += e.live_sessions() as u64;
        workers.push(serde_json::json!({
            "worker": e.worker(),
            "live_sessions": e.live_sessions(),
            "live_mappings": e.live_mappings(),
            "live_subscribers": e.live_subscribers(),
            "counters": e.counters().to_json(),
        }));
    }
    summary.handoffs = total.get(crate::engine::counters::Activity::HandedOff);
    let counters = serde_json::json!({ "total": total.to_json(), "workers": workers });
    let dir = out.dir.clone();
    let io = |name: &str| {
        let path = dir.join(name);
        move |source| ReplayError::Io { path, source }
    };
    let mut events = out.events;
    events.flush().map_err(io("events.jsonl"))?;
    out.to_inside.finish().map_err(io("to-inside.pcap"))?;
    out.to_outside.finish().map_err(io("to-outside.pcap"))?;
    let text = serde_json::to_string_pretty(&counters).expect("counters serialise") + "\n";
    std::fs::write(dir.join("counters.json"), text).map_err(io("counters.json"))?;
    Ok(summary)
}
