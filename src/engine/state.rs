//! Translation state of one worker: mappings (endpoint-independent, RFC 4787), the sessions
//! on them (one per remote endpoint, for filtering, TCP state and the log), and subscribers.
//!
//! Memory is what limits a CGN, so records live in flat vectors addressed by `u32` and the
//! hash indexes hold only those numbers ([`TagTable`]: 4 bytes + a 1-byte tag per slot);
//! keys are compared through the records. Everything is reserved up front from the
//! configured capacity, so the packet path does not allocate.

use std::net::Ipv4Addr;

use hashbrown::HashMap;

use super::Side;
use super::huge::HugeArray;
use super::table::{self, KeyedHash, Slot, TagTable};
use crate::engine::ports::{Pairing, Proto};
use crate::wire::checksum::Delta;

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

impl Mapping {
    /// The flow key, seen from `from`, of a session of this mapping toward `remote`: what
    /// [`Session::flow_key`] gives for it.
    #[inline]
    pub fn flow_key(&self, from: Side, remote: (u32, u16)) -> FlowKey {
        let local = match from {
            Side::Inside => (self.inside_ip, self.inside_port),
            Side::Outside => (self.public_ip, self.public_port),
        };
        FlowKey {
            proto: self.proto,
            from,
            local_ip: local.0,
            local_port: local.1,
            remote_ip: remote.0,
            remote_port: remote.1,
        }
    }
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

/// One mapping used toward one remote endpoint: the flow both ways. 32 bytes, so two share
/// a cache line. It carries its own copy of the mapping's endpoints and the checksum changes
/// of its rewrite (RFC 1624), so an established packet needs this record and nothing else.
#[derive(Debug, Clone, Copy)]
pub struct Session {
    pub inside_ip: u32,
    pub public_ip: u32,
    pub remote_ip: u32,
    /// Timer-wheel tick at which the session expires unless refreshed.
    pub expires_tick: u32,
    /// The tick this session's live timer entry sits at (`u32::MAX`: none).
    pub scheduled_tick: u32,
    pub inside_port: u16,
    pub public_port: u16,
    pub remote_port: u16,
    /// Folded change of the IP header checksum when inside becomes public (outbound);
    /// inbound applies its undo.
    pub ip_delta: u16,
    /// The same for the transport checksum (pseudo-header included for TCP and UDP).
    pub l4_delta: u16,
    pub proto: Proto,
    /// TCP state bits ([`tcp_state`]), or [`VACANT`] for a free slot.
    pub tcp: u8,
}

/// `Session::tcp` of a free slot (no TCP state uses the top bit).
pub const VACANT: u8 = 0x80;

impl Session {
    /// A new session on mapping `m` toward (`remote_ip`, `remote_port`).
    pub fn new(m: &Mapping, remote_ip: u32, remote_port: u16, tcp: u8, expires_tick: u32) -> Self {
        let mut ip = Delta::default();
        ip.dword(m.inside_ip, m.public_ip);
        let mut l4 = Delta::default();
        l4.word(m.inside_port, m.public_port);
        if m.proto != Proto::Icmp {
            l4.merge(ip); // the pseudo-header carries the address
        }
        Session {
            inside_ip: m.inside_ip,
            public_ip: m.public_ip,
            remote_ip,
            expires_tick,
            scheduled_tick: u32::MAX,
            inside_port: m.inside_port,
            public_port: m.public_port,
            remote_port,
            ip_delta: ip.folded(),
            l4_delta: l4.folded(),
            proto: m.proto,
            tcp,
        }
    }

    /// The mapping this session was made on, from its own copy (no session count).
    #[inline]
    pub fn mapping(&self) -> Mapping {
        Mapping {
            inside_ip: self.inside_ip,
            public_ip: self.public_ip,
            inside_port: self.inside_port,
            public_port: self.public_port,
            proto: self.proto,
            sessions: 0,
        }
    }

    pub fn is_vacant(&self) -> bool {
        self.tcp & VACANT != 0
    }

