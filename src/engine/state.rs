//! Translation state of one worker: mappings (endpoint-independent, RFC 4787), the sessions
//! on them (one per remote endpoint, for filtering, TCP state and the log), and subscribers.
//!
//! Memory is what limits a CGN, so records live in flat vectors addressed by `u32` and the
//! hash tables hold only those indices (`hashbrown::HashTable<u32>`: 4 bytes + 1 control
//! byte per bucket); keys are compared through the records. Everything is reserved up front
//! from the configured capacity, so the packet path does not allocate.

use std::hash::BuildHasher;
use std::net::Ipv4Addr;

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};

use crate::engine::ports::{Pairing, Proto};

pub const NONE: u32 = u32::MAX;

/// (protocol, inside address, inside port) ↔ (public address, public port), shared by every
/// session the inside endpoint has.
#[derive(Debug, Clone, Copy)]
pub struct Mapping {
    pub inside_ip: u32,
    pub public_ip: u32,
    pub inside_port: u16,
    pub public_port: u16,
    pub proto: Proto,
    /// Live sessions on this mapping; the mapping ends with its last session.
    pub sessions: u32,
}

/// TCP state bits kept per session (RFC 7857 §2 / RFC 5382 REQ-5 timers).
pub mod tcp_state {
    pub const SYN_OUT: u8 = 1;
    pub const SYN_IN: u8 = 2;
    pub const FIN_OUT: u8 = 4;
    pub const FIN_IN: u8 = 8;
    pub const RST: u8 = 16;
    /// Opened by a non-SYN packet (picked up mid-stream, e.g. after a restart).
    pub const MIDSTREAM: u8 = 32;
    pub const ESTABLISHED: u8 = 64;
}

/// One mapping used toward one remote endpoint. 20 bytes.
#[derive(Debug, Clone, Copy)]
pub struct Session {
    /// Index of the mapping; `NONE` marks a free slot.
    pub mapping: u32,
    pub remote_ip: u32,
    pub remote_port: u16,
    pub tcp: u8,
    /// Timer-wheel tick at which the session expires unless refreshed.
    pub expires_tick: u32,
    /// The tick this session's live timer entry sits at (`u32::MAX`: none).
    pub scheduled_tick: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct Subscriber {
    pub pairing: Pairing,
    pub sessions: u32,
    /// Mappings per protocol (at most one per port, so 16 bits suffice).
    pub mappings: [u16; 3],
}

impl Subscriber {
    fn mapping_total(&self) -> u32 {
        self.mappings.iter().map(|m| *m as u32).sum()
    }
}

/// A flat vector of records with a free list.
#[derive(Debug)]
struct Slab<T> {
    items: Vec<T>,
    free: Vec<u32>,
}

impl<T> Slab<T> {
    fn with_capacity(n: usize) -> Self {
        Slab {
            items: Vec::with_capacity(n),
            free: Vec::with_capacity(n),
        }
    }
    fn insert(&mut self, item: T) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.items[i as usize] = item;
                i
            }
            None => {
                self.items.push(item);
                (self.items.len() - 1) as u32
            }
        }
    }
    fn remove(&mut self, i: u32) {
        self.free.push(i);
    }
    fn live(&self) -> usize {
        self.items.len() - self.free.len()
    }
    fn heap_bytes(&self) -> usize {
        self.items.capacity() * std::mem::size_of::<T>() + self.free.capacity() * 4
    }
}

fn endpoint_key(proto: Proto, ip: u32, port: u16) -> u64 {
    ((ip as u64) << 24) | ((port as u64) << 8) | proto as u64
}

#[derive(Debug)]
pub struct NatState {
    mappings: Slab<Mapping>,
    sessions: Slab<Session>,
    by_inside: HashTable<u32>,
    by_public: HashTable<u32>,
    by_remote: HashTable<u32>,
    pub subscribers: HashMap<u32, Subscriber>,
    hasher: DefaultHashBuilder,
    capacity: usize,
}

