//! Public ports: which (public IP, port) pairs a worker owns, and how it hands them out.
//!
//! Three allocation modes share one shape: a subscriber is paired with one public address
//! (RFC 4787 REQ-2, "paired" pooling) and draws ports from it —
//! * dynamic: any free port of the worker's share, in shuffled FIFO order (random choice,
//!   longest possible time before a port is reused);
//! * port-block: contiguous blocks of `block_size` ports taken on demand and released when
//!   empty, so the log needs one record per block rather than per session;
//! * deterministic (RFC 7422): the subscriber's block is computed from config alone.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::config::{AllocationMode, Config, Ipv4Prefix};
use crate::rng::SplitMix64;
pub use crate::rss::partition::{Partition, PortSet};

mod rest;
#[cfg(test)]
mod tests;
pub use rest::RestingRange;

/// Transport protocols with their own port space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Proto {
    Tcp = 0,
    Udp = 1,
    /// ICMP query identifiers (echo), treated as ports.
    Icmp = 2,
}

impl Proto {
    pub const ALL: [Proto; 3] = [Proto::Tcp, Proto::Udp, Proto::Icmp];

    pub fn from_ip_protocol(p: u8) -> Option<Proto> {
        match p {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            1 => Some(Proto::Icmp),
            _ => None,
        }
    }

    pub fn ip_protocol(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Icmp => 1,
        }
    }
}

/// The public addresses of the pool, in order, without the excluded ones.
pub fn pool_addresses(public: &[Ipv4Prefix], exclude: &[Ipv4Addr]) -> Vec<Ipv4Addr> {
    public
        .iter()
        .flat_map(|p| (0..p.size()).filter_map(move |i| p.nth(i)))
        .filter(|a| !exclude.contains(a))
        .collect()
}

/// RFC 7422 deterministic mapping: subscriber i (counting through the subscriber prefixes in
/// order) gets public address i / per_address and ports
/// `port_min + (i % per_address) * ports_per_subscriber` onwards. The reverse function is what
/// the log reader uses to answer queries without any per-session record.
#[derive(Debug, Clone)]
pub struct Deterministic {
    subscribers: Vec<Ipv4Prefix>,
    public: Vec<Ipv4Addr>,
    port_min: u16,
    ports_per_subscriber: u16,
    per_address: u32,
}

impl Deterministic {
    pub fn from_config(cfg: &Config) -> Option<Deterministic> {
        let AllocationMode::Deterministic {
            ports_per_subscriber,
        } = cfg.allocation.mode
        else {
            return None;
        };
        let range = cfg.allocation.port_max as u32 - cfg.allocation.port_min as u32 + 1;
        Some(Deterministic {
            subscribers: cfg.pool.subscribers.clone(),
            public: pool_addresses(&cfg.pool.public, &cfg.pool.exclude),
            port_min: cfg.allocation.port_min,
            ports_per_subscriber,
            per_address: (range / ports_per_subscriber as u32).max(1),
        })
    }

    /// Position of a subscriber address in the subscriber prefixes.
    pub fn subscriber_index(&self, ip: Ipv4Addr) -> Option<u64> {
        let mut base = 0;
        for p in &self.subscribers {
            if p.contains(ip) {
                return Some(base + (u32::from(ip) - u32::from(p.addr)) as u64);
            }
            base += p.size();
        }
        None
    }

    fn subscriber_at(&self, mut index: u64) -> Option<Ipv4Addr> {
        for p in &self.subscribers {
            if index < p.size() {
                return p.nth(index);
            }
            index -= p.size();
        }
        None
    }

    /// Subscriber → (public address, first port, last port).
    pub fn forward(&self, subscriber: Ipv4Addr) -> Option<(Ipv4Addr, u16, u16)> {
        let i = self.subscriber_index(subscriber)?;
        self.range_of_index(i)
    }

    pub fn range_of_index(&self, i: u64) -> Option<(Ipv4Addr, u16, u16)> {
        let addr = *self.public.get((i / self.per_address as u64) as usize)?;
        let first = self.port_min as u32
            + (i % self.per_address as u64) as u32 * self.ports_per_subscriber as u32;
        Some((
            addr,
            first as u16,
            (first + self.ports_per_subscriber as u32 - 1) as u16,
        ))
    }

