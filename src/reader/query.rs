//! Answers a [`Question`] from a log directory.
//!
//! A public port belongs to one subscriber at a time: from the first session that creates
//! its mapping to the end of the last session on it. To know who held it at T, the reader
//! starts at the segment open at the window's start — whose checkpoint lists every mapping
//! and block live at that moment — and reads forward to the window's end. So a point query
//! reads one checkpoint and the blocks of at most one segment's age, never the whole log.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::config::Config;
use crate::engine::ports::Deterministic;
use crate::maplog::dir;
use crate::maplog::record::{Record, RecordKind};
use crate::maplog::segment::Segment;
use crate::reader::ReaderError;
use crate::reader::logdir::LogDir;
use crate::reader::model::{Answer, Candidate, ClockNote, Evidence, MappingSource, Question};

/// A session seen on a mapping, with its destination.
#[derive(Debug, Clone)]
struct SessionSeen {
    dest: SocketAddrV4,
    start: u64,
    end: Option<u64>,
}

/// One subscriber's hold on a public port (or port block), as far as the log shows it.
#[derive(Debug, Clone)]
struct Holding {
    protocol: u8,
    subscriber: SocketAddrV4,
    public: SocketAddrV4,
    ports: Option<(u16, u16)>,
    start: Option<u64>,
    end: Option<u64>,
    open: u32,
    sessions: Vec<SessionSeen>,
    /// Held before the records read: its earlier sessions' destinations are unknown.
    earlier_unknown: bool,
}

impl Holding {
    fn overlaps(&self, from: u64, to: u64) -> bool {
        self.start.is_none_or(|s| s <= to) && self.end.is_none_or(|e| e >= from)
    }
}

/// (protocol, first port): mappings by protocol and port, blocks with protocol 0.
type Key = (u8, u16);

/// Follows the records about one public address through time.
#[derive(Default)]
struct Tracker {
    active: HashMap<Key, Holding>,
    finished: Vec<Holding>,
}

impl Tracker {
    fn key(r: &Record) -> Key {
        if r.kind.has_block() {
            (0, r.block_first)
        } else {
            (r.protocol, r.public_port)
        }
    }

    fn holding(r: &Record, start: Option<u64>, earlier_unknown: bool) -> Holding {
        let block = r.kind.has_block();
        Holding {
            protocol: if block { 0 } else { r.protocol },
            subscriber: SocketAddrV4::new(Ipv4Addr::from(r.inside_ip), r.inside_port),
            public: SocketAddrV4::new(
                Ipv4Addr::from(r.public_ip),
                if block { 0 } else { r.public_port },
            ),
            ports: block.then_some((r.block_first, r.block_last)),
            start,
            end: None,
            open: 0,
            sessions: Vec::new(),
            earlier_unknown,
        }
    }

    fn finish(&mut self, key: Key, end: u64) {
        if let Some(mut h) = self.active.remove(&key) {
            h.end = Some(end);
            self.finished.push(h);
        }
    }

    fn apply(&mut self, r: &Record) {
        let key = Self::key(r);
        match r.kind {
            RecordKind::LiveMapping | RecordKind::LiveBlock => {
                let mut h = Self::holding(r, Some(r.ts_ns), true);
                h.open = r.open_sessions;
                self.active.insert(key, h);
            }
            RecordKind::SessionCreated => {
                if self
                    .active
                    .get(&key)
                    .is_some_and(|h| h.subscriber != r.inside())
                {
                    self.finish(key, r.ts_ns); // missed end: never merge two subscribers
                }
                let h = self
                    .active
                    .entry(key)
                    .or_insert_with(|| Self::holding(r, Some(r.ts_ns), false));
                h.open += 1;
                if r.dest_ip != 0 {
                    h.sessions.push(SessionSeen {
                        dest: r.dest(),
                        start: r.ts_ns,
                        end: None,
                    });
                }
            }
            RecordKind::SessionEnded => {
                let h = self.active.entry(key).or_insert_with(|| {
                    // Began before anything read: its start is unknown.
                    let mut h = Self::holding(r, None, true);
                    h.open = 1;
                    h
                });
                if let Some(s) = h
                    .sessions
                    .iter_mut()
                    .find(|s| s.end.is_none() && s.dest == r.dest())
                {
                    s.end = Some(r.ts_ns);
                }
                h.open = h.open.saturating_sub(1);
                if h.open == 0 {
                    self.finish(key, r.ts_ns);
                }
            }
            RecordKind::BlockAllocated => {
                self.finish(key, r.ts_ns);
                self.active
                    .insert(key, Self::holding(r, Some(r.ts_ns), false));
            }
            RecordKind::BlockReleased => {
                self.active
                    .entry(key)
                    .or_insert_with(|| Self::holding(r, None, true));
                self.finish(key, r.ts_ns);
            }
            RecordKind::RefusedPortsExhausted | RecordKind::RefusedSubscriberLimit => {}
        }
    }

