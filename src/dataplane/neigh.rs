//! Next hops: the MAC addresses frames are sent to on each side. Taken from the kernel's
//! neighbour table (the XDP program passes ARP to the kernel, so it keeps resolving them)
//! and refreshed while running, or fixed in the configuration.

use std::net::{Ipv4Addr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A MAC address the control thread may update while workers read it.
#[derive(Debug, Default)]
pub struct SharedMac(AtomicU64);

impl SharedMac {
    pub fn new(mac: [u8; 6]) -> SharedMac {
        SharedMac(AtomicU64::new(pack(mac)))
    }
    pub fn get(&self) -> [u8; 6] {
        unpack(self.0.load(Ordering::Relaxed))
    }
    pub fn set(&self, mac: [u8; 6]) {
        self.0.store(pack(mac), Ordering::Relaxed);
    }
}

fn pack(mac: [u8; 6]) -> u64 {
    mac.iter().fold(0, |acc, b| acc << 8 | *b as u64)
}

fn unpack(v: u64) -> [u8; 6] {
    let b = v.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// `struct ifreq`: a name and a 24-byte union (a sockaddr, or a pointer).
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    data: [u8; 24],
}

/// An ioctl on an interface through a socket of the calling thread's network namespace
/// (unlike /sys, which shows the namespace the process mounted it in: after `setns` on a
/// thread it still shows the old one).
pub fn if_ioctl(ifname: &str, request: libc::c_ulong, data: [u8; 24]) -> std::io::Result<[u8; 24]> {
    if ifname.len() >= 16 {
        return Err(std::io::Error::other("interface name too long"));
    }
    let mut req = IfReq {
        name: [0; 16],
        data,
    };
    req.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is ours; `req` is a valid ifreq for the requests used here.
    let rc = unsafe { libc::ioctl(fd, request as _, &mut req as *mut IfReq) };
    let err = std::io::Error::last_os_error();
    // SAFETY: closing the socket opened above.
    unsafe { libc::close(fd) };
    if rc < 0 { Err(err) } else { Ok(req.data) }
}

/// The MAC address of `ifname` in the calling thread's network namespace.
pub fn interface_mac(ifname: &str) -> std::io::Result<[u8; 6]> {
    let data = if_ioctl(ifname, libc::SIOCGIFHWADDR, [0; 24])
        .map_err(|e| std::io::Error::new(e.kind(), format!("interface {ifname}: {e}")))?;
    // sockaddr: family (2 bytes), then the address.
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&data[2..8]);
    Ok(mac)
}

/// The complete entry for `ip` in the kernel's ARP table, if any.
pub fn lookup(ip: Ipv4Addr) -> Option<[u8; 6]> {
    let table = std::fs::read_to_string("/proc/net/arp").ok()?;
    parse_arp_table(&table, ip)
}

/// `/proc/net/arp`: "IP address  HW type  Flags  HW address  Mask  Device"; flag 0x2 marks
/// a complete entry.
fn parse_arp_table(table: &str, ip: Ipv4Addr) -> Option<[u8; 6]> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let flags = u32::from_str_radix(f.get(2)?.trim_start_matches("0x"), 16).ok()?;
        let complete = flags & 0x2 != 0;
        (f.first()?.parse::<Ipv4Addr>().ok()? == ip && complete)
            .then(|| crate::config::parse_mac(f.get(3)?))
            .flatten()
    })
}

/// Makes the kernel resolve `ip`: a datagram to its discard port needs its MAC first.
fn solicit(ip: Ipv4Addr) {
    if let Ok(socket) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) {
        let _ = socket.send_to(&[], (ip, 9));
    }
}

/// Resolves `ip`, soliciting it until it answers or `timeout` passes.
pub fn resolve(ip: Ipv4Addr, timeout: Duration) -> Option<[u8; 6]> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(mac) = lookup(ip) {
            return Some(mac);
        }
        if Instant::now() >= deadline {
            return None;
        }
        solicit(ip);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Keeps a next hop's entry fresh (the kernel ages it out otherwise) and follows changes.
pub fn refresh(ip: Ipv4Addr, mac: &SharedMac) {
    solicit(ip);
    if let Some(now) = lookup(ip)
        && now != mac.get()
    {
        mac.set(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_complete_entries_of_the_arp_table() {
        let table = "IP address       HW type     Flags       HW address            Mask     Device\n\
                     192.0.2.254      0x1         0x2         02:aa:bb:cc:dd:ee     *        tn-out\n\
                     100.64.0.2       0x1         0x0         00:00:00:00:00:00     *        tn-in\n";
        let gw = "192.0.2.254".parse().unwrap();
        assert_eq!(
            parse_arp_table(table, gw),
            Some([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee])
        );
        assert_eq!(parse_arp_table(table, "100.64.0.2".parse().unwrap()), None);
        assert_eq!(parse_arp_table(table, "192.0.2.1".parse().unwrap()), None);
    }

    #[test]
    fn shared_mac_round_trips() {
        let m = SharedMac::new([1, 2, 3, 4, 5, 6]);
        assert_eq!(m.get(), [1, 2, 3, 4, 5, 6]);
        m.set([0xff; 6]);
        assert_eq!(m.get(), [0xff; 6]);
        assert_eq!(format_mac([0x02, 0, 0x5e, 0x10, 0, 1]), "02:00:5e:10:00:01");
    }
}
