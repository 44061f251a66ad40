//! Large tables on 2 MiB pages. The flow table and the session records of a million
//! sessions span tens to hundreds of MB that packets read at random: with 4 KiB pages
//! nearly every lookup also misses the TLB, and under virtualisation a miss costs a
//! two-dimensional page walk, which a prefetch cannot hide. The tables are therefore
//! mapped directly (fresh, untouched, 2 MiB aligned) and advised onto transparent huge
//! pages before the first write; where the kernel offers none the advice is ignored and
//! only speed changes. They bypass the allocator, so [`HugeArray::bytes`] is what memory
//! accounting must add.

use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

const HUGE_PAGE: usize = 2 << 20;
const PAGE: usize = 4096;

/// A fixed number of `T`, all zero bytes at first, in their own 2 MiB-aligned mapping.
pub struct HugeArray<T> {
    ptr: NonNull<T>,
    len: usize,
    bytes: usize,
}

// SAFETY: the array owns its memory exclusively, like a Box<[T]>.
unsafe impl<T: Send> Send for HugeArray<T> {}
// SAFETY: shared access only reads, like &[T].
unsafe impl<T: Sync> Sync for HugeArray<T> {}

impl<T: Copy> HugeArray<T> {
    /// `len` items of all-zero bytes.
    ///
    /// # Safety
    /// The all-zero bit pattern must be a valid `T`.
    pub unsafe fn zeroed(len: usize) -> Self {
        // Small tables (tests, tiny configs) keep small pages rather than a 2 MiB minimum.
        let size = (len * std::mem::size_of::<T>()).max(1);
        let bytes = size.next_multiple_of(if size < HUGE_PAGE { PAGE } else { HUGE_PAGE });
        let ptr = map_aligned(bytes).unwrap_or_else(|| {
            let layout = std::alloc::Layout::from_size_align(bytes, HUGE_PAGE)
                .expect("a table fits the address space");
            std::alloc::handle_alloc_error(layout)
        });
        HugeArray {
            ptr: ptr.cast(),
            len,
            bytes,
        }
    }

    /// Bytes mapped for the array.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Backs every page with memory now, contents unchanged. A page's first write
    /// otherwise faults on the packet path, and a huge page's fault zeroes 2 MiB: the first
    /// new sessions after a start stalled a worker for tens of milliseconds. Committing up
    /// front also means a box short of memory finds out at start, not under load.
    pub fn commit(&mut self) {
        // SAFETY: the range is this array's own mapping; MADV_POPULATE_WRITE (Linux 5.14+)
        // only faults pages in, as writes would, without changing what they hold.
        let populated = unsafe {
            libc::madvise(
                self.ptr.as_ptr().cast(),
                self.bytes,
                libc::MADV_POPULATE_WRITE,
            )
        } == 0;
        if !populated {
            // Older kernels: a write to each small page, of the byte already there.
            let base = self.ptr.as_ptr().cast::<u8>();
            for offset in (0..self.bytes).step_by(PAGE) {
                // SAFETY: `offset` lies inside the mapping; the byte is rewritten unchanged
                // and `&mut self` makes the access exclusive.
                unsafe {
                    let byte = base.add(offset);
                    byte.write_volatile(byte.read_volatile());
                }
            }
        }
    }
}

/// Maps `bytes` of fresh zeroed memory; whole 2 MiB pages at a 2 MiB boundary, advised onto
/// huge pages. `None` if the kernel refuses the mapping.
fn map_aligned(bytes: usize) -> Option<NonNull<u8>> {
    let huge = bytes.is_multiple_of(HUGE_PAGE);
    let len = if huge { bytes + HUGE_PAGE } else { bytes };
    // SAFETY: an anonymous private mapping of our own; nothing else refers to it.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return None;
    }
    if !huge {
        return NonNull::new(raw.cast());
    }
    let start = (raw as usize).next_multiple_of(HUGE_PAGE);
    let head = start - raw as usize;
    // SAFETY: the head and tail lie inside the mapping just made and are not used.
    unsafe {
        if head > 0 {
            libc::munmap(raw, head);
        }
        let tail = len - head - bytes;
        if tail > 0 {
            libc::munmap((start + bytes) as *mut libc::c_void, tail);
        }
        // Best effort: without huge pages the table only runs slower.
        libc::madvise(start as *mut libc::c_void, bytes, libc::MADV_HUGEPAGE);
    }
    NonNull::new(start as *mut u8)
}

impl<T> Deref for HugeArray<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` holds `len` initialised (zero-valid) items for the array's life.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> DerefMut for HugeArray<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> Drop for HugeArray<T> {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `map_aligned` with exactly these bounds; the
        // items are plain data (zero-valid), with nothing to drop.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.bytes);
        }
    }
}

impl<T> std::fmt::Debug for HugeArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HugeArray({} items, {} bytes)", self.len, self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_writable_and_aligned() {
        // SAFETY: zero is a valid u64.
        let mut a: HugeArray<u64> = unsafe { HugeArray::zeroed(300_000) };
        assert_eq!(a.len(), 300_000);
        assert!(a.iter().all(|&v| v == 0));
        a[299_999] = 7;
        assert_eq!(a[299_999], 7);
        assert_eq!(a.as_ptr() as usize % HUGE_PAGE, 0);
        assert_eq!(a.bytes(), 2 * HUGE_PAGE);
        // SAFETY: as above.
        let small: HugeArray<u64> = unsafe { HugeArray::zeroed(10) };
        assert_eq!((small.len(), small.bytes()), (10, PAGE));
    }

    /// Small pages of `a` that are backed by memory now (mincore).
    fn resident<T: Copy>(a: &HugeArray<T>) -> usize {
        let mut flags = vec![0u8; a.bytes().div_ceil(PAGE)];
        // SAFETY: the range is `a`'s own mapping and `flags` has a byte per page of it.
        let rc = unsafe { libc::mincore(a.ptr.as_ptr().cast(), a.bytes(), flags.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
        flags.iter().filter(|f| *f & 1 == 1).count()
    }

    #[test]
    fn commit_backs_every_page_before_any_write() {
        // SAFETY: zero is a valid u64.
        let mut a: HugeArray<u64> = unsafe { HugeArray::zeroed(600_000) };
        assert_eq!(
            resident(&a),
            0,
            "a fresh table costs no memory until committed"
        );
        a.commit();
        assert_eq!(resident(&a), a.bytes() / PAGE);
    }

    #[test]
    fn commit_keeps_the_contents() {
        // SAFETY: zero is a valid u64.
        let mut a: HugeArray<u64> = unsafe { HugeArray::zeroed(300_000) };
        a[5] = 11;
        a[299_999] = 13;
        a.commit();
        assert_eq!((a[5], a[299_999]), (11, 13));
        assert_eq!(a.iter().filter(|&&v| v != 0).count(), 2);
    }
}