    /// A new segment's checkpoint says what is live when it opened: anything the tracker
    /// still holds that is not in it ended by then (e.g. the NAT restarted).
    fn reconcile(&mut self, checkpoint: &[Record], at_ns: u64) {
        let live: Vec<Key> = checkpoint.iter().map(Self::key).collect();
        let gone: Vec<Key> = self
            .active
            .keys()
            .filter(|k| !live.contains(k))
            .copied()
            .collect();
        for key in gone {
            self.finish(key, at_ns);
        }
    }

    fn candidates(self, q: &Question) -> Vec<Candidate> {
        let mut out = Vec::new();
        for h in self.finished.into_iter().chain(self.active.into_values()) {
            if !h.overlaps(q.from_ns, q.to_ns) {
                continue;
            }
            let evidence = if h.ports.is_some() {
                Evidence::Block
            } else {
                Evidence::Mapping
            };
            let as_candidate = |dest, start, end, evidence| Candidate {
                subscriber: h.subscriber,
                public: h.public,
                ports: h.ports,
                dest,
                protocol: h.protocol,
                start_ns: start,
                end_ns: end,
                evidence,
            };
            let matching: Vec<&SessionSeen> = h
                .sessions
                .iter()
                .filter(|s| s.start <= q.to_ns && s.end.is_none_or(|e| e >= q.from_ns))
                .filter(|s| q.dest_ip.is_none_or(|ip| *s.dest.ip() == ip))
                .filter(|s| q.dest_port.is_none_or(|p| s.dest.port() == p))
                .collect();
            for s in &matching {
                out.push(as_candidate(
                    Some(s.dest),
                    Some(s.start),
                    s.end,
                    Evidence::Session,
                ));
            }
            // Without a session to show, the holding itself is the evidence — unless the
            // question names a destination and every session on it is known not to match.
            let dests_known = !h.earlier_unknown && !h.sessions.is_empty();
            let excluded = q.dest_ip.is_some() && dests_known;
            if matching.is_empty() && !excluded {
                out.push(as_candidate(None, h.start, h.end, evidence));
            }
        }
        out.sort_by_key(|c| (c.start_ns, *c.subscriber.ip(), c.subscriber.port()));
        out
    }
}

fn wanted(r: &Record, q: &Question) -> bool {
    if r.public_ip != u32::from(q.public_ip) {
        return false;
    }
    if r.kind.has_block() {
        return q
            .public_port
            .is_none_or(|p| r.block_first <= p && p <= r.block_last);
    }
    let session_kind = matches!(
        r.kind,
        RecordKind::SessionCreated | RecordKind::SessionEnded | RecordKind::LiveMapping
    );
    session_kind
        && q.public_port.is_none_or(|p| r.public_port == p)
        && q.protocol.is_none_or(|p| r.protocol == p)
}

