//! `tracenat run`: sets up the AF_XDP sockets and XDP steering on both interfaces, one
//! pinned worker per queue, the mapping log, and the control loop (status line, metrics,
//! next-hop refresh); on SIGINT/SIGTERM it stops the workers, drains the rings, ends every
//! live session in the log, flushes the mapping log and detaches.
//!
//! A restart must not change who the log says had a port: every start draws a fresh port
//! seed unless the config fixes one, lets the ports the previous run held rest (read from
//! the log's tail), and a clean stop ends every session at the stop (docs/dataplane.md).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::handoff::Rings;
use super::identity_sources::{IdentityReport, IdentitySources};
use super::idle;
use super::metrics::{self, Snapshot};
use super::neigh::{self, SharedMac};
use super::privileges;
use super::worker::{Forwarding, Idle, Link, Worker, WorkerStats};
use super::xdp::bpf::{XdpLink, XdpMode, XdpProgram, XskMap};
use super::xdp::xsk::{BindInfo, FramePool, Umem, XskConfig, XskSocket};
use crate::config::Config;
use crate::engine::ports::RestingRange;
use crate::engine::ports::{self, Ownership, SubscriberSteering};
use crate::engine::{Engine, Side};
use crate::export::{self, live::LiveExporter, output::Tally};
use crate::maplog::clock::{StepWatch, Timeline, wall_clock_ns};
use crate::maplog::runs::PreviousRun;
use crate::maplog::writer::{LogSettings, MapLog, Producer, WriterReport};
use crate::rng::fresh_seed;
use crate::rss::plan::{Design, Profile};
use crate::rss::steer;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Setup(String),
    #[error("{what}: {source}")]
    Xdp {
        what: String,
        source: super::xdp::xsk::XskError,
    },
    #[error("{0}")]
    Log(#[from] crate::maplog::writer::LogError),
}

fn setup(message: impl Into<String>) -> RunError {
    RunError::Setup(message.into())
}

/// How the dataplane came up, for the operator.
#[derive(Debug, Clone)]
pub struct Started {
    pub xdp_modes: [XdpMode; 2],
    pub bind: BindInfo,
    pub log_io: String,
    /// What this start found of the previous run (`None`: the first run on the log).
    pub previous_run: Option<PreviousRun>,
}

/// What a run did, reported when it ends.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub started: Started,
    pub log: WriterReport,
    pub snapshot: Snapshot,
    /// Frames not accounted for when the workers stopped (should be 0 each).
    pub leaked_frames: Vec<isize>,
    /// Sessions still open at the stop, ended then in the log.
    pub ended_at_stop: usize,
    /// What the identity sources stored (`None`: none configured).
    pub identity: Option<IdentityReport>,
    /// Live export, per collector: records sent and lost (empty: none configured).
    pub export: Vec<(String, Tally)>,
    /// Records live export dropped because it could not keep up (the log has them).
    pub export_dropped: u64,
}

/// The pieces that must outlive the workers: XDP programs stay attached until dropped.
struct Steering {
    _programs: Vec<XdpProgram>,
    _maps: Vec<XskMap>,
    links: Vec<XdpLink>,
}

struct Running {
    threads: Vec<JoinHandle<Engine<Producer>>>,
    stats: Vec<Arc<WorkerStats>>,
    rings: Arc<Rings>,
    gateways: [(Option<Ipv4Addr>, Arc<SharedMac>); 2],
    started: Started,
}

/// How a run forwards, beyond its config: what benchmarks may change, a config may not.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    pub forwarding: Forwarding,
}

