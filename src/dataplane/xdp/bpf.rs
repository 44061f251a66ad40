//! XDP through the raw bpf(2) syscall: a hand-assembled steering program, an XSKMAP, and a
//! BPF link that attaches the program to an interface and detaches it when dropped.
//!
//! No libbpf, no clang: the program is a few dozen instructions built by [`steering_program`]
//! with the "own" IPv4 addresses patched in as immediates.

use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// bpf(2) commands (enum bpf_cmd; note BPF_PROG_RUN is an alias, not a new value).
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;

const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// enum bpf_attach_type: BPF_XDP.
const BPF_XDP: u32 = 37;
/// bpf_redirect_map(map, key, flags).
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const BPF_PSEUDO_MAP_FD: u8 = 1;

const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// XDP verdicts.
const XDP_PASS: i32 = 2;

/// Most addresses the steering program can leave to the kernel.
pub const MAX_OWN_ADDRS: usize = 4;
const LOG_SIZE: usize = 64 * 1024;

/// Errors from loading, creating or attaching BPF objects.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("BPF_PROG_LOAD failed: {source}\nverifier log:\n{log}")]
    Load { source: io::Error, log: String },
    #[error("BPF_MAP_CREATE failed: {0}")]
    MapCreate(io::Error),
    #[error("map update failed (key {key}): {source}")]
    MapUpdate { key: u32, source: io::Error },
    #[error("map delete failed (key {key}): {source}")]
    MapDelete { key: u32, source: io::Error },
    #[error("interface {0:?} not found")]
    NoInterface(String),
    #[error("attaching XDP to {ifname}: native: {native}; generic: {generic}")]
    Attach {
        ifname: String,
        native: io::Error,
        generic: io::Error,
    },
    #[error("too many own addresses: {0} (at most {MAX_OWN_ADDRS})")]
    TooManyAddrs(usize),
}

/// One eBPF instruction (struct bpf_insn).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high nibble.
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Insn {
            code,
            regs: (src << 4) | (dst & 0x0f),
            off,
            imm,
        }
    }
}