impl LogDir {
    fn answer_worker(
        segments: &[Segment],
        q: &Question,
        clock: &mut ClockNote,
    ) -> Result<Vec<Candidate>, ReaderError> {
        let start = segments
            .iter()
            .rposition(|s| s.header.created_ns <= q.from_ns)
            .unwrap_or(0);
        let mut tracker = Tracker::default();
        let mut records = Vec::new();
        let ip = u32::from(q.public_ip);
        for (i, seg) in segments.iter().enumerate().skip(start) {
            if i > start && seg.header.created_ns > q.to_ns {
                break;
            }
            let mut checkpoint = Vec::new();
            for b in seg.blocks.iter().filter(|b| b.header.is_checkpoint()) {
                records.clear();
                read(seg, b, &mut records)?;
                checkpoint.extend(records.iter().filter(|r| wanted(r, q)).copied());
            }
            if i == start {
                checkpoint.iter().for_each(|r| tracker.apply(r));
            } else {
                tracker.reconcile(&checkpoint, seg.header.created_ns);
            }
            for b in &seg.blocks {
                let h = &b.header;
                if h.is_checkpoint() || h.first_ts_ns > q.to_ns || !h.may_hold_address(ip) {
                    continue;
                }
                records.clear();
                read(seg, b, &mut records)?;
                let before = tracker.finished.len() + tracker.active.len();
                for r in records
                    .iter()
                    .filter(|r| r.ts_ns <= q.to_ns && wanted(r, q))
                {
                    tracker.apply(r);
                }
                if tracker.finished.len() + tracker.active.len() != before || h.count > 0 {
                    clock.unsynchronised |= !h.clock_synchronised();
                    clock.max_error_us = clock.max_error_us.max(h.clock_max_error_us);
                }
            }
        }
        Ok(tracker.candidates(q))
    }

    /// Deterministic NAT: the configuration in force at the time says who had the port.
    fn answer_deterministic(&self, q: &Question) -> Result<Vec<Candidate>, ReaderError> {
        let configs = dir::configs(&self.root).map_err(|source| ReaderError::Io {
            path: self.root.join(dir::CONFIGS),
            source,
        })?;
        let Some((activated, text)) = configs.iter().rev().find(|(ts, _)| *ts <= q.to_ns) else {
            return Ok(Vec::new());
        };
        let config = Config::from_toml_str(text)
            .map_err(|e| ReaderError::Log(format!("stored configuration {activated}: {e}")))?;
        let Some(det) = Deterministic::from_config(&config) else {
            return Ok(Vec::new());
        };
        let candidate = |subscriber: Ipv4Addr, first: u16, last: u16| Candidate {
            subscriber: SocketAddrV4::new(subscriber, 0),
            public: SocketAddrV4::new(q.public_ip, 0),
            ports: Some((first, last)),
            dest: None,
            protocol: 0,
            start_ns: Some(*activated),
            end_ns: None,
            evidence: Evidence::Deterministic,
        };
        let held = match q.public_port {
            Some(port) => det
                .reverse(q.public_ip, port)
                .and_then(|sub| Some((sub, det.forward(sub)?)))
                .map(|(sub, (_, lo, hi))| vec![(sub, lo, hi)])
                .unwrap_or_default(),
            None => det.subscribers_on(q.public_ip),
        };
        Ok(held
            .into_iter()
            .map(|(sub, lo, hi)| candidate(sub, lo, hi))
            .collect())
    }

    fn is_deterministic(&self) -> bool {
        dir::configs(&self.root)
            .ok()
            .and_then(|c| c.last().cloned())
            .and_then(|(_, text)| Config::from_toml_str(&text).ok())
            .is_some_and(|c| c.logging.volume == crate::config::LogVolume::Deterministic)
    }
}

fn read(
    seg: &Segment,
    b: &crate::maplog::segment::BlockRef,
    out: &mut Vec<Record>,
) -> Result<(), ReaderError> {
    seg.read_block(b, out).map_err(|e| {
        ReaderError::Log(format!(
            "{}: block {} at offset {}: {e} (run `tracenat log verify`)",
            seg.path.display(),
            b.header.sequence,
            b.offset
        ))
    })
}

impl MappingSource for LogDir {
    fn answer(&mut self, q: &Question) -> Result<Answer, ReaderError> {
        let mut clock = ClockNote::default();
        let mut candidates = Vec::new();
        if self.is_deterministic() {
            candidates = self.answer_deterministic(q)?;
        }
        for w in &self.workers {
            candidates.extend(Self::answer_worker(&w.segments, q, &mut clock)?);
        }
        Ok(Answer::new(candidates, clock))
    }
}
