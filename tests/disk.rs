//! The mapping log on a disk that slows down, stalls or fails under a running NAT (issue
//! 12): `tracenat run` in the veth lab with its log on
//! * an ext4 image on a loop device whose writes a blkio (cgroup v1) or io (v2) controller
//!   throttles to a trickle — the log writes with O_DIRECT, which the throttle governs;
//! * `scripts/faultfs.py`, a FUSE file system the test makes stall, fail with EIO, and
//!   recover.
//!
//! Throughout, subscriber 1 keeps one UDP session busy, subscriber 2 opens a new session
//! every 50 ms, and `tracenat gen` opens 10,000 new sessions a second from other
//! subscribers so that the log has work. Under `refuse-sessions` (the default) new sessions
//! must be refused while the disk is bad and accepted again once it recovers, the
//! established session must lose nothing, and every session translated must have its
//! creation record in the log; under `drop-records` sessions go on and the records that do
//! not fit are counted as lost. How long the disk was bad before the first refusal (what
//! the default batch budget rode out) and how soon service resumed are printed for
//! docs/operations.md. Needs root, /dev/fuse, python3-fusepy and mkfs.ext4.

#[allow(unused_imports)] // the lab harness is all this file takes from common
mod common;

use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::lab::{Lab, all_records, counter, counters, exe, gen_send, reported};
use tracenat::demo::{self, LabProcess, echo_server, in_namespace};
use tracenat::lab::topology;
use tracenat::maplog::record::RecordKind;

const NEW_SESSIONS_PER_SEC: &str = "10000";
const BACKPRESSURE: (&str, &str) = ("drops_total", "reason=\"log_backpressure\"");
const LOST: (&str, &str) = ("log_records_lost_total", "");
const CREATED: (&str, &str) = ("events_total", "event=\"sessions_created\"");
/// Subscriber 2, whose new sessions probe the NAT.
const PROBER: Ipv4Addr = Ipv4Addr::new(100, 64, 1, 2);

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(status.success(), "{program} {args:?}: {status}");
}

/// A new session's probe: when it was sent, from which port, whether the echo came back.
#[derive(Debug, Clone, Copy)]
struct Probe {
    at: Instant,
    port: u16,
    answered: bool,
}

/// The traffic running alongside: the established exchange, the probes, the generator.
struct Traffic {
    stop: Arc<AtomicBool>,
    established: Option<JoinHandle<(u64, u64)>>,
    probes: Arc<Mutex<Vec<Probe>>>,
    prober: Option<JoinHandle<()>>,
    generator: Child,
}

/// A test that fails midway stops the traffic too.
impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.generator.kill();
        let _ = self.generator.wait();
    }
}

impl Traffic {
    fn start() -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let established = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                in_namespace(&topology::subscriber_ns(1), || {
                    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
                    socket.set_read_timeout(Some(Duration::from_secs(1)))?;
                    let (mut sent, mut lost) = (0, 0);
                    let mut buf = [0u8; 64];
                    while !stop.load(Ordering::Relaxed) {
                        sent += 1;
                        socket.send_to(b"ping", echo_server())?;
                        lost += u64::from(socket.recv_from(&mut buf).is_err());
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Ok((sent, lost))
                })
                .expect("subscriber 1's namespace")
            })
        };
        let probes = Arc::new(Mutex::new(Vec::new()));
        let prober = {
            let (stop, probes) = (stop.clone(), probes.clone());
            std::thread::spawn(move || {
                in_namespace(&topology::subscriber_ns(2), || {
                    // A port of its own for every probe: a port used before may still have
                    // its session, and would be answered without a new one.
                    let mut ports = 20_000..60_000u16;
                    while !stop.load(Ordering::Relaxed) {
                        let port = ports.next().expect("ports left for probes");
                        let Ok(socket) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)) else {
                            continue; // taken by something else in the namespace
                        };
                        socket.set_read_timeout(Some(Duration::from_secs(1)))?;
                        let at = Instant::now();
                        socket.send_to(b"new", echo_server())?;
                        let answered = socket.recv_from(&mut [0u8; 64]).is_ok();
                        probes.lock().unwrap().push(Probe { at, port, answered });
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Ok(())
                })
                .expect("subscriber 2's namespace")
            })
        };
        let generator = gen_send()
            .args([
                // 1,024 subscribers: about 10 new sessions a second each, far from the
                // per-subscriber limits for the test's length.
                "--subscribers",
                "1024",
                "--dst",
                "198.51.100.20:9",
                "--rate",
                NEW_SESSIONS_PER_SEC,
                "--new-flows-per-sec",
                NEW_SESSIONS_PER_SEC,
                "--duration",
                "300s",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tracenat gen send");
        std::thread::sleep(Duration::from_secs(2)); // a healthy stretch first
        Traffic {
            stop,
            established: Some(established),
            probes,
            prober: Some(prober),
            generator,
        }
    }

    /// Probes sent since `t` that came back.
    fn answered_since(&self, t: Instant) -> usize {
        let probes = self.probes.lock().unwrap();
        probes.iter().filter(|p| p.at >= t && p.answered).count()
    }

    /// Stops everything; the established exchange's (sent, lost) and every probe.
    fn finish(mut self) -> ((u64, u64), Vec<Probe>) {
        let _ = self.generator.kill();
        let _ = self.generator.wait();
        self.stop.store(true, Ordering::Relaxed);
        let exchanged = self
            .established
            .take()
            .unwrap()
            .join()
            .expect("established");
        self.prober.take().unwrap().join().expect("prober");
        let probes = self.probes.lock().unwrap().clone();
        (exchanged, probes)
    }
}

