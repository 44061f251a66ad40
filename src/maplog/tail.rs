//! The tail of a log directory, read when the writer starts: what the previous run left
//! behind — its newest durable record, and the public ports it held at its end or released
//! shortly before, which must rest before this run hands them out (RFC 6888 REQ-8 across a
//! restart; `engine::ports::RestingRange`).

use std::io;
use std::net::Ipv4Addr;
use std::path::Path;

use hashbrown::{HashMap, HashSet};

use super::dir;
use super::record::{MappingKey, Record, RecordKind};
use super::segment::{Segment, SegmentError};
use crate::engine::ports::RestingRange;

/// Every worker's segments, opened (mapped) after the writer's recovery.
pub struct LogTail {
    workers: Vec<Vec<Segment>>,
    /// Segment files whose header could not be read, and blocks that failed their CRC:
    /// what they held cannot rest (reported, not fatal).
    pub unreadable: u64,
}

/// Public ports (key: address, first, last) as the tail is read forward.
#[derive(Default)]
struct Holdings {
    mappings: HashMap<MappingKey, u32>,
    blocks: HashMap<(u32, u16), u16>,
    recent: HashSet<(u32, u16, u16)>,
}

impl Holdings {
    fn apply(&mut self, r: &Record, since_ns: u64) {
        let key = r.mapping_key();
        match r.kind {
            RecordKind::LiveMapping => {
                self.mappings.insert(key, r.open_sessions.max(1));
            }
            RecordKind::SessionCreated => *self.mappings.entry(key).or_default() += 1,
            RecordKind::SessionEnded | RecordKind::SessionEndedElided => {
                if let Some(open) = self.mappings.get_mut(&key) {
                    *open = open.saturating_sub(1);
                    if *open == 0 {
                        self.mappings.remove(&key);
                    }
                }
            }
            RecordKind::LiveBlock | RecordKind::BlockAllocated => {
                self.blocks
                    .insert((r.public_ip, r.block_first), r.block_last);
            }
            RecordKind::BlockReleased => {
                self.blocks.remove(&(r.public_ip, r.block_first));
            }
            RecordKind::RefusedPortsExhausted
            | RecordKind::RefusedSubscriberLimit
            | RecordKind::ClockStep => return,
        }
        // Released (or taken) within the rest period before the end: rests too.
        let checkpoint = matches!(r.kind, RecordKind::LiveMapping | RecordKind::LiveBlock);
        if r.ts_ns >= since_ns && !checkpoint {
            self.recent.insert(range_of(r));
        }
    }

    fn into_ranges(self, out: &mut HashSet<(u32, u16, u16)>) {
        out.extend(self.mappings.keys().map(|&(_, ip, port)| (ip, port, port)));
        out.extend(
            self.blocks
                .iter()
                .map(|(&(ip, first), &last)| (ip, first, last)),
        );
        out.extend(self.recent);
    }
}

fn range_of(r: &Record) -> (u32, u16, u16) {
    if r.kind.has_block() {
        (r.public_ip, r.block_first, r.block_last)
    } else {
        (r.public_ip, r.public_port, r.public_port)
    }
}

impl LogTail {
    /// Opens every worker folder present, also those of workers the new run does not have:
    /// their ports may now belong to another worker.
    pub fn open(root: &Path) -> io::Result<LogTail> {
        let mut tail = LogTail {
            workers: Vec::new(),
            unreadable: 0,
        };
        for w in dir::workers(root)? {
            let mut segments = Vec::new();
            for path in dir::segments(&dir::worker_dir(root, w))? {
                match Segment::open(&path) {
                    Ok(seg) => segments.push(seg),
                    Err(SegmentError::Io(e)) => return Err(e),
                    Err(_) => tail.unreadable += 1,
                }
            }
            tail.workers.push(segments);
        }
        Ok(tail)
    }

    pub fn any_segment(&self) -> bool {
        self.workers.iter().any(|w| !w.is_empty())
    }

    /// The newest record timestamp on disk: the previous run's last durable moment.
    pub fn last_record_ns(&self) -> Option<u64> {
        self.workers
            .iter()
            .flatten()
            .flat_map(|s| &s.blocks)
            .filter(|b| !b.header.is_checkpoint() && b.header.count > 0)
            .map(|b| b.header.last_ts_ns)
            .max()
    }

    /// Every port range held at the end of the log or touched at or after `since_ns`, over
    /// all workers, sorted. Each worker is read from the checkpoint of its last segment
    /// created at or before `since_ns`, so a mapping held for hours is seen too.
    pub fn resting(&mut self, since_ns: u64) -> Vec<RestingRange> {
        let mut all = HashSet::new();
        let mut records = Vec::new();
        for segments in &self.workers {
            let first = segments
                .iter()
                .rposition(|s| s.header.created_ns <= since_ns)
                .unwrap_or(0);
            let mut holdings = Holdings::default();
            for (i, seg) in segments.iter().enumerate().skip(first) {
                // Later checkpoints repeat what the records already said.
                for b in seg
                    .blocks
                    .iter()
                    .filter(|b| i == first || !b.header.is_checkpoint())
                {
                    records.clear();
                    if seg.read_block(b, &mut records).is_err() {
                        self.unreadable += 1;
                        continue;
                    }
                    records.iter().for_each(|r| holdings.apply(r, since_ns));
                }
            }
            holdings.into_ranges(&mut all);
        }
        let mut ranges: Vec<_> = all.into_iter().collect();
        ranges.sort_unstable();
        ranges
            .into_iter()
            .map(|(ip, first, last)| RestingRange {
                ip: Ipv4Addr::from(ip),
                first,
                last,
            })
            .collect()
    }
}
