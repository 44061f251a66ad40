//! Answers [`Question`]s from a log directory.
//!
//! A public port belongs to one subscriber at a time: from the first session that creates
//! its mapping to the end of the last session on it. To know who held it at T, the reader
//! starts at the segment open at the window's start — whose checkpoint lists every mapping
//! and block live at that moment — and reads forward to the window's end. So a point query
//! reads one checkpoint and the blocks of at most one segment's age, never the whole log.
//!
//! Questions are answered in batches: one sweep over the log's span of the batch follows
//! every endpoint the batch asks about, so `attribute` costs one pass per chunk of an
//! access log rather than one query per line. A single query is a batch of one.

use std::net::{Ipv4Addr, SocketAddrV4};

use hashbrown::{HashMap, HashSet};

use crate::maplog::block::{BlockHeader, EndpointFilter};
use crate::maplog::record::Record;
use crate::maplog::runs::RunEnd;
use crate::maplog::segment::{BlockRef, Segment};
use crate::reader::ReaderError;
use crate::reader::identity::IdentityBook;
use crate::reader::logdir::LogDir;
use crate::reader::model::{Answer, Candidate, ClockNote, Evidence, MappingSource, Question};
use crate::reader::tracker::{Key, Tracker, key_of};

/// What a batch asks about: whole addresses (questions without a port) and endpoints.
#[derive(Default)]
struct Interest {
    /// Follow every endpoint (a long access log asks about most of them anyway).
    all: bool,
    addresses: HashSet<u32>,
    /// Address → ports asked about on it.
    ports: HashMap<u32, Vec<u16>>,
}

impl Interest {
    fn of(questions: &[Question]) -> Interest {
        let mut interest = Interest::default();
        for q in questions {
            let ip = u32::from(q.public_ip);
            match q.public_port {
                None => {
                    interest.addresses.insert(ip);
                }
                Some(port) => interest.ports.entry(ip).or_default().push(port),
            }
        }
        interest
    }

    fn everything() -> Interest {
        Interest {
            all: true,
            ..Interest::default()
        }
    }

    fn wants(&self, r: &Record) -> bool {
        if self.all || self.addresses.contains(&r.public_ip) {
            return true;
        }
        let Some(ports) = self.ports.get(&r.public_ip) else {
            return false;
        };
        if r.kind.has_block() {
            ports
                .iter()
                .any(|p| r.block_first <= *p && *p <= r.block_last)
        } else {
            ports.contains(&r.public_port)
        }
    }

    /// False only if the block certainly holds nothing of interest. A block's endpoint
    /// filter rules out most blocks for questions with a port; checkpoint blocks are sorted
    /// by endpoint, so their key range narrows them to the one that matters.
    fn may_be_in(&self, h: &BlockHeader, filter: Option<EndpointFilter>) -> bool {
        if self.all {
            return true;
        }
        if let (Some(filter), true) = (filter, self.addresses.is_empty()) {
            return self.ports.iter().any(|(&ip, ports)| {
                filter.may_hold_block_of(ip)
                    || ports.iter().any(|&p| filter.may_hold_endpoint(ip, p))
            });
        }
        let addresses = self.addresses.iter().chain(self.ports.keys());
        let mut any_address = false;
        for &ip in addresses {
            if h.may_hold_address(ip) {
                any_address = true;
                break;
            }
        }
        if !any_address || !h.is_checkpoint() || !self.addresses.is_empty() {
            return any_address;
        }
        self.ports.iter().any(|(&ip, ports)| {
            ports.iter().any(|&p| {
                let key = (ip as u64) << 16 | p as u64;
                let contains = (h.key_min..=h.key_max).contains(&key);
                // A port block covering `p` sorts by its first port, so it may be the last
                // entry of a checkpoint block that ends below `p` on the same address.
                let may_end_with_its_block = h.key_max >> 16 == ip as u64 && h.key_max <= key;
                contains || may_end_with_its_block
            })
        })
    }
}

/// The clock state of the blocks whose records were used, by time span.
#[derive(Default)]
struct ClockSpans(Vec<(u64, u64, ClockNote)>);