/// A tiny assembler: instructions plus forward jumps to named labels.
#[derive(Default)]
struct Asm {
    insns: Vec<Insn>,
    /// (instruction index, label) of jumps whose offsets are resolved in [`Asm::finish`].
    fixups: Vec<(usize, &'static str)>,
    labels: Vec<(&'static str, usize)>,
}

// Opcodes (class | op | source).
const MOV64_REG: u8 = 0xbf;
const MOV64_IMM: u8 = 0xb7;
const ADD64_IMM: u8 = 0x07;
const LDX_W: u8 = 0x61;
const LDX_H: u8 = 0x69;
const LD_IMM64: u8 = 0x18;
const JA: u8 = 0x05;
const JGT_REG: u8 = 0x2d;
const JEQ_IMM: u8 = 0x15;
const JNE_IMM: u8 = 0x55;
const JEQ32_IMM: u8 = 0x16;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;

impl Asm {
    fn emit(&mut self, insn: Insn) -> &mut Self {
        self.insns.push(insn);
        self
    }
    fn mov_reg(&mut self, dst: u8, src: u8) -> &mut Self {
        self.emit(Insn::new(MOV64_REG, dst, src, 0, 0))
    }
    fn mov_imm(&mut self, dst: u8, imm: i32) -> &mut Self {
        self.emit(Insn::new(MOV64_IMM, dst, 0, 0, imm))
    }
    fn add_imm(&mut self, dst: u8, imm: i32) -> &mut Self {
        self.emit(Insn::new(ADD64_IMM, dst, 0, 0, imm))
    }
    fn ldx(&mut self, op: u8, dst: u8, src: u8, off: i16) -> &mut Self {
        self.emit(Insn::new(op, dst, src, off, 0))
    }
    fn ld_map_fd(&mut self, dst: u8, fd: RawFd) -> &mut Self {
        self.emit(Insn::new(LD_IMM64, dst, BPF_PSEUDO_MAP_FD, 0, fd));
        self.emit(Insn::new(0, 0, 0, 0, 0))
    }
    fn jump(&mut self, op: u8, dst: u8, src: u8, imm: i32, label: &'static str) -> &mut Self {
        self.fixups.push((self.insns.len(), label));
        self.emit(Insn::new(op, dst, src, 0, imm))
    }
    fn call(&mut self, helper: i32) -> &mut Self {
        self.emit(Insn::new(CALL, 0, 0, 0, helper))
    }
    fn exit(&mut self) -> &mut Self {
        self.emit(Insn::new(EXIT, 0, 0, 0, 0))
    }
    fn label(&mut self, name: &'static str) -> &mut Self {
        self.labels.push((name, self.insns.len()));
        self
    }
    fn finish(mut self) -> Vec<Insn> {
        for &(at, name) in &self.fixups {
            let target = self
                .labels
                .iter()
                .find(|(l, _)| *l == name)
                .map(|&(_, t)| t)
                .unwrap_or_else(|| panic!("undefined label {name}"));
            self.insns[at].off = (target as isize - at as isize - 1) as i16;
        }
        self.insns
    }
}

/// Network-order 16-bit value as `ldxh` reads it on this host.
fn be16_as_loaded(v: u16) -> i32 {
    i32::from(u16::from_ne_bytes(v.to_be_bytes()))
}

/// Network-order IPv4 address as `ldxw` reads it on this host.
fn addr_as_loaded(a: Ipv4Addr) -> i32 {
    i32::from_ne_bytes(a.octets())
}

/// The steering program: XDP_PASS for non-IPv4 and for IPv4 to one of `own`; everything
/// else goes to the AF_XDP socket of the receiving queue through `xsks_map`, or to the
/// kernel if that queue has no socket.
pub fn steering_program(xsks_map: RawFd, own: &[Ipv4Addr]) -> Result<Vec<Insn>, BpfError> {
    if own.len() > MAX_OWN_ADDRS {
        return Err(BpfError::TooManyAddrs(own.len()));
    }
    const ETH_P_IP: u16 = 0x0800;
    const ETH_P_8021Q: u16 = 0x8100;
    let mut a = Asm::default();
    // r6 = ctx; r2 = data; r3 = data_end (struct xdp_md: data @0, data_end @4).
    a.mov_reg(6, 1).ldx(LDX_W, 2, 6, 0).ldx(LDX_W, 3, 6, 4);
    // Ethernet header in bounds? r5 = ethertype.
    a.mov_reg(4, 2)
        .add_imm(4, 14)
        .jump(JGT_REG, 4, 3, 0, "pass");
    a.ldx(LDX_H, 5, 2, 12);
    a.jump(JEQ_IMM, 5, 0, be16_as_loaded(ETH_P_8021Q), "vlan");
    // Untagged: IPv4 only; Ethernet + minimal IPv4 header in bounds; r5 = daddr (@30).
    a.jump(JNE_IMM, 5, 0, be16_as_loaded(ETH_P_IP), "pass");
    a.mov_reg(4, 2)
        .add_imm(4, 14 + 20)
        .jump(JGT_REG, 4, 3, 0, "pass");
    a.ldx(LDX_W, 5, 2, 30).jump(JA, 0, 0, 0, "check");
    // One 802.1Q tag: inner ethertype @16 must be IPv4; header in bounds; daddr @34.
    a.label("vlan");
    a.mov_reg(4, 2)
        .add_imm(4, 18 + 20)
        .jump(JGT_REG, 4, 3, 0, "pass");
    a.ldx(LDX_H, 5, 2, 16);
    a.jump(JNE_IMM, 5, 0, be16_as_loaded(ETH_P_IP), "pass");
    a.ldx(LDX_W, 5, 2, 34);
    // Own addresses go to the kernel (32-bit compares: no sign extension of the immediate).
    a.label("check");
    for &addr in own {
        a.jump(JEQ32_IMM, 5, 0, addr_as_loaded(addr), "pass");
    }
    // return bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS).
    a.ld_map_fd(1, xsks_map)
        .ldx(LDX_W, 2, 6, 16)
        .mov_imm(3, XDP_PASS);
    a.call(BPF_FUNC_REDIRECT_MAP).exit();
    // return XDP_PASS.
    a.label("pass");
    a.mov_imm(0, XDP_PASS).exit();
    Ok(a.finish())
}

/// A program that passes everything (for a veth peer that needs an XDP program).
pub fn pass_program() -> Vec<Insn> {
    let mut a = Asm::default();
    a.mov_imm(0, XDP_PASS).exit();
    a.finish()
}

fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<RawFd> {
    // SAFETY: `attr` is a valid, initialised, repr(C) bpf_attr prefix of the given size for
    // `cmd`; the kernel reads at most that many bytes and zero-fills the rest.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as RawFd)
    }
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by the kernel and is owned by no one else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

fn obj_name(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    let n = name.len().min(15);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

/// An XSKMAP: rx queue index -> AF_XDP socket.
#[derive(Debug)]
pub struct XskMap {
    fd: OwnedFd,
    max_entries: u32,
}

impl XskMap {
    /// Creates a map with room for queues `0..max_entries`.
    pub fn create(max_entries: u32) -> Result<Self, BpfError> {
        let mut attr = MapCreateAttr {
            map_type: BPF_MAP_TYPE_XSKMAP,
            key_size: 4,
            value_size: 4,
            max_entries,
            map_name: obj_name("xsks_map"),
            ..Default::default()
        };
        let fd = sys_bpf(BPF_MAP_CREATE, &mut attr).map_err(BpfError::MapCreate)?;
        Ok(XskMap {
            fd: owned(fd),
            max_entries,
        })
    }

    /// Steers rx queue `queue` to the AF_XDP socket `xsk_fd`.
    pub fn set(&self, queue: u32, xsk_fd: RawFd) -> Result<(), BpfError> {
        let value: u32 = xsk_fd as u32;
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: &queue as *const u32 as u64,
            value: &value as *const u32 as u64,
            ..Default::default()
        };
        sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr)
            .map(drop)
            .map_err(|source| BpfError::MapUpdate { key: queue, source })
    }

    /// Removes the socket of rx queue `queue` (its traffic then goes to the kernel).
    pub fn remove(&self, queue: u32) -> Result<(), BpfError> {
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: &queue as *const u32 as u64,
            ..Default::default()
        };
        sys_bpf(BPF_MAP_DELETE_ELEM, &mut attr)
            .map(drop)
            .map_err(|source| BpfError::MapDelete { key: queue, source })
    }