/// Runs the NAT until `stop` is set. `on_start` hears, before any packet moves, what was
/// found of the previous run on the log; `on_tick` is called about once a second with the
/// current counters (the CLI prints its status line there).
pub fn run(
    config: &Config,
    config_text: Option<String>,
    options: RunOptions,
    stop: &AtomicBool,
    on_start: impl FnOnce(Option<&PreviousRun>),
    mut on_tick: impl FnMut(&Snapshot),
) -> Result<RunReport, RunError> {
    let log_dir = config.logging.dir.clone().ok_or_else(|| {
        setup("logging.dir is not set: tracenat translates nothing it cannot log")
    })?;
    // Everything that can fail on a mistake in the config fails before any packet moves.
    let metrics_listener = match config.dataplane.metrics {
        Some(addr) => Some(
            std::net::TcpListener::bind(addr)
                .map_err(|e| setup(format!("dataplane.metrics {addr}: {e}")))?,
        ),
        None => None,
    };
    let account = match &config.process.user {
        Some(user) => Some(
            privileges::account(user, config.process.group.as_deref())
                .map_err(|e| setup(format!("process.user: {e}")))?,
        ),
        None => None,
    };
    let mut settings = LogSettings::from_config(config, &log_dir);
    settings.config_text = config_text;
    let exporter = start_export(config)?;
    let (maplog, producers) = MapLog::start_tapped(
        settings.clone(),
        config.workers.count,
        wall_clock_ns(),
        exporter.as_ref().map(LiveExporter::tap),
    )?;
    let identity = IdentitySources::start(config, &settings).map_err(RunError::Setup)?;
    let previous_run = maplog.previous_run().cloned();
    on_start(previous_run.as_ref());
    let config = &seeded(config);
    let resting = Resting::of(maplog.previous_run());
    let worker_stop = Arc::new(AtomicBool::new(false));
    let timeline = Timeline::start();
    let (mut running, steering) =
        start(config, options, producers, &resting, &worker_stop, timeline)?;
    running.started.previous_run = previous_run;
    // Serving metrics is best effort: the NAT keeps translating (and logging) without it.
    let extras = identity
        .as_ref()
        .map(|i| i.metrics())
        .into_iter()
        .chain(exporter.as_ref().map(export_metrics))
        .collect();
    let metrics_server = metrics_listener.and_then(|listener| {
        metrics::serve(
            listener,
            running.stats.clone(),
            running.rings.clone(),
            maplog.stats_handle(),
            extras,
        )
        .inspect_err(|e| eprintln!("tracenat: metrics not served: {e}"))
        .ok()
    });
    // Everything that needed privileges is done: attached, bound, locked.
    let dropped = account.map_or(Ok(()), |account| {
        privileges::hand_over(&log_dir, account)
            .and_then(|()| privileges::become_user(account))
            .and_then(|()| privileges::can_write(&log_dir))
            .map_err(|e| format!("process.user: cannot drop privileges: {e}"))
            .inspect(|()| {
                println!(
                    "tracenat: now running as uid {} gid {}, with no capabilities",
                    account.uid, account.gid
                );
            })
    });
    let mut last_refresh = Instant::now();
    let mut steps = StepWatch::default();
    while dropped.is_ok() && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        if running.threads.iter().any(JoinHandle::is_finished) {
            // Workers end only when told to: one that ended panicked, and its queues now
            // go to the kernel unserved. Stop the whole NAT cleanly, so that its supervisor
            // restarts it, rather than run on with subscribers cut off.
            eprintln!("tracenat: a worker stopped unexpectedly: stopping");
            break;
        }
        if let Some(step) = steps.observe(timeline.read()) {
            // The workers record it in their chains; this makes it easy to find.
            if let Err(e) = maplog.note_clock_step(step) {
                eprintln!("tracenat: the clock step could not be noted in runs.jsonl: {e}");
            }
        }
        if last_refresh.elapsed() >= Duration::from_secs(1) {
            refresh_next_hops(&running.gateways);
            let snapshot = Snapshot::take(&running.stats, &running.rings, Some(maplog.stats()));
            on_tick(&snapshot);
            last_refresh = Instant::now();
        }
    }
    // Stop: workers drain their rings and hand the last records to the writer.
    worker_stop.store(true, Ordering::Relaxed);
    // Every worker is joined, and the others stop cleanly (their sessions ended in the
    // log, the log closed) even if one panicked; that is reported at the end.
    let mut engines = Vec::new();
    let mut panicked = Vec::new();
    for (worker, t) in running.threads.into_iter().enumerate() {
        match t.join() {
            Ok(engine) => engines.push(engine),
            Err(_) => panicked.push(worker),
        }
    }
    drop(steering.links);
    // No session outlives the process: each ends in the log at the stop, through the
    // usual end-of-session path, before the last records are handed over.
    let stop = timeline.read();
    let stepped = steps.observe(stop);
    if let Some(step) = stepped
        && let Err(e) = maplog.note_clock_step(step)
    {
        eprintln!("tracenat: the clock step could not be noted in runs.jsonl: {e}");
    }
    let mut ended_at_stop = 0;
    for e in &mut engines {
        // A step since the worker's last round: it records it as the worker would have.
        let mut watch = StepWatch::from_skew(e.sink().clock_skew());
        if let Some(step) = watch.observe(stop) {
            e.sink_mut().clock_step(step);
        }
        e.sink_mut().set_clock_skew(stop.skew_ns());
        ended_at_stop += e.end_all_sessions(stop.engine_ns);
        e.sink_mut().finish();
    }
    let snapshot = Snapshot::take(&running.stats, &running.rings, Some(maplog.stats()));
    let log = maplog.close_stopped(stop.wall_ns)?;
    // After the log is closed every record has been offered to export.
    let export_dropped = exporter.as_ref().map_or(0, |x| {
        x.counters().dropped_queue_full.load(Ordering::Relaxed)
    });
    let export = exporter.map(LiveExporter::stop).unwrap_or_default();
    drop(metrics_server);
    let identity = identity
        .map(IdentitySources::stop)
        .transpose()
        .map_err(RunError::Setup)?;
    let leaked_frames = running
        .stats
        .iter()
        .map(|s| {
            s.ledger
                .lock()
                .ok()
                .and_then(|l| l.map(|l| l.app_held()))
                .unwrap_or(0)
        })
        .collect();
    // A NAT that could not drop what it was told to does not run: stopped cleanly above.
    dropped.map_err(RunError::Setup)?;
    if !panicked.is_empty() {
        return Err(setup(format!(
            "worker(s) {panicked:?} panicked (their sessions could not be ended in the \
             log); the other workers stopped cleanly and the log is closed"
        )));
    }
    Ok(RunReport {
        started: Started {
            log_io: log.io.clone(),
            ..running.started
        },
        log,
        snapshot,
        leaked_frames,
        ended_at_stop,
        identity,
        export,
        export_dropped,
    })
}