impl ClockSpans {
    fn note(&mut self, h: &BlockHeader) {
        let note = ClockNote {
            unsynchronised: !h.clock_synchronised(),
            max_error_us: h.clock_max_error_us,
            stepped_ns: 0,
        };
        self.0.push((h.first_ts_ns, h.last_ts_ns, note));
    }

    fn over(&self, from: u64, to: u64) -> ClockNote {
        self.0
            .iter()
            .filter(|(first, last, _)| *first <= to && *last >= from)
            .fold(ClockNote::default(), |acc, (_, _, n)| ClockNote {
                unsynchronised: acc.unsynchronised || n.unsynchronised,
                max_error_us: acc.max_error_us.max(n.max_error_us),
                stepped_ns: 0,
            })
    }
}

fn read(seg: &Segment, b: &BlockRef, out: &mut Vec<Record>) -> Result<(), ReaderError> {
    seg.read_block(b, out).map_err(|e| {
        ReaderError::Log(format!(
            "{}: block {} at offset {}: {e} (run `tracenat log verify`)",
            seg.path.display(),
            b.header.sequence,
            b.offset
        ))
    })
}

/// A position in one worker's log and the state of everything read up to it, so that a
/// later batch of questions further on in time continues instead of starting over.
pub(crate) struct Cursor {
    tracker: Tracker,
    clock: ClockSpans,
    /// Windows starting at or after this are answered completely from the state kept.
    valid_from: u64,
    segment: usize,
    /// Next block of `segment` to read.
    block: usize,
    /// Records decoded from the last block read but not yet applied (later than asked).
    pending: Vec<Record>,
    applied: usize,
    /// How many of the worker's run ends (`WorkerSegments::run_ends`) are behind.
    runs_ended: usize,
}

/// A run that ended at `end` had ended before `seg` began (its checkpoint already shows
/// that): it ended before the segment was created, or the segment belongs to a later run.
fn run_ended_before(end: &RunEnd, seg: &Segment) -> bool {
    end.at_ns < seg.header.created_ns || end.next_segment.is_some_and(|n| n <= seg.header.sequence)
}

impl Cursor {
    /// Positions at the segment open at `from`, with its checkpoint applied.
    fn start(
        segments: &[Segment],
        ends: &[RunEnd],
        interest: &Interest,
        from: u64,
        activity_lookahead_ns: u64,
    ) -> Result<Cursor, ReaderError> {
        let segment = segments
            .iter()
            .rposition(|s| s.header.created_ns <= from)
            .unwrap_or(0);
        let runs_ended = segments.get(segment).map_or(0, |seg| {
            ends.iter().take_while(|e| run_ended_before(e, seg)).count()
        });
        let mut cursor = Cursor {
            tracker: Tracker::new(activity_lookahead_ns),
            clock: ClockSpans::default(),
            valid_from: from,
            segment,
            block: 0,
            pending: Vec::new(),
            applied: 0,
            runs_ended,
        };
        if let Some(seg) = segments.get(segment) {
            let live = checkpoint_of(seg, interest)?;
            live.iter().for_each(|r| cursor.tracker.apply(r));
        }
        Ok(cursor)
    }

    /// Applies every record up to `to`, and closes what a run that ended by then held.
    fn advance(
        &mut self,
        segments: &[Segment],
        ends: &[RunEnd],
        interest: &Interest,
        to: u64,
    ) -> Result<(), ReaderError> {
        self.read_until(segments, ends, interest, to)?;
        // Whatever a run ended by `to` wrote is applied (all its records are older than
        // its end): what it still holds closes, even with no later segment of this worker.
        self.end_runs(ends, |e| e.at_ns <= to);
        self.tracker.settle(to);
        Ok(())
    }

    /// Closes, in order, what was held when each run `ended` says is over ended: no
    /// session outlives the process that translated it (docs/mapping-log.md §8).
    fn end_runs(&mut self, ends: &[RunEnd], ended: impl Fn(&RunEnd) -> bool) {
        while let Some(end) = ends.get(self.runs_ended).filter(|e| ended(e)) {
            self.tracker.end_run(end.at_ns);
            self.runs_ended += 1;
        }
    }

