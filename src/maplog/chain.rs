//! One chain of segments on disk, whatever its blocks hold: recovery of what the last run
//! left, appending encoded blocks, rotation (a new segment starts with a checkpoint the
//! owner writes), closing with the index, syncing and retention. The mapping workers'
//! logs (`writer`) and the identity log (`identity_log`) each own one.
//!
//! Every step that does I/O can fail (disk full) and be called again: a segment stays open
//! until its close fully succeeded, and the owner keeps its records until their block is
//! appended.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::block::{BlockContext, EncodedBlock, Hash};
use super::clock::{self, ClockState};
use super::dir;
use super::io::{Backend, IoMode, LogFile};
use super::segment::{self, BlockRef, Segment, SegmentError, SegmentHeader, Tail};
use super::writer::{LogError, LogSettings, LogStats, hex, io_err};

/// A closed segment remembered for retention.
struct Retained {
    path: PathBuf,
    sequence: u64,
    last_ts_ns: u64,
    last_hash: Hash,
}

pub(super) struct SegmentChain {
    /// The chain's number in block and segment headers (a worker, or the identity chain).
    pub worker: u16,
    dir: PathBuf,
    file: Option<LogFile>,
    /// The open segment's path (for error messages).
    pub path: PathBuf,
    /// The open segment's index is appended but closing it failed: it takes no more blocks.
    index_appended: bool,
    /// The sequence the next segment gets.
    pub segment_sequence: u64,
    segment_created_ns: u64,
    blocks: Vec<BlockRef>,
    next_block_sequence: u64,
    prev_hash: Hash,
    retained: VecDeque<Retained>,
    /// Re-used buffer for encoding blocks.
    pub scratch: Vec<u8>,
    /// What `LogStats::io_mode` was last told about this chain's file.
    io_noted: Option<(Backend, IoMode)>,
}

impl SegmentChain {
    /// Opens the chain in `dir` (created if missing): removes a segment that never got its
    /// header, closes one the last run left open (cutting its torn tail), and goes on after
    /// the last readable segment. What was repaired is added to `recovered`.
    pub fn open(
        settings: &LogSettings,
        worker: u16,
        dir: PathBuf,
        recovered: &mut Vec<String>,
    ) -> Result<SegmentChain, LogError> {
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut chain = SegmentChain {
            worker,
            dir: dir.clone(),
            file: None,
            path: PathBuf::new(),
            index_appended: false,
            segment_sequence: 0,
            segment_created_ns: 0,
            blocks: Vec::new(),
            next_block_sequence: 0,
            prev_hash: [0; 32],
            retained: VecDeque::new(),
            scratch: Vec::new(),
            io_noted: None,
        };
        let paths = dir::segments(&dir).map_err(io_err(&dir))?;
        for (i, path) in paths.iter().enumerate() {
            let seg = match Segment::open(path) {
                Ok(seg) => seg,
                Err(e @ SegmentError::Empty { .. }) if i + 1 == paths.len() => {
                    remove_unwritten(path, &dir, &e, recovered)?;
                    break;
                }
                Err(SegmentError::Io(e)) => return Err(io_err(path)(e)),
                Err(e) => {
                    // Damaged beyond reading its header: left as evidence for `verify`; the
                    // chain goes on from the last readable segment, under a new number.
                    recovered.push(format!(
                        "{}: unreadable ({e}); left as it is, run `tracenat log verify`",
                        path.display()
                    ));
                    if let Some(seq) = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(segment::parse_file_name)
                    {
                        chain.segment_sequence = chain.segment_sequence.max(seq + 1);
                    }
                    continue;
                }
            };
            if let Tail::Open { valid_len } = seg.tail {
                finish_interrupted(&seg, valid_len, settings, recovered)?;
            }
            chain.continue_after(&seg);
        }
        Ok(chain)
    }

    /// The chain goes on after `seg`, which retention will delete in its time.
    fn continue_after(&mut self, seg: &Segment) {
        self.segment_sequence = self.segment_sequence.max(seg.header.sequence + 1);
        if let Some(last) = seg.blocks.last() {
            self.next_block_sequence = last.header.sequence + 1;
        }
        self.prev_hash = seg.last_hash();
        self.retained.push_back(Retained {
            path: seg.path.clone(),
            sequence: seg.header.sequence,
            last_ts_ns: seg.last_ts_ns().unwrap_or(seg.header.created_ns),
            last_hash: self.prev_hash,
        });
    }

