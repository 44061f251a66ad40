//! What is live: the mappings and port blocks held right now, kept by the writer from the
//! records it writes. Each new segment starts with them (a checkpoint), so a reader can
//! answer about any moment by reading one segment forward instead of the whole log.

use hashbrown::HashMap;

use super::record::{MappingKey, Record, RecordKind};

/// (public address, first port) → the block holding it.
type BlockKey = (u32, u16);

#[derive(Debug, Default)]
pub struct LiveSet {
    mappings: HashMap<MappingKey, Record>,
    blocks: HashMap<BlockKey, Record>,
}

impl LiveSet {
    pub fn apply(&mut self, records: &[Record]) {
        for r in records {
            match r.kind {
                RecordKind::SessionCreated => {
                    let live = self
                        .mappings
                        .entry((r.protocol, r.public_ip, r.public_port))
                        .or_insert_with(|| Record {
                            kind: RecordKind::LiveMapping,
                            dest_ip: 0,
                            dest_port: 0,
                            open_sessions: 0,
                            ..*r
                        });
                    live.open_sessions += 1;
                }
                RecordKind::SessionEnded => {
                    let key = (r.protocol, r.public_ip, r.public_port);
                    if let Some(live) = self.mappings.get_mut(&key) {
                        live.open_sessions = live.open_sessions.saturating_sub(1);
                        if live.open_sessions == 0 {
                            self.mappings.remove(&key);
                        }
                    }
                }
                RecordKind::BlockAllocated => {
                    self.blocks.insert(
                        (r.public_ip, r.block_first),
                        Record {
                            kind: RecordKind::LiveBlock,
                            ..*r
                        },
                    );
                }
                RecordKind::BlockReleased => {
                    self.blocks.remove(&(r.public_ip, r.block_first));
                }
                _ => {}
            }
        }
    }

    /// The records as stored: an end whose inside endpoint is that of the mapping's holder
    /// (known from the live set, or from a creation earlier in `records`) is stored without
    /// it — a reader reading the segment from its checkpoint knows it. Saves the two most
    /// random fields of every other record. Does not change the live set.
    pub fn elide_ends(&self, records: &[Record]) -> Vec<Record> {
        let mut created_here: HashMap<MappingKey, (u32, u16)> = HashMap::new();
        records
            .iter()
            .map(|r| match r.kind {
                RecordKind::SessionCreated => {
                    created_here.insert(r.mapping_key(), (r.inside_ip, r.inside_port));
                    *r
                }
                RecordKind::SessionEnded => {
                    let key = r.mapping_key();
                    let holder = created_here.get(&key).copied().or_else(|| {
                        self.mappings
                            .get(&key)
                            .map(|live| (live.inside_ip, live.inside_port))
                    });
                    if holder == Some((r.inside_ip, r.inside_port)) {
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
                _ => *r,
            })
            .collect()
    }

    /// Checkpoint records, sorted by public endpoint (blocks by their first port).
    pub fn checkpoint(&self) -> Vec<Record> {
        let mut out: Vec<Record> = self
            .mappings
            .values()
            .chain(self.blocks.values())
            .copied()
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
        }
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
        let stored = live.elide_ends(&block);
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
        let mut read: Vec<Record> = live.checkpoint();
        read.extend(stored);
        for r in read.iter_mut() {
            assert!(resolver.resolve(r));
        }
        assert_eq!(&read[1..], &block[..]);
    }
}