/// The live exporter, when the config names collectors (started before the log, whose
/// writer feeds it).
fn start_export(config: &Config) -> Result<Option<LiveExporter>, RunError> {
    if config.export.is_empty() {
        return Ok(None);
    }
    let outputs = export::live::outputs(&config.export)
        .map_err(|e| setup(format!("export: cannot open a socket: {e}")))?;
    LiveExporter::start(outputs, config.export.template_refresh)
        .map(Some)
        .map_err(|e| setup(format!("export: cannot start its thread: {e}")))
}

fn export_metrics(exporter: &LiveExporter) -> metrics::Extra {
    let counters = exporter.counters();
    Arc::new(move || counters.prometheus())
}

/// The config this start runs with: without `allocation.seed`, a fresh seed, so the port
/// order cannot be predicted from one start to the next.
fn seeded(config: &Config) -> Config {
    let mut config = config.clone();
    config.allocation.seed.get_or_insert_with(fresh_seed);
    config
}

/// Ports the previous run held, resting until a time (empty after a first start).
struct Resting {
    ranges: Vec<RestingRange>,
    until_ns: u64,
}

impl Resting {
    fn of(previous: Option<&PreviousRun>) -> Resting {
        previous.map_or(
            Resting {
                ranges: Vec::new(),
                until_ns: 0,
            },
            |p| Resting {
                ranges: p.resting.clone(),
                until_ns: p.rest_until_ns,
            },
        )
    }
}

fn refresh_next_hops(gateways: &[(Option<Ipv4Addr>, Arc<SharedMac>); 2]) {
    for (ip, mac) in gateways {
        if let Some(ip) = ip {
            neigh::refresh(*ip, mac);
        }
    }
}

/// The next hop's MAC on one side: fixed in the config, or resolved now.
fn next_hop(
    side: &str,
    gateway: Option<Ipv4Addr>,
    fixed: Option<[u8; 6]>,
) -> Result<(Option<Ipv4Addr>, Arc<SharedMac>), RunError> {
    if let Some(mac) = fixed {
        return Ok((None, Arc::new(SharedMac::new(mac))));
    }
    let ip = gateway.ok_or_else(|| {
        setup(format!(
            "interfaces.{side}-gateway is not set: the next hop on the {side} must be known (or give interfaces.{side}-gateway-mac)"
        ))
    })?;
    let mac = neigh::resolve(ip, Duration::from_secs(3)).ok_or_else(|| {
        setup(format!(
            "interfaces.{side}-gateway {ip} does not answer ARP; is it up and on the {side} link?"
        ))
    })?;
    Ok((Some(ip), Arc::new(SharedMac::new(mac))))
}

