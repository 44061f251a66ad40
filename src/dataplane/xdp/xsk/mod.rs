//! AF_XDP sockets over raw syscalls: a UMEM, its fill/completion rings, rx/tx rings, and
//! sockets on several devices sharing one UMEM (each with its own fill and completion ring,
//! kernel >= 5.10), so a frame received on one interface is sent on another without a copy.
//!
//! Ring protocol: for the rings we produce into (fill, tx) we acquire-load the kernel's
//! consumer index before reusing slots and release-store our producer index after writing
//! them; for the rings we consume (rx, completion) we acquire-load the kernel's producer
//! index before reading slots and release-store our consumer index after reading them.
//!
//! Frames are owned by exactly one party at a time: the [`FramePool`] free list, a fill ring
//! (or the driver, until the frame comes back on rx), the application (after `rx_batch` or
//! `complete`), or a tx ring (or the driver or completion ring, until `complete`). The
//! socket counters and [`Ledger`] make that checkable.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bpf;

mod ring;
mod umem;

use ring::Ring;
pub use umem::{FramePool, Umem};

/// `Ok(true)` (a syscall was made) for a nudge that returned `rc`, unless it failed with an
/// error other than the `passing` ones, which the next nudge retries.
fn made(rc: isize, passing: &[libc::c_int]) -> io::Result<bool> {
    if rc < 0 {
        let e = io::Error::last_os_error();
        if !e.raw_os_error().is_some_and(|code| passing.contains(&code)) {
            return Err(e);
        }
    }
    Ok(true)
}

/// How long a bind waits for a queue a dead process's socket still holds.
const BUSY_QUEUE_WAIT: Duration = Duration::from_secs(3);

/// One rx/tx descriptor (struct xdp_desc): `addr` is a UMEM offset.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    pub options: u32,
}

/// Errors from setting up AF_XDP sockets and UMEMs.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        source: io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    #[error(transparent)]
    Bpf(#[from] bpf::BpfError),
}

/// Errors from returning frames to a [`FramePool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame {0:#x} is outside the UMEM")]
    OutOfRange(u64),
    #[error("frame {0:#x} is already free")]
    DoubleFree(u64),
}

fn sys(what: &'static str) -> impl FnOnce(io::Error) -> XskError {
    move |source| XskError::Sys { what, source }
}

fn check(rc: libc::c_int, what: &'static str) -> Result<libc::c_int, XskError> {
    if rc < 0 {
        Err(sys(what)(io::Error::last_os_error()))
    } else {
        Ok(rc)
    }
}

/// Where the frames are, by the pool's and the sockets' counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ledger {
    pub total: usize,
    pub free: usize,
    /// Given to fill rings and not yet received (in a fill ring or held by the driver).
    pub in_fill: usize,
    /// Given to tx rings and not yet reaped from a completion ring.
    pub in_tx: usize,
}

impl Ledger {
    pub fn new(pool: &FramePool, sockets: &[&XskSocket]) -> Self {
        Ledger {
            total: pool.total(),
            free: pool.free_count(),
            in_fill: sockets.iter().map(|s| s.counters.in_fill() as usize).sum(),
            in_tx: sockets.iter().map(|s| s.counters.in_tx() as usize).sum(),
        }
    }

    /// Frames the application must be holding (received or reaped, not yet given back).
    pub fn app_held(&self) -> isize {
        self.total as isize - (self.free + self.in_fill + self.in_tx) as isize
    }
}

/// Monotonic per-socket counters of frames moved through its rings.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub filled: u64,
    pub received: u64,
    pub sent: u64,
    pub completed: u64,
}

impl Counters {
    pub fn in_fill(&self) -> u64 {
        self.filled - self.received
    }
    pub fn in_tx(&self) -> u64 {
        self.sent - self.completed
    }
}

