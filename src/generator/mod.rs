//! `tracenat gen`: an AF_XDP traffic generator and sink (pktgen-style) for the veth lab and
//! real NICs.
//!
//! * [`send::run_send`] builds one header template per flow and frame size up front,
//!   copies it into a frame of its own UMEM per packet (no heap allocation on the packet
//!   path), stamps a send timestamp (CLOCK_MONOTONIC, ns) and a per-flow sequence number
//!   into the payload ([`frames::Stamp`]), and transmits in batches through AF_XDP TX,
//!   paced by a token bucket ([`rate::TokenBucket`]) on batch boundaries. With
//!   `expect_replies` it also receives on the same interface (the XDP steering program of
//!   [`crate::dataplane::xdp::bpf`] sends ARP and traffic to the interface's own addresses
//!   to the kernel) and measures round trips and loss: one process, one clock.
//! * [`sink::run_sink`] receives with AF_XDP, counts packets and bytes, detects loss per
//!   flow from sequence gaps, records one-way latency (receive time minus the stamped send
//!   time: both ends on this host, same clock) in an HdrHistogram, and with `reflect` swaps
//!   MAC addresses, IP addresses and ports and sends every frame back out of the queue it
//!   came in on.
//!
//! Queues: on a NIC, RSS picks the receiver's queue. On veth there is no RSS: the frame
//! goes to the peer's rx queue with the index of the tx queue it was sent on. So the
//! generator sends each flow on queue `queue_for_subscriber(subscriber, queues)`, the
//! worker that owns the subscriber in the NAT ([`crate::engine::ports::Ownership::
//! owner_of_subscriber`]: Fibonacci hashing of the address, modulo the workers), and the
//! NAT's aligned fast path (no handoff) is what gets measured. The sink reflects on the
//! queue it received on: the NAT worker that sent the frame gets the reply back.

pub mod flows;
pub mod frames;
mod port;
pub mod rate;
pub mod send;
pub mod sink;
pub mod stats;

use std::io;
use std::net::Ipv4Addr;

use crate::dataplane::xdp::bpf::BpfError;
use crate::dataplane::xdp::xsk::XskError;

pub use send::{SendOptions, SendReport, run_send};
pub use sink::{SinkOptions, SinkReport, run_sink};

/// Why a generator run failed.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("{0}")]
    Usage(String),
    #[error("{what}: {source}")]
    Xsk { what: String, source: XskError },
    #[error("{what}: {source}")]
    Bpf { what: String, source: BpfError },
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
}

impl GenError {
    pub(crate) fn xsk(what: impl Into<String>) -> impl FnOnce(XskError) -> GenError {
        let what = what.into();
        move |source| GenError::Xsk { what, source }
    }
    pub(crate) fn bpf(what: impl Into<String>) -> impl FnOnce(BpfError) -> GenError {
        let what = what.into();
        move |source| GenError::Bpf { what, source }
    }
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> GenError {
        let what = what.into();
        move |source| GenError::Io { what, source }
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of the stamps (the same for every process and
/// network namespace on the host).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The queue a subscriber's frames are sent on: the NAT worker that owns the subscriber
/// when it has `queues` workers and no RSS steering (veth), by the same Fibonacci hashing
/// as [`crate::engine::ports::Ownership::owner_of_subscriber`].
pub fn queue_for_subscriber(ip: Ipv4Addr, queues: u16) -> u16 {
    crate::engine::ports::spread_subscriber(ip, queues)
}

use crate::dataplane::neigh::if_ioctl;
pub use crate::dataplane::neigh::interface_mac;

/// The number of rx queues of `ifname` (calling thread's namespace), at least 1: the
/// channel counts from ethtool (combined + rx: NICs report combined, veth rx), else /sys.
pub fn rx_queue_count(ifname: &str) -> u16 {
    const ETHTOOL_GCHANNELS: u32 = 0x3c;
    // struct ethtool_channels: cmd, max_rx, max_tx, max_other, max_combined, rx_count,
    // tx_count, other_count, combined_count.
    let mut channels = [0u32; 9];
    channels[0] = ETHTOOL_GCHANNELS;
    let mut data = [0u8; 24];
    data[..8].copy_from_slice(&(channels.as_mut_ptr() as u64).to_ne_bytes());
    if if_ioctl(ifname, libc::SIOCETHTOOL, data).is_ok() {
        let n = channels[5] + channels[8];
        if n > 0 {
            return n.min(u32::from(u16::MAX)) as u16;
        }
    }
    let dir = format!("/sys/class/net/{ifname}/queues");
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u16
        })
        .unwrap_or(1)
        .max(1)
}

/// The IPv4 addresses of `ifname` (calling thread's namespace): left to the kernel by the
/// steering program, so ping and ARP for them keep working while the generator runs.
pub fn interface_addresses(ifname: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return out;
    }
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, alive until freeifaddrs.
        let ifa = unsafe { &*cur };
        // SAFETY: ifa_name is a NUL-terminated string for every node.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        if !ifa.ifa_addr.is_null() && name.to_bytes() == ifname.as_bytes() {
            // SAFETY: ifa_addr points to a sockaddr whose family we check first.
            let family = unsafe { (*ifa.ifa_addr).sa_family } as i32;
            if family == libc::AF_INET {
                // SAFETY: an AF_INET sockaddr is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    out.truncate(crate::dataplane::xdp::bpf::MAX_OWN_ADDRS);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_follow_the_nat_s_subscriber_ownership() {
        use crate::config::Config;
        use crate::engine::ports::{Ownership, partitions};
        for workers in [1u16, 2, 3, 4] {
            let text = format!(
                "[interfaces]\ninside = \"a\"\noutside = \"b\"\n[workers]\ncount = {workers}\n\
                 [pool]\npublic = [\"203.0.113.0/28\"]\nsubscribers = [\"100.64.0.0/10\"]\n"
            );
            let config = Config::from_toml_str(&text).unwrap();
            let ownership = Ownership::new(&config, partitions(&config));
            for i in 0..500u32 {
                let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 2, 1)) + i);
                assert_eq!(
                    queue_for_subscriber(ip, workers),
                    ownership.owner_of_subscriber(ip),
                    "{ip} with {workers} workers"
                );
            }
        }
    }

    #[test]
    fn the_clock_moves_forward() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(b >= a && a > 0);
    }
}