    /// (public address, port) → the subscriber whose range holds it.
    pub fn reverse(&self, public: Ipv4Addr, port: u16) -> Option<Ipv4Addr> {
        let a = self.public.iter().position(|x| *x == public)? as u64;
        let offset =
            (port as u32).checked_sub(self.port_min as u32)? / self.ports_per_subscriber as u32;
        if offset >= self.per_address {
            return None;
        }
        self.subscriber_at(a * self.per_address as u64 + offset as u64)
    }

    /// Every (subscriber, first port, last port) with a range on `public`: the reader's
    /// answer when a server log has no source port.
    pub fn subscribers_on(&self, public: Ipv4Addr) -> Vec<(Ipv4Addr, u16, u16)> {
        let Some(a) = self.public.iter().position(|x| *x == public) else {
            return Vec::new();
        };
        let first = a as u64 * self.per_address as u64;
        (first..first + self.per_address as u64)
            .filter_map(|i| {
                let (_, lo, hi) = self.range_of_index(i)?;
                Some((self.subscriber_at(i)?, lo, hi))
            })
            .collect()
    }

    pub fn subscriber_count(&self) -> u64 {
        self.subscribers.iter().map(|p| p.size()).sum()
    }
}

/// Splits the pool between workers. Any disjoint split is valid for the engine; this one
/// balances load: dynamic mode deals 64-port stripes round-robin, port-block mode deals whole
/// blocks, deterministic mode deals whole subscriber ranges (subscriber i → worker i mod N).
/// The AF_XDP dataplane replaces this with RSS-aligned partitions.
pub fn partitions(cfg: &Config) -> Vec<Partition> {
    let workers = cfg.workers.count.max(1) as usize;
    let mut parts = vec![Partition::default(); workers];
    let (min, max) = (cfg.allocation.port_min, cfg.allocation.port_max);
    match cfg.allocation.mode {
        AllocationMode::Deterministic { .. } => {
            let det = Deterministic::from_config(cfg).expect("deterministic mode");
            for i in 0..det.subscriber_count() {
                let Some((addr, first, last)) = det.range_of_index(i) else {
                    break;
                };
                for port in first..=last {
                    parts[(i % workers as u64) as usize].insert(addr, port);
                }
            }
        }
        mode => {
            let unit = match mode {
                AllocationMode::PortBlock { block_size, .. } => block_size as u32,
                _ => 64,
            };
            for (a, addr) in pool_addresses(&cfg.pool.public, &cfg.pool.exclude)
                .into_iter()
                .enumerate()
            {
                // Stripe by stripe: one lookup per stripe, not per port.
                let mut first = min as u32;
                while first <= max as u32 {
                    let stripe = (first - min as u32) / unit;
                    let last = (first + unit - 1).min(max as u32);
                    parts[(stripe as usize + a) % workers].insert_range(
                        addr,
                        first as u16,
                        last as u16,
                    );
                    first = last + 1;
                }
            }
        }
    }
    parts
}

/// The worker of a subscriber among `workers` when nothing steers them: Fibonacci hashing
/// spreads consecutive addresses evenly. The traffic generator picks queues the same way.
pub fn spread_subscriber(ip: Ipv4Addr, workers: u16) -> u16 {
    ((u32::from(ip) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u16 % workers.max(1)
}

/// Which worker serves a subscriber, when the NIC decides it (RSS on the inside port).
#[derive(Clone)]
pub struct SubscriberSteering(pub Arc<dyn Fn(Ipv4Addr) -> u16 + Send + Sync>);

impl std::fmt::Debug for SubscriberSteering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubscriberSteering(..)")
    }
}

/// Who owns which state, for every worker: read-only, shared by all workers and drivers.
#[derive(Debug, Clone)]
pub struct Ownership {
    partitions: Vec<Partition>,
    deterministic: Option<Deterministic>,
    steering: Option<SubscriberSteering>,
}

impl Ownership {
    pub fn new(cfg: &Config, partitions: Vec<Partition>) -> Ownership {
        Ownership {
            partitions,
            deterministic: Deterministic::from_config(cfg),
            steering: None,
        }
    }

