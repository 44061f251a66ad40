//! What is live: the mappings and port blocks held right now, kept by the writer from the
//! records it writes. Each new segment starts with them (a checkpoint), so a reader can
//! answer about any moment by reading one segment forward instead of the whole log.

use hashbrown::HashMap;

use super::record::{Record, RecordKind};

/// (protocol, public address, public port) → the mapping holding it.
type MappingKey = (u8, u32, u16);
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
