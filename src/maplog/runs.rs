//! `runs.jsonl`: where each run of the NAT on a log directory began and how the one before
//! it ended (docs/mapping-log.md §2.1).
//!
//! No session outlives the process that translated it, but a log alone cannot say when a
//! process ended: after a crash the last record may be hours older than the crash, and a
//! worker that carries no traffic in the next run writes nothing at all. So every start of
//! the writer appends one line, synced before any record of the run is written, and a
//! clean stop appends another once everything is flushed. The reader closes, at each
//! boundary, every holding still open (`reader::query`); the writer reads the line before
//! it to know whether the previous run stopped cleanly.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::dir;
use super::tail::LogTail;
use crate::engine::ports::{REUSE_HOLD_NS, RestingRange};

/// Where the allocator's seed came from, so an operator can tell whether a run's port
/// order was predictable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeedOrigin {
    /// `allocation.seed` in the configuration.
    Config,
    /// Drawn at this start (`tracenat run` without `allocation.seed`).
    Random,
    /// The fixed default 0 (`replay` without `allocation.seed`).
    Default,
}

/// How the run before a start ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Previous {
    /// It wrote its stop line: every session it had was ended in the log at `end_ns`.
    pub clean: bool,
    /// When it ended: its stop time when clean, else this start (a crash happened at some
    /// unknown moment between its last durable record and now; only this start is sure),
    /// or its last record if that is later than this start (a clock behind).
    pub end_ns: u64,
    /// The newest record timestamp it left on disk (its last durable moment); `null` if it
    /// wrote no record.
    pub last_record_ns: Option<u64>,
}

/// The line a start of the writer appends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStart {
    pub start_ns: u64,
    pub workers: u16,
    pub seed: SeedOrigin,
    /// For each worker of this run, the sequence number its first segment in this run has
    /// (or will have): segments from there on belong to this run or later ones.
    pub segments: Vec<u64>,
    /// `null` for the first run on the directory.
    pub previous: Option<Previous>,
    /// The box that ran it (`logging.box-name`, else the host name); absent in logs
    /// written before boxes were named.
    #[serde(rename = "box", default, skip_serializing_if = "Option::is_none")]
    pub box_name: Option<String>,
}

/// The line a clean stop appends, after everything was flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStop {
    pub stop_ns: u64,
}

/// The line a running NAT appends when the wall clock steps (docs/mapping-log.md §5.1.2):
/// where readers find the steps without reading every block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunClockStep {
    /// Always `"clock_step"`: names the line (and keeps other shapes from parsing as one).
    pub event: RunEvent,
    /// The wall clock's reading just after the step.
    pub clock_step_at_ns: u64,
    /// How far it went: positive forward, negative back.
    pub clock_step_ns: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunEvent {
    ClockStep,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RunLine {
    Start(RunStart),
    Stop(RunStop),
    ClockStep(RunClockStep),
}

/// The file as read: the lines that parse, and a description of each that does not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunsFile {
    pub lines: Vec<RunLine>,
    /// "runs.jsonl line N: why", one per line that does not parse.
    pub problems: Vec<String>,
    /// The last line does not parse (e.g. torn by a crash while it was appended): what the
    /// lines say of the last run is then not to be trusted as a clean stop.
    pub last_damaged: bool,
}