    /// Subscribers belong to the worker whose queue the inside NIC delivers them to.
    pub fn with_subscriber_steering(mut self, steering: SubscriberSteering) -> Ownership {
        self.steering = Some(steering);
        self
    }
    pub fn workers(&self) -> u16 {
        self.partitions.len() as u16
    }
    pub fn partition(&self, worker: u16) -> &Partition {
        &self.partitions[worker as usize]
    }
    /// The worker owning a public (address, port), if any.
    pub fn owner_of_public(&self, ip: Ipv4Addr, port: u16) -> Option<u16> {
        self.partitions
            .iter()
            .position(|p| p.contains(ip, port))
            .map(|w| w as u16)
    }
    /// Whether `ip` is one of the pool's public addresses.
    pub fn is_pool_address(&self, ip: Ipv4Addr) -> bool {
        self.partitions.iter().any(|p| p.ports(ip).is_some())
    }
    /// The worker that serves a subscriber's outbound traffic.
    pub fn owner_of_subscriber(&self, ip: Ipv4Addr) -> u16 {
        if let Some(steering) = &self.steering {
            return (steering.0)(ip);
        }
        let n = self.partitions.len() as u64;
        match &self.deterministic {
            Some(det) => det.subscriber_index(ip).map_or(0, |i| (i % n) as u16),
            None => spread_subscriber(ip, n as u16),
        }
    }
}

/// How long a released port or block rests before a new mapping may get it (RFC 6888
/// REQ-8 asks for at least 120 s). Without it, two subscribers could hold the same public
/// port seconds apart, and a server log with a slightly wrong clock would point at the
/// wrong one.
pub const REUSE_HOLD_NS: u64 = 120_000_000_000;

/// Free items (ports or block starts) handed out first-in first-out; released ones rest
/// in `cooling` for [`REUSE_HOLD_NS`] before they can be handed out again.
#[derive(Debug, Default)]
struct FreeList {
    ready: VecDeque<u16>,
    cooling: VecDeque<(u16, u64)>,
}

impl FreeList {
    fn new(items: Vec<u16>) -> FreeList {
        FreeList {
            ready: items.into(),
            cooling: VecDeque::new(),
        }
    }

    fn take(&mut self, now_ns: u64) -> Option<u16> {
        while let Some(&(item, released)) = self.cooling.front() {
            if released + REUSE_HOLD_NS > now_ns {
                break;
            }
            self.ready.push_back(item);
            self.cooling.pop_front();
        }
        self.ready.pop_front()
    }

    fn give_back(&mut self, item: u16, now_ns: u64) {
        self.cooling.push_back((item, now_ns));
    }

    fn len(&self) -> usize {
        self.ready.len() + self.cooling.len()
    }
}

/// One address of the worker's share and what is free on it.
#[derive(Debug)]
struct PoolAddr {
    ip: Ipv4Addr,
    /// Dynamic mode: free ports per protocol, shuffled.
    free_ports: [FreeList; 3],
    /// Port-block mode: first ports of free blocks, shuffled.
    free_blocks: FreeList,
}

impl PoolAddr {
    fn free_capacity(&self) -> usize {
        self.free_ports.iter().map(|q| q.len()).sum::<usize>() + self.free_blocks.len()
    }
}

/// What pairing weighs for one address. Kept apart from the free lists, so that choosing
/// the least used address reads one small array, 8 bytes an address, instead of every
/// address's lists (a few cache lines each): with a pool of 512 addresses that scan was
/// a seventh of a new session's instructions in the CSIT benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Load {
    /// Free ports (dynamic) or free blocks (port-block), resting ones included: the
    /// address's [`PoolAddr::free_capacity`], kept up to date as they are taken and given back.
    free: u32,
    /// Subscribers paired with the address.
    subscribers: u32,
}

impl Load {
    /// Larger is preferred: the most free capacity, then the fewest subscribers.
    fn preference(self) -> u64 {
        (u64::from(self.free) << 32) | u64::from(u32::MAX - self.subscribers)
    }
}

/// A block of contiguous ports held by one subscriber (port-block and deterministic modes).
#[derive(Debug, Clone)]
struct Block {
    pool: u16,
    first: u16,
    len: u16,
    /// Mappings using the block (all protocols).
    in_use: u32,
    /// Next block of the same subscriber, or `NONE`.
    next: u32,
}