    fn read_until(
        &mut self,
        segments: &[Segment],
        ends: &[RunEnd],
        interest: &Interest,
        to: u64,
    ) -> Result<(), ReaderError> {
        loop {
            while let Some(r) = self.pending.get(self.applied) {
                if r.ts_ns > to {
                    return Ok(());
                }
                self.tracker.apply(r);
                self.applied += 1;
            }
            let Some(seg) = segments.get(self.segment) else {
                return Ok(());
            };
            let Some(b) = seg.blocks.get(self.block) else {
                // On to the next segment, whose checkpoint says what was still live.
                let Some(next) = segments.get(self.segment + 1) else {
                    return Ok(());
                };
                if next.header.created_ns > to {
                    return Ok(());
                }
                self.end_runs(ends, |e| run_ended_before(e, next));
                let live: HashSet<Key> =
                    checkpoint_of(next, interest)?.iter().map(key_of).collect();
                self.tracker.reconcile(&live, next.header.created_ns);
                self.segment += 1;
                self.block = 0;
                continue;
            };
            let h = &b.header;
            if !h.is_checkpoint() && h.first_ts_ns > to {
                return Ok(());
            }
            self.block += 1;
            if h.is_checkpoint()
                || !interest.may_be_in(h, EndpointFilter::of(h, seg.block_bytes(b)))
            {
                continue;
            }
            self.pending.clear();
            self.applied = 0;
            read(seg, b, &mut self.pending)?;
            self.pending.retain(|r| interest.wants(r));
            if !self.pending.is_empty() {
                self.clock.note(h);
            }
        }
    }

    /// Forgets what ended before `cutoff`: windows from `cutoff` on stay answerable.
    fn forget_before(&mut self, cutoff: u64) {
        // Forgetting walks every holding: do it once per KEEP_BEHIND of progress.
        if cutoff < self.valid_from.saturating_add(KEEP_BEHIND_NS) {
            return;
        }
        self.tracker.forget_before(cutoff);
        self.clock.0.retain(|(_, last, _)| *last >= cutoff);
        self.valid_from = cutoff;
    }
}

/// The checkpoint records of a segment that interest us.
fn checkpoint_of(seg: &Segment, interest: &Interest) -> Result<Vec<Record>, ReaderError> {
    let mut out = Vec::new();
    let mut records = Vec::new();
    for b in seg.blocks.iter().filter(|b| b.header.is_checkpoint()) {
        if !interest.may_be_in(&b.header, None) {
            continue;
        }
        records.clear();
        read(seg, b, &mut records)?;
        out.extend(records.iter().filter(|r| interest.wants(r)));
    }
    Ok(out)
}

impl LogDir {
    /// Deterministic NAT: the configuration in force at the time says who had the port.
    /// Deterministic NAT: each configuration in force during the window says who had the
    /// port while it was.
    fn answer_deterministic(&self, q: &Question, out: &mut Vec<Candidate>) {
        for (i, stored) in self.configs.iter().enumerate() {
            let until = self.configs.get(i + 1).map(|next| next.activated_ns);
            let in_force = stored.activated_ns <= q.to_ns && until.is_none_or(|u| u > q.from_ns);
            let Some(det) = stored.deterministic.as_ref().filter(|_| in_force) else {
                continue;
            };
            let held = match q.public_port {
                Some(port) => det
                    .reverse(q.public_ip, port)
                    .and_then(|sub| Some((sub, det.forward(sub)?)))
                    .map(|(sub, (_, lo, hi))| vec![(sub, lo, hi)])
                    .unwrap_or_default(),
                None => det.subscribers_on(q.public_ip),
            };
            out.extend(held.into_iter().map(|(sub, lo, hi)| Candidate {
                box_name: None,
                subscriber: SocketAddrV4::new(sub, 0),
                public: SocketAddrV4::new(q.public_ip, 0),
                ports: Some((lo, hi)),
                dest: None,
                protocol: 0,
                start_ns: Some(stored.activated_ns),
                end_ns: until,
                last_active_ns: None,
                evidence: Evidence::Deterministic,
                holders: Default::default(),
            }));
        }
    }
}

impl MappingSource for LogDir {
    fn answer(&mut self, q: &Question) -> Result<Answer, ReaderError> {
        let mut answers = self.answer_all(std::slice::from_ref(q))?;
        Ok(answers.pop().expect("one answer per question"))
    }

