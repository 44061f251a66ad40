//! Damage: what verify and the reader find.

use super::*;

// ---------------------------------------------------------------------------
// 3. Damage

/// A closed two-worker log with several segments of several blocks each.
struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    events: Vec<Vec<Event>>,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pristine");
    let events = vec![
        synthetic_events(0, 2000, T0, 21),
        synthetic_events(1, 2000, T0, 22),
    ];
    let mut s = replay_settings(&dir, "sessions-with-destination", 15);
    s.block_records = 100;
    write_log(s, &events);
    assert!(verify_dir(&dir).is_empty());
    Fixture {
        _tmp: tmp,
        dir,
        events,
    }
}

impl Fixture {
    /// A fresh copy of the pristine log, to damage.
    fn copy(&self, name: &str) -> PathBuf {
        let to = self.dir.parent().unwrap().join(name);
        copy_dir(&self.dir, &to);
        to
    }
}

/// A closed segment in the middle of worker 0's chain, and the index of a non-checkpoint
/// block with another non-checkpoint block after it in the same segment.
fn middle_block(root: &Path) -> (PathBuf, Segment, usize) {
    let paths = segment_paths(root, 0);
    assert!(paths.len() >= 3);
    let path = paths[paths.len() / 2].clone();
    let seg = Segment::open(&path).unwrap();
    assert_eq!(seg.tail, Tail::Closed);
    let data: Vec<usize> = (0..seg.blocks.len())
        .filter(|&i| !seg.blocks[i].header.is_checkpoint())
        .collect();
    assert!(data.len() >= 3, "{} data blocks", data.len());
    (path, seg, data[data.len() / 2])
}

fn flip(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset] ^= 0x5a;
    fs::write(path, bytes).unwrap();
}

#[test]
fn flipped_payload_byte_is_named_and_everything_else_still_read() {
    let f = fixture();
    let root = f.copy("flipped-payload");
    let (path, seg, i) = middle_block(&root);
    let block = seg.blocks[i];
    let offset = block.offset + 144 + block.header.payload_len as usize / 2;
    // Records of every other block, in log order, from the intact copy (complete: end
    // records get their inside endpoint back, as for_each_record gives them).
    let pristine = LogDir::open(&f.dir).unwrap();
    let mut others = Vec::new();
    let mut lost = Vec::new();
    for w in &pristine.workers {
        for s in &w.segments {
            let mut resolver = tracenat::maplog::record::EndpointResolver::default();
            for b in &s.blocks {
                let mut records = Vec::new();
                s.read_block(b, &mut records).unwrap();
                records.iter_mut().for_each(|r| {
                    resolver.resolve(r);
                });
                if b.header.is_checkpoint() {
                    continue;
                }
                let this = w.worker == 0
                    && s.path.file_name() == path.file_name()
                    && b.offset == block.offset;
                let target = if this { &mut lost } else { &mut others };
                target.extend(records.iter().map(|r| (w.worker, *r)));
            }
        }
    }
    assert!(!lost.is_empty());
    drop(seg);
    flip(&path, offset);

    let problems = verify_dir(&root);
    let first = problems
        .first()
        .unwrap_or_else(|| panic!("flip at {offset} went unnoticed"));
    assert_eq!(first.path, path, "\n{}", show(&problems));
    assert_eq!(first.offset, block.offset, "\n{}", show(&problems));
    assert_eq!(first.block_sequence, Some(block.header.sequence));
    assert!(first.what.contains("CRC"), "{first}");
    // Only that segment is named (the chain breaks at the next block of the same file).
    assert!(
        problems.iter().all(|p| p.path == path),
        "\n{}",
        show(&problems)
    );

    let log = LogDir::open(&root).unwrap();
    let mut visited = Vec::new();
    let mut bad = Vec::new();
    logdir::for_each_record(
        &log,
        0,
        u64::MAX,
        |w, r| visited.push((w, *r)),
        |s, b, e| bad.push((s.path.clone(), b.offset, e)),
    );
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!((&bad[0].0, bad[0].1), (&path, block.offset));
    assert_eq!(visited.len(), others.len());
    // An end whose holder was created in the lost block cannot get its inside endpoint
    // back; everything else is read whole, in order.
    let same = |(vw, v): &(u16, Record), (ow, o): &(u16, Record)| {
        vw == ow
            && (v == o
                || (v.kind == RecordKind::SessionEndedElided
                    && o.kind == RecordKind::SessionEnded
                    && Record {
                        kind: RecordKind::SessionEnded,
                        inside_ip: o.inside_ip,
                        inside_port: o.inside_port,
                        ..*v
                    } == *o))
    };
    assert!(
        visited.iter().zip(&others).all(|(v, o)| same(v, o)),
        "every other block is read, in order"
    );
    let total: usize = f.events.iter().map(Vec::len).sum();
    assert_eq!(visited.len() + lost.len(), total);
}

