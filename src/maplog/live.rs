//! What is live: the mappings and port blocks held right now, kept by the writer from the
//! records it writes. Each new segment starts with them (a checkpoint), so a reader can
//! answer about any moment by reading one segment forward instead of the whole log.

use hashbrown::HashMap;
use hashbrown::hash_map::Entry;

use super::record::{MappingKey, Record, RecordKind};

/// (public address, first port) → the block holding it.
type BlockKey = (u32, u16);

#[derive(Debug, Default)]
pub struct LiveSet {
    mappings: HashMap<MappingKey, Holder>,
    blocks: HashMap<BlockKey, Record>,
}

/// A live mapping as the live set keeps it: what its checkpoint record (kind 7) holds
/// beyond the key, and nothing else. With its key an entry is 32 bytes against 56 for a
/// whole record, and the set holds one per live mapping: millions on a busy worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    since_ns: u64,
    inside_ip: u32,
    open_sessions: u32,
    inside_port: u16,
}

impl Holder {
    fn is(&self, r: &Record) -> bool {
        (self.inside_ip, self.inside_port) == (r.inside_ip, r.inside_port)
    }

    /// The checkpoint record of the mapping `key` this holder holds.
    fn record(&self, key: MappingKey) -> Record {
        let (protocol, public_ip, public_port) = key;
        Record {
            protocol,
            inside_ip: self.inside_ip,
            inside_port: self.inside_port,
            public_ip,
            public_port,
            open_sessions: self.open_sessions,
            ..Record::new(RecordKind::LiveMapping, self.since_ns)
        }
    }
}

/// Records whose mappings are looked up together before they are changed.
const WARM_UP: usize = 512;

/// How to take back one change to the live set: the entry as it was before.
#[derive(Debug)]
pub enum Undo {
    Mapping(MappingKey, Option<Holder>),
    Block(BlockKey, Option<Record>),
}

impl LiveSet {
    /// Applies `records` (in order).
    pub fn apply(&mut self, records: &[Record]) {
        self.store(records, &mut Vec::new());
    }

    /// Applies `records` and returns them as they are stored: an end whose inside
    /// endpoint is that of the mapping's holder is stored without it (a reader reading the
    /// segment from its checkpoint knows it) — the two most random fields of every other
    /// record. One hash lookup per record does both. `journal` receives what
    /// [`LiveSet::undo`] needs if the block cannot be written after all.
    pub fn store(&mut self, records: &[Record], journal: &mut Vec<Undo>) -> Vec<Record> {
        let mut stored = Vec::with_capacity(records.len());
        for chunk in records.chunks(WARM_UP) {
            self.warm_up(chunk);
            stored.extend(chunk.iter().map(|r| self.store_one(r, journal)));
        }
        stored
    }

    /// Looks up every mapping a chunk of records touches before changing any: the lookups
    /// are independent, so their cache misses overlap (a live set of millions of mappings
    /// does not fit in cache), and the changes that follow find the entries in cache.
    fn warm_up(&self, chunk: &[Record]) {
        for r in chunk {
            if matches!(
                r.kind,
                RecordKind::SessionCreated | RecordKind::SessionEnded
            ) {
                std::hint::black_box(self.mappings.get(&r.mapping_key()).map(|m| m.open_sessions));
            }
        }
    }

    fn store_one(&mut self, r: &Record, journal: &mut Vec<Undo>) -> Record {
        match r.kind {
            RecordKind::SessionCreated => {
                let key = r.mapping_key();
                let fresh = Holder {
                    since_ns: r.ts_ns,
                    inside_ip: r.inside_ip,
                    open_sessions: 1,
                    inside_port: r.inside_port,
                };
                match self.mappings.entry(key) {
                    Entry::Occupied(mut o) => {
                        journal.push(Undo::Mapping(key, Some(*o.get())));
                        let live = o.get_mut();
                        if live.is(r) {
                            live.open_sessions += 1;
                        } else {
                            // A new holder (a missed end): the holder is the latest creator.
                            *live = fresh;
                        }
                    }
                    Entry::Vacant(v) => {
                        journal.push(Undo::Mapping(key, None));
                        v.insert(fresh);
                    }
                }
                *r
            }
            RecordKind::SessionEnded => {
                let key = r.mapping_key();
                let Entry::Occupied(mut o) = self.mappings.entry(key) else {
                    return *r;
                };
                let live = *o.get();
                journal.push(Undo::Mapping(key, Some(live)));
                if live.open_sessions <= 1 {
                    o.remove();
                } else {
                    o.get_mut().open_sessions -= 1;
                }
                if live.is(r) {
                    Record {
                        kind: RecordKind::SessionEndedElided,
                        inside_ip: 0,
                        inside_port: 0,
                        ..*r
                    }
                } else {
                    *r
                }
            }
            RecordKind::BlockAllocated => {
                let key = (r.public_ip, r.block_first);
                let before = self.blocks.insert(
                    key,
                    Record {
                        kind: RecordKind::LiveBlock,
                        ..*r
                    },
                );
                journal.push(Undo::Block(key, before));
                *r
            }
            RecordKind::BlockReleased => {
                let key = (r.public_ip, r.block_first);
                let before = self.blocks.remove(&key);
                journal.push(Undo::Block(key, before));
                *r
            }
            _ => *r,
        }
    }

