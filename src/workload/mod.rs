//! Synthetic subscriber traffic, deterministic from a seed: N subscribers × M flows toward a
//! set of servers, with Zipf-distributed popularity. Used by the benchmarks, the tests that
//! need volume, and (later) the traffic generator.

use std::net::{Ipv4Addr, SocketAddrV4};

pub mod web;

use crate::rng::SplitMix64;
use crate::wire::build::{FrameSpec, build};

/// Samples ranks 0..n with probability ∝ 1/(rank+1)^s, by binary search over the CDF.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Zipf {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                acc += 1.0 / (k as f64).powf(s);
                acc
            })
            .collect();
        for c in cdf.iter_mut() {
            *c /= acc;
        }
        Zipf { cdf }
    }

    pub fn sample(&self, rng: &mut SplitMix64) -> usize {
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        self.cdf.partition_point(|c| *c < u).min(self.cdf.len() - 1)
    }
}

/// One outbound UDP flow: subscriber endpoint → server endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub inside: SocketAddrV4,
    pub server: SocketAddrV4,
}

/// `subscribers` consecutive addresses from `first_subscriber`, each with `flows_each` flows
/// from ports 10000.. toward servers in 198.51.100.0/24 (port 443), server chosen at random.
pub fn flows(
    first_subscriber: Ipv4Addr,
    subscribers: u32,
    flows_each: u32,
    seed: u64,
) -> Vec<Flow> {
    let mut rng = SplitMix64::new(seed);
    let base = u32::from(first_subscriber);
    (0..subscribers)
        .flat_map(|s| (0..flows_each).map(move |f| (s, f)))
        .map(|(s, f)| Flow {
            inside: SocketAddrV4::new(Ipv4Addr::from(base + s), 10_000 + f as u16),
            server: SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1 + rng.below(250) as u8), 443),
        })
        .collect()
}

/// The smallest Ethernet frame of a flow: 60 bytes (64 on the wire with the FCS).
pub fn min_frame(flow: &Flow) -> Vec<u8> {
    build(&FrameSpec::udp(flow.inside, flow.server).with_payload(vec![0; 18]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_prefers_low_ranks_and_flows_are_distinct() {
        let z = Zipf::new(1000, 1.0);
        let mut rng = SplitMix64::new(3);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            counts[z.sample(&mut rng)] += 1;
        }
        assert!(counts[0] > counts[9] && counts[9] > counts[999]);
        // Rank 1 holds about 1/H(1000) ≈ 13 % of the mass.
        assert!((12_000..15_000).contains(&counts[0]), "{}", counts[0]);
        let f = flows(Ipv4Addr::new(100, 64, 0, 1), 10, 3, 1);
        assert_eq!(f.len(), 30);
        let distinct: std::collections::HashSet<_> = f.iter().map(|x| x.inside).collect();
        assert_eq!(distinct.len(), 30);
        assert_eq!(min_frame(&f[0]).len(), 60);
    }
}