    /// Tells the operator how this chain's file is written, when that changed: the first
    /// write may fall back from O_DIRECT, a failed ring falls back to pwrite.
    fn note_io(&mut self, stats: &LogStats) {
        let Some(file) = &self.file else {
            return;
        };
        let io = (file.backend(), file.mode());
        if self.io_noted != Some(io) {
            self.io_noted = Some(io);
            *stats.io_mode.lock().unwrap() = format!("{}, {}", io.0, io.1);
        }
    }

    /// A new segment must be opened before a block whose oldest record is `first_ts`.
    pub fn rotation_due(&self, settings: &LogSettings, first_ts: u64) -> bool {
        let Some(file) = &self.file else {
            return true;
        };
        // A segment whose close failed half-way must be closed before anything else.
        self.index_appended
            || first_ts.saturating_sub(self.segment_created_ns) >= settings.segment_age_ns
            || file.len() >= settings.segment_size
    }

    /// Where the next block sits in the chain, and what is known of the clock.
    pub fn next_context(&self, checkpoint: bool, settings: &LogSettings) -> BlockContext {
        BlockContext {
            worker: self.worker,
            sequence: self.next_block_sequence,
            prev_hash: self.prev_hash,
            checkpoint,
            clock: clock_state_for(settings),
        }
    }

    /// Appends a block encoded with [`SegmentChain::next_context`] to the open segment.
    pub fn append(&mut self, encoded: &EncodedBlock, stats: &LogStats) -> io::Result<()> {
        let file = self.file.as_mut().expect("a segment is open");
        debug_assert!(!self.index_appended, "a block after the index");
        let offset = file.len() as usize;
        file.append(&encoded.bytes)?;
        self.blocks.push(BlockRef {
            offset,
            header: encoded.header,
        });
        self.prev_hash = encoded.hash;
        self.next_block_sequence += 1;
        LogStats::add(&stats.blocks_written, 1);
        LogStats::add(&stats.bytes_written, encoded.bytes.len() as u64);
        Ok(())
    }

    /// Closes the current segment and opens the next, whose checkpoint `write_checkpoint`
    /// appends right after the header. After an error, calling it again carries on from
    /// the step that failed. Once the file exists it is the open segment, even if writing
    /// its start fails: the bytes stay staged and the next flush writes them.
    pub fn rotate(
        &mut self,
        settings: &LogSettings,
        stats: &LogStats,
        now_ns: u64,
        write_checkpoint: impl FnOnce(&mut SegmentChain) -> io::Result<()>,
    ) -> io::Result<()> {
        self.close_segment()?;
        let header = SegmentHeader {
            worker: self.worker,
            sequence: self.segment_sequence,
            created_ns: now_ns,
            prev_hash: self.prev_hash,
        };
        let path = self
            .dir
            .join(segment::file_name(header.sequence, header.created_ns));
        let mut file = LogFile::create(&path, settings.direct_io)?;
        file.append(&header.to_bytes())?;
        self.file = Some(file);
        self.path = path;
        self.segment_sequence += 1;
        self.segment_created_ns = now_ns;
        self.blocks.clear();
        LogStats::add(&stats.segments_opened, 1);
        write_checkpoint(self)?;
        // So that a crash leaves a header in the file; one that comes before this sync
        // leaves an empty file, which `SegmentChain::open` removes. The directory is synced
        // too: until then the new file's name is not durable, and neither would be the
        // records the writer goes on to report durable in it.
        let synced = self
            .file
            .as_mut()
            .expect("just opened")
            .sync()
            .and_then(|()| sync_dir(&self.dir));
        self.note_io(stats);
        synced
    }

