//! Which public (address, port) pairs a worker owns: the result of RSS steering, used by
//! the port allocator. It lives here, below the engine, so that steering does not depend on
//! the engine that consumes its result.

use std::net::Ipv4Addr;

/// A set of the 65,536 ports of one address.
#[derive(Clone)]
pub struct PortSet(Box<[u64; 1024]>);

impl std::fmt::Debug for PortSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PortSet({} ports)", self.len())
    }
}

impl Default for PortSet {
    fn default() -> Self {
        PortSet(Box::new([0; 1024]))
    }
}

impl PortSet {
    pub fn insert(&mut self, port: u16) {
        self.0[port as usize / 64] |= 1 << (port % 64);
    }
    pub fn contains(&self, port: u16) -> bool {
        self.0[port as usize / 64] & (1 << (port % 64)) != 0
    }
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..=u16::MAX).filter(|p| self.contains(*p))
    }
    /// Whether every port of `first ..= last` is in the set.
    pub fn contains_range(&self, first: u16, last: u16) -> bool {
        (first..=last).all(|p| self.contains(p))
    }
}

/// The (public IP, port) pairs one worker may hand out. Disjoint between workers.
#[derive(Debug, Clone, Default)]
pub struct Partition {
    /// In insertion order (the allocator walks addresses in this order).
    addrs: Vec<(Ipv4Addr, PortSet)>,
    /// Address → position in `addrs`: lookups on the packet path and while building a
    /// partition of a large pool cost O(1), not a walk over every address.
    index: hashbrown::HashMap<Ipv4Addr, usize>,
}

impl Partition {
    pub fn insert(&mut self, ip: Ipv4Addr, port: u16) {
        self.insert_range(ip, port, port);
    }
    /// Inserts the ports `first..=last` of `ip`.
    pub fn insert_range(&mut self, ip: Ipv4Addr, first: u16, last: u16) {
        let next = self.addrs.len();
        let i = *self.index.entry(ip).or_insert(next);
        if i == next {
            self.addrs.push((ip, PortSet::default()));
        }
        for port in first..=last {
            self.addrs[i].1.insert(port);
        }
    }
    pub fn contains(&self, ip: Ipv4Addr, port: u16) -> bool {
        self.ports(ip).is_some_and(|s| s.contains(port))
    }
    pub fn ports(&self, ip: Ipv4Addr) -> Option<&PortSet> {
        self.index.get(&ip).map(|&i| &self.addrs[i].1)
    }
    pub fn addrs(&self) -> impl Iterator<Item = (Ipv4Addr, &PortSet)> {
        self.addrs.iter().map(|(a, s)| (*a, s))
    }
    pub fn port_count(&self) -> usize {
        self.addrs.iter().map(|(_, s)| s.len()).sum()
    }
}
