//! IPv4 fragments. Only the first fragment carries ports, so it finds or creates the session
//! and leaves a note here; later fragments of the same datagram (same source, destination,
//! protocol and IP id) follow that note and get the same address rewrite.
//!
//! State is bounded: a fixed number of notes, all with the same lifetime, kept in a FIFO, so
//! the oldest note is always the first to expire and eviction is O(1).

use std::collections::VecDeque;
use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

use crate::engine::Side;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentKey {
    pub src: u32,
    pub dst: u32,
    pub ident: u16,
    pub protocol: u8,
    /// Which side the datagram arrived from.
    pub from: Side,
}

#[derive(Debug, Clone, Copy)]
struct Note {
    key: FragmentKey,
    /// The address that replaces the source (outbound) or destination (inbound).
    new_addr: u32,
    expires_at: u64,
}

#[derive(Debug)]
pub struct FragmentTable {
    notes: VecDeque<Note>,
    /// Index into `notes` counted from `popped` (a monotonically increasing position), so the
    /// table does not need rewriting when the FIFO front moves.
    index: HashTable<u64>,
    popped: u64,
    capacity: usize,
    lifetime_ns: u64,
    hasher: DefaultHashBuilder,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

impl FragmentTable {
    pub fn new(capacity: usize, lifetime_ns: u64) -> FragmentTable {
        FragmentTable {
            notes: VecDeque::with_capacity(capacity),
            index: HashTable::with_capacity(capacity),
            popped: 0,
            capacity,
            lifetime_ns,
            hasher: DefaultHashBuilder::default(),
        }
    }

    fn hash(&self, k: &FragmentKey) -> u64 {
        self.hasher
            .hash_one((k.src, k.dst, k.ident, k.protocol, k.from as u8))
    }

    fn expire(&mut self, now_ns: u64) {
        while let Some(front) = self.notes.front() {
            if front.expires_at > now_ns {
                break;
            }
            let h = self.hash(&front.key);
            let pos = self.popped;
            if let Ok(e) = self.index.find_entry(h, |&p| p == pos) {
                e.remove();
            }
            self.notes.pop_front();
            self.popped += 1;
        }
    }

    /// Records where later fragments of a datagram go (first fragment seen).
    pub fn remember(
        &mut self,
        key: FragmentKey,
        new_addr: u32,
        now_ns: u64,
    ) -> Result<(), TableFull> {
        self.expire(now_ns);
        if self.lookup(&key, now_ns).is_some() {
            return Ok(()); // a retransmitted first fragment: the note stands
        }
        if self.notes.len() >= self.capacity {
            return Err(TableFull);
        }
        let pos = self.popped + self.notes.len() as u64;
        self.notes.push_back(Note {
            key,
            new_addr,
            expires_at: now_ns + self.lifetime_ns,
        });
        let h = self.hash(&key);
        let (notes, popped, hasher) = (&self.notes, self.popped, &self.hasher);
        self.index.insert_unique(h, pos, |&p| {
            let k = &notes[(p - popped) as usize].key;
            hasher.hash_one((k.src, k.dst, k.ident, k.protocol, k.from as u8))
        });
        Ok(())
    }

    /// Whether [`FragmentTable::remember`] would take `key` now: checked before a first
    /// fragment opens a session, so that one the table cannot note changes nothing.
    pub fn has_room_for(&mut self, key: &FragmentKey, now_ns: u64) -> bool {
        self.expire(now_ns);
        self.notes.len() < self.capacity || self.lookup(key, now_ns).is_some()
    }

    /// The rewrite for a later fragment, if its first fragment was seen and is still recent.
    pub fn lookup(&self, key: &FragmentKey, now_ns: u64) -> Option<u32> {
        let popped = self.popped;
        let pos = self.index.find(self.hash(key), |&p| {
            self.notes[(p - popped) as usize].key == *key
        })?;
        let note = &self.notes[(pos - popped) as usize];
        (note.expires_at > now_ns).then_some(note.new_addr)
    }

    pub fn len(&self) -> usize {
        self.notes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.notes.is_empty()
    }

    pub fn heap_bytes(&self) -> usize {
        self.notes.capacity() * std::mem::size_of::<Note>() + self.index.capacity() * 9
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ident: u16) -> FragmentKey {
        FragmentKey {
            src: 1,
            dst: 2,
            ident,
            protocol: 17,
            from: Side::Inside,
        }
    }

    #[test]
    fn remembers_until_lifetime_and_is_bounded() {
        let mut t = FragmentTable::new(2, 1000);
        t.remember(key(1), 10, 0).unwrap();
        t.remember(key(2), 20, 100).unwrap();
        assert_eq!(t.remember(key(3), 30, 200), Err(TableFull));
        assert_eq!(t.lookup(&key(1), 999), Some(10));
        assert_eq!(t.lookup(&key(1), 1000), None);
        // The first note expires, making room.
        t.remember(key(3), 30, 1000).unwrap();
        assert_eq!(t.lookup(&key(2), 1000), Some(20));
        assert_eq!(t.lookup(&key(3), 1000), Some(30));
        assert_eq!(
            t.lookup(
                &FragmentKey {
                    from: Side::Outside,
                    ..key(3)
                },
                1000
            ),
            None
        );
        assert_eq!(t.len(), 2);
    }
}