pub const NONE: u32 = u32::MAX;

/// What the state layer keeps per subscriber that the allocator needs.
#[derive(Debug, Clone, Copy)]
pub struct Pairing {
    pub pool: u16,
    /// Head of the subscriber's block list (`NONE` when it holds no block).
    pub first_block: u32,
    pub blocks: u16,
}

/// A block that was taken or given back, for the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockChange {
    pub allocated: bool,
    pub public: Ipv4Addr,
    pub first: u16,
    pub last: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocError {
    /// No free port (or block) on the subscriber's address.
    Exhausted,
    /// The subscriber holds its maximum number of blocks and they are full.
    SubscriberLimit,
    /// Deterministic mode: the subscriber is outside the subscriber prefixes or its range is
    /// not in this worker's partition.
    NotOwner,
}

/// Hands out the worker's public ports.
#[derive(Debug)]
pub struct PortAllocator {
    mode: AllocationMode,
    addrs: Vec<PoolAddr>,
    /// Per address, indexed like `addrs`.
    loads: Vec<Load>,
    blocks: Vec<Block>,
    free_block_slots: Vec<u32>,
    /// Bitmaps of used ports per active block and protocol: `words_per_block * 3` words each.
    bitmaps: Vec<u64>,
    words_per_block: usize,
    deterministic: Option<Deterministic>,
    rng: SplitMix64,
}

impl PortAllocator {
    pub fn new(cfg: &Config, partition: &Partition, worker: u16) -> PortAllocator {
        // No seed in the config: replay's fixed default (`run` sets a fresh one per start).
        let seed = cfg.allocation.seed.unwrap_or(0);
        let mut rng = SplitMix64::new(seed ^ ((worker as u64) << 48));
        let (min, max) = (cfg.allocation.port_min, cfg.allocation.port_max);
        let addrs = partition
            .addrs()
            .map(|(ip, _)| PoolAddr {
                ip,
                free_ports: Default::default(),
                free_blocks: FreeList::default(),
            })
            .collect::<Vec<_>>();
        let mut alloc = PortAllocator {
            mode: cfg.allocation.mode,
            loads: vec![Load::default(); addrs.len()],
            addrs,
            blocks: Vec::new(),
            free_block_slots: Vec::new(),
            bitmaps: Vec::new(),
            words_per_block: 0,
            deterministic: Deterministic::from_config(cfg),
            rng: SplitMix64::new(0),
        };
        for (i, (_, set)) in partition.addrs().enumerate() {
            let owned = |p: &u16| *p >= min && *p <= max && set.contains(*p);
            match cfg.allocation.mode {
                AllocationMode::Dynamic => {
                    for q in alloc.addrs[i].free_ports.iter_mut() {
                        let mut ports: Vec<u16> = (min..=max).filter(owned).collect();
                        rng.shuffle(&mut ports);
                        *q = FreeList::new(ports);
                    }
                }
                AllocationMode::PortBlock { block_size, .. } => {
                    let mut firsts: Vec<u16> = (0..)
                        .map(|j: u32| min as u32 + j * block_size as u32)
                        .take_while(|f| f + block_size as u32 - 1 <= max as u32)
                        .map(|f| f as u16)
                        .filter(|f| set.contains_range(*f, f + (block_size - 1)))
                        .collect();
                    rng.shuffle(&mut firsts);
                    alloc.addrs[i].free_blocks = FreeList::new(firsts);
                }
                AllocationMode::Deterministic { .. } => {}
            }
        }
        alloc.words_per_block = match cfg.allocation.mode {
            AllocationMode::Dynamic => 0,
            AllocationMode::PortBlock { block_size, .. } => (block_size as usize).div_ceil(64),
            AllocationMode::Deterministic {
                ports_per_subscriber,
            } => (ports_per_subscriber as usize).div_ceil(64),
        };
        for (load, addr) in alloc.loads.iter_mut().zip(&alloc.addrs) {
            load.free = addr.free_capacity() as u32;
        }
        alloc.rng = rng;
        alloc
    }