/// Reads the file. A missing file is an empty list (a log written before runs were
/// recorded).
pub fn read(root: &Path) -> io::Result<RunsFile> {
    match fs::read(root.join(dir::RUNS)) {
        Ok(bytes) => Ok(parse(&bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(RunsFile::default()),
        Err(e) => Err(e),
    }
}

/// Parses the file's bytes; never fails as a whole: a torn or damaged line is reported
/// and the others are still used.
pub fn parse(bytes: &[u8]) -> RunsFile {
    let mut file = RunsFile::default();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        file.last_damaged = match serde_json::from_slice::<RunLine>(line) {
            Ok(l) => {
                file.lines.push(l);
                false
            }
            Err(e) => {
                file.problems
                    .push(format!("{} line {}: {e}", dir::RUNS, i + 1));
                true
            }
        };
    }
    file
}

/// Appends one line and syncs it (and, the first time, the directory), so it is on disk
/// before anything it describes. A torn last line left by a crash is ended first, so the
/// new line stays whole and readable.
pub fn append(root: &Path, line: &RunLine) -> io::Result<()> {
    let path = root.join(dir::RUNS);
    let existed = path.exists();
    let mut f = super::io::no_follow()
        .create(true)
        .append(true)
        .read(true)
        .open(&path)?;
    let mut text = serde_json::to_string(line).map_err(io::Error::other)? + "\n";
    if ends_torn(&mut f)? {
        text.insert(0, '\n');
    }
    f.write_all(text.as_bytes())?;
    f.sync_data()?;
    if !existed {
        fs::File::open(root)?.sync_all()?;
    }
    Ok(())
}

fn ends_torn(f: &mut fs::File) -> io::Result<bool> {
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    f.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8];
    f.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// How the previous run ended, seen at a start at `now_ns`: `None` if there was none (no
/// start recorded and no segment). Without its stop line as the file's last line a run is
/// taken to have crashed, also a run from before runs were recorded: only the new start
/// is a sure end.
pub fn previous(
    file: &RunsFile,
    any_segment: bool,
    last_record_ns: Option<u64>,
    now_ns: u64,
) -> Option<Previous> {
    let any_start = file.lines.iter().any(|l| matches!(l, RunLine::Start(_)));
    if !any_start && !any_segment && file.problems.is_empty() {
        return None;
    }
    let stop = match file.lines.last() {
        Some(RunLine::Stop(s)) if any_start && !file.last_damaged => Some(s.stop_ns),
        _ => None,
    };
    // Its records prove it lived until the newest of them, even if this start's clock is
    // behind (a stepped clock, or `replay` of an older capture): never end it earlier.
    let crashed_end = now_ns.max(last_record_ns.unwrap_or(0));
    Some(Previous {
        clean: stop.is_some(),
        end_ns: stop.unwrap_or(crashed_end),
        last_record_ns,
    })
}

/// What a start found of the run before it, for the allocator and the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousRun {
    pub previous: Previous,
    /// Ports that must not be handed out before `rest_until_ns`.
    pub resting: Vec<RestingRange>,
    pub rest_until_ns: u64,
    /// Segment files or blocks of the tail that could not be read: their ports do not rest.
    pub unreadable: u64,
}

/// The system's host name, the box's name by default; `-` if it cannot be read or is
/// not a valid box name.
pub fn system_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..len]) {
        Ok(name) if rc == 0 && crate::config::valid_box_name(name) => name.to_owned(),
        _ => "-".to_owned(),
    }
}

/// At a start of the writer, after its recovery (§3.4): reads this file and the log's
/// tail, then appends this run's start line, synced before any record of the run exists.
/// `segments`: each worker's next segment sequence. Problems that do not stop the NAT (a
/// damaged line, an unreadable block) are added to `notes`.
pub fn begin(
    root: &Path,
    now_ns: u64,
    segments: Vec<u64>,
    seed: SeedOrigin,
    box_name: Option<&str>,
    notes: &mut Vec<String>,
) -> io::Result<Option<PreviousRun>> {
    let file = read(root)?;
    let notes_of_file = file.problems.iter();
    notes.extend(notes_of_file.map(|p| format!("{}: {p}; skipped", root.display())));
    let mut tail = LogTail::open(root)?;
    let previous = previous(&file, tail.any_segment(), tail.last_record_ns(), now_ns);
    let start = RunStart {
        start_ns: now_ns,
        workers: segments.len() as u16,
        seed,
        segments,
        previous,
        box_name: Some(box_name.map_or_else(system_hostname, str::to_owned)),
    };
    let Some(previous) = previous else {
        append(root, &RunLine::Start(start))?;
        return Ok(None);
    };
    // A clean stop ended every session at its stop: what it held or released in the rest
    // period before then rests until the rest period after. A crash happened at an unknown
    // moment after its last durable record: what the log shows from the rest period
    // before that record rests until the rest period after this start, the first moment
    // the crash is sure to lie before.
    let (since, from) = if previous.clean {
        (previous.end_ns, previous.end_ns)
    } else {
        (previous.last_record_ns.unwrap_or(0), now_ns)
    };
    let resting = tail.resting(since.saturating_sub(REUSE_HOLD_NS));
    if tail.unreadable > 0 {
        notes.push(format!(
            "{}: {} segment(s) or block(s) of the previous run unreadable; their ports do not rest (run `tracenat log verify`)",
            root.display(),
            tail.unreadable
        ));
    }
    append(root, &RunLine::Start(start))?;
    Ok(Some(PreviousRun {
        previous,
        resting,
        rest_until_ns: from.saturating_add(REUSE_HOLD_NS),
        unreadable: tail.unreadable,
    }))
}

/// The end of a run, as one worker's reader needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunEnd {
    /// Every holding still open then is closed then.
    pub at_ns: u64,
    /// The worker's first segment of the next run, if the next run has this worker.
    pub next_segment: Option<u64>,
}

/// A run during which the wall clock stepped: times written then are uncertain by the
/// steps' sizes, since the log cannot tell which side of a step the clock was right on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SteppedRun {
    pub from_ns: u64,
    /// The run's stop or the next start; `u64::MAX` for a run still going (or crashed last).
    pub to_ns: u64,
    /// The sum of its steps' sizes.
    pub uncertainty_ns: u64,
}