    /// The key of this session's flow seen from `from`.
    #[inline]
    pub fn flow_key(&self, from: Side) -> FlowKey {
        self.mapping()
            .flow_key(from, (self.remote_ip, self.remote_port))
    }
}

/// What a packet is looked up by: its own 5-tuple and the side it came from. The local
/// endpoint is the subscriber's (from the inside) or the public one (from the outside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowKey {
    pub proto: Proto,
    pub from: Side,
    pub local_ip: u32,
    pub local_port: u16,
    pub remote_ip: u32,
    pub remote_port: u16,
}

impl FlowKey {
    #[inline]
    fn words(&self) -> (u64, u64) {
        (
            (self.local_ip as u64) << 32 | self.remote_ip as u64,
            (self.local_port as u64) << 32
                | (self.remote_port as u64) << 16
                | (self.proto as u64) << 8
                | self.from as u64,
        )
    }
}

/// A flow table value: the session, with the side in the top bit so that a session's two
/// entries are told apart even in one bucket.
fn flow_value(session: u32, from: Side) -> u32 {
    session | (from as u32) << 31
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

/// A record that can stand in a [`Slab`]'s free list: a vacant one holds the next free slot.
trait Vacancy: Copy {
    fn vacant(next: u32) -> Self;
    fn next_vacant(&self) -> u32;
}

impl Vacancy for Session {
    fn vacant(next: u32) -> Self {
        Session {
            inside_ip: 0,
            public_ip: 0,
            remote_ip: next,
            expires_tick: 0,
            scheduled_tick: u32::MAX,
            inside_port: 0,
            public_port: 0,
            remote_port: 0,
            ip_delta: 0,
            l4_delta: 0,
            proto: Proto::Tcp,
            tcp: VACANT,
        }
    }
    fn next_vacant(&self) -> u32 {
        self.remote_ip
    }
}

impl Vacancy for Mapping {
    fn vacant(next: u32) -> Self {
        Mapping {
            inside_ip: next,
            public_ip: 0,
            inside_port: 0,
            public_port: 0,
            proto: Proto::Tcp,
            sessions: 0,
        }
    }
    fn next_vacant(&self) -> u32 {
        self.inside_ip
    }
}

/// A fixed array of records; free slots are chained through the records themselves, so
/// the free list costs no memory of its own. Sized once: the packet path never allocates.
#[derive(Debug)]
struct Slab<T: Copy> {
    items: HugeArray<T>,
    /// Slots ever used: the ones past it have never held a record.
    used: usize,
    free_head: u32,
    live: usize,
}

impl<T: Vacancy> Slab<T> {
    fn with_capacity(n: usize) -> Self {
        Slab {
            // SAFETY: every record type here is plain integers and a `u8` enum whose zero
            // is a variant; slots past `used` are never read as records.
            items: unsafe { HugeArray::zeroed(n) },
            used: 0,
            free_head: NONE,
            live: 0,
        }
    }
    /// Stores `item`; `None` when every slot is taken.
    fn insert(&mut self, item: T) -> Option<u32> {
        let i = if self.free_head != NONE {
            let i = self.free_head;
            self.free_head = self.items[i as usize].next_vacant();
            i
        } else if self.used < self.items.len() {
            self.used += 1;
            (self.used - 1) as u32
        } else {
            return None;
        };
        self.items[i as usize] = item;
        self.live += 1;
        Some(i)
    }
    fn remove(&mut self, i: u32) {
        self.items[i as usize] = T::vacant(self.free_head);
        self.free_head = i;
        self.live -= 1;
    }
    fn live(&self) -> usize {
        self.live
    }
    fn bytes(&self) -> usize {
        self.items.bytes()
    }
    fn commit(&mut self) {
        self.items.commit();
    }
}

fn endpoint_key(proto: Proto, ip: u32, port: u16) -> u64 {
    ((ip as u64) << 24) | ((port as u64) << 8) | proto as u64
}

/// The translation state of one worker. Three indexes, all [`TagTable`]s sized once from
/// the session capacity: mappings by inside endpoint (new flows of a known subscriber
/// endpoint: endpoint-independent mapping), mappings by public endpoint (new flows from the
/// Internet: filtering), and sessions by their packets' 5-tuple from either side — the one
/// probe an established packet costs.
#[derive(Debug)]
pub struct NatState {
    mappings: Slab<Mapping>,
    sessions: Slab<Session>,
    by_inside: TagTable,
    by_public: TagTable,
    flows: TagTable,
    pub subscribers: HashMap<u32, Subscriber>,
    hasher: KeyedHash,
    capacity: usize,
}

impl NatState {
    pub fn with_capacity(sessions: usize) -> NatState {
        // The flow table's values spend their top bit on the side.
        let sessions = sessions.min(1 << 31);
        NatState {
            mappings: Slab::with_capacity(sessions),
            sessions: Slab::with_capacity(sessions),
            by_inside: TagTable::with_capacity(sessions),
            by_public: TagTable::with_capacity(sessions),
            flows: TagTable::with_capacity(2 * sessions),
            // Subscribers usually hold many sessions each; the map grows if they do not.
            subscribers: HashMap::with_capacity(sessions / 64),
            hasher: KeyedHash::random(),
            capacity: sessions,
        }
    }

    fn endpoint_slot(&self, table: &TagTable, proto: Proto, ip: u32, port: u16) -> Slot {
        table.slot(self.hasher.hash(endpoint_key(proto, ip, port), 0))
    }

    /// Where `key` lives in the flow table: hash once, then prefetch and find with it.
    #[inline]
    pub fn flow_slot(&self, key: &FlowKey) -> Slot {
        let (a, b) = key.words();
        self.flows.slot(self.hasher.hash(a, b))
    }

    pub fn mapping(&self, m: u32) -> &Mapping {
        &self.mappings.items[m as usize]
    }
    #[inline]
    pub fn session(&self, s: u32) -> &Session {
        &self.sessions.items[s as usize]
    }
    #[inline]
    pub fn session_mut(&mut self, s: u32) -> &mut Session {
        &mut self.sessions.items[s as usize]
    }
    pub fn live_sessions(&self) -> usize {
        self.sessions.live()
    }
    pub fn live_mappings(&self) -> usize {
        self.mappings.live()
    }
    /// No room for another session, or for the mapping a new session may need.
    pub fn is_full(&self) -> bool {
        self.sessions.live() >= self.capacity || self.mappings.live() >= self.capacity
    }

    pub fn find_by_inside(&self, proto: Proto, ip: u32, port: u16) -> Option<u32> {
        let items = &self.mappings.items;
        let slot = self.endpoint_slot(&self.by_inside, proto, ip, port);
        self.by_inside.find(slot, |m| {
            let r = &items[m as usize];
            r.inside_ip == ip && r.inside_port == port && r.proto == proto
        })
    }

    pub fn find_by_public(&self, proto: Proto, ip: u32, port: u16) -> Option<u32> {
        let items = &self.mappings.items;
        let slot = self.endpoint_slot(&self.by_public, proto, ip, port);
        self.by_public.find(slot, |m| {
            let r = &items[m as usize];
            r.public_ip == ip && r.public_port == port && r.proto == proto
        })
    }

    /// The session a packet with flow `key` belongs to, `slot` being `flow_slot(key)`.
    #[inline]
    pub fn find_flow_at(&self, slot: Slot, key: &FlowKey) -> Option<u32> {
        let items = &self.sessions.items;
        let side = key.from as u32;
        self.flows
            .find(slot, |v| {
                v >> 31 == side && items[(v & !(1 << 31)) as usize].flow_key(key.from) == *key
            })
            .map(|v| v & !(1 << 31))
    }

    pub fn find_flow(&self, key: &FlowKey) -> Option<u32> {
        self.find_flow_at(self.flow_slot(key), key)
    }

    /// Starts loading the flow table bucket of `slot` (batches: hash all, prefetch all).
    #[inline]
    pub fn prefetch_flow_bucket(&self, slot: Slot) {
        self.flows.prefetch(slot);
    }

    /// Starts loading the sessions whose tags match at `slot`'s home bucket (`slot` being
    /// `flow_slot(key)`): after this and [`NatState::prefetch_flow_bucket`], `find_flow_at`
    /// runs from cache. A frame whose flow is surely absent opens a session, whose first
    /// step probes the mapping index of its side (its inside endpoint's mapping, or the
    /// public endpoint it is addressed to): that bucket is loaded instead. (Not merely
    /// without a match at home: an established flow placed in a later bucket would then
    /// cost a needless line from memory.)
    #[inline]
    pub fn prefetch_flow_sessions(&self, slot: Slot, key: &FlowKey) {
        let items = &self.sessions.items;
        let absent = self.flows.for_each_candidate(slot, |v| {
            if let Some(s) = items.get((v & !(1 << 31)) as usize) {
                table::prefetch(s);
            }
        });
        if absent {
            let index = match key.from {
                Side::Inside => &self.by_inside,
                Side::Outside => &self.by_public,
            };
            index.prefetch(self.endpoint_slot(index, key.proto, key.local_ip, key.local_port));
        }
    }

    /// Starts loading the flow table bucket where a new session of mapping `m` toward
    /// `remote` will put its flow seen from `from`. The batch prefetched only the bucket of
    /// the frame's own flow; at scale the other side's misses. Issued as soon as the mapping
    /// is known (for a new mapping, once its port is chosen), the load overlaps the work
    /// before the insert.
    #[inline]
    pub fn prefetch_session_flow(&self, m: &Mapping, from: Side, remote: (u32, u16)) {
        self.flows
            .prefetch(self.flow_slot(&m.flow_key(from, remote)));
    }

    /// Starts loading the public index's bucket of a new mapping: known only once its port
    /// is chosen, and a miss at scale.
    #[inline]
    pub fn prefetch_public_endpoint(&self, m: &Mapping) {
        let index = &self.by_public;
        index.prefetch(self.endpoint_slot(index, m.proto, m.public_ip, m.public_port));
    }

    /// The session of mapping `m` toward (`remote_ip`, `remote_port`): the flow of the
    /// mapping's inside endpoint to that remote.
    pub fn find_session(&self, m: u32, remote_ip: u32, remote_port: u16) -> Option<u32> {
        let r = self.mapping(m);
        self.find_flow(&FlowKey {
            proto: r.proto,
            from: Side::Inside,
            local_ip: r.inside_ip,
            local_port: r.inside_port,
            remote_ip,
            remote_port,
        })
    }

    /// Adds a mapping; `None` if the table is full, which the session limit prevents (a
    /// mapping lives only while it has a session).
    pub fn insert_mapping(&mut self, mapping: Mapping) -> Option<u32> {
        let m = self.mappings.insert(mapping)?;
        let inside = self.endpoint_slot(
            &self.by_inside,
            mapping.proto,
            mapping.inside_ip,
            mapping.inside_port,
        );
        let public = self.endpoint_slot(
            &self.by_public,
            mapping.proto,
            mapping.public_ip,
            mapping.public_port,
        );
        // Sized for the session capacity, which bounds the mappings: never full.
        let placed = self
            .by_inside
            .insert(inside, m)
            .and(self.by_public.insert(public, m));
        debug_assert!(placed.is_ok(), "mapping tables sized for the capacity");
        Some(m)
    }

    /// Removes a mapping with no sessions left; returns it so its port can be released.
    pub fn remove_mapping(&mut self, m: u32) -> Mapping {
        let r = self.mappings.items[m as usize];
        debug_assert_eq!(r.sessions, 0);
        let inside = self.endpoint_slot(&self.by_inside, r.proto, r.inside_ip, r.inside_port);
        let public = self.endpoint_slot(&self.by_public, r.proto, r.public_ip, r.public_port);
        self.by_inside.remove(inside, m);
        self.by_public.remove(public, m);
        self.mappings.remove(m);
        r
    }

    /// Adds a session of mapping `m`, indexed from both sides; `None` if the table is full
    /// (callers check [`NatState::is_full`] first).
    pub fn insert_session(&mut self, m: u32, session: Session) -> Option<u32> {
        let s = self.sessions.insert(session)?;
        self.mappings.items[m as usize].sessions += 1;
        for from in [Side::Inside, Side::Outside] {
            let slot = self.flow_slot(&session.flow_key(from));
            let placed = self.flows.insert(slot, flow_value(s, from));
            debug_assert!(placed.is_ok(), "flow table sized for the capacity");
        }
        Some(s)
    }

    /// Removes a session; returns it and, with its mapping, whether that mapping has no
    /// sessions left (`None` only if the mapping were missing, which no path allows).
    pub fn remove_session(&mut self, s: u32) -> (Session, Option<(u32, bool)>) {
        let r = self.sessions.items[s as usize];
        for from in [Side::Inside, Side::Outside] {
            let slot = self.flow_slot(&r.flow_key(from));
            self.flows.remove(slot, flow_value(s, from));
        }
        self.sessions.remove(s);
        let Some(m) = self.find_by_inside(r.proto, r.inside_ip, r.inside_port) else {
            debug_assert!(false, "a live session's mapping is live");
            return (r, None);
        };
        let mapping = &mut self.mappings.items[m as usize];
        mapping.sessions -= 1;
        (r, Some((m, mapping.sessions == 0)))
    }

    /// The index of every live session.
    pub fn live_session_ids(&self) -> Vec<u32> {
        (0..self.sessions.used as u32)
            .filter(|&s| !self.sessions.items[s as usize].is_vacant())
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

    /// Bytes held by the state (memory accounting; capacity, not just live records).
    pub fn heap_bytes(&self) -> usize {
        self.mapped_bytes()
            + self.subscribers.capacity() * (std::mem::size_of::<(u32, Subscriber)>() + 1)
    }

    /// Backs every table with memory now ([`HugeArray::commit`]): no page faults on the
    /// packet path later.
    pub fn commit_memory(&mut self) {
        self.mappings.commit();
        self.sessions.commit();
        self.by_inside.commit();
        self.by_public.commit();
        self.flows.commit();
    }

    /// Bytes of the tables mapped outside the heap (records and indexes, all reserved up
    /// front): what an allocator-level count misses.
    pub fn mapped_bytes(&self) -> usize {
        self.mappings.bytes()
            + self.sessions.bytes()
            + self.by_inside.bytes()
            + self.by_public.bytes()
            + self.flows.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory per session is a product goal: records must not grow by accident.
    #[test]
    fn records_stay_compact() {
        assert_eq!(std::mem::size_of::<Session>(), 32);
        assert_eq!(std::mem::size_of::<Mapping>(), 20);
        assert!(std::mem::size_of::<Subscriber>() <= 24);
    }

    #[test]
    fn sessions_and_mappings_are_found_and_removed() {
        let mut st = NatState::with_capacity(16);
        let m = st
            .insert_mapping(Mapping {
                inside_ip: 1,
                public_ip: 2,
                inside_port: 3,
                public_port: 4,
                proto: Proto::Udp,
                sessions: 0,
            })
            .unwrap();
        let s = st
            .insert_session(m, Session::new(st.mapping(m), 9, 53, 0, 1))
            .unwrap();
        assert_eq!(st.find_by_inside(Proto::Udp, 1, 3), Some(m));
        assert_eq!(st.find_by_inside(Proto::Tcp, 1, 3), None);
        assert_eq!(st.find_by_public(Proto::Udp, 2, 4), Some(m));
        assert_eq!(st.find_session(m, 9, 53), Some(s));
        assert_eq!(st.find_session(m, 9, 54), None);
        // What a new session's prefetch loads is where its flows were put.
        let key = |from| st.mapping(m).flow_key(from, (9, 53));
        assert_eq!(
            (key(Side::Inside).local_ip, key(Side::Inside).local_port),
            (1, 3)
        );
        assert_eq!(
            (key(Side::Outside).local_ip, key(Side::Outside).local_port),
            (2, 4)
        );
        for from in [Side::Inside, Side::Outside] {
            assert_eq!(st.find_flow(&key(from)), Some(s), "{from:?}");
        }
        let (_, mapping) = st.remove_session(s);
        assert_eq!(mapping, Some((m, true)));
        assert_eq!(st.find_session(m, 9, 53), None);
        st.remove_mapping(m);
        assert_eq!(st.find_by_public(Proto::Udp, 2, 4), None);
        assert_eq!(st.live_sessions() + st.live_mappings(), 0);
    }
}