#[test]
fn flipped_header_byte_is_named() {
    let f = fixture();
    for at in [0usize, 20, 60, 120, 143] {
        let root = f.copy(&format!("flipped-header-{at}"));
        let (path, seg, i) = middle_block(&root);
        let block = seg.blocks[i];
        let next = seg.blocks[i + 1];
        drop(seg);
        flip(&path, block.offset + at);
        let problems = verify_dir(&root);
        let first = problems
            .first()
            .unwrap_or_else(|| panic!("header byte {at} flipped unnoticed"));
        assert_eq!(first.path, path, "byte {at}:\n{}", show(&problems));
        assert_eq!(
            first.offset,
            block.offset,
            "byte {at}:\n{}",
            show(&problems)
        );
        // The blocks after the damaged one are still found and read.
        let reopened = Segment::open(&path).unwrap();
        assert!(
            reopened.blocks.iter().any(|b| b.offset == next.offset),
            "byte {at}: the next block is found again"
        );
        let mut seen = 0;
        logdir::for_each_record(
            &LogDir::open(&root).unwrap(),
            0,
            u64::MAX,
            |_, _| seen += 1,
            |_, _, e| panic!("byte {at}: {e}"),
        );
        // The segment index keeps a copy of every header: the damaged block's payload,
        // whose CRC still holds, is read through it.
        let total: usize = f.events.iter().map(Vec::len).sum();
        assert_eq!(
            seen, total,
            "byte {at}: the index's copy of the header serves"
        );
    }
}

#[test]
fn torn_tail_is_reported_then_recovered_on_start() {
    let f = fixture();
    let root = f.copy("torn");
    let last = segment_paths(&root, 0).pop().unwrap();
    let seg = Segment::open(&last).unwrap();
    let data: Vec<_> = seg
        .blocks
        .iter()
        .filter(|b| !b.header.is_checkpoint())
        .copied()
        .collect();
    assert!(data.len() >= 2, "the last segment holds a few blocks");
    let victim = data[data.len() - 1];
    let kept_records: usize = seg
        .blocks
        .iter()
        .filter(|b| b.offset < victim.offset && !b.header.is_checkpoint())
        .map(|b| b.header.count as usize)
        .sum();
    let cut_at = victim.offset + victim.header.total_len() / 2;
    drop(seg);
    let bytes = fs::read(&last).unwrap();
    fs::write(&last, &bytes[..cut_at]).unwrap();

    let torn = Segment::open(&last).unwrap();
    assert_eq!(
        torn.tail,
        Tail::Open {
            valid_len: victim.offset as u64
        }
    );
    let problems = verify_dir(&root);
    assert_eq!(problems.len(), 1, "\n{}", show(&problems));
    assert_eq!(problems[0].path, last);
    assert_eq!(problems[0].offset, victim.offset);
    let damage = LogDir::open(&root).unwrap().damage();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert!(
        damage[0].contains(&format!(
            "{} bytes at offset {}",
            cut_at - victim.offset,
            victim.offset
        )),
        "{damage:?}"
    );

    // Starting the writer cuts the torn bytes and closes the segment.
    let s = replay_settings(&root, "sessions-with-destination", 15);
    let (log, mut producers) = MapLog::start(s, 2, T0).unwrap();
    producers.iter_mut().for_each(Producer::finish);
    let report = log.close().unwrap();
    assert_eq!(report.recovered.len(), 1, "{:?}", report.recovered);
    assert!(report.recovered[0].contains(&last.display().to_string()));

    let problems = verify_dir(&root);
    assert!(problems.is_empty(), "after recovery:\n{}", show(&problems));
    let closed = Segment::open(&last).unwrap();
    assert_eq!(closed.tail, Tail::Closed);
    assert!(closed.bytes().len() > victim.offset);
    let got = read_events(&LogDir::open(&root).unwrap(), 2);
    let before_last: usize = {
        let log = LogDir::open(&root).unwrap();
        log.workers[0].segments[..log.workers[0].segments.len() - 1]
            .iter()
            .flat_map(|s| &s.blocks)
            .filter(|b| !b.header.is_checkpoint())
            .map(|b| b.header.count as usize)
            .sum()
    };
    let n = before_last + kept_records;
    assert_eq!(
        got[0],
        f.events[0][..n],
        "worker 0 keeps everything before the cut"
    );
    assert_eq!(got[1], f.events[1], "worker 1 is untouched");

    // And the log carries on: a later run appends and verifies clean.
    let more = vec![
        synthetic_events(0, 300, T0 + 7200 * SEC, 5),
        synthetic_events(1, 300, T0 + 7200 * SEC, 6),
    ];
    write_log(
        replay_settings(&root, "sessions-with-destination", 15),
        &more,
    );
    let problems = verify_dir(&root);
    assert!(problems.is_empty(), "after appending:\n{}", show(&problems));
}