/// Ring sizes and bind preferences.
#[derive(Debug, Clone, Copy)]
pub struct XskConfig {
    pub rx_size: u32,
    pub tx_size: u32,
    pub fill_size: u32,
    pub comp_size: u32,
    /// Try XDP_ZEROCOPY first (falls back to XDP_COPY).
    pub try_zero_copy: bool,
    pub need_wakeup: bool,
}

impl Default for XskConfig {
    fn default() -> Self {
        XskConfig {
            rx_size: 2048,
            tx_size: 2048,
            fill_size: 2048,
            comp_size: 2048,
            try_zero_copy: true,
            need_wakeup: true,
        }
    }
}

/// How a socket ended up bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindInfo {
    pub zero_copy: bool,
    pub need_wakeup: bool,
    pub shared_umem: bool,
    /// Why zero-copy was not used, if it was tried and refused.
    pub zero_copy_error: Option<i32>,
}

impl XskSocket {
    /// Asks the kernel to busy-poll this socket's NAPI context from our thread rather than
    /// by interrupts (SO_PREFER_BUSY_POLL, SO_BUSY_POLL, SO_BUSY_POLL_BUDGET; Linux 5.11+).
    /// Best effort: drivers without NAPI busy polling (veth) ignore it.
    pub fn prefer_busy_poll(&self, usecs: u32, budget: u32) -> io::Result<()> {
        let fd = self.as_raw_fd();
        let set = |opt: libc::c_int, value: u32| {
            let value = value as libc::c_int;
            // SAFETY: a plain int socket option on our own descriptor.
            let rc = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    (&value as *const libc::c_int).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        set(libc::SO_PREFER_BUSY_POLL, 1)?;
        set(libc::SO_BUSY_POLL, usecs)?;
        set(libc::SO_BUSY_POLL_BUDGET, budget)
    }
}

fn setsockopt<T>(fd: RawFd, opt: libc::c_int, val: &T, what: &'static str) -> Result<(), XskError> {
    // SAFETY: `val` points to a live, initialised T of the size we pass.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            opt,
            (val as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    check(rc, what).map(drop)
}

fn mmap_offsets(fd: RawFd) -> Result<libc::xdp_mmap_offsets, XskError> {
    // SAFETY: all-zero is a valid value of this plain-integer struct.
    let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
    // SAFETY: `off`/`len` describe a writable buffer of the right size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libc::XDP_MMAP_OFFSETS,
            (&mut off as *mut libc::xdp_mmap_offsets).cast(),
            &mut len,
        )
    };
    check(rc, "XDP_MMAP_OFFSETS")?;
    Ok(off)
}

/// Kernel statistics of one socket (XDP_STATISTICS).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KernelStats {
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

/// An AF_XDP socket bound to one queue of one interface.
#[derive(Debug)]
pub struct XskSocket {
    fill: Ring<u64>,
    comp: Ring<u64>,
    rx: Ring<Desc>,
    tx: Ring<Desc>,
    info: BindInfo,
    counters: Counters,
    ifname: String,
    queue: u32,
    // Drop order: rings unmapped, then the socket closed, then the UMEM released.
    fd: OwnedFd,
    umem: Arc<Umem>,
}

/// A socket created and mapped, not yet bound.
struct Unbound {
    fd: OwnedFd,
    fill: Ring<u64>,
    comp: Ring<u64>,
    rx: Ring<Desc>,
    tx: Ring<Desc>,
}

