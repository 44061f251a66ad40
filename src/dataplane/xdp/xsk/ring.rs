//! A single-producer/single-consumer ring shared with the kernel (fill, completion, rx,
//! tx); the ordering rules are in the parent module's header.

use std::mem::size_of;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering, fence};

use super::XskError;
use super::umem::Mapping;

/// A single-producer/single-consumer ring shared with the kernel.
#[derive(Debug)]
pub(super) struct Ring<T> {
    _map: Mapping,
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    entries: NonNull<T>,
    mask: u32,
    size: u32,
    /// Our copy of the index we own, and the last seen value (+ size, for producer
    /// rings) of the one the kernel owns.
    cached_prod: u32,
    cached_cons: u32,
}

// SAFETY: the ring memory is only touched through &mut self (our side) and atomics.
unsafe impl<T: Send> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    pub(super) fn map(
        fd: RawFd,
        off: &libc::xdp_ring_offset,
        size: u32,
        pgoff: u64,
        producer_side: bool,
        what: &'static str,
    ) -> Result<Self, XskError> {
        let len = off.desc as usize + size as usize * size_of::<T>();
        let map = Mapping::new(len, fd, pgoff, what)?;
        let at = |o: u64| {
            // SAFETY: the kernel's offsets lie inside the mapping it sized.
            unsafe { NonNull::new_unchecked(map.ptr.as_ptr().add(o as usize)) }
        };
        let producer: NonNull<AtomicU32> = at(off.producer).cast();
        let consumer: NonNull<AtomicU32> = at(off.consumer).cast();
        // SAFETY: the index words are valid, aligned u32s for the mapping's life.
        let (prod, cons) = unsafe {
            (
                producer.as_ref().load(Ordering::Relaxed),
                consumer.as_ref().load(Ordering::Relaxed),
            )
        };
        Ok(Ring {
            producer,
            consumer,
            flags: at(off.flags).cast(),
            entries: at(off.desc).cast(),
            mask: size - 1,
            size,
            cached_prod: prod,
            cached_cons: if producer_side { cons + size } else { cons },
            _map: map,
        })
    }

    pub(super) fn producer(&self) -> &AtomicU32 {
        // SAFETY: valid and aligned for the mapping's life, which `self` owns.
        unsafe { self.producer.as_ref() }
    }

    pub(super) fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { self.consumer.as_ref() }
    }

    pub(super) fn needs_wakeup(&self) -> bool {
        // Order our index store before the flag load (pairs with the kernel's barrier
        // between setting the flag and re-checking the ring), so no wakeup is lost.
        fence(Ordering::SeqCst);
        // SAFETY: as for `producer`.
        let flags = unsafe { self.flags.as_ref() }.load(Ordering::Relaxed);
        flags & libc::XDP_RING_NEED_WAKEUP != 0
    }

    pub(super) fn slot(&self, idx: u32) -> *mut T {
        // SAFETY: masked index is within the `size` entries of the mapping.
        unsafe { self.entries.as_ptr().add((idx & self.mask) as usize) }
    }

    // --- producer side (fill, tx) ---

    /// Free slots, up to `want`.
    pub(super) fn free(&mut self, want: u32) -> u32 {
        let mut free = self.cached_cons.wrapping_sub(self.cached_prod);
        if free < want {
            self.cached_cons = self
                .consumer()
                .load(Ordering::Acquire)
                .wrapping_add(self.size);
            free = self.cached_cons.wrapping_sub(self.cached_prod);
        }
        free.min(want)
    }

    pub(super) fn write(&mut self, i: u32, v: T) {
        // SAFETY: slot `cached_prod + i` was reserved by `free` and is ours until submit.
        unsafe {
            self.slot(self.cached_prod.wrapping_add(i))
                .write_volatile(v)
        };
    }

    pub(super) fn submit(&mut self, n: u32) {
        self.cached_prod = self.cached_prod.wrapping_add(n);
        self.producer().store(self.cached_prod, Ordering::Release);
    }

    // --- consumer side (rx, completion) ---

    /// Filled slots, up to `want`.
    pub(super) fn available(&mut self, want: u32) -> u32 {
        let mut avail = self.cached_prod.wrapping_sub(self.cached_cons);
        if avail < want {
            self.cached_prod = self.producer().load(Ordering::Acquire);
            avail = self.cached_prod.wrapping_sub(self.cached_cons);
        }
        avail.min(want)
    }

    pub(super) fn read(&self, i: u32) -> T {
        // SAFETY: slot `cached_cons + i` was published by the kernel (see `available`).
        unsafe { self.slot(self.cached_cons.wrapping_add(i)).read_volatile() }
    }

    pub(super) fn release(&mut self, n: u32) {
        self.cached_cons = self.cached_cons.wrapping_add(n);
        self.consumer().store(self.cached_cons, Ordering::Release);
    }

    /// Writes as many of `items` as there is room for and hands them to the kernel; how
    /// many it took.
    pub(super) fn produce(&mut self, items: &[T]) -> u32 {
        let n = self.free(items.len() as u32);
        for (i, &v) in items[..n as usize].iter().enumerate() {
            self.write(i as u32, v);
        }
        self.submit(n);
        n
    }

    /// Reads up to `out.len()` entries the kernel published into `out` and gives their
    /// slots back; how many.
    pub(super) fn consume(&mut self, out: &mut [T]) -> u32 {
        let n = self.available(out.len() as u32);
        for (i, slot) in out[..n as usize].iter_mut().enumerate() {
            *slot = self.read(i as u32);
        }
        self.release(n);
        n
    }

    /// How many entries we produced that the kernel has not consumed yet.
    pub(super) fn backlog(&self) -> u32 {
        self.cached_prod
            .wrapping_sub(self.consumer().load(Ordering::Acquire))
    }

    /// Entries between the kernel's consumer and our producer (a producer ring's backlog).
    pub(super) fn pending(&self) -> Vec<T> {
        let cons = self.consumer().load(Ordering::Acquire);
        let n = self.cached_prod.wrapping_sub(cons);
        // SAFETY: those slots hold values we wrote and the kernel has not consumed yet.
        (0..n)
            .map(|i| unsafe { self.slot(cons.wrapping_add(i)).read_volatile() })
            .collect()
    }
}