impl NatState {
    pub fn with_capacity(sessions: usize) -> NatState {
        NatState {
            mappings: Slab::with_capacity(sessions),
            sessions: Slab::with_capacity(sessions),
            by_inside: HashTable::with_capacity(sessions),
            by_public: HashTable::with_capacity(sessions),
            by_remote: HashTable::with_capacity(sessions),
            // Subscribers usually hold many sessions each; the map grows if they do not.
            subscribers: HashMap::with_capacity(sessions / 16),
            hasher: DefaultHashBuilder::default(),
            capacity: sessions,
        }
    }

    fn hash_endpoint(&self, proto: Proto, ip: u32, port: u16) -> u64 {
        self.hasher.hash_one(endpoint_key(proto, ip, port))
    }

    fn hash_session(&self, mapping: u32, remote_ip: u32, remote_port: u16) -> u64 {
        self.hasher
            .hash_one(((mapping as u64) << 32 | remote_ip as u64, remote_port))
    }

    pub fn mapping(&self, m: u32) -> &Mapping {
        &self.mappings.items[m as usize]
    }
    pub fn session(&self, s: u32) -> &Session {
        &self.sessions.items[s as usize]
    }
    pub fn session_mut(&mut self, s: u32) -> &mut Session {
        &mut self.sessions.items[s as usize]
    }
    pub fn live_sessions(&self) -> usize {
        self.sessions.live()
    }
    pub fn live_mappings(&self) -> usize {
        self.mappings.live()
    }
    pub fn is_full(&self) -> bool {
        self.sessions.live() >= self.capacity
    }

    pub fn find_by_inside(&self, proto: Proto, ip: u32, port: u16) -> Option<u32> {
        let items = &self.mappings.items;
        self.by_inside
            .find(self.hash_endpoint(proto, ip, port), |&m| {
                let r = &items[m as usize];
                r.inside_ip == ip && r.inside_port == port && r.proto == proto
            })
            .copied()
    }

    pub fn find_by_public(&self, proto: Proto, ip: u32, port: u16) -> Option<u32> {
        let items = &self.mappings.items;
        self.by_public
            .find(self.hash_endpoint(proto, ip, port), |&m| {
                let r = &items[m as usize];
                r.public_ip == ip && r.public_port == port && r.proto == proto
            })
            .copied()
    }

    pub fn find_session(&self, mapping: u32, remote_ip: u32, remote_port: u16) -> Option<u32> {
        let items = &self.sessions.items;
        self.by_remote
            .find(self.hash_session(mapping, remote_ip, remote_port), |&s| {
                let r = &items[s as usize];
                r.mapping == mapping && r.remote_ip == remote_ip && r.remote_port == remote_port
            })
            .copied()
    }

    pub fn insert_mapping(&mut self, mapping: Mapping) -> u32 {
        let m = self.mappings.insert(mapping);
        let hi = self.hash_endpoint(mapping.proto, mapping.inside_ip, mapping.inside_port);
        let hp = self.hash_endpoint(mapping.proto, mapping.public_ip, mapping.public_port);
        let (items, hasher) = (&self.mappings.items, &self.hasher);
        self.by_inside.insert_unique(hi, m, |&x| {
            let r = &items[x as usize];
            hasher.hash_one(endpoint_key(r.proto, r.inside_ip, r.inside_port))
        });
        self.by_public.insert_unique(hp, m, |&x| {
            let r = &items[x as usize];
            hasher.hash_one(endpoint_key(r.proto, r.public_ip, r.public_port))
        });
        m
    }

    /// Removes a mapping with no sessions left; returns it so its port can be released.
    pub fn remove_mapping(&mut self, m: u32) -> Mapping {
        let r = self.mappings.items[m as usize];
        debug_assert_eq!(r.sessions, 0);
        let hi = self.hash_endpoint(r.proto, r.inside_ip, r.inside_port);
        let hp = self.hash_endpoint(r.proto, r.public_ip, r.public_port);
        if let Ok(e) = self.by_inside.find_entry(hi, |&x| x == m) {
            e.remove();
        }
        if let Ok(e) = self.by_public.find_entry(hp, |&x| x == m) {
            e.remove();
        }
        self.mappings.remove(m);
        r
    }