    pub fn address(&self, pool: u16) -> Ipv4Addr {
        self.addrs[pool as usize].ip
    }

    /// Pairs a new subscriber with a public address: the least used one, or in deterministic
    /// mode the one config dictates.
    pub fn pair(&mut self, subscriber: Ipv4Addr) -> Result<Pairing, AllocError> {
        let pool = match &self.deterministic {
            Some(det) => {
                let (addr, ..) = det.forward(subscriber).ok_or(AllocError::NotOwner)?;
                self.addrs
                    .iter()
                    .position(|a| a.ip == addr)
                    .ok_or(AllocError::NotOwner)?
            }
            None => least_used(&self.loads).ok_or(AllocError::Exhausted)?,
        };
        self.loads[pool].subscribers += 1;
        Ok(Pairing {
            pool: pool as u16,
            first_block: NONE,
            blocks: 0,
        })
    }

    /// The subscriber has no mapping left: its address pairing ends.
    pub fn unpair(&mut self, pairing: &Pairing) {
        self.loads[pairing.pool as usize].subscribers -= 1;
    }

    /// Takes a port for a new mapping. `on_block` hears about blocks taken.
    pub fn allocate(
        &mut self,
        subscriber: Ipv4Addr,
        pairing: &mut Pairing,
        proto: Proto,
        now_ns: u64,
        on_block: impl FnOnce(BlockChange),
    ) -> Result<u16, AllocError> {
        match self.mode {
            AllocationMode::Dynamic => {
                let pool = pairing.pool as usize;
                let port = self.addrs[pool].free_ports[proto as usize]
                    .take(now_ns)
                    .ok_or(AllocError::Exhausted)?;
                self.loads[pool].free -= 1;
                Ok(port)
            }
            AllocationMode::PortBlock {
                max_blocks_per_subscriber,
                ..
            } => {
                if let Some(port) = self.take_from_held_blocks(pairing, proto) {
                    return Ok(port);
                }
                if pairing.blocks >= max_blocks_per_subscriber {
                    return Err(AllocError::SubscriberLimit);
                }
                let first = self.addrs[pairing.pool as usize]
                    .free_blocks
                    .take(now_ns)
                    .ok_or(AllocError::Exhausted)?;
                self.loads[pairing.pool as usize].free -= 1;
                let len = match self.mode {
                    AllocationMode::PortBlock { block_size, .. } => block_size,
                    _ => unreachable!(),
                };
                self.open_block(pairing, first, len, on_block);
                self.take_from_held_blocks(pairing, proto)
                    .ok_or(AllocError::Exhausted)
            }
            AllocationMode::Deterministic { .. } => {
                if let Some(port) = self.take_from_held_blocks(pairing, proto) {
                    return Ok(port);
                }
                if pairing.blocks > 0 {
                    return Err(AllocError::SubscriberLimit);
                }
                let det = self.deterministic.as_ref().ok_or(AllocError::NotOwner)?;
                let (_, first, last) = det.forward(subscriber).ok_or(AllocError::NotOwner)?;
                self.open_block(pairing, first, last - first + 1, on_block);
                self.take_from_held_blocks(pairing, proto)
                    .ok_or(AllocError::Exhausted)
            }
        }
    }

    /// Gives a mapping's port back. `on_block` hears about blocks released.
    pub fn release(
        &mut self,
        pairing: &mut Pairing,
        proto: Proto,
        port: u16,
        now_ns: u64,
        on_block: impl FnOnce(BlockChange),
    ) {
        if let AllocationMode::Dynamic = self.mode {
            self.addrs[pairing.pool as usize].free_ports[proto as usize].give_back(port, now_ns);
            self.loads[pairing.pool as usize].free += 1;
            return;
        }
        let mut prev = NONE;
        let mut b = pairing.first_block;
        while b != NONE {
            let block = &self.blocks[b as usize];
            if port >= block.first && port - block.first < block.len {
                let bit = (port - block.first) as usize;
                let base = self.bitmap_base(b, proto);
                self.bitmaps[base + bit / 64] &= !(1 << (bit % 64));
                self.blocks[b as usize].in_use -= 1;
                if self.blocks[b as usize].in_use == 0 {
                    self.close_block(pairing, prev, b, now_ns, on_block);
                }
                return;
            }
            prev = b;
            b = block.next;
        }
        debug_assert!(false, "released port {port} not in any held block");
    }

