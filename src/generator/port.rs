//! One interface as the generator and the sink use it: an AF_XDP socket and UMEM per
//! queue, and (when receiving) the XDP steering program with an XSKMAP of those sockets,
//! so that ARP and traffic for the interface's own addresses still reach the kernel.

use std::sync::Arc;

use super::{GenError, interface_addresses};
use crate::dataplane::xdp::bpf::{XdpLink, XdpMode, XdpProgram, XskMap};
use crate::dataplane::xdp::xsk::{Desc, Umem, XskConfig, XskError, XskSocket};

pub(crate) const FRAME_SIZE: u32 = 2048;
/// Ring sizes (every ring): transmit frames per queue never exceed it, so `tx_batch`
/// always takes a whole batch.
pub(crate) const RING: u32 = 2048;
/// Packets the kernel sends per `sendto` in copy mode (its per-call budget).
const COPY_TX_BUDGET: usize = 32;

pub(crate) struct Queue {
    pub socket: XskSocket,
    pub umem: Arc<Umem>,
    /// Free transmit frames (UMEM addresses).
    pub tx_free: Vec<u64>,
    /// Frames reaped or received, scratch for the rings (no allocation per round).
    pub scratch: Vec<u64>,
    pub descs: Vec<Desc>,
    pub pending: Vec<Desc>,
}

/// Steering first: dropped (detached) before the sockets close.
struct Steering {
    _link: XdpLink,
    _program: XdpProgram,
    _map: XskMap,
    mode: XdpMode,
}

pub(crate) struct Port {
    steering: Option<Steering>,
    pub queues: Vec<Queue>,
    pub zero_copy: bool,
}

impl Port {
    /// Sockets on queues 0..`queues` of `ifname`, each with `tx_frames` transmit frames
    /// and `rx_frames` frames given to its fill ring; with `receive`, the steering program.
    pub fn open(
        ifname: &str,
        queues: u16,
        tx_frames: u32,
        rx_frames: u32,
        receive: bool,
        try_zero_copy: bool,
    ) -> Result<Port, GenError> {
        assert!(tx_frames <= RING && rx_frames <= RING);
        let cfg = XskConfig {
            rx_size: RING,
            tx_size: RING,
            fill_size: RING,
            comp_size: RING,
            try_zero_copy,
            need_wakeup: true,
        };
        let mut out = Vec::new();
        for q in 0..queues {
            let umem = Umem::new((tx_frames + rx_frames).max(1), FRAME_SIZE)
                .map_err(GenError::xsk(format!("UMEM for {ifname} queue {q}")))?;
            let mut socket = bind_retrying(&umem, ifname, u32::from(q), &cfg).map_err(
                GenError::xsk(format!("AF_XDP socket on {ifname} queue {q}")),
            )?;
            let fs = u64::from(FRAME_SIZE);
            let tx_free: Vec<u64> = (0..u64::from(tx_frames)).rev().map(|i| i * fs).collect();
            let rx: Vec<u64> = (u64::from(tx_frames)..u64::from(tx_frames + rx_frames))
                .map(|i| i * fs)
                .collect();
            let filled = socket.fill(&rx);
            debug_assert_eq!(filled, rx.len());
            out.push(Queue {
                socket,
                umem,
                tx_free,
                scratch: vec![0; RING as usize],
                descs: vec![Desc::default(); 256],
                pending: Vec::with_capacity(RING as usize),
            });
        }
        let zero_copy = out.first().is_some_and(|q| q.socket.info().zero_copy);
        let steering = if receive {
            let map = XskMap::create(u32::from(queues))
                .map_err(GenError::bpf(format!("XSKMAP for {ifname}")))?;
            for (q, queue) in out.iter().enumerate() {
                let fd = std::os::fd::AsRawFd::as_raw_fd(&queue.socket);
                map.set(q as u32, fd)
                    .map_err(GenError::bpf(format!("XSKMAP entry {q} on {ifname}")))?;
            }
            let own = interface_addresses(ifname);
            let program = XdpProgram::load_steering(&map, &own)
                .map_err(GenError::bpf(format!("XDP program for {ifname}")))?;
            let link = program
                .attach(ifname)
                .map_err(GenError::bpf(format!("attaching XDP to {ifname}")))?;
            Some(Steering {
                mode: link.mode(),
                _link: link,
                _program: program,
                _map: map,
            })
        } else {
            None
        };
        Ok(Port {
            steering,
            queues: out,
            zero_copy,
        })
    }

    /// `native`, `generic`, or `none` (not receiving).
    pub fn xdp_mode(&self) -> &'static str {
        match self.steering.as_ref().map(|s| s.mode) {
            Some(XdpMode::Native) => "native",
            Some(XdpMode::Generic) => "generic",
            None => "none",
        }
    }

    /// Waits up to `timeout_ns` for any queue to have something to receive.
    pub fn wait_rx(&self, timeout_ns: u64) {
        for q in &self.queues {
            let _ = q.socket.wakeup_rx();
        }
        let mut fds = [libc::pollfd {
            fd: -1,
            events: 0,
            revents: 0,
        }; 64];
        let n = self.queues.len().min(fds.len());
        for (fd, q) in fds.iter_mut().zip(&self.queues) {
            fd.fd = std::os::fd::AsRawFd::as_raw_fd(&q.socket);
            fd.events = libc::POLLIN;
        }
        let ts = libc::timespec {
            tv_sec: (timeout_ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
        };
        // SAFETY: `fds[..n]` are valid pollfds; `ts` is a valid timespec; no signal mask.
        unsafe { libc::ppoll(fds.as_mut_ptr(), n as libc::nfds_t, &ts, std::ptr::null()) };
    }
}

/// Binds, retrying for up to 2 s while the queue is busy: the kernel releases the socket
/// of a process that just exited (a previous run on the same queue) asynchronously.
fn bind_retrying(
    umem: &Arc<Umem>,
    ifname: &str,
    queue: u32,
    cfg: &XskConfig,
) -> Result<XskSocket, XskError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match XskSocket::new(umem, ifname, queue, cfg) {
            Err(XskError::Sys { source, .. })
                if source.raw_os_error() == Some(libc::EBUSY)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

impl Queue {
    /// Puts `pending` on the tx ring and kicks the kernel (copy mode sends at most 32 per
    /// call, so once per 32). Returns how many the ring took; the rest stay in `pending`'s
    /// tail (returned as the index where they start) for the caller to take back.
    pub fn submit(&mut self) -> usize {
        if self.pending.is_empty() {
            return 0;
        }
        let taken = self.socket.tx_batch(&self.pending);
        for _ in 0..taken.div_ceil(COPY_TX_BUDGET).max(1) {
            let _ = self.socket.kick_tx();
        }
        taken
    }

    /// Reaps completed transmit frames into `tx_free`; returns how many.
    pub fn reap_to_free(&mut self) -> usize {
        let n = self.socket.complete(&mut self.scratch);
        self.tx_free.extend_from_slice(&self.scratch[..n]);
        n
    }

    /// Kicks the kernel again if frames are still waiting in the tx ring.
    pub fn kick_if_pending(&self) {
        if self.socket.counters().in_tx() > 0 {
            let _ = self.socket.kick_tx();
        }
    }
}