    pub fn max_entries(&self) -> u32 {
        self.max_entries
    }
}

impl AsRawFd for XskMap {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A loaded XDP program.
#[derive(Debug)]
pub struct XdpProgram {
    fd: OwnedFd,
}

impl XdpProgram {
    /// Loads `insns` as an XDP program; on failure the error carries the verifier log.
    pub fn load(name: &str, insns: &[Insn]) -> Result<Self, BpfError> {
        let license = c"GPL";
        let mut log = vec![0u8; LOG_SIZE];
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 0,
            prog_name: obj_name(name),
            expected_attach_type: BPF_XDP,
            ..Default::default()
        };
        match sys_bpf(BPF_PROG_LOAD, &mut attr) {
            Ok(fd) => Ok(XdpProgram { fd: owned(fd) }),
            Err(_) => {
                // Load again with the log on, so the error says why.
                attr.log_level = 1;
                attr.log_size = log.len() as u32;
                attr.log_buf = log.as_mut_ptr() as u64;
                let source = match sys_bpf(BPF_PROG_LOAD, &mut attr) {
                    Ok(fd) => return Ok(XdpProgram { fd: owned(fd) }),
                    Err(e) => e,
                };
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let log = String::from_utf8_lossy(&log[..end]).into_owned();
                Err(BpfError::Load { source, log })
            }
        }
    }