fn splice_out(path: &Path, range: std::ops::Range<usize>) -> Vec<u8> {
    let mut bytes = fs::read(path).unwrap();
    bytes.drain(range);
    bytes
}

#[test]
fn removed_block_is_detected_with_and_without_index() {
    let f = fixture();
    for keep_trailer in [true, false] {
        let root = f.copy(&format!("removed-{keep_trailer}"));
        let (path, seg, i) = middle_block(&root);
        let victim = seg.blocks[i];
        let next = seg.blocks[i + 1];
        let end_of_blocks = seg
            .blocks
            .last()
            .map(|b| b.offset + b.header.total_len())
            .unwrap();
        drop(seg);
        let mut bytes = splice_out(
            &path,
            victim.offset..victim.offset + victim.header.total_len(),
        );
        if !keep_trailer {
            bytes.truncate(end_of_blocks - victim.header.total_len());
        }
        fs::write(&path, bytes).unwrap();

        let problems = verify_dir(&root);
        assert!(
            !problems.is_empty(),
            "removed block unnoticed (trailer kept: {keep_trailer})"
        );
        assert_eq!(problems[0].path, path, "\n{}", show(&problems));
        // The block that followed now sits where the removed one was; its chain is broken.
        let at_gap: Vec<&Problem> = problems
            .iter()
            .filter(|p| p.path == path && p.offset == victim.offset)
            .collect();
        assert!(
            at_gap
                .iter()
                .any(|p| p.block_sequence == Some(next.header.sequence)
                    && p.what.contains("hash chain")),
            "trailer kept: {keep_trailer}\n{}",
            show(&problems)
        );
        assert!(
            at_gap.iter().any(|p| p.what.contains("sequence")),
            "trailer kept: {keep_trailer}\n{}",
            show(&problems)
        );
        // Nothing else is lost.
        let mut seen = 0;
        logdir::for_each_record(
            &LogDir::open(&root).unwrap(),
            0,
            u64::MAX,
            |_, _| seen += 1,
            |_, _, e| panic!("{e}"),
        );
        let total: usize = f.events.iter().map(Vec::len).sum();
        assert_eq!(seen, total - victim.header.count as usize);
    }
}

#[test]
fn swapped_blocks_are_detected() {
    let f = fixture();
    let root = f.copy("swapped");
    let (path, seg, i) = middle_block(&root);
    let a = seg.blocks[i];
    let b = seg.blocks[i + 1];
    drop(seg);
    let bytes = fs::read(&path).unwrap();
    let (a_range, b_range) = (
        a.offset..a.offset + a.header.total_len(),
        b.offset..b.offset + b.header.total_len(),
    );
    assert_eq!(a_range.end, b_range.start);
    let mut swapped = bytes[..a.offset].to_vec();
    swapped.extend_from_slice(&bytes[b_range.clone()]);
    swapped.extend_from_slice(&bytes[a_range.clone()]);
    swapped.extend_from_slice(&bytes[b_range.end..]);
    assert_eq!(swapped.len(), bytes.len());
    fs::write(&path, swapped).unwrap();

    let problems = verify_dir(&root);
    assert!(!problems.is_empty(), "swapped blocks unnoticed");
    assert_eq!(problems[0].path, path, "\n{}", show(&problems));
    assert_eq!(problems[0].offset, a.offset, "\n{}", show(&problems));
    assert_eq!(problems[0].block_sequence, Some(b.header.sequence));
    let here: Vec<&Problem> = problems.iter().filter(|p| p.offset == a.offset).collect();
    assert!(
        here.iter().any(|p| p.what.contains("hash chain")),
        "\n{}",
        show(&problems)
    );
    assert!(
        here.iter().any(|p| p.what.contains("sequence")),
        "\n{}",
        show(&problems)
    );
}

#[test]
fn removed_segment_is_detected() {
    let f = fixture();
    let root = f.copy("segment-removed");
    let paths = segment_paths(&root, 1);
    let gone = &paths[paths.len() / 2];
    let after = &paths[paths.len() / 2 + 1];
    fs::remove_file(gone).unwrap();
    let problems = verify_dir(&root);
    assert!(!problems.is_empty());
    assert_eq!(&problems[0].path, after, "\n{}", show(&problems));
    assert_eq!(problems[0].offset, 0);
}

