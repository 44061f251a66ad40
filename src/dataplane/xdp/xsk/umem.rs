//! The UMEM (the packet buffer area the kernel and the sockets share), the memory
//! mappings under it and the rings, and the free list of its frames.

use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::Arc;

use super::{Desc, FrameError, XskError, setsockopt, sys};

/// A memory mapping, unmapped on drop.
#[derive(Debug)]
pub(super) struct Mapping {
    pub(super) ptr: NonNull<u8>,
    pub(super) len: usize,
}

// SAFETY: the mapping is plain memory; access is governed by the owners' &/&mut methods.
unsafe impl Send for Mapping {}
// SAFETY: as above; shared access only goes through atomics or `unsafe` accessors.
unsafe impl Sync for Mapping {}

impl Mapping {
    pub(super) fn new(
        len: usize,
        fd: RawFd,
        offset: u64,
        what: &'static str,
    ) -> Result<Self, XskError> {
        let anon = fd < 0;
        let flags = libc::MAP_POPULATE
            | if anon {
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS
            } else {
                libc::MAP_SHARED
            };
        // SAFETY: a fresh mapping chosen by the kernel; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(sys(what)(io::Error::last_os_error()));
        }
        let ptr = NonNull::new(ptr.cast()).ok_or(XskError::Config("mmap returned NULL"))?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping we created and nobody uses after drop.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The packet buffer area shared by the kernel and every socket bound to it.
#[derive(Debug)]
pub struct Umem {
    area: Mapping,
    frame_size: u32,
    frame_count: u32,
}

impl Umem {
    /// `frame_count` frames of `frame_size` bytes (2048 or 4096), page-aligned.
    pub fn new(frame_count: u32, frame_size: u32) -> Result<Arc<Self>, XskError> {
        if !(frame_size == 2048 || frame_size == 4096) {
            return Err(XskError::Config("frame size must be 2048 or 4096"));
        }
        if frame_count == 0 {
            return Err(XskError::Config("frame count must be positive"));
        }
        let len = frame_count as usize * frame_size as usize;
        let area = Mapping::new(len, -1, 0, "mmap UMEM")?;
        Ok(Arc::new(Umem {
            area,
            frame_size,
            frame_count,
        }))
    }

    pub fn frame_size(&self) -> u32 {
        self.frame_size
    }

    pub fn frame_count(&self) -> u32 {
        self.frame_count
    }

    /// The start of the frame that holds UMEM offset `addr`.
    pub fn frame_base(&self, addr: u64) -> u64 {
        addr & !(u64::from(self.frame_size) - 1)
    }

    /// The bytes of `desc`.
    ///
    /// # Safety
    /// The caller must own the frame (received by `rx_batch` and not yet handed to a tx or
    /// fill ring) and must not hold another reference to the same bytes.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn packet_mut(&self, desc: &Desc) -> &mut [u8] {
        let start = desc.addr as usize;
        let end = start + desc.len as usize;
        assert!(
            end <= self.area.len && self.frame_base(desc.addr) == self.frame_base(end as u64 - 1),
            "descriptor {desc:?} outside its frame"
        );
        // SAFETY: in bounds (checked above); exclusivity is the caller's contract.
        unsafe {
            std::slice::from_raw_parts_mut(self.area.ptr.as_ptr().add(start), desc.len as usize)
        }
    }

    /// The bytes from `addr` to the end of its frame: a received packet and the room after
    /// it, for a reply that is longer than the packet.
    ///
    /// # Safety
    /// As for [`Umem::packet_mut`]: the caller owns the frame and holds no other reference.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn frame_mut(&self, addr: u64) -> &mut [u8] {
        let start = addr as usize;
        let end = (self.frame_base(addr) + u64::from(self.frame_size)) as usize;
        assert!(end <= self.area.len, "address {addr:#x} outside the UMEM");
        // SAFETY: in bounds (checked above); exclusivity is the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.area.ptr.as_ptr().add(start), end - start) }
    }

    pub(super) fn register(&self, fd: RawFd) -> Result<(), XskError> {
        let reg = libc::xdp_umem_reg {
            addr: self.area.ptr.as_ptr() as u64,
            len: self.area.len as u64,
            chunk_size: self.frame_size,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(fd, libc::XDP_UMEM_REG, &reg, "XDP_UMEM_REG")
    }
}

/// The free list of UMEM frames, with double-free and range checks.
#[derive(Debug)]
pub struct FramePool {
    free: Vec<u64>,
    is_free: Vec<bool>,
    frame_size: u64,
}

impl FramePool {
    /// Every frame of `umem`, all free.
    pub fn new(umem: &Umem) -> Self {
        let fs = u64::from(umem.frame_size);
        let n = umem.frame_count as usize;
        FramePool {
            free: (0..n as u64).rev().map(|i| i * fs).collect(),
            is_free: vec![true; n],
            frame_size: fs,
        }
    }

    pub fn total(&self) -> usize {
        self.is_free.len()
    }

    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Takes one frame (its base address).
    pub fn alloc(&mut self) -> Option<u64> {
        let addr = self.free.pop()?;
        self.is_free[(addr / self.frame_size) as usize] = false;
        Some(addr)
    }

    /// Returns the frame that holds `addr` (any offset inside it).
    pub fn release(&mut self, addr: u64) -> Result<(), FrameError> {
        let idx = (addr / self.frame_size) as usize;
        let slot = self
            .is_free
            .get_mut(idx)
            .ok_or(FrameError::OutOfRange(addr))?;
        if *slot {
            return Err(FrameError::DoubleFree(addr));
        }
        *slot = true;
        self.free.push(idx as u64 * self.frame_size);
        Ok(())
    }

    pub fn release_all(&mut self, addrs: &[u64]) -> Result<(), FrameError> {
        addrs.iter().try_for_each(|&a| self.release(a))
    }

    /// Whether the frame holding `addr` is on the free list.
    pub fn is_free(&self, addr: u64) -> bool {
        self.is_free
            .get((addr / self.frame_size) as usize)
            .copied()
            .unwrap_or(false)
    }
}
