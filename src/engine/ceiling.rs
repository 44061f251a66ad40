//! The ceiling: what any IPv4 forwarder does to a frame, with no table at all — find the IP
//! header, refuse an expiring TTL, decrement it and patch the header checksum (RFC 1624).
//! The engine benchmark and the dataplane's benchmark-only ceiling mode run frames through
//! it, so the NAT's rate can be read as a fraction of the rate at which the same frames can
//! be forwarded at all on the same machine. The caller writes the Ethernet addresses, as it
//! does for translated frames.

use super::rewrite::decrement_ttl;
use super::{DropReason, Side, Verdict};
use crate::wire::{ethernet, ipv4};

/// Forwards an IPv4 frame of `len` bytes received from `from` out of the other side, in
/// place; anything else goes to the kernel, as the NAT would send it.
pub fn forward(buf: &mut [u8], len: usize, from: Side) -> Verdict {
    let len = len.min(buf.len());
    let frame = &mut buf[..len];
    let l2 = match ethernet::parse_l2(frame) {
        Ok(l2) => l2,
        Err(e) => return Verdict::Drop(e.into()),
    };
    if l2.ethertype != ethernet::EtherType::IPV4 {
        return Verdict::ToKernel;
    }
    let header = &mut frame[l2.l3_offset..];
    match ipv4::Packet::new_checked(&*header) {
        Ok(ip) if ip.ttl() > 1 => {}
        Ok(_) => return Verdict::Drop(DropReason::TtlExpired),
        Err(e) => return Verdict::Drop(e.into()),
    }
    decrement_ttl(header);
    Verdict::Forward(match from {
        Side::Inside => Side::Outside,
        Side::Outside => Side::Inside,
    })
}

/// Writes the Ethernet destination and source of a frame about to be sent.
pub fn set_macs(frame: &mut [u8], dst: [u8; 6], src: [u8; 6]) {
    frame[..6].copy_from_slice(&dst);
    frame[6..12].copy_from_slice(&src);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload;

    #[test]
    fn forwards_with_ttl_decremented_and_a_valid_checksum() {
        let flow = workload::flows(std::net::Ipv4Addr::new(100, 64, 0, 1), 1, 1, 1)[0];
        let mut frame = workload::min_frame(&flow);
        let len = frame.len();
        let ttl = frame[22];
        assert_eq!(
            forward(&mut frame, len, Side::Inside),
            Verdict::Forward(Side::Outside)
        );
        assert_eq!(frame[22], ttl - 1);
        assert!(
            ipv4::Packet::new_checked(&frame[14..])
                .unwrap()
                .verify_checksum()
        );
        frame[22] = 1;
        assert_eq!(
            forward(&mut frame, len, Side::Outside),
            Verdict::Drop(DropReason::TtlExpired)
        );
        assert_eq!(
            forward(&mut frame, 10, Side::Outside),
            Verdict::Drop(DropReason::MalformedTruncated)
        );
    }
}