/// The newest segment leaves no gap in the chain of those left, but `runs.jsonl` recorded at
/// the last start how many segments each worker had written.
#[test]
fn removed_newest_segment_is_detected() {
    let f = fixture();
    let root = f.copy("newest-segment-removed");
    // A start records in runs.jsonl where each worker's segments had got to.
    let s = replay_settings(&root, "sessions-with-destination", 15);
    let (log, mut producers) = MapLog::start(s, 2, T0 + 3600 * SEC).unwrap();
    producers.iter_mut().for_each(Producer::finish);
    log.close().unwrap();
    assert!(verify_dir(&root).is_empty(), "clean before the removal");
    let newest = segment_paths(&root, 0).last().unwrap().clone();
    fs::remove_file(&newest).unwrap();
    let problems = verify_dir(&root);
    assert_eq!(problems.len(), 1, "\n{}", show(&problems));
    assert!(
        problems[0].what.contains("missing"),
        "\n{}",
        show(&problems)
    );
    // The next run does not reuse the removed number: the gap stays for verify to find,
    // and the start says so.
    let s = replay_settings(&root, "sessions-with-destination", 15);
    let (log, mut producers) = MapLog::start(s, 2, T0 + 7200 * SEC).unwrap();
    producers[0].emit(&numbered(1, T0 + 7200 * SEC));
    producers.iter_mut().for_each(Producer::finish);
    let report = log.close().unwrap();
    assert!(
        report.recovered.iter().any(|n| n.contains("missing")),
        "{:?}",
        report.recovered
    );
    let problems = verify_dir(&root);
    assert!(
        problems.iter().any(|p| p.what.contains("missing")),
        "the gap was papered over:\n{}",
        show(&problems)
    );
}

/// A newest segment whose header is destroyed is there: reported unreadable, not missing.
#[test]
fn an_unreadable_newest_segment_is_not_called_missing() {
    let f = fixture();
    let root = f.copy("newest-segment-unreadable");
    let s = replay_settings(&root, "sessions-with-destination", 15);
    let (log, mut producers) = MapLog::start(s, 2, T0 + 3600 * SEC).unwrap();
    producers.iter_mut().for_each(Producer::finish);
    log.close().unwrap();
    let newest = segment_paths(&root, 0).last().unwrap().clone();
    let mut bytes = fs::read(&newest).unwrap();
    bytes[..16].fill(0xAA);
    fs::write(&newest, &bytes).unwrap();
    let problems = verify_dir(&root);
    assert!(!problems.is_empty());
    assert!(
        problems.iter().all(|p| !p.what.contains("missing")),
        "\n{}",
        show(&problems)
    );
}

#[test]
fn a_segment_with_a_destroyed_header_is_named_and_the_rest_still_read_and_written() {
    let f = fixture();
    let root = f.copy("segment-header-destroyed");
    let paths = segment_paths(&root, 1);
    let victim = &paths[paths.len() / 2];
    let mut bytes = fs::read(victim).unwrap();
    bytes[..16].fill(0xAA);
    fs::write(victim, &bytes).unwrap();
    let log = LogDir::open(&root).expect("the directory still opens");
    assert!(
        log.damage()
            .iter()
            .any(|d| d.contains(victim.to_str().unwrap()))
    );
    let problems = logdir::verify(&log);
    assert!(
        problems
            .iter()
            .any(|p| &p.path == victim && p.what.contains("unreadable")),
        "{}",
        show(&problems)
    );
    // Worker 0 is whole; worker 1 lost only the destroyed segment's records.
    let read = read_events(&log, 2);
    assert_eq!(read[0], f.events[0]);
    assert!(!read[1].is_empty() && read[1].len() < f.events[1].len());
    // The writer starts on such a directory, names the damage, and keeps logging.
    let more = [Vec::new(), synthetic_events(1, 50, T0 + 3_600 * SEC, 99)];
    let (maplog, mut producers) = MapLog::start(
        replay_settings(&root, "sessions-with-destination", 15),
        2,
        T0,
    )
    .unwrap();
    for e in &more[1] {
        producers[1].emit(e);
    }
    producers.iter_mut().for_each(|p| p.finish());
    let report = maplog.close().unwrap();
    assert!(
        report.recovered.iter().any(|r| r.contains("unreadable")),
        "{:?}",
        report.recovered
    );
    let after = read_events(&LogDir::open(&root).unwrap(), 2);
    assert!(after[1].ends_with(&more[1]));
}