    /// Closes the current segment: appends its index, then flushes, truncates and syncs.
    /// The file stays open until all of that succeeded, so a retry after an error (disk
    /// full) loses nothing and does not append the index twice.
    pub fn close_segment(&mut self) -> io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        if !self.index_appended {
            let index_offset = file.len();
            file.append(&segment::closing_bytes(&self.blocks, index_offset))?;
            self.index_appended = true;
        }
        file.finish()?;
        let file = self.file.take().expect("checked above");
        self.index_appended = false;
        self.retained.push_back(Retained {
            path: self.path.clone(),
            sequence: self.segment_sequence - 1,
            last_ts_ns: self
                .blocks
                .iter()
                .map(|b| b.header.last_ts_ns)
                .max()
                .unwrap_or(self.segment_created_ns),
            last_hash: self.prev_hash,
        });
        // Everything is on disk: a failing close(2) loses nothing and is only reported.
        file.close()
    }

    /// Deletes closed segments whose newest record is older than the retention period,
    /// noting each in `retired.jsonl` (with its last hash, so the chain stays verifiable).
    /// After an error, a retry may note a segment twice, which is harmless.
    pub fn retire_old(
        &mut self,
        settings: &LogSettings,
        stats: &LogStats,
        now_ns: u64,
    ) -> io::Result<()> {
        let Some(retention) = settings.retention_ns else {
            return Ok(());
        };
        while let Some(oldest) = self.retained.front() {
            if now_ns.saturating_sub(oldest.last_ts_ns) < retention {
                break;
            }
            let line = format!(
                "{{\"worker\":{},\"sequence\":{},\"last_ts_ns\":{},\"last_hash\":\"{}\"}}\n",
                self.worker,
                oldest.sequence,
                oldest.last_ts_ns,
                hex(&oldest.last_hash)
            );
            let retired_list = settings.dir.join(dir::RETIRED);
            let mut f = super::io::no_follow()
                .create(true)
                .append(true)
                .open(&retired_list)?;
            f.write_all(line.as_bytes())?;
            f.sync_data()?;
            match fs::remove_file(&oldest.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            self.retained.pop_front();
            LogStats::add(&stats.segments_retired, 1);
        }
        Ok(())
    }

    /// Syncs the open file, if any.
    pub fn sync(&mut self, stats: &LogStats) -> io::Result<()> {
        let Some(file) = &mut self.file else {
            return Ok(());
        };
        file.sync()?;
        self.note_io(stats);
        Ok(())
    }
}

/// Makes the directory's entries durable: a file created or removed in it.
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// The last segment was created but never got its header (a crash during rotation): it
/// holds nothing, so it is removed and its sequence number used again. The removal is
/// made durable first, so a crash cannot leave two files with that number.
fn remove_unwritten(
    path: &Path,
    dir: &Path,
    why: &SegmentError,
    recovered: &mut Vec<String>,
) -> Result<(), LogError> {
    fs::remove_file(path).map_err(io_err(path))?;
    sync_dir(dir).map_err(io_err(dir))?;
    recovered.push(format!("{}: {why}; removed", path.display()));
    Ok(())
}

/// A segment the previous run did not close (crash, kill -9, power loss): cut the torn
/// tail and add its index, unless valid blocks follow the damage (then it is not a
/// torn write but corruption, and the file is left as evidence).
fn finish_interrupted(
    seg: &Segment,
    valid_len: u64,
    settings: &LogSettings,
    recovered: &mut Vec<String>,
) -> Result<(), LogError> {
    let path = &seg.path;
    let blocks_after_damage = seg.blocks.iter().any(|b| b.offset as u64 >= valid_len);
    if blocks_after_damage {
        recovered.push(format!(
            "{}: damaged in the middle; left as it is (run `tracenat log verify`)",
            path.display()
        ));
        return Ok(());
    }
    let cut = seg.bytes().len() as u64 - valid_len;
    let mut file =
        LogFile::open_append(path, valid_len, settings.direct_io).map_err(io_err(path))?;
    file.append(&segment::closing_bytes(&seg.blocks, valid_len))
        .map_err(io_err(path))?;
    file.close().map_err(io_err(path))?;
    recovered.push(format!(
        "{}: not closed by the last run; {} blocks kept, {cut} torn bytes cut",
        path.display(),
        seg.blocks.len()
    ));
    Ok(())
}

fn clock_state_for(settings: &LogSettings) -> ClockState {
    if settings.record_time_only {
        // Replayed records carry capture times: the host clock says nothing about them.
        ClockState {
            synchronised: false,
            max_error_us: u32::MAX,
            est_error_us: u32::MAX,
        }
    } else {
        clock::clock_state()
    }
}