fn start(
    config: &Config,
    options: RunOptions,
    producers: Vec<Producer>,
    resting: &Resting,
    stop: &Arc<AtomicBool>,
    timeline: Timeline,
) -> Result<(Running, Steering), RunError> {
    let ifs = &config.interfaces;
    let names = [ifs.inside.as_str(), ifs.outside.as_str()];
    let macs = [mac_of(names[0])?, mac_of(names[1])?];
    let gateways = [
        next_hop("inside", ifs.inside_gateway, ifs.inside_gateway_mac)?,
        next_hop("outside", ifs.outside_gateway, ifs.outside_gateway_mac)?,
    ];
    let workers = config.workers.count;
    let xsk_config = XskConfig {
        try_zero_copy: config.dataplane.zero_copy,
        ..XskConfig::default()
    };
    let xdp = |what: String| move |source| RunError::Xdp { what, source };
    let mut sockets = Vec::new();
    for w in 0..workers {
        let umem =
            Umem::new(config.dataplane.frames, 2048).map_err(xdp(format!("UMEM of worker {w}")))?;
        let inside = XskSocket::new(&umem, names[0], w as u32, &xsk_config)
            .map_err(xdp(format!("AF_XDP socket on {} queue {w}", names[0])))?;
        let outside = XskSocket::new_shared(&inside, names[1], w as u32, &xsk_config)
            .map_err(xdp(format!("AF_XDP socket on {} queue {w}", names[1])))?;
        for socket in [&inside, &outside] {
            // Best effort (the driver may not busy-poll): 20 µs, one burst per poll.
            let _ = socket.prefer_busy_poll(20, config.dataplane.burst as u32);
        }
        sockets.push((umem, [inside, outside]));
    }
    let steering = steer(config, &names, &sockets)?;
    let bind = sockets[0].1[0].info();
    let ownership = Arc::new(ownership(config)?);
    let rings = Arc::new(Rings::new(workers, 1024));
    let now = timeline.read().engine_ns;
    let mut threads = Vec::new();
    let mut all_stats = Vec::new();
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let kept_cpus = idle::kept_cpus();
    let mut placements = Vec::new();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    for ((w, (umem, sockets)), producer) in (0..workers).zip(sockets).zip(producers) {
        let stats = Arc::new(WorkerStats::default());
        all_stats.push(stats.clone());
        let core = match config.workers.cores.get(w as usize) {
            Some(&id) => Some(core_affinity::CoreId { id }),
            None => cores.get(w as usize % cores.len().max(1)).copied(),
        };
        let dataplane = &config.dataplane;
        let idle = idle::policy(
            dataplane.idle_backoff,
            dataplane.idle_spin,
            core.map(|c| c.id),
            &kept_cpus,
        );
        placements.push((core.map(|c| c.id), idle));
        stats
            .spins_when_idle
            .store(u64::from(idle == Idle::Spin), Ordering::Relaxed);
        let mut engine = Engine::new(config, w, ownership.clone(), producer, now);
        engine.rest_ports(&resting.ranges, resting.until_ns);
        let worker = Worker {
            id: w,
            engine,
            pool: FramePool::new(&umem),
            umem,
            sockets,
            links: [
                Link {
                    mac: macs[0],
                    next_hop: gateways[0].1.clone(),
                },
                Link {
                    mac: macs[1],
                    next_hop: gateways[1].1.clone(),
                },
            ],
            handoff: rings.ends(w),
            stats,
            burst: config.dataplane.burst as usize,
            idle,
            forwarding: options.forwarding,
            arrived: Vec::with_capacity(config.dataplane.burst as usize),
            timeline,
        };
        let stop = stop.clone();
        let ready = ready_tx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("worker-{w}"))
            .spawn(move || {
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                let _ = ask_for_short_slice();
                worker.run(&stop, move || {
                    let _ = ready.send(());
                })
            })
            .map_err(|e| setup(format!("starting worker {w}: {e}")))?;
        threads.push(thread);
    }
    drop(ready_tx);
    wait_until_ready(&ready_rx, workers, stop)?;
    println!(
        "tracenat: {}",
        idle::describe(config.dataplane.idle_backoff, &placements, &kept_cpus)
    );
    let started = Started {
        xdp_modes: [steering.links[0].mode(), steering.links[1].mode()],
        bind,
        log_io: String::new(),
        previous_run: None,
    };
    Ok((
        Running {
            threads,
            stats: all_stats,
            rings,
            gateways,
            started,
        },
        steering,
    ))
}