/// One spell of bad disk and what the NAT did about it.
#[derive(Debug)]
struct Spell {
    what: &'static str,
    /// From the disk going bad to the first refusal (or loss): what the budget rode out.
    rode_out: Duration,
    /// From the disk coming back to the first session created.
    resumed: Duration,
    began: Instant,
    ended: Instant,
}

/// Checks that the healthy disk shows no `symptom` (a counter rising) for a second, makes
/// the disk bad (`bad`), waits until the NAT shows it, keeps the disk bad 2 s more, makes
/// it good (`good`) and waits for a new session to be answered again.
fn spell(
    what: &'static str,
    traffic: &Traffic,
    symptom: (&str, &str),
    bad: impl FnOnce(),
    good: impl FnOnce(),
) -> Spell {
    let before = counter(&counters(), symptom.0, symptom.1);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        counter(&counters(), symptom.0, symptom.1),
        before,
        "{what}: {symptom:?} rose while the disk was still healthy"
    );
    bad();
    let began = Instant::now();
    let rose = |(name, label): (&str, &str), from: u64| counter(&counters(), name, label) != from;
    let rode_out = wait_for(began, Duration::from_millis(100), || rose(symptom, before))
        .unwrap_or_else(|| panic!("{what}: no {symptom:?} after 60 s of bad disk"));
    std::thread::sleep(Duration::from_secs(2));
    let created = counter(&counters(), CREATED.0, CREATED.1);
    good();
    let ended = Instant::now();
    // Service is back when the NAT creates sessions again (the generator asks for 10 a
    // millisecond); the probes, which wait up to 1 s for a refused echo, confirm it.
    let resumed = wait_for(ended, Duration::from_millis(10), || rose(CREATED, created))
        .unwrap_or_else(|| panic!("{what}: no session created 60 s after the disk came back"));
    wait_for(ended, Duration::from_millis(20), || {
        traffic.answered_since(ended) > 0
    })
    .unwrap_or_else(|| panic!("{what}: no new session answered 60 s after the disk came back"));
    std::thread::sleep(Duration::from_secs(1));
    Spell {
        what,
        rode_out,
        resumed,
        began,
        ended,
    }
}

/// Polls `done` every `every` until it holds: the time since `from`, or `None` once 60 s
/// have passed.
fn wait_for(from: Instant, every: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    while !done() {
        if from.elapsed() > Duration::from_secs(60) {
            return None;
        }
        std::thread::sleep(every);
    }
    Some(from.elapsed())
}

/// Probes sent while the disk was bad and the symptom showed (after `rode_out`).
fn probes_in<'a>(probes: &'a [Probe], s: &Spell) -> impl Iterator<Item = &'a Probe> {
    let from = s.began + s.rode_out;
    probes
        .iter()
        .filter(move |p| p.at >= from && p.at < s.ended)
}

/// Points the lab's NAT at a log directory `log` and sets `on-backpressure`.
fn configure(lab: &Lab, log: &Path, policy: &str) {
    let config = lab.dir.join("tracenat.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let old = format!("dir = \"{}\"", lab.dir.join("log").display());
    assert!(text.contains(&old), "the lab config names its log dir");
    let text = text
        .replace(&old, &format!("dir = \"{}\"", log.display()))
        .replace(
            "[logging]\n",
            &format!("[logging]\non-backpressure = \"{policy}\"\n"),
        );
    std::fs::write(&config, text).unwrap();
}