    /// A large batch (a chunk of an access log) is answered in slices of
    /// [`STREAM_BATCH`] by one sweep that moves on and forgets as it goes, so what it holds
    /// spans minutes around the slice rather than the whole chunk.
    fn answer_all(&mut self, questions: &[Question]) -> Result<Vec<Answer>, ReaderError> {
        if !self.stepped_runs.is_empty() {
            return self.answer_across_clock_steps(questions);
        }
        if questions.len() < STREAM_BATCH {
            return self.answer_batch(questions, false);
        }
        let mut answers = Vec::with_capacity(questions.len());
        for slice in questions.chunks(STREAM_BATCH) {
            answers.extend(self.answer_batch(slice, true)?);
        }
        Ok(answers)
    }
}

impl LogDir {
    /// Answers questions about a log whose runs saw the wall clock step: each window that
    /// reaches such a run is widened by the run's steps, and the answer says so.
    fn answer_across_clock_steps(
        &mut self,
        questions: &[Question],
    ) -> Result<Vec<Answer>, ReaderError> {
        let widening: Vec<u64> = questions
            .iter()
            .map(|q| self.clock_step_uncertainty_ns(q.from_ns, q.to_ns))
            .collect();
        let widened: Vec<Question> = questions
            .iter()
            .zip(&widening)
            .map(|(q, &by)| Question {
                from_ns: q.from_ns.saturating_sub(by),
                to_ns: q.to_ns.saturating_add(by),
                ..q.clone()
            })
            .collect();
        let steps = std::mem::take(&mut self.stepped_runs);
        let answers = self.answer_all(&widened);
        self.stepped_runs = steps;
        let mut answers = answers?;
        for (answer, by) in answers.iter_mut().zip(widening) {
            answer.clock.stepped_ns = by;
        }
        Ok(answers)
    }

    /// Answers `questions` from one sweep: a new one, or with `stream`, the kept one.
    fn answer_batch(
        &mut self,
        questions: &[Question],
        stream: bool,
    ) -> Result<Vec<Answer>, ReaderError> {
        if questions.is_empty() {
            return Ok(Vec::new());
        }
        let from = questions.iter().map(|q| q.from_ns).min().unwrap_or(0);
        // A port-less question needs the ends of the sessions open in its window, which
        // are logged up to an idle timeout after their last packet: read that far ahead.
        let lookahead = match questions.iter().any(|q| q.public_port.is_none()) {
            true => self.activity_lookahead_ns(),
            false => 0,
        };
        let to = questions.iter().map(|q| q.to_ns).max().unwrap_or(0) + lookahead;
        let by_destination = questions
            .iter()
            .any(|q| q.public_port.is_none() && q.dest_ip.is_some());
        let cursors = if stream {
            self.streaming_cursors(from, to, by_destination)?
        } else {
            let interest = Interest::of(questions);
            // A port-less question is narrowed by the destinations of the sessions active
            // in its window, which a checkpoint does not carry: start early enough to see
            // the creations of the sessions that stopped within the look-ahead.
            let start = from.saturating_sub(lookahead);
            let mut cursors = Vec::new();
            for w in &self.workers {
                let mut cursor =
                    Cursor::start(&w.segments, &w.run_ends, &interest, start, lookahead)?;
                if by_destination {
                    cursor.tracker.keep_destinations(cursor.valid_from);
                }
                cursor.advance(&w.segments, &w.run_ends, &interest, to)?;
                cursors.push(cursor);
            }
            cursors
        };
        let mut answers = questions
            .iter()
            .map(|q| {
                let mut candidates = Vec::new();
                self.answer_deterministic(q, &mut candidates);
                let mut clock = ClockNote::default();
                for c in &cursors {
                    let note = c.clock.over(q.from_ns, q.to_ns);
                    let clock_error_ns = note.known_max_error_ns().unwrap_or(0);
                    c.tracker.candidates(q, clock_error_ns, &mut candidates);
                    clock.unsynchronised |= note.unsynchronised;
                    clock.max_error_us = clock.max_error_us.max(note.max_error_us);
                }
                candidates.sort_by_key(|c| (c.start_ns, *c.subscriber.ip(), c.subscriber.port()));
                Answer::new(candidates, clock)
            })
            .collect::<Vec<_>>();
        if stream {
            self.sweep = Some(cursors);
        }
        self.name_holders(questions, &mut answers)?;
        Ok(answers)
    }

