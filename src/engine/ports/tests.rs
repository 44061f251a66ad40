//! The allocator's bookkeeping under random mixes of pairings, allocations and releases:
//! the per-address loads that pairing reads stay equal to what the free lists hold, and a
//! new subscriber is paired with the address a full scan of the lists would choose.

use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::{Pairing, Partition, PortAllocator, Proto};
use crate::config::Config;

const SEC: u64 = 1_000_000_000;

fn allocator(mode: &str) -> PortAllocator {
    let cfg = Config::from_toml_str(&format!(
        "[interfaces]\ninside = \"a\"\noutside = \"b\"\n[pool]\npublic = [\"203.0.113.0/30\"]\n\
         subscribers = [\"100.64.0.0/24\"]\n[allocation]\nport-min = 2000\nport-max = 2127\n{mode}"
    ))
    .unwrap();
    let mut partition = Partition::default();
    for i in 0..4 {
        partition.insert_range(Ipv4Addr::new(203, 0, 113, i), 0, u16::MAX);
    }
    PortAllocator::new(&cfg, &partition, 0)
}

/// The address pairing must choose, from the free lists themselves: the most free
/// capacity, then the fewest subscribers, then the lowest index.
fn expected_pairing(alloc: &PortAllocator) -> usize {
    let subscribers = |i: usize| alloc.loads[i].subscribers;
    (0..alloc.addrs.len())
        .max_by_key(|&i| {
            (
                alloc.addrs[i].free_capacity(),
                std::cmp::Reverse(subscribers(i)),
                std::cmp::Reverse(i),
            )
        })
        .unwrap()
}

fn assert_loads_match_lists(alloc: &PortAllocator) {
    for (i, addr) in alloc.addrs.iter().enumerate() {
        assert_eq!(
            alloc.loads[i].free as usize,
            addr.free_capacity(),
            "address {i}"
        );
    }
}

#[derive(Debug, Clone)]
enum Step {
    /// A subscriber (by number) opens a mapping of a protocol.
    Open(u8, u8),
    /// The subscriber's oldest mapping ends.
    Close(u8),
    /// Time passes (seconds), so resting ports come back.
    Wait(u16),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..24, 0u8..3).prop_map(|(s, p)| Step::Open(s, p)),
        3 => (0u8..24).prop_map(Step::Close),
        1 => (1u16..200).prop_map(Step::Wait),
    ]
}

/// A subscriber's pairing and its mappings' ports, oldest first.
type Holding = Option<(Pairing, Vec<(Proto, u16)>)>;

/// Runs `steps` the way the engine drives the allocator: pair on a subscriber's first
/// mapping, unpair when its last one ends.
fn run(mode: &str, steps: &[Step]) {
    let mut alloc = allocator(mode);
    let mut held: Vec<Holding> = vec![None; 24];
    let mut now = 1_000 * SEC;
    for step in steps {
        match *step {
            Step::Open(s, p) => {
                let ip = Ipv4Addr::new(100, 64, 0, s);
                let proto = [Proto::Tcp, Proto::Udp, Proto::Icmp][p as usize];
                let slot = &mut held[s as usize];
                let fresh = slot.is_none();
                if fresh {
                    let expected = expected_pairing(&alloc);
                    let pairing = alloc.pair(ip).unwrap();
                    assert_eq!(pairing.pool as usize, expected);
                    *slot = Some((pairing, Vec::new()));
                }
                let (pairing, ports) = slot.as_mut().unwrap();
                match alloc.allocate(ip, pairing, proto, now, |_| {}) {
                    Ok(port) => ports.push((proto, port)),
                    Err(_) if fresh => {
                        alloc.unpair(pairing);
                        *slot = None;
                    }
                    Err(_) => {}
                }
            }
            Step::Close(s) => {
                let slot = &mut held[s as usize];
                if let Some((pairing, ports)) = slot {
                    if !ports.is_empty() {
                        let (proto, port) = ports.remove(0);
                        alloc.release(pairing, proto, port, now, |_| {});
                    }
                    if ports.is_empty() {
                        alloc.unpair(pairing);
                        *slot = None;
                    }
                }
            }
            Step::Wait(secs) => now += u64::from(secs) * SEC,
        }
        assert_loads_match_lists(&alloc);
        assert_eq!(
            alloc.free_capacity(),
            alloc.addrs.iter().map(|a| a.free_capacity()).sum::<usize>()
        );
    }
}

proptest! {
    #[test]
    fn dynamic_loads_follow_the_free_lists(steps in prop::collection::vec(step(), 1..400)) {
        run("", &steps);
    }

    #[test]
    fn port_block_loads_follow_the_free_lists(steps in prop::collection::vec(step(), 1..400)) {
        run("mode = \"port-block\"\nblock-size = 16\nmax-blocks-per-subscriber = 2\n", &steps);
    }
}