/// What every run must show: the established session lost nothing, the log verifies and
/// holds a creation record for every session the NAT created (less those counted lost),
/// and every answered probe (a translated session) that is not counted lost is in it.
fn check_log(log: &Path, output: &str, exchanged: (u64, u64), probes: &[Probe], lost: u64) {
    assert!(exchanged.0 > 100, "{exchanged:?}");
    assert_eq!(exchanged.1, 0, "the established session lost nothing");
    assert_eq!(reported(output, "UMEM frames unaccounted for at exit:"), 0);
    let records = all_records(log);
    let created: Vec<_> = records
        .iter()
        .filter(|r| r.kind == RecordKind::SessionCreated)
        .collect();
    let sessions = reported(output, "sessions: ");
    let missing = sessions.checked_sub(created.len() as u64);
    assert!(
        missing.is_some_and(|m| m <= lost),
        "{sessions} sessions, {} creation records, {lost} counted lost:\n{output}",
        created.len()
    );
    let prober = u32::from(PROBER);
    let unlogged = probes
        .iter()
        .filter(|p| p.answered)
        .filter(|p| {
            !created
                .iter()
                .any(|r| r.inside_ip == prober && r.inside_port == p.port)
        })
        .count() as u64;
    assert!(
        unlogged <= lost,
        "{unlogged} translated sessions without a creation record, {lost} counted lost"
    );
}

fn report(what: &str, spells: &[Spell], probes: &[Probe], end: &str) {
    for s in spells {
        let during: Vec<_> = probes_in(probes, s).collect();
        eprintln!(
            "{what}, {}: the budget rode out {:.1} s at {NEW_SESSIONS_PER_SEC} new sessions/s; \
             {} of {} new sessions answered once it showed; sessions created again {} ms \
             after the disk came back",
            s.what,
            s.rode_out.as_secs_f64(),
            during.iter().filter(|p| p.answered).count(),
            during.len(),
            s.resumed.as_millis()
        );
    }
    eprintln!(
        "{what}: {} refused for back-pressure, {} write errors, {} records lost",
        counter(end, BACKPRESSURE.0, BACKPRESSURE.1),
        counter(end, "log_write_errors_total", ""),
        counter(end, LOST.0, LOST.1)
    );
}

/// The running NAT, stopped by SIGTERM; what it printed.
fn stop(nat: LabProcess) -> String {
    nat.stop().expect("tracenat run stops")
}

// ---- a throttled disk: ext4 on a loop device, writes limited by a cgroup ----

/// An ext4 image mounted on a loop device; unmounted (and the loop freed) on drop.
struct LoopDisk {
    mount: PathBuf,
}