    /// Takes back the changes of a [`LiveSet::store`], latest first.
    pub fn undo(&mut self, journal: Vec<Undo>) {
        for change in journal.into_iter().rev() {
            match change {
                Undo::Mapping(key, Some(r)) => {
                    self.mappings.insert(key, r);
                }
                Undo::Mapping(key, None) => {
                    self.mappings.remove(&key);
                }
                Undo::Block(key, Some(r)) => {
                    self.blocks.insert(key, r);
                }
                Undo::Block(key, None) => {
                    self.blocks.remove(&key);
                }
            }
        }
    }

    /// Checkpoint records, sorted by public endpoint (blocks by their first port).
    pub fn checkpoint(&self) -> Vec<Record> {
        let mut out: Vec<Record> = self
            .mappings
            .iter()
            .map(|(&key, holder)| holder.record(key))
            .chain(self.blocks.values().copied())
            .collect();
        out.sort_unstable_by_key(|r| {
            let port = if r.kind.has_block() {
                r.block_first
            } else {
                r.public_port
            };
            (r.public_ip, port, r.protocol)
        });
        out
    }

    pub fn len(&self) -> usize {
        self.mappings.len() + self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maplog::record::EndpointResolver;

    fn session(kind: RecordKind, ts: u64, inside: (u32, u16), public_port: u16) -> Record {
        Record {
            kind,
            ts_ns: ts,
            protocol: 17,
            inside_ip: inside.0,
            inside_port: inside.1,
            public_ip: 0xCB00_7101,
            public_port,
            dest_ip: 0xC633_640A,
            dest_port: 53,
            block_first: 0,
            block_last: 0,
            open_sessions: 0,
            last_active_ns: 0,
            refused: 0,
        }
    }

    /// The live set holds an entry per live mapping: it must not grow by accident.
    #[test]
    fn a_live_mapping_takes_32_bytes() {
        assert_eq!(std::mem::size_of::<(MappingKey, Holder)>(), 32);
    }

    #[test]
    fn open_sessions_are_counted_and_a_new_holder_replaces_a_missed_end() {
        let (a, b) = ((0x6440_0001, 5000), (0x6440_0002, 6000));
        let mut live = LiveSet::default();
        live.apply(&[
            session(RecordKind::SessionCreated, 1, a, 40000),
            session(RecordKind::SessionCreated, 2, a, 40000),
        ]);
        let open = |live: &LiveSet| {
            live.checkpoint()
                .iter()
                .map(|r| r.open_sessions)
                .sum::<u32>()
        };
        assert_eq!((live.checkpoint()[0].ts_ns, open(&live)), (1, 2));
        live.apply(&[session(RecordKind::SessionEnded, 3, a, 40000)]);
        assert_eq!(open(&live), 1);
        // b creates on the port a still holds: a's end was missed, b holds it from now.
        live.apply(&[session(RecordKind::SessionCreated, 4, b, 40000)]);
        let held = live.checkpoint();
        assert_eq!(
            (held[0].inside_ip, held[0].ts_ns, held[0].open_sessions),
            (b.0, 4, 1)
        );
        live.apply(&[session(RecordKind::SessionEnded, 5, b, 40000)]);
        assert!(live.is_empty());
    }

    #[test]
    fn ends_of_known_holders_are_stored_without_their_inside_endpoint_and_read_back_whole() {
        let a = (0x6440_0001, 5000);
        let b = (0x6440_0002, 6000);
        let mut live = LiveSet::default();
        live.apply(&[session(RecordKind::SessionCreated, 1, a, 40000)]);
        let block = [
            session(RecordKind::SessionEnded, 2, a, 40000), // holder known from the live set
            session(RecordKind::SessionCreated, 3, b, 40001),
            session(RecordKind::SessionEnded, 4, b, 40001), // created in this block
            session(RecordKind::SessionEnded, 5, a, 40002), // nobody known holds 40002
        ];
        let checkpoint = live.checkpoint();
        let created = session(RecordKind::SessionCreated, 1, a, 40000);
        let expected = Record {
            kind: RecordKind::LiveMapping,
            dest_ip: 0,
            dest_port: 0,
            open_sessions: 1,
            ..created
        };
        assert_eq!(
            checkpoint,
            [expected],
            "the creation, as a checkpoint entry"
        );
        let mut journal = Vec::new();
        let before = live.checkpoint();
        let stored = live.store(&block, &mut journal);
        let kinds: Vec<RecordKind> = stored.iter().map(|r| r.kind).collect();
        assert_eq!(
            kinds,
            [
                RecordKind::SessionEndedElided,
                RecordKind::SessionCreated,
                RecordKind::SessionEndedElided,
                RecordKind::SessionEnded,
            ]
        );
        assert_eq!((stored[0].inside_ip, stored[0].inside_port), (0, 0));
        // A reader starting at the checkpoint gets every record back as it was.
        let mut resolver = EndpointResolver::default();
        let mut read: Vec<Record> = checkpoint;
        read.extend(stored);
        for r in read.iter_mut() {
            assert!(resolver.resolve(r));
        }
        assert_eq!(&read[1..], &block[..]);
        // A block that could not be written is taken back out of the live set.
        live.undo(journal);
        assert_eq!(live.checkpoint(), before);
    }
}