/// The runs with clock steps, from the file's lines.
pub fn stepped_runs(lines: &[RunLine]) -> Vec<SteppedRun> {
    let mut runs: Vec<SteppedRun> = Vec::new();
    let mut current: Option<SteppedRun> = None;
    let close = |run: Option<SteppedRun>, at: u64, runs: &mut Vec<SteppedRun>| {
        if let Some(run) = run.filter(|r| r.uncertainty_ns > 0) {
            runs.push(SteppedRun { to_ns: at, ..run });
        }
    };
    for line in lines {
        match line {
            RunLine::Start(s) => {
                close(current.take(), s.start_ns, &mut runs);
                current = Some(SteppedRun {
                    from_ns: s.start_ns,
                    to_ns: u64::MAX,
                    uncertainty_ns: 0,
                });
            }
            RunLine::ClockStep(step) => {
                let run = current.get_or_insert(SteppedRun {
                    from_ns: 0,
                    to_ns: u64::MAX,
                    uncertainty_ns: 0,
                });
                run.uncertainty_ns = run
                    .uncertainty_ns
                    .saturating_add(step.clock_step_ns.unsigned_abs());
                // A step back makes the run's earlier readings later than its start.
                run.from_ns = run.from_ns.min(step.clock_step_at_ns);
            }
            RunLine::Stop(s) => close(current.take(), s.stop_ns, &mut runs),
        }
    }
    close(current, u64::MAX, &mut runs);
    runs
}

/// For each worker, how many of its segments had been written when the latest run that
/// had it started (its first segment's sequence then): segments `0..n` existed, so the
/// newest one on disk cannot be older than `n - 1` whatever retention deleted.
pub fn segments_written_before_last_start(lines: &[RunLine]) -> Vec<u64> {
    let mut written: Vec<u64> = Vec::new();
    for line in lines {
        if let RunLine::Start(s) = line {
            written.resize(written.len().max(s.segments.len()), 0);
            for (w, &next) in s.segments.iter().enumerate() {
                written[w] = written[w].max(next);
            }
        }
    }
    written
}