    pub fn insert_session(&mut self, session: Session) -> u32 {
        let h = self.hash_session(session.mapping, session.remote_ip, session.remote_port);
        let s = self.sessions.insert(session);
        self.mappings.items[session.mapping as usize].sessions += 1;
        let (items, this) = (&self.sessions.items, &self.hasher);
        self.by_remote.insert_unique(h, s, |&x| {
            let r = &items[x as usize];
            this.hash_one(((r.mapping as u64) << 32 | r.remote_ip as u64, r.remote_port))
        });
        s
    }

    /// Removes a session; returns it and whether its mapping has no sessions left.
    pub fn remove_session(&mut self, s: u32) -> (Session, bool) {
        let r = self.sessions.items[s as usize];
        let h = self.hash_session(r.mapping, r.remote_ip, r.remote_port);
        if let Ok(e) = self.by_remote.find_entry(h, |&x| x == s) {
            e.remove();
        }
        let slot = &mut self.sessions.items[s as usize];
        slot.mapping = NONE;
        slot.scheduled_tick = u32::MAX;
        self.sessions.remove(s);
        let m = &mut self.mappings.items[r.mapping as usize];
        m.sessions -= 1;
        (r, m.sessions == 0)
    }

    /// The index of every live session (a slot whose `mapping` is set).
    pub fn live_session_ids(&self) -> Vec<u32> {
        (0..self.sessions.items.len() as u32)
            .filter(|&s| self.sessions.items[s as usize].mapping != NONE)
            .collect()
    }

    pub fn subscriber(&mut self, ip: Ipv4Addr) -> Option<&mut Subscriber> {
        self.subscribers.get_mut(&u32::from(ip))
    }

    /// Drops a subscriber record once it holds no mapping; returns its pairing to release.
    pub fn forget_subscriber_if_idle(&mut self, ip: u32) -> Option<Pairing> {
        let sub = self.subscribers.get(&ip)?;
        if sub.mapping_total() == 0 && sub.sessions == 0 {
            return self.subscribers.remove(&ip).map(|s| s.pairing);
        }
        None
    }

    /// Heap bytes held by the state (memory accounting; capacity, not just live records).
    pub fn heap_bytes(&self) -> usize {
        let table = |t: &HashTable<u32>| t.capacity() * 5 + 16;
        self.mappings.heap_bytes()
            + self.sessions.heap_bytes()
            + table(&self.by_inside)
            + table(&self.by_public)
            + table(&self.by_remote)
            + self.subscribers.capacity() * (std::mem::size_of::<(u32, Subscriber)>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory per session is a product goal: records must not grow by accident.
    #[test]
    fn records_stay_compact() {
        assert_eq!(std::mem::size_of::<Session>(), 20);
        assert_eq!(std::mem::size_of::<Mapping>(), 20);
        assert!(std::mem::size_of::<Subscriber>() <= 24);
    }

    #[test]
    fn sessions_and_mappings_are_found_and_removed() {
        let mut st = NatState::with_capacity(16);
        let m = st.insert_mapping(Mapping {
            inside_ip: 1,
            public_ip: 2,
            inside_port: 3,
            public_port: 4,
            proto: Proto::Udp,
            sessions: 0,
        });
        let s = st.insert_session(Session {
            mapping: m,
            remote_ip: 9,
            remote_port: 53,
            tcp: 0,
            expires_tick: 1,
            scheduled_tick: 1,
        });
        assert_eq!(st.find_by_inside(Proto::Udp, 1, 3), Some(m));
        assert_eq!(st.find_by_inside(Proto::Tcp, 1, 3), None);
        assert_eq!(st.find_by_public(Proto::Udp, 2, 4), Some(m));
        assert_eq!(st.find_session(m, 9, 53), Some(s));
        assert_eq!(st.find_session(m, 9, 54), None);
        let (_, idle) = st.remove_session(s);
        assert!(idle);
        assert_eq!(st.find_session(m, 9, 53), None);
        st.remove_mapping(m);
        assert_eq!(st.find_by_public(Proto::Udp, 2, 4), None);
        assert_eq!(st.live_sessions() + st.live_mappings(), 0);
    }
}