    /// Fills in, for each candidate, who held its subscriber address during the part of
    /// the question's window the candidate held the public endpoint (§8.1). The identity
    /// book read for one batch is kept for the next while it covers it; it is read an hour
    /// ahead, so an access log read in order reloads it about once an hour of log.
    fn name_holders(
        &mut self,
        questions: &[Question],
        answers: &mut [Answer],
    ) -> Result<(), ReaderError> {
        const READ_AHEAD_NS: u64 = 3600 * 1_000_000_000;
        /// Up to this many questions, only the blocks that may hold their candidates'
        /// addresses are read (a single `log query`); a larger batch (an access log) reads
        /// every address once and keeps the book for the batches that follow.
        const FEW_QUESTIONS: usize = 16;
        let from = questions.iter().map(|q| q.from_ns).min().unwrap_or(0);
        let to = questions.iter().map(|q| q.to_ns).max().unwrap_or(0);
        let addresses: std::collections::HashSet<Ipv4Addr> = answers
            .iter()
            .flat_map(|a| a.candidates.iter().map(|c| *c.subscriber.ip()))
            .collect();
        if addresses.is_empty() {
            return Ok(());
        }
        if !self
            .identity
            .as_ref()
            .is_some_and(|b| b.covers(from, to, &addresses))
        {
            // The chain's segments were opened with the directory: not opened again here.
            let only = (questions.len() <= FEW_QUESTIONS).then(|| addresses.clone());
            let book = IdentityBook::of_addresses(
                &self.identity_segments,
                from,
                to.saturating_add(READ_AHEAD_NS),
                only,
            );
            self.identity = Some(book);
        }
        let book = self.identity.as_ref().expect("just loaded");
        for (q, a) in questions.iter().zip(answers.iter_mut()) {
            for c in &mut a.candidates {
                let (from, to) = holding_window(q, c);
                c.holders = book.holders(*c.subscriber.ip(), from, to);
            }
        }
        Ok(())
    }
}

/// The part of the question's window during which the candidate held the endpoint (its
/// last packet, where known, bounds it): the address's holder then is the customer.
fn holding_window(q: &Question, c: &Candidate) -> (u64, u64) {
    let from = c.start_ns.map_or(q.from_ns, |s| s.max(q.from_ns));
    let end = c.last_active_ns.or(c.end_ns);
    let to = end.map_or(q.to_ns, |e| e.min(q.to_ns));
    if from <= to {
        (from, to)
    } else {
        (q.from_ns, q.to_ns)
    }
}

/// Batches this large (chunks of an access log) keep their sweep for the next batch.
const STREAM_BATCH: usize = 1024;
/// What a kept sweep remembers before a batch's earliest window: access logs are not
/// strictly in time order, and consecutive chunks overlap.
const KEEP_BEHIND_NS: u64 = 300 * 1_000_000_000;

impl LogDir {
    /// The kept sweep, moved on to `to`, or a new one if the batch starts before it.
    fn streaming_cursors(
        &mut self,
        from: u64,
        to: u64,
        by_destination: bool,
    ) -> Result<Vec<Cursor>, ReaderError> {
        let interest = Interest::everything();
        let lookahead = self.activity_lookahead_ns();
        let kept = self
            .sweep
            .take()
            .filter(|c| c.iter().all(|c| c.valid_from <= from));
        let mut cursors = match kept {
            Some(c) => c,
            None => self
                .workers
                .iter()
                .map(|w| {
                    let from = from.saturating_sub(KEEP_BEHIND_NS);
                    Cursor::start(&w.segments, &w.run_ends, &interest, from, lookahead)
                })
                .collect::<Result<_, _>>()?,
        };
        for (c, w) in cursors.iter_mut().zip(&self.workers) {
            if by_destination {
                c.tracker.keep_destinations(c.valid_from);
            }
            c.advance(&w.segments, &w.run_ends, &interest, to)?;
            c.forget_before(from.saturating_sub(KEEP_BEHIND_NS));
        }
        Ok(cursors)
    }
}