/// The ends of runs for `worker`, in time order: one per start that had a previous run,
/// and the last run's stop if it stopped cleanly.
pub fn ends_for(lines: &[RunLine], worker: u16) -> Vec<RunEnd> {
    let mut ends: Vec<RunEnd> = lines
        .iter()
        .filter_map(|l| match l {
            RunLine::Start(s) => s.previous.map(|p| RunEnd {
                at_ns: p.end_ns,
                next_segment: s.segments.get(worker as usize).copied(),
            }),
            RunLine::Stop(_) | RunLine::ClockStep(_) => None,
        })
        .collect();
    if let Some(RunLine::Stop(s)) = lines.last() {
        ends.push(RunEnd {
            at_ns: s.stop_ns,
            next_segment: None,
        });
    }
    ends.sort_by_key(|e| e.at_ns);
    ends
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(start_ns: u64, segments: Vec<u64>, previous: Option<Previous>) -> RunLine {
        RunLine::Start(RunStart {
            start_ns,
            workers: segments.len() as u16,
            seed: SeedOrigin::Random,
            segments,
            previous,
            box_name: Some("cgn-1".into()),
        })
    }

    #[test]
    fn lines_round_trip_through_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let lines = vec![
            start(10, vec![0, 0], None),
            RunLine::Stop(RunStop { stop_ns: 20 }),
            start(
                30,
                vec![2, 1],
                Some(Previous {
                    clean: true,
                    end_ns: 20,
                    last_record_ns: Some(19),
                }),
            ),
        ];
        for l in &lines {
            append(tmp.path(), l).unwrap();
        }
        let file = read(tmp.path()).unwrap();
        assert_eq!((file.lines, file.problems.len()), (lines, 0));
        // A line written before boxes were named still reads, without a box.
        let old = r#"{"start_ns":5,"workers":1,"seed":"random","segments":[0],"previous":null}"#;
        match serde_json::from_str::<RunLine>(old).unwrap() {
            RunLine::Start(start) => assert_eq!(start.box_name, None),
            RunLine::Stop(_) | RunLine::ClockStep(_) => panic!("a start line"),
        }
        let text = fs::read_to_string(tmp.path().join(dir::RUNS)).unwrap();
        assert!(text.starts_with(
            "{\"start_ns\":10,\"workers\":2,\"seed\":\"random\",\"segments\":[0,0],\"previous\":null,\"box\":\"cgn-1\"}\n"
        ));
    }

    #[test]
    fn a_link_planted_in_the_log_directory_is_not_written_through() {
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tmp.path().join("precious");
        fs::write(&elsewhere, "untouched").unwrap();
        let log = tmp.path().join("log");
        fs::create_dir(&log).unwrap();
        std::os::unix::fs::symlink(&elsewhere, log.join(dir::RUNS)).unwrap();
        let err = append(&log, &start(10, vec![0], None)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "{err}");
        assert_eq!(fs::read_to_string(&elsewhere).unwrap(), "untouched");
    }

    #[test]
    fn a_damaged_or_torn_line_is_reported_and_the_rest_still_read() {
        let tmp = tempfile::tempdir().unwrap();
        let good = start(10, vec![0], None);
        append(tmp.path(), &good).unwrap();
        let path = tmp.path().join(dir::RUNS);
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"\xff\x00garbage\n{\"stop_ns\":").unwrap(); // junk, then a torn append
        drop(f);
        let stop = RunLine::Stop(RunStop { stop_ns: 40 });
        append(tmp.path(), &stop).unwrap();
        let file = read(tmp.path()).unwrap();
        assert_eq!(file.lines, vec![good, stop]);
        assert!(!file.last_damaged);
        let problems = &file.problems;
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("runs.jsonl line 2:"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("runs.jsonl line 3:"),
            "{problems:?}"
        );
        // Nothing at all parses: still no panic, every line reported.
        let file = parse(b"{\"start_ns\":\"x\"}\n[1,2]\n\x00\x01");
        assert!(file.lines.is_empty() && file.last_damaged);
        assert_eq!(file.problems.len(), 3);
    }

    #[test]
    fn the_previous_run_ended_at_its_stop_or_else_at_this_start() {
        let first = start(10, vec![0], None);
        let stop = RunLine::Stop(RunStop { stop_ns: 20 });
        let file = |lines: Vec<RunLine>, last_damaged| RunsFile {
            lines,
            problems: vec![String::new(); last_damaged as usize],
            last_damaged,
        };
        assert_eq!(previous(&file(vec![], false), false, None, 50), None);
        let both = vec![first.clone(), stop];
        let clean = previous(&file(both.clone(), false), true, Some(19), 50).unwrap();
        assert_eq!((clean.clean, clean.end_ns), (true, 20));
        let crashed = previous(&file(vec![first.clone()], false), true, Some(15), 50).unwrap();
        assert_eq!((crashed.clean, crashed.end_ns), (false, 50));
        // A start whose clock is behind the last record: the run lived until that record.
        let behind = previous(&file(vec![first], false), true, Some(70), 50).unwrap();
        assert_eq!(behind.end_ns, 70);
        // A damaged last line (a torn append): not known to be clean.
        let torn = previous(&file(both, true), true, Some(19), 50).unwrap();
        assert_eq!((torn.clean, torn.end_ns), (false, 50));
        // Segments without any recorded start: a log from before runs were recorded.
        let legacy = previous(&file(vec![], false), true, Some(15), 50).unwrap();
        assert_eq!((legacy.clean, legacy.end_ns), (false, 50));
    }

    #[test]
    fn each_worker_sees_every_run_end_with_its_next_segment() {
        let p = |end_ns| {
            Some(Previous {
                clean: false,
                end_ns,
                last_record_ns: None,
            })
        };
        let lines = vec![
            start(10, vec![0, 0], None),
            start(30, vec![3], p(30)), // the second run has one worker
            RunLine::Stop(RunStop { stop_ns: 45 }),
            start(50, vec![5, 1], p(45)),
            RunLine::Stop(RunStop { stop_ns: 60 }),
        ];
        let at = |w| -> Vec<(u64, Option<u64>)> {
            ends_for(&lines, w)
                .iter()
                .map(|e| (e.at_ns, e.next_segment))
                .collect()
        };
        assert_eq!(at(0), [(30, Some(3)), (45, Some(5)), (60, None)]);
        assert_eq!(at(1), [(30, None), (45, Some(1)), (60, None)]);
    }

    #[test]
    fn runs_with_clock_steps_are_uncertain_by_their_steps() {
        let start = |start_ns| {
            RunLine::Start(RunStart {
                start_ns,
                workers: 1,
                seed: SeedOrigin::Random,
                segments: vec![0],
                previous: None,
                box_name: None,
            })
        };
        let step = |at, by| {
            RunLine::ClockStep(RunClockStep {
                event: RunEvent::ClockStep,
                clock_step_at_ns: at,
                clock_step_ns: by,
            })
        };
        let lines = [
            start(100),
            RunLine::Stop(RunStop { stop_ns: 200 }),
            start(300),
            step(350, 600),
            step(900, -40),
            RunLine::Stop(RunStop { stop_ns: 1000 }),
            start(1100),
            step(1050, -100),
        ];
        assert_eq!(
            stepped_runs(&lines),
            [
                SteppedRun {
                    from_ns: 300,
                    to_ns: 1000,
                    uncertainty_ns: 640
                },
                SteppedRun {
                    from_ns: 1050,
                    to_ns: u64::MAX,
                    uncertainty_ns: 100
                },
            ]
        );
    }
}