impl Unbound {
    fn new(umem: Option<&Umem>, cfg: &XskConfig) -> Result<Self, XskError> {
        for s in [cfg.rx_size, cfg.tx_size, cfg.fill_size, cfg.comp_size] {
            if !s.is_power_of_two() {
                return Err(XskError::Config("ring sizes must be powers of two"));
            }
        }
        // SAFETY: plain socket(2) call.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        let raw = check(raw, "socket(AF_XDP)")?;
        // SAFETY: `raw` is a fresh descriptor that nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if let Some(umem) = umem {
            umem.register(raw)?;
        }
        // Every socket gets its own fill and completion ring (needed for sharing a UMEM
        // across devices or queues).
        setsockopt(
            raw,
            libc::XDP_UMEM_FILL_RING,
            &cfg.fill_size,
            "XDP_UMEM_FILL_RING",
        )?;
        setsockopt(
            raw,
            libc::XDP_UMEM_COMPLETION_RING,
            &cfg.comp_size,
            "XDP_UMEM_COMPLETION_RING",
        )?;
        setsockopt(raw, libc::XDP_RX_RING, &cfg.rx_size, "XDP_RX_RING")?;
        setsockopt(raw, libc::XDP_TX_RING, &cfg.tx_size, "XDP_TX_RING")?;
        let off = mmap_offsets(raw)?;
        Ok(Unbound {
            fill: Ring::map(
                raw,
                &off.fr,
                cfg.fill_size,
                libc::XDP_UMEM_PGOFF_FILL_RING,
                true,
                "mmap fill ring",
            )?,
            comp: Ring::map(
                raw,
                &off.cr,
                cfg.comp_size,
                libc::XDP_UMEM_PGOFF_COMPLETION_RING,
                false,
                "mmap completion ring",
            )?,
            rx: Ring::map(
                raw,
                &off.rx,
                cfg.rx_size,
                libc::XDP_PGOFF_RX_RING as u64,
                false,
                "mmap rx ring",
            )?,
            tx: Ring::map(
                raw,
                &off.tx,
                cfg.tx_size,
                libc::XDP_PGOFF_TX_RING as u64,
                true,
                "mmap tx ring",
            )?,
            fd,
        })
    }

    /// Binds to `queue`. A queue whose previous socket belonged to a process that just died
    /// (a crash, kill -9, a quick restart) reads busy until the kernel's deferred release of
    /// that socket's pool has run, a moment later; a bind that finds it busy is tried again
    /// for up to [`BUSY_QUEUE_WAIT`] before the error stands.
    fn bind(&self, ifindex: u32, queue: u32, flags: u16, shared_fd: RawFd) -> io::Result<()> {
        let deadline = Instant::now() + BUSY_QUEUE_WAIT;
        loop {
            match self.bind_once(ifindex, queue, flags, shared_fd) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    fn bind_once(&self, ifindex: u32, queue: u32, flags: u16, shared_fd: RawFd) -> io::Result<()> {
        let addr = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: flags,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: shared_fd as u32,
        };
        // SAFETY: `addr` is a valid sockaddr_xdp of the size we pass.
        let rc = unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_xdp).cast(),
                size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

impl XskSocket {
    /// A socket on `ifname` queue `queue` (calling thread's network namespace) that
    /// registers and owns `umem`: zero-copy if allowed and supported, else copy mode.
    pub fn new(
        umem: &Arc<Umem>,
        ifname: &str,
        queue: u32,
        cfg: &XskConfig,
    ) -> Result<Self, XskError> {
        let ifindex = bpf::ifindex(ifname)?;
        let wake = if cfg.need_wakeup {
            libc::XDP_USE_NEED_WAKEUP
        } else {
            0
        };
        let mut zero_copy_error = None;
        if cfg.try_zero_copy {
            let s = Unbound::new(Some(umem), cfg)?;
            match s.bind(ifindex, queue, libc::XDP_ZEROCOPY | wake, 0) {
                Ok(()) => {
                    let info = BindInfo {
                        zero_copy: true,
                        need_wakeup: cfg.need_wakeup,
                        shared_umem: false,
                        zero_copy_error,
                    };
                    return Ok(Self::from_parts(s, umem, info, ifname, queue));
                }
                // Still busy after the wait: copy mode would find the same queue busy and
                // wait as long again.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    return Err(sys("bind AF_XDP (zero-copy)")(e));
                }
                // A fresh socket for the retry: a failed bind may leave state behind.
                Err(e) => zero_copy_error = e.raw_os_error(),
            }
        }
        let s = Unbound::new(Some(umem), cfg)?;
        s.bind(ifindex, queue, libc::XDP_COPY | wake, 0)
            .map_err(sys("bind AF_XDP (copy)"))?;
        let info = BindInfo {
            zero_copy: false,
            need_wakeup: cfg.need_wakeup,
            shared_umem: false,
            zero_copy_error,
        };
        Ok(Self::from_parts(s, umem, info, ifname, queue))
    }

    /// A socket on `ifname` queue `queue` sharing `owner`'s UMEM, with its own fill and
    /// completion rings. It inherits the owner's copy/zero-copy and need_wakeup modes.
    pub fn new_shared(
        owner: &XskSocket,
        ifname: &str,
        queue: u32,
        cfg: &XskConfig,
    ) -> Result<Self, XskError> {
        let ifindex = bpf::ifindex(ifname)?;
        let s = Unbound::new(None, cfg)?;
        s.bind(ifindex, queue, libc::XDP_SHARED_UMEM, owner.fd.as_raw_fd())
            .map_err(sys("bind AF_XDP (shared UMEM)"))?;
        let info = BindInfo {
            shared_umem: true,
            zero_copy_error: None,
            ..owner.info
        };
        Ok(Self::from_parts(s, &owner.umem, info, ifname, queue))
    }

    fn from_parts(s: Unbound, umem: &Arc<Umem>, info: BindInfo, ifname: &str, queue: u32) -> Self {
        XskSocket {
            umem: Arc::clone(umem),
            fill: s.fill,
            comp: s.comp,
            rx: s.rx,
            tx: s.tx,
            info,
            counters: Counters::default(),
            ifname: ifname.to_owned(),
            queue,
            fd: s.fd,
        }
    }

    pub fn umem(&self) -> &Arc<Umem> {
        &self.umem
    }
    pub fn info(&self) -> BindInfo {
        self.info
    }
    pub fn counters(&self) -> Counters {
        self.counters
    }
    pub fn ifname(&self) -> &str {
        &self.ifname
    }
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// Gives frames to the kernel for receiving; returns how many the fill ring took.
    pub fn fill(&mut self, addrs: &[u64]) -> usize {
        let n = self.fill.free(addrs.len() as u32);
        for (i, &a) in addrs[..n as usize].iter().enumerate() {
            self.fill.write(i as u32, self.umem.frame_base(a));
        }
        self.fill.submit(n);
        self.counters.filled += u64::from(n);
        n as usize
    }

    /// Moves up to `max` frames from `pool` to the fill ring; returns how many.
    pub fn refill(&mut self, pool: &mut FramePool, max: usize) -> usize {
        let want = max.min(pool.free_count()) as u32;
        let n = self.fill.free(want);
        for i in 0..n {
            let a = pool.alloc().expect("counted above");
            self.fill.write(i, a);
        }
        self.fill.submit(n);
        self.counters.filled += u64::from(n);
        n as usize
    }

    /// Received frames, now owned by the caller.
    pub fn rx_batch(&mut self, out: &mut [Desc]) -> usize {
        let n = self.rx.consume(out);
        self.counters.received += u64::from(n);
        n as usize
    }

    /// Queues frames for sending; returns how many the tx ring took (the rest stay the
    /// caller's). Call [`XskSocket::kick_tx`] afterwards.
    pub fn tx_batch(&mut self, descs: &[Desc]) -> usize {
        let n = self.tx.produce(descs);
        self.counters.sent += u64::from(n);
        n as usize
    }

    /// Reaps sent frames (UMEM addresses as given to `tx_batch`), now owned by the caller.
    pub fn complete(&mut self, out: &mut [u64]) -> usize {
        let n = self.comp.consume(out);
        self.counters.completed += u64::from(n);
        n as usize
    }

    /// Tells the kernel to send, if it needs telling; returns whether a syscall was made.
    pub fn kick_tx(&self) -> io::Result<bool> {
        if self.info.need_wakeup && !self.tx.needs_wakeup() {
            return Ok(false);
        }
        // SAFETY: an empty sendto on our own socket.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        // Down, busy or out of buffers: the kernel will get to it; try again next batch.
        made(
            rc,
            &[libc::EAGAIN, libc::EBUSY, libc::ENOBUFS, libc::ENETDOWN],
        )
    }

    /// Frames on the tx ring that the kernel has not taken yet.
    pub fn tx_unsent(&self) -> u32 {
        self.tx.backlog()
    }

    /// Kicks until the kernel has taken every frame on the tx ring or stops taking them
    /// (a kick sends at most 32 frames in copy mode; a zero-copy driver takes them later).
    /// Without it, frames beyond the first 32 of a batch would wait for the next packet.
    pub fn flush_tx(&self) -> io::Result<()> {
        let mut unsent = self.tx_unsent();
        while unsent > 0 {
            self.kick_tx()?;
            let now = self.tx_unsent();
            if now >= unsent {
                break;
            }
            unsent = now;
        }
        Ok(())
    }

    /// Wakes the driver to receive if the fill ring asks for it; returns whether a syscall
    /// was made.
    pub fn wakeup_rx(&self) -> io::Result<bool> {
        if !self.info.need_wakeup || !self.fill.needs_wakeup() {
            return Ok(false);
        }
        // SAFETY: an empty recvfrom on our own socket.
        let rc = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        made(rc, &[libc::EAGAIN, libc::EBUSY, libc::ENOBUFS])
    }

    /// Frames on the fill ring that the kernel has not taken yet (diagnostics and tests).
    pub fn fill_ring_pending(&self) -> Vec<u64> {
        self.fill.pending()
    }

    /// The kernel's drop and error counters for this socket.
    pub fn kernel_stats(&self) -> Result<KernelStats, XskError> {
        // SAFETY: all-zero is a valid value of this plain-integer struct.
        let mut st: libc::xdp_statistics = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::xdp_statistics>() as libc::socklen_t;
        // SAFETY: `st`/`len` describe a writable buffer of the right size.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                (&mut st as *mut libc::xdp_statistics).cast(),
                &mut len,
            )
        };
        check(rc, "XDP_STATISTICS")?;
        Ok(KernelStats {
            rx_dropped: st.rx_dropped,
            rx_invalid_descs: st.rx_invalid_descs,
            tx_invalid_descs: st.tx_invalid_descs,
            rx_ring_full: st.rx_ring_full,
            rx_fill_ring_empty_descs: st.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: st.tx_ring_empty_descs,
        })
    }
}

impl AsRawFd for XskSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Waits until one of `sockets` has something to receive, or `timeout_ms` passes.
pub fn poll_rx(sockets: &[&XskSocket], timeout_ms: i32) -> io::Result<bool> {
    let mut fds: Vec<libc::pollfd> = sockets
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `fds` is a valid array of `fds.len()` pollfds.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    match rc {
        r if r < 0 => Err(io::Error::last_os_error()),
        0 => Ok(false),
        _ => Ok(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_detects_double_free_and_range() {
        let umem = Umem::new(8, 2048).unwrap();
        let mut pool = FramePool::new(&umem);
        let a = pool.alloc().unwrap();
        assert_eq!(pool.free_count(), 7);
        pool.release(a + 300).unwrap();
        assert_eq!(pool.release(a), Err(FrameError::DoubleFree(a)));
        assert_eq!(
            pool.release(8 * 2048),
            Err(FrameError::OutOfRange(8 * 2048))
        );
        assert_eq!(pool.free_count(), 8);
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(Umem::new(8, 1000).is_err());
        assert!(Umem::new(0, 2048).is_err());
    }
}
