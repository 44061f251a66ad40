//! Crash: SIGKILL of a writing process.

use super::*;

// ---------------------------------------------------------------------------
// 6. Crash: SIGKILL of a writing process

const CHILD_ENV: &str = "TRACENAT_MAPLOG_CRASH_CHILD";

/// In the child: writes numbered events with wall-clock timestamps until killed, printing
/// `durable <ns>` whenever `durable_through_ns` moves.
fn crash_child(dir: &Path) -> ! {
    let s = settings(dir, "flush-interval = \"100ms\"");
    let (log, mut producers) = MapLog::start(s, 1, wall_ns()).unwrap();
    let p = &mut producers[0];
    let mut out = std::io::stdout().lock();
    writeln!(out, "started").unwrap();
    out.flush().unwrap();
    let mut durable = 0;
    let mut i = 0u64;
    let mut next = Instant::now();
    loop {
        let now = wall_ns();
        p.poll(now);
        if p.has_room(2) {
            p.emit(&numbered(i, now));
            i += 1;
        }
        let d = log.stats().durable_through_ns.load(Ordering::Relaxed);
        if d != durable {
            durable = d;
            writeln!(out, "durable {d}").unwrap();
            out.flush().unwrap();
        }
        next += Duration::from_micros(20);
        while Instant::now() < next {
            std::hint::spin_loop();
        }
    }
}

#[test]
fn sigkill_loses_nothing_durable() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        crash_child(Path::new(&dir));
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash::sigkill_loses_nothing_durable",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut durable = None;
    let mut started = false;
    let mut deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(10)) {
            Ok(line) if line.ends_with("started") => {
                started = true;
                deadline = Instant::now() + Duration::from_millis(1500);
            }
            Ok(line) => {
                if let Some(d) = line.strip_prefix("durable ") {
                    durable = Some(d.parse::<u64>().unwrap());
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGKILL);
    }
    let status = child.wait().unwrap();
    // Anything printed before the kill counts.
    while let Ok(line) = rx.try_recv() {
        if let Some(d) = line.strip_prefix("durable ") {
            durable = Some(d.parse::<u64>().unwrap());
        }
    }
    let _ = reader.join();
    assert!(started, "the child never started (status {status})");
    let durable = durable.expect("the child reported a durable time");

    // Reopening repairs the torn tail.
    let (log, mut producers) = MapLog::start(settings(&dir, ""), 1, wall_ns()).unwrap();
    producers.iter_mut().for_each(Producer::finish);
    let report = log.close().unwrap();
    eprintln!("recovered: {:?}", report.recovered);

    let problems = verify_dir(&dir);
    assert!(problems.is_empty(), "after recovery:\n{}", show(&problems));
    let got = read_events(&LogDir::open(&dir).unwrap(), 1).remove(0);
    assert!(!got.is_empty());
    for (i, e) in got.iter().enumerate() {
        assert_eq!(number_of(e), i as u64, "gap-free prefix");
        assert_eq!(*e, numbered(i as u64, e.ts_ns), "record {i} intact");
    }
    let last_ts = got.last().unwrap().ts_ns;
    assert!(
        last_ts >= durable,
        "records up to {durable} were durable but the log ends at {last_ts} ({} records)",
        got.len()
    );
    eprintln!(
        "{} records survived, durable through {durable}, log ends at {last_ts}",
        got.len()
    );
}