    /// Loads the steering program (see [`steering_program`]) bound to `map`.
    pub fn load_steering(map: &XskMap, own: &[Ipv4Addr]) -> Result<Self, BpfError> {
        Self::load("tnp_steer", &steering_program(map.as_raw_fd(), own)?)
    }

    /// Loads a program that passes every frame to the kernel.
    pub fn load_pass() -> Result<Self, BpfError> {
        Self::load("tnp_pass", &pass_program())
    }

    /// Attaches to `ifname` (in the calling thread's network namespace): native (driver)
    /// mode first, generic (skb) mode if the driver refuses.
    pub fn attach(&self, ifname: &str) -> Result<XdpLink, BpfError> {
        let ifindex = ifindex(ifname)?;
        let native = match self.link_create(ifindex, XDP_FLAGS_DRV_MODE) {
            Ok(fd) => return Ok(XdpLink::new(fd, ifname, XdpMode::Native)),
            Err(e) => e,
        };
        match self.link_create(ifindex, XDP_FLAGS_SKB_MODE) {
            Ok(fd) => Ok(XdpLink::new(fd, ifname, XdpMode::Generic)),
            Err(generic) => Err(BpfError::Attach {
                ifname: ifname.to_owned(),
                native,
                generic,
            }),
        }
    }

    fn link_create(&self, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
        let mut attr = LinkCreateAttr {
            prog_fd: self.fd.as_raw_fd() as u32,
            target_ifindex: ifindex,
            attach_type: BPF_XDP,
            flags,
        };
        sys_bpf(BPF_LINK_CREATE, &mut attr).map(owned)
    }
}

/// How an XDP program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver (XDP_FLAGS_DRV_MODE).
    Native,
    /// After skb allocation (XDP_FLAGS_SKB_MODE).
    Generic,
}

/// An attached program; dropping it (closing the link fd) detaches it.
#[derive(Debug)]
pub struct XdpLink {
    _fd: OwnedFd,
    ifname: String,
    mode: XdpMode,
}

impl XdpLink {
    fn new(fd: OwnedFd, ifname: &str, mode: XdpMode) -> Self {
        XdpLink {
            _fd: fd,
            ifname: ifname.to_owned(),
            mode,
        }
    }
    pub fn mode(&self) -> XdpMode {
        self.mode
    }
    pub fn ifname(&self) -> &str {
        &self.ifname
    }
}

/// The index of `ifname` in the calling thread's network namespace.
pub fn ifindex(ifname: &str) -> Result<u32, BpfError> {
    let c = CString::new(ifname).map_err(|_| BpfError::NoInterface(ifname.to_owned()))?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(BpfError::NoInterface(ifname.to_owned()))
    } else {
        Ok(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_resolve_forward() {
        let p = steering_program(3, &[Ipv4Addr::new(203, 0, 113, 200)]).unwrap();
        let exits: Vec<usize> = (0..p.len()).filter(|&i| p[i].code == EXIT).collect();
        assert_eq!(exits.len(), 2);
        let pass = exits[0] + 1;
        // Every "pass" jump lands on `mov r0, XDP_PASS`.
        for (i, insn) in p.iter().enumerate() {
            if insn.code == JGT_REG || insn.code == JEQ32_IMM {
                assert_eq!(i as isize + 1 + insn.off as isize, pass as isize);
            }
        }
        assert_eq!(p[pass].code, MOV64_IMM);
    }

    #[test]
    fn immediates_match_loads() {
        // 192.0.2.1 in packet byte order, read as a native u32.
        let a = Ipv4Addr::new(192, 0, 2, 1);
        assert_eq!(addr_as_loaded(a), i32::from_ne_bytes([192, 0, 2, 1]));
        assert_eq!(
            be16_as_loaded(0x0800),
            i32::from(u16::from_ne_bytes([8, 0]))
        );
    }

    #[test]
    fn too_many_addrs() {
        let own = [Ipv4Addr::LOCALHOST; MAX_OWN_ADDRS + 1];
        assert!(matches!(
            steering_program(3, &own),
            Err(BpfError::TooManyAddrs(_))
        ));
    }
}