impl LoopDisk {
    fn new(dir: &Path) -> LoopDisk {
        let image = dir.join("disk.img");
        let mount = dir.join("disk");
        std::fs::create_dir_all(&mount).unwrap();
        let f = std::fs::File::create(&image).unwrap();
        f.set_len(256 << 20).unwrap();
        run("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]);
        run(
            "mount",
            &[
                "-o",
                "loop",
                image.to_str().unwrap(),
                mount.to_str().unwrap(),
            ],
        );
        LoopDisk { mount }
    }

    /// The block device's `major:minor`.
    fn device(&self) -> String {
        let out = Command::new("findmnt")
            .args(["-n", "-o", "MAJ:MIN", self.mount.to_str().unwrap()])
            .output()
            .expect("findmnt");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        unmount(&self.mount);
    }
}

/// Unmounts `mount`, lazily if it is still busy (a test that failed midway).
fn unmount(mount: &Path) {
    let done = Command::new("umount")
        .arg(mount)
        .status()
        .is_ok_and(|s| s.success());
    if !done {
        let _ = Command::new("umount").arg("-l").arg(mount).status();
    }
}

/// Runs `heal` when dropped: declared after the NAT, so that a test failing while the disk
/// is bad makes it good before the NAT is stopped.
struct Heal<F: FnMut()>(F);

impl<F: FnMut()> Drop for Heal<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

/// A cgroup whose write bandwidth to one device can be limited (v1 blkio or v2 io).
struct Throttle {
    dir: PathBuf,
    v2: bool,
    device: String,
}

impl Throttle {
    fn new(device: String) -> Option<Throttle> {
        let v2 = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "io"));
        let dir = if v2 {
            std::fs::write("/sys/fs/cgroup/cgroup.subtree_control", "+io").ok()?;
            PathBuf::from("/sys/fs/cgroup/tracenat-disk-test")
        } else if Path::new("/sys/fs/cgroup/blkio/blkio.throttle.write_bps_device").exists() {
            PathBuf::from("/sys/fs/cgroup/blkio/tracenat-disk-test")
        } else {
            return None;
        };
        let _ = std::fs::create_dir(&dir);
        let throttle = Throttle { dir, v2, device };
        throttle.limit(None); // a limit left behind by an earlier run
        Some(throttle)
    }

    fn join(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).unwrap();
    }

    /// Limits writes to `bps` bytes a second; `None` lifts the limit.
    fn limit(&self, bps: Option<u64>) {
        if let Err(e) = self.try_limit(bps) {
            panic!("cgroup {}: {e}", self.dir.display());
        }
    }

    fn try_limit(&self, bps: Option<u64>) -> std::io::Result<()> {
        let (file, line) = match (self.v2, bps) {
            (true, Some(b)) => ("io.max", format!("{} wbps={b}", self.device)),
            (true, None) => ("io.max", format!("{} wbps=max", self.device)),
            (false, b) => (
                "blkio.throttle.write_bps_device",
                format!("{} {}", self.device, b.unwrap_or(0)),
            ),
        };
        std::fs::write(self.dir.join(file), line)
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        let _ = self.try_limit(None);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[test]
fn a_throttled_disk_refuses_new_sessions_while_established_ones_flow() {
    if !Path::new("/usr/sbin/mkfs.ext4").exists() && !Path::new("/sbin/mkfs.ext4").exists() {
        eprintln!("skipped: needs mkfs.ext4");
        return;
    }
    let Some(lab) = Lab::up("slowdisk", 1, 2) else {
        return;
    };
    let disk = LoopDisk::new(&lab.dir);
    let Some(throttle) = Throttle::new(disk.device()) else {
        eprintln!("skipped: no blkio or io cgroup controller");
        return;
    };
    let log = disk.mount.join("log");
    configure(&lab, &log, "refuse-sessions");
    let _servers = demo::start_servers(&exe(), &lab.dir).unwrap();
    let nat = lab.nat();
    let _heal = Heal(|| {
        let _ = throttle.try_limit(None);
    });
    throttle.join(nat.pid().expect("the NAT's pid"));
    let traffic = Traffic::start();
    let throttled = spell(
        "writes throttled to 4 KiB/s",
        &traffic,
        BACKPRESSURE,
        || throttle.limit(Some(4096)),
        || throttle.limit(None),
    );
    let (exchanged, probes) = traffic.finish();
    let end = counters();
    let output = stop(nat);
    // The cgroup governs direct writes (v1 does not throttle buffered writeback).
    assert!(
        output.contains("O_DIRECT"),
        "the log wrote with O_DIRECT:\n{output}"
    );
    report(
        "throttled disk",
        std::slice::from_ref(&throttled),
        &probes,
        &end,
    );
    let during: Vec<_> = probes_in(&probes, &throttled).collect();
    assert!(
        during.iter().any(|p| !p.answered),
        "new sessions were refused while the disk crawled: {during:?}"
    );
    assert_eq!(counter(&end, LOST.0, LOST.1), 0);
    check_log(&log, &output, exchanged, &probes, 0);
}

// ---- a failing disk: a FUSE file system the test controls ----

/// scripts/faultfs.py mounted at `mount`, its mode in `control`; unmounted on drop.
struct FaultFs {
    mount: PathBuf,
    control: PathBuf,
    process: Child,
}

impl FaultFs {
    fn new(dir: &Path) -> Option<FaultFs> {
        let has_fusepy = Command::new("/usr/bin/python3")
            .args(["-c", "import fusepy"])
            .status()
            .is_ok_and(|s| s.success());
        if !Path::new("/dev/fuse").exists() || !has_fusepy {
            eprintln!("skipped: needs /dev/fuse and python3-fusepy (scripts/setup.sh)");
            return None;
        }
        let (backing, mount, control) = (dir.join("backing"), dir.join("fuse"), dir.join("mode"));
        std::fs::create_dir_all(&backing).unwrap();
        std::fs::create_dir_all(&mount).unwrap();
        std::fs::write(&control, "ok").unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/faultfs.py");
        let process = Command::new("/usr/bin/python3")
            .arg(script)
            .args([&backing, &mount, &control])
            .stdout(Stdio::null())
            .spawn()
            .expect("faultfs.py");
        let mut fs = FaultFs {
            mount,
            control,
            process,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string("/proc/mounts")
            .unwrap_or_default()
            .contains(fs.mount.to_str().unwrap())
        {
            if let Ok(Some(status)) = fs.process.try_wait() {
                panic!("faultfs.py exited: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "faultfs.py did not mount in 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(fs)
    }

    /// Sets the mode; written aside and renamed in, so that the file system never reads
    /// a half-written mode.
    fn try_set(&self, mode: &str) -> std::io::Result<()> {
        let aside = self.control.with_extension("new");
        std::fs::write(&aside, mode)?;
        std::fs::rename(&aside, &self.control)
    }

    fn set(&self, mode: &str) {
        self.try_set(mode).expect("faultfs control file");
    }
}

impl Drop for FaultFs {
    fn drop(&mut self) {
        let _ = self.try_set("ok");
        unmount(&self.mount);
        // faultfs.py ends by itself once unmounted; a hung one is killed.
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.process.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// One run of the NAT with its log on faultfs under `policy`: a spell of each bad mode
/// (`(what, mode)`), watched through `symptom`; the guards are kept so that the log can
/// still be read (fields drop in order: unmounted, then the lab taken down).
struct FaultRun {
    _fs: FaultFs,
    _lab: Lab,
    log: PathBuf,
    output: String,
    end: String,
    exchanged: (u64, u64),
    probes: Vec<Probe>,
    spells: Vec<Spell>,
}

fn run_on_faultfs(
    name: &str,
    policy: &str,
    symptom: (&str, &str),
    bad_modes: &[(&'static str, &str)],
) -> Option<FaultRun> {
    let lab = Lab::up(name, 1, 2)?;
    let fs = FaultFs::new(&lab.dir)?;
    let log = fs.mount.join("log");
    configure(&lab, &log, policy);
    let _servers = demo::start_servers(&exe(), &lab.dir).unwrap();
    let nat = lab.nat();
    let heal = Heal(|| {
        let _ = fs.try_set("ok");
    });
    let traffic = Traffic::start();
    let spells = bad_modes
        .iter()
        .map(|&(what, mode)| spell(what, &traffic, symptom, || fs.set(mode), || fs.set("ok")))
        .collect();
    let (exchanged, probes) = traffic.finish();
    let end = counters();
    let output = stop(nat);
    drop(heal);
    Some(FaultRun {
        _fs: fs,
        _lab: lab,
        log,
        output,
        end,
        exchanged,
        probes,
        spells,
    })
}

#[test]
fn a_stalled_or_failing_disk_refuses_new_sessions_and_loses_nothing() {
    let Some(run) = run_on_faultfs(
        "faildisk",
        "refuse-sessions",
        BACKPRESSURE,
        &[
            ("writes and syncs stalled", "stall"),
            ("writes and syncs failing with EIO", "fail"),
        ],
    ) else {
        return;
    };
    report("failing disk", &run.spells, &run.probes, &run.end);
    for s in &run.spells {
        let during: Vec<_> = probes_in(&run.probes, s).collect();
        assert!(
            during.iter().any(|p| !p.answered),
            "{}: new sessions were refused: {during:?}",
            s.what
        );
    }
    assert!(counter(&run.end, "log_write_errors_total", "") > 0);
    assert_eq!(counter(&run.end, LOST.0, LOST.1), 0);
    check_log(&run.log, &run.output, run.exchanged, &run.probes, 0);
}

#[test]
fn under_drop_records_a_failing_disk_costs_counted_records_not_service() {
    let Some(run) = run_on_faultfs(
        "dropdisk",
        "drop-records",
        LOST,
        &[("writes and syncs failing with EIO", "fail")],
    ) else {
        return;
    };
    report("drop-records", &run.spells, &run.probes, &run.end);
    let during: Vec<_> = probes_in(&run.probes, &run.spells[0]).collect();
    let refused = during.iter().filter(|p| !p.answered).count();
    assert!(
        !during.is_empty() && refused <= during.len() / 10,
        "sessions went on while records were dropped: {during:?}"
    );
    assert_eq!(counter(&run.end, BACKPRESSURE.0, BACKPRESSURE.1), 0);
    let lost = counter(&run.end, LOST.0, LOST.1);
    assert!(lost > 0);
    check_log(&run.log, &run.output, run.exchanged, &run.probes, lost);
}
