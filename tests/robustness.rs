//! Random and damaged frames through parse + translate, in both directions: the engine
//! never panics, and whatever it forwards still has a valid IP header checksum (the fuzz
//! target's entry point, run here with proptest on every `cargo test`).

use std::cell::RefCell;
use std::net::{Ipv4Addr, SocketAddrV4};

use proptest::prelude::*;
use tracenat::fuzzing::Harness;
use tracenat::wire::build::{self, FrameSpec};

thread_local! {
    static HARNESS: RefCell<Harness> = RefCell::new(Harness::new());
}

fn run(control: u8, frame: &[u8]) {
    let mut data = vec![control];
    data.extend_from_slice(frame);
    HARNESS.with(|h| h.borrow_mut().run(&data));
}

/// Valid frames of every kind the engine handles, in both directions.
fn seeds() -> Vec<Vec<u8>> {
    let sub = SocketAddrV4::new(Ipv4Addr::new(100, 64, 0, 10), 40_000);
    let remote = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 53);
    let public = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 1), 2000);
    let udp = build::build(&FrameSpec::udp(sub, remote).with_payload(vec![7; 40]));
    let mut seeds = vec![
        udp.clone(),
        build::build(&FrameSpec::tcp(sub, remote, 0x12)),
        build::build(&FrameSpec::echo_request(*sub.ip(), *remote.ip(), 40_000, 1)),
        build::build(&FrameSpec::udp(remote, public)),
        build::build(&FrameSpec::echo_reply(*remote.ip(), *public.ip(), 2000, 1)),
        build::build(&FrameSpec::udp(sub, remote).with_vlan(7).with_ttl(1)),
        build::icmp_error_for(
            &build::build(&FrameSpec::udp(public, remote)),
            3,
            3,
            *remote.ip(),
        ),
    ];
    seeds.extend(build::fragment(
        &build::build(&FrameSpec::udp(sub, remote).with_payload(vec![1; 300])),
        128,
    ));
    seeds
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn random_bytes_never_panic(control in any::<u8>(), frame in proptest::collection::vec(any::<u8>(), 0..160)) {
        run(control, &frame);
    }

    #[test]
    fn damaged_valid_frames_never_panic(
        control in any::<u8>(),
        which in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let seeds = seeds();
        let mut frame = seeds[which.index(seeds.len())].clone();
        for (at, mask) in flips {
            let i = at.index(frame.len());
            frame[i] ^= mask;
        }
        if truncate {
            frame.truncate(cut.index(frame.len() + 1));
        }
        run(control, &frame);
    }
}