/// Waits until every worker has committed its tables and stocked its fill rings, so that
/// the metrics endpoint (which supervisors and the lab take as the sign of life) answers
/// only once a frame sent will be translated. Committing takes about 0.1 s per million
/// sessions of capacity.
fn wait_until_ready(
    ready: &std::sync::mpsc::Receiver<()>,
    workers: u16,
    stop: &AtomicBool,
) -> Result<(), RunError> {
    for done in 0..workers {
        if ready.recv().is_err() {
            stop.store(true, Ordering::Relaxed);
            return Err(setup(format!(
                "a worker stopped before it was ready ({done} of {workers} were)"
            )));
        }
    }
    Ok(())
}

/// The shortest time slice the scheduler grants (EEVDF custom slices, Linux 6.12+).
const WORKER_SLICE_NS: u64 = 100_000;

/// Asks the scheduler for a short time slice for this thread. Under EEVDF a task with a
/// shorter slice than the running one may preempt it when it wakes, so a worker woken by a
/// packet need not wait out a busy neighbour's slice; its share of the CPU is
/// unchanged. Best effort: older kernels ignore the runtime of SCHED_OTHER. The thread's
/// nice value is kept, and a real-time policy the operator gave (chrt) is left alone.
fn ask_for_short_slice() -> std::io::Result<()> {
    // SAFETY: all-zero is a valid value of this plain-integer struct.
    let mut attr: libc::sched_attr = unsafe { std::mem::zeroed() };
    let size = size_of::<libc::sched_attr>() as u32;
    // SAFETY: sched_getattr(2) on the calling thread (pid 0) into a buffer of `size` bytes.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            0,
            &mut attr as *mut libc::sched_attr,
            size,
            0,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if ![libc::SCHED_OTHER, libc::SCHED_BATCH].contains(&(attr.sched_policy as i32)) {
        return Ok(());
    }
    attr.size = size;
    attr.sched_runtime = WORKER_SLICE_NS;
    // SAFETY: sched_setattr(2) on the calling thread with a valid attr of `size` bytes.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            0,
            &attr as *const libc::sched_attr,
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Who owns what. With a NIC whose RSS is set as `tracenat hw plan` prints, worker w gets
/// exactly the public ports whose return traffic lands on queue w, and the subscribers the
/// inside port delivers to queue w; otherwise (veth) any split, and handoff rings.
fn ownership(config: &Config) -> Result<Ownership, RunError> {
    let profile = Profile::builtin(&config.dataplane.rss_profile)
        .map_err(|e| setup(format!("dataplane.rss-profile: {e}")))?;
    if !profile.rss {
        return Ok(Ownership::new(config, ports::partitions(config)));
    }
    if matches!(
        config.allocation.mode,
        crate::config::AllocationMode::Deterministic { .. }
    ) {
        // A subscriber's fixed range (RFC 7422) lies wherever the config puts it, not in the
        // ports its inside queue's worker is given.
        return Err(setup(format!(
            "allocation.mode = \"deterministic\" cannot be RSS-aligned; use dataplane.rss-profile = \"veth\" (handoff rings) with {}",
            profile.name
        )));
    }
    let design = Design::new(&profile, config.workers.count, Design::DEFAULT_SEED, None)
        .map_err(|e| setup(format!("RSS design for {}: {e}", profile.name)))?;
    let pool = ports::pool_addresses(&config.pool.public, &config.pool.exclude);
    let parts = steer::partitions(
        &design.outside,
        &pool,
        config.allocation.port_min,
        config.allocation.port_max,
        config.workers.count,
    )
    .map_err(|e| setup(format!("RSS-aligned ports: {e}")))?;
    let inside = design.inside.clone();
    let steering = SubscriberSteering(Arc::new(move |ip| {
        steer::subscriber_queue(&inside, ip, Ipv4Addr::UNSPECIFIED, 0, 0)
    }));
    Ok(Ownership::new(config, parts).with_subscriber_steering(steering))
}

fn mac_of(ifname: &str) -> Result<[u8; 6], RunError> {
    neigh::interface_mac(ifname).map_err(|e| {
        setup(format!(
            "interface {ifname}: {e} (does it exist in this network namespace?)"
        ))
    })
}

/// One XSKMAP and steering program per interface, with every worker's socket in it: what
/// is not for the dataplane (ARP, IPv6, the NAT's own addresses) goes to the kernel.
fn steer(
    config: &Config,
    names: &[&str; 2],
    sockets: &[(Arc<Umem>, [XskSocket; 2])],
) -> Result<Steering, RunError> {
    let own: Vec<Ipv4Addr> = [
        config.interfaces.inside_address,
        config.interfaces.outside_address,
    ]
    .into_iter()
    .flatten()
    .collect();
    let xdp = |what: String| move |source| RunError::Xdp { what, source };
    let mut steering = Steering {
        _programs: Vec::new(),
        _maps: Vec::new(),
        links: Vec::new(),
    };
    for (side, name) in [Side::Inside, Side::Outside].into_iter().zip(names) {
        let map = XskMap::create(sockets.len() as u32)
            .map_err(|e| xdp(format!("XSKMAP for {name}"))(e.into()))?;
        for (queue, (_, pair)) in sockets.iter().enumerate() {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&pair[side as usize]);
            map.set(queue as u32, fd)
                .map_err(|e| xdp(format!("XSKMAP entry {queue} on {name}"))(e.into()))?;
        }
        let program = XdpProgram::load_steering(&map, &own)
            .map_err(|e| xdp(format!("XDP program for {name}"))(e.into()))?;
        let link = program
            .attach(name)
            .map_err(|e| xdp(format!("attaching XDP to {name}"))(e.into()))?;
        steering.links.push(link);
        steering._programs.push(program);
        steering._maps.push(map);
    }
    Ok(steering)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_an_rss_profile_workers_own_what_their_queues_receive() {
        let config = Config::from_toml_str(
            "[interfaces]\ninside = \"a\"\noutside = \"b\"\n[workers]\ncount = 4\n\
             [pool]\npublic = [\"203.0.113.0/30\"]\nsubscribers = [\"100.64.0.0/16\"]\n\
             [dataplane]\nrss-profile = \"mlx5\"\n",
        )
        .unwrap();
        let own = ownership(&config).unwrap();
        let profile = Profile::builtin("mlx5").unwrap();
        let design = Design::new(&profile, 4, Design::DEFAULT_SEED, None).unwrap();
        let remote = Ipv4Addr::new(198, 51, 100, 77);
        let mut per_worker = [0usize; 4];
        for ip in ports::pool_addresses(&config.pool.public, &config.pool.exclude) {
            for port in (1024..=65535u16).step_by(97) {
                let queue = steer::owner_of_public(&design.outside, ip, port, remote, 443);
                assert_eq!(own.owner_of_public(ip, port), Some(queue), "{ip}:{port}");
                per_worker[queue as usize] += 1;
            }
        }
        assert!(per_worker.iter().all(|&n| n > 0), "{per_worker:?}");
        for i in 0..256u32 {
            let sub = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 3, 0)) + i);
            let queue = steer::subscriber_queue(&design.inside, sub, remote, 40000, 443);
            assert_eq!(own.owner_of_subscriber(sub), queue);
        }
    }

    #[test]
    fn every_start_draws_its_own_seed_unless_the_config_fixes_one() {
        let text = "[interfaces]\ninside = \"a\"\noutside = \"b\"\n\
                    [pool]\npublic = [\"203.0.113.0/30\"]\nsubscribers = [\"100.64.0.0/16\"]\n";
        let config = Config::from_toml_str(text).unwrap();
        let (a, b) = (seeded(&config), seeded(&config));
        assert!(a.allocation.seed.is_some());
        assert_ne!(a.allocation.seed, b.allocation.seed);
        let fixed = Config::from_toml_str(&format!("{text}[allocation]\nseed = 9\n")).unwrap();
        assert_eq!(seeded(&fixed).allocation.seed, Some(9));
    }

    #[test]
    fn veth_has_no_rss_and_falls_back_to_any_split() {
        let config = Config::from_toml_str(
            "[interfaces]\ninside = \"a\"\noutside = \"b\"\n[workers]\ncount = 2\n\
             [pool]\npublic = [\"203.0.113.0/30\"]\nsubscribers = [\"100.64.0.0/16\"]\n",
        )
        .unwrap();
        let own = ownership(&config).unwrap();
        let ip = Ipv4Addr::new(203, 0, 113, 1);
        assert!(own.owner_of_public(ip, 2000).is_some());
        assert_eq!(own.workers(), 2);
    }
}