    fn bitmap_base(&self, block: u32, proto: Proto) -> usize {
        (block as usize * 3 + proto as usize) * self.words_per_block
    }

    fn take_from_held_blocks(&mut self, pairing: &Pairing, proto: Proto) -> Option<u16> {
        let mut b = pairing.first_block;
        while b != NONE {
            if let Some(port) = self.take_from_block(b, proto) {
                return Some(port);
            }
            b = self.blocks[b as usize].next;
        }
        None
    }

    /// Takes a free port of `block`, scanning from a random word so choices are not sequential.
    fn take_from_block(&mut self, b: u32, proto: Proto) -> Option<u16> {
        let (first, len) = (
            self.blocks[b as usize].first,
            self.blocks[b as usize].len as usize,
        );
        let base = self.bitmap_base(b, proto);
        let words = self.words_per_block;
        let start = self.rng.below(words as u32) as usize;
        for k in 0..words {
            let w = (start + k) % words;
            let word = self.bitmaps[base + w];
            // Bits past the block's end count as used.
            let valid = if (w + 1) * 64 <= len {
                u64::MAX
            } else {
                (1u64 << (len - w * 64)) - 1
            };
            let free = !word & valid;
            if free != 0 {
                let bit = free.trailing_zeros() as usize;
                self.bitmaps[base + w] |= 1 << bit;
                self.blocks[b as usize].in_use += 1;
                return Some(first + (w * 64 + bit) as u16);
            }
        }
        None
    }

    fn open_block(
        &mut self,
        pairing: &mut Pairing,
        first: u16,
        len: u16,
        on_block: impl FnOnce(BlockChange),
    ) {
        let block = Block {
            pool: pairing.pool,
            first,
            len,
            in_use: 0,
            next: pairing.first_block,
        };
        let slot = match self.free_block_slots.pop() {
            Some(s) => {
                self.blocks[s as usize] = block;
                s
            }
            None => {
                self.blocks.push(block);
                self.bitmaps
                    .resize(self.blocks.len() * 3 * self.words_per_block, 0);
                (self.blocks.len() - 1) as u32
            }
        };
        let base = self.bitmap_base(slot, Proto::Tcp);
        self.bitmaps[base..base + 3 * self.words_per_block].fill(0);
        pairing.first_block = slot;
        pairing.blocks += 1;
        on_block(BlockChange {
            allocated: true,
            public: self.addrs[pairing.pool as usize].ip,
            first,
            last: first + (len - 1),
        });
    }

    fn close_block(
        &mut self,
        pairing: &mut Pairing,
        prev: u32,
        b: u32,
        now_ns: u64,
        on_block: impl FnOnce(BlockChange),
    ) {
        let block = self.blocks[b as usize].clone();
        if prev == NONE {
            pairing.first_block = block.next;
        } else {
            self.blocks[prev as usize].next = block.next;
        }
        pairing.blocks -= 1;
        self.free_block_slots.push(b);
        if let AllocationMode::PortBlock { .. } = self.mode {
            self.addrs[block.pool as usize]
                .free_blocks
                .give_back(block.first, now_ns);
            self.loads[block.pool as usize].free += 1;
        }
        on_block(BlockChange {
            allocated: false,
            public: self.addrs[block.pool as usize].ip,
            first: block.first,
            last: block.first + (block.len - 1),
        });
    }

    /// Free ports (dynamic) or ports in free blocks, over all protocols.
    pub fn free_capacity(&self) -> usize {
        self.loads.iter().map(|l| l.free as usize).sum()
    }
}

/// The index of the address to pair a new subscriber with: the most preferred, the lowest
/// index among equals (so a fresh pool fills in order).
fn least_used(loads: &[Load]) -> Option<usize> {
    let mut best: Option<(usize, u64)> = None;
    for (i, load) in loads.iter().enumerate() {
        let preference = load.preference();
        if best.is_none_or(|(_, b)| preference > b) {
            best = Some((i, preference));
        }
    }
    best.map(|(i, _)| i)
}
