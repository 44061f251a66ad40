//! Ports a previous run of the NAT held: they rest before this run hands them out.
//!
//! RFC 6888 REQ-8 keeps a released port unused for 120 s so that a server log with a
//! slightly wrong clock cannot point at the wrong subscriber. A restart would forget that:
//! the new run's free lists start full. So at start the caller (which read the log's tail)
//! passes what the previous run held at its end or released shortly before, and those
//! ports cool down here exactly as if this run had released them.

use std::net::Ipv4Addr;

use super::{FreeList, PortAllocator, PortSet, REUSE_HOLD_NS};
use crate::config::AllocationMode;

/// Public ports `first ..= last` of `ip`, for every protocol: a question may not name its
/// protocol, so a port rests whatever protocol the previous run used it for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestingRange {
    pub ip: Ipv4Addr,
    pub first: u16,
    pub last: u16,
}

impl FreeList {
    /// Moves the ready items `rests` picks into `cooling`, released at `released_ns`; the
    /// others keep their (shuffled) order. Before anything else is cooling, so `cooling`
    /// stays in release order.
    fn hold_back(&mut self, released_ns: u64, rests: impl Fn(u16) -> bool) -> usize {
        debug_assert!(self.cooling.iter().all(|&(_, at)| at <= released_ns));
        let (resting, ready): (Vec<u16>, Vec<u16>) = self.ready.drain(..).partition(|&i| rests(i));
        self.ready = ready.into();
        let held = resting.len();
        self.cooling
            .extend(resting.into_iter().map(|item| (item, released_ns)));
        held
    }
}

impl PortAllocator {
    /// Keeps every port of `ranges` that this worker owns from being handed out before
    /// `until_ns`: in dynamic mode each protocol's port, in port-block mode every block
    /// that overlaps a range. Deterministic mode rests nothing (a subscriber's range is
    /// fixed by the configuration, and the reader answers from it). Call before the first
    /// allocation. Returns how many ports (dynamic, per protocol) or blocks were held back.
    pub fn rest(&mut self, ranges: &[RestingRange], until_ns: u64) -> usize {
        let released_ns = until_ns.saturating_sub(REUSE_HOLD_NS);
        let block_len = match self.mode {
            AllocationMode::PortBlock { block_size, .. } => block_size as u32,
            _ => 1,
        };
        let mut held = 0;
        for addr in &mut self.addrs {
            let mut resting = PortSet::default();
            let mut any = false;
            for r in ranges.iter().filter(|r| r.ip == addr.ip) {
                (r.first..=r.last).for_each(|p| resting.insert(p));
                any = true;
            }
            if !any {
                continue;
            }
            match self.mode {
                AllocationMode::Dynamic => {
                    for list in addr.free_ports.iter_mut() {
                        held += list.hold_back(released_ns, |p| resting.contains(p));
                    }
                }
                AllocationMode::PortBlock { .. } => {
                    let overlaps = |first: u16| {
                        (first as u32..first as u32 + block_len)
                            .any(|p| p <= u16::MAX as u32 && resting.contains(p as u16))
                    };
                    held += addr.free_blocks.hold_back(released_ns, overlaps);
                }
                AllocationMode::Deterministic { .. } => {}
            }
        }
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::engine::ports::{Partition, Proto};

    const SEC: u64 = 1_000_000_000;

    fn allocator(mode: &str) -> (PortAllocator, Ipv4Addr) {
        let cfg = Config::from_toml_str(&format!(
            "[interfaces]\ninside = \"a\"\noutside = \"b\"\n[pool]\npublic = [\"203.0.113.1/32\"]\n\
             subscribers = [\"100.64.0.0/30\"]\n[allocation]\nport-min = 2000\nport-max = 2063\n{mode}"
        ))
        .unwrap();
        let ip = Ipv4Addr::new(203, 0, 113, 1);
        let mut partition = Partition::default();
        partition.insert_range(ip, 0, u16::MAX);
        (PortAllocator::new(&cfg, &partition, 0), ip)
    }

    /// Every port the allocator hands out at `now`, until it has none.
    fn drain(alloc: &mut PortAllocator, now: u64) -> Vec<u16> {
        let sub = Ipv4Addr::new(100, 64, 0, 1);
        let mut pairing = alloc.pair(sub).unwrap();
        std::iter::from_fn(|| {
            alloc
                .allocate(sub, &mut pairing, Proto::Tcp, now, |_| {})
                .ok()
        })
        .collect()
    }

    #[test]
    fn resting_ports_are_not_handed_out_before_their_time() {
        let (mut alloc, ip) = allocator("");
        let ranges = [
            RestingRange {
                ip,
                first: 2010,
                last: 2019,
            },
            RestingRange {
                ip,
                first: 2040,
                last: 2040,
            },
            // Another address: nothing of this worker's.
            RestingRange {
                ip: Ipv4Addr::new(203, 0, 113, 9),
                first: 2000,
                last: 2063,
            },
        ];
        let start = 1_000 * SEC;
        // Ten plus one ports, for each of the three protocols.
        assert_eq!(alloc.rest(&ranges, start + 120 * SEC), 33);
        let before = drain(&mut alloc, start + 119 * SEC);
        assert_eq!(before.len(), 64 - 11);
        assert!(
            before
                .iter()
                .all(|p| !(2010..=2019).contains(p) && *p != 2040)
        );
        let after = drain(&mut alloc, start + 120 * SEC);
        let mut after_sorted = after.clone();
        after_sorted.sort_unstable();
        assert_eq!(
            after_sorted,
            [(2010..=2019).collect::<Vec<_>>(), vec![2040]].concat()
        );
    }

    #[test]
    fn a_block_overlapping_a_resting_port_rests_whole() {
        let (mut alloc, ip) = allocator("mode = \"port-block\"\nblock-size = 16\n");
        // Port 2020 lies in the block 2016..=2031.
        let ranges = [RestingRange {
            ip,
            first: 2020,
            last: 2020,
        }];
        assert_eq!(alloc.rest(&ranges, 500 * SEC), 1);
        let sub = Ipv4Addr::new(100, 64, 0, 1);
        let mut firsts = Vec::new();
        for i in 0..4u32 {
            let s = Ipv4Addr::from(u32::from(sub) + i);
            let mut pairing = alloc.pair(s).unwrap();
            let got = alloc.allocate(s, &mut pairing, Proto::Udp, 400 * SEC, |c| {
                firsts.push(c.first)
            });
            assert_eq!(got.is_ok(), i < 3, "three free blocks before the rest ends");
        }
        assert!(!firsts.contains(&2016), "{firsts:?}");
    }

    #[test]
    fn deterministic_ranges_never_rest() {
        let (mut alloc, ip) = allocator("mode = \"deterministic\"\nports-per-subscriber = 16\n");
        assert_eq!(
            alloc.rest(
                &[RestingRange {
                    ip,
                    first: 2000,
                    last: 2063
                }],
                1
            ),
            0
        );
    }
}
