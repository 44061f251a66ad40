//! Ethernet II frames and 802.1Q tag handling.

use super::be;
use super::{Result, WireError};

/// Well-known EtherType values, usable in comparisons and `match` patterns
/// against [`Frame::ethertype`] and [`L2Info::ethertype`].
#[derive(Debug, Clone, Copy)]
pub struct EtherType;

impl EtherType {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    /// 802.1Q customer tag.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service tag (QinQ outer tag).
    pub const QINQ: u16 = 0x88A8;
    /// Pre-standard QinQ outer tag still emitted by some switches.
    pub const QINQ_LEGACY: u16 = 0x9100;
    pub const IPV6: u16 = 0x86DD;
}

mod field {
    use crate::wire::Field;

    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    /// Tag control information of an 802.1Q tag, right after its TPID.
    pub const VLAN_TCI: Field = 14..16;
    /// EtherType carried inside one 802.1Q tag.
    pub const VLAN_ETHERTYPE: Field = 16..18;
}

/// Untagged Ethernet II header length.
pub const HEADER_LEN: usize = field::ETHERTYPE.end;
/// Header length with exactly one 802.1Q tag.
pub const VLAN_HEADER_LEN: usize = field::VLAN_ETHERTYPE.end;
/// Minimum frame length without FCS; shorter frames are padded on the wire.
pub const MIN_FRAME_LEN: usize = 60;

/// Mask of the VLAN identifier within the tag control information.
const VID_MASK: u16 = 0x0FFF;

/// A view of an Ethernet II frame. VLAN-unaware: `ethertype()` is the first
/// EtherType and `payload()` starts right after it; use [`parse_l2`] to find
/// the network layer behind a tag.
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wrap without validation: accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        Frame { buffer }
    }

    /// Wrap, validating that the fixed header fits.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn dst_addr(&self) -> [u8; 6] {
        be::get_mac(self.buffer.as_ref(), field::DESTINATION)
    }

    pub fn src_addr(&self) -> [u8; 6] {
        be::get_mac(self.buffer.as_ref(), field::SOURCE)
    }

    /// The first EtherType (a TPID if the frame is tagged).
    pub fn ethertype(&self) -> u16 {
        be::get_u16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    /// Everything after the first EtherType.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    pub fn set_dst_addr(&mut self, addr: [u8; 6]) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr);
    }

    pub fn set_src_addr(&mut self, addr: [u8; 6]) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr);
    }

    pub fn set_ethertype(&mut self, ethertype: u16) {
        be::set_u16(self.buffer.as_mut(), field::ETHERTYPE, ethertype);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// Where the network layer starts, after at most one 802.1Q tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2Info {
    /// EtherType of the network layer (inside the tag, if any).
    pub ethertype: u16,
    /// VLAN identifier (the low 12 bits of the TCI) if the frame is tagged.
    pub vlan: Option<u16>,
    /// Offset of the network-layer header in the frame.
    pub l3_offset: usize,
}

/// Find the network layer of `frame`, looking through at most one 802.1Q tag.
///
/// Stacked tags (QinQ, or a second 802.1Q tag) are refused rather than
/// skipped: the NAT keys state on a single VID and must not merge VLANs.
#[inline]
pub fn parse_l2(frame: &[u8]) -> Result<L2Info> {
    let outer = Frame::new_checked(frame)?.ethertype();
    match outer {
        EtherType::QINQ | EtherType::QINQ_LEGACY => Err(WireError::UnsupportedVlan),
        EtherType::VLAN => parse_tagged(frame),
        ethertype => Ok(L2Info {
            ethertype,
            vlan: None,
            l3_offset: HEADER_LEN,
        }),
    }
}

fn parse_tagged(frame: &[u8]) -> Result<L2Info> {
    if frame.len() < VLAN_HEADER_LEN {
        return Err(WireError::Truncated);
    }
    let inner = be::get_u16(frame, field::VLAN_ETHERTYPE);
    if is_tag(inner) {
        return Err(WireError::UnsupportedVlan);
    }
    Ok(L2Info {
        ethertype: inner,
        vlan: Some(be::get_u16(frame, field::VLAN_TCI) & VID_MASK),
        l3_offset: VLAN_HEADER_LEN,
    })
}

fn is_tag(ethertype: u16) -> bool {
    matches!(
        ethertype,
        EtherType::VLAN | EtherType::QINQ | EtherType::QINQ_LEGACY
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNTAGGED: [u8; 16] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // src
        0x08, 0x00, // IPv4
        0xaa, 0xbb, // payload
    ];

    const TAGGED: [u8; 20] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // src
        0x81, 0x00, // 802.1Q
        0xa0, 0x64, // PCP 5, VID 100
        0x08, 0x06, // ARP
        0x00, 0x01,
    ];

    #[test]
    fn parse_untagged() {
        let f = Frame::new_checked(&UNTAGGED[..]).unwrap();
        assert_eq!(f.dst_addr(), [2, 0, 0, 0, 0, 2]);
        assert_eq!(f.src_addr(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(f.ethertype(), EtherType::IPV4);
        assert_eq!(f.payload(), &[0xaa, 0xbb]);
        let l2 = parse_l2(&UNTAGGED).unwrap();
        assert_eq!(
            l2,
            L2Info {
                ethertype: EtherType::IPV4,
                vlan: None,
                l3_offset: 14
            }
        );
    }

    #[test]
    fn parse_tagged_frame() {
        let l2 = parse_l2(&TAGGED).unwrap();
        assert_eq!(l2.ethertype, EtherType::ARP);
        assert_eq!(l2.vlan, Some(100));
        assert_eq!(l2.l3_offset, 18);
        assert_eq!(
            Frame::new_checked(&TAGGED[..]).unwrap().ethertype(),
            EtherType::VLAN
        );
    }

    #[test]
    fn setters_write_expected_bytes() {
        let mut buf = [0u8; 14];
        let mut f = Frame::new_checked(&mut buf[..]).unwrap();
        f.set_dst_addr([2, 0, 0, 0, 0, 2]);
        f.set_src_addr([2, 0, 0, 0, 0, 1]);
        f.set_ethertype(EtherType::IPV4);
        assert_eq!(buf, UNTAGGED[..14]);
    }

    #[test]
    fn stacked_tags_rejected() {
        let mut qinq = TAGGED;
        qinq[12..14].copy_from_slice(&EtherType::QINQ.to_be_bytes());
        assert_eq!(parse_l2(&qinq), Err(WireError::UnsupportedVlan));
        let mut double = TAGGED;
        double[16..18].copy_from_slice(&EtherType::VLAN.to_be_bytes());
        assert_eq!(parse_l2(&double), Err(WireError::UnsupportedVlan));
    }

    #[test]
    fn truncation() {
        assert_eq!(parse_l2(&UNTAGGED[..13]), Err(WireError::Truncated));
        assert!(parse_l2(&UNTAGGED[..14]).is_ok());
        assert_eq!(parse_l2(&TAGGED[..17]), Err(WireError::Truncated));
        assert!(parse_l2(&TAGGED[..18]).is_ok());
        assert!(Frame::new_checked(&UNTAGGED[..13]).is_err());
    }
}
