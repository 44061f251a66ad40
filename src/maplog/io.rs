//! The mapping log's file: append-only, written through io_uring, optionally with O_DIRECT.
//!
//! Why it looks like this:
//!
//! * **Durability is explicit.** [`LogFile::append`] only copies into a staging buffer;
//!   [`LogFile::flush`] writes everything out (and waits for it); [`LogFile::sync`] adds an
//!   `fdatasync`. The writer above decides how often to pay for each, so the cost of a
//!   durability guarantee is visible at the call site.
//! * **O_DIRECT** keeps the log out of the page cache. The log is written once and read
//!   rarely (to answer a query, long after), so caching it only evicts pages the host needs
//!   and doubles the memory traffic. O_DIRECT needs 4096-aligned offsets, lengths and buffer
//!   addresses, so the tail is written as a whole page padded with zeros and rewritten, with
//!   more data, by the next flush. A file that was not closed (a crash) may therefore end in
//!   zero padding: the log format treats zeros as end-of-data, and [`LogFile::close`] cuts
//!   the file to its logical length.
//! * **Fallbacks, reported rather than hidden.** When the filesystem refuses O_DIRECT
//!   (`EINVAL` when setting the flag, or on the first aligned write) the file is written
//!   buffered ([`IoMode::Buffered`]). When io_uring is unavailable (`IoUring::new` fails, e.g.
//!   seccomp gives `EPERM`/`ENOSYS`, or the kernel lacks the Write/Fsync opcodes) the file is
//!   written with `pwrite(2)`/`fdatasync(2)` ([`Backend::Pwrite`]). Both choices are visible
//!   through [`LogFile::mode`] and [`LogFile::backend`] so the operator can be told.
//! * **Errors never lose track of data.** Every I/O error (`ENOSPC` included) is returned as
//!   an [`io::Error`]; the bytes that were accepted by `append` but not yet written stay in
//!   the staging buffer, [`LogFile::len`] is unchanged, and a later `flush` retries them.
//!
//! Operations are submitted and waited for synchronously, one at a time: the log writer is
//! a single sequential stream, and waiting before returning is what makes it sound to hand
//! the kernel a pointer into the staging buffer.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use io_uring::{IoUring, opcode, register::Probe, squeue, types};

/// O_DIRECT alignment for offsets, lengths and buffer addresses.
const PAGE: usize = 4096;
/// Submission queue size: operations are sequential, so a few entries are plenty.
const RING_ENTRIES: u32 = 8;
/// Largest single write (the SQE length is a u32); page-aligned so O_DIRECT chunks stay aligned.
const MAX_CHUNK: usize = 1 << 30;
/// Staging buffer size allocated at open, in pages (grows on demand, never shrinks).
const INITIAL_PAGES: usize = 16;

/// How bytes reach the disk, chosen at open and reported to the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoMode {
    /// O_DIRECT: bypasses the page cache; the tail page is zero-padded on disk until close.
    Direct,
    /// Through the page cache (the filesystem refused O_DIRECT, or it was not asked for).
    Buffered,
}

impl fmt::Display for IoMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoMode::Direct => "O_DIRECT",
            IoMode::Buffered => "buffered",
        })
    }
}

/// Which system interface performs the writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// io_uring Write and Fsync(DATASYNC) operations.
    IoUring,
    /// pwrite(2) and fdatasync(2): io_uring could not be set up.
    Pwrite,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::IoUring => "io_uring",
            Backend::Pwrite => "pwrite",
        })
    }
}

/// An append-only log file.
///
/// # Error contract
///
/// Every method returns I/O failures (`ENOSPC`, `EIO`, ...) as [`io::Error`] and never panics
/// on them. After a failed `flush`/`sync`, [`len`](Self::len) is still the number of bytes
/// accepted by [`append`](Self::append): nothing is dropped. The part that was not written
/// stays buffered, and a later `flush` (or `sync`, or `close`) writes it again from where the
/// file is known to be good, so a writer can simply retry once the disk has room.
///
/// Bytes stay buffered until an `fdatasync` covering them succeeds, not merely until they
/// are written: when writeback fails, Linux reports the error to one `fdatasync` and marks
/// the pages clean, so a second `fdatasync` would succeed with the data lost. A failed sync
/// therefore makes every byte since the last good one due again, and the retry rewrites
/// them before it syncs.
///
/// Dropping a `LogFile` without [`close`](Self::close) does no I/O: bytes not yet flushed are
/// lost, and with O_DIRECT the file may end in zero padding, exactly as after a crash.
pub struct LogFile {
    sink: Sink,
    staging: Staging,
    /// File offset of `staging`'s first byte; page-aligned in Direct mode. Everything before
    /// it has been written to the file and synced (or was there at open).
    base: u64,
    /// Leading bytes of `staging` written since the last good sync, not yet known durable.
    written: usize,
    mode: IoMode,
    /// A Direct write has succeeded, so a later `EINVAL` is a real error, not a refusal.
    direct_verified: bool,
    /// [`finish`](Self::finish) succeeded and nothing was appended since: `close` has no
    /// more I/O to do.
    finished: bool,
}

impl LogFile {
    /// Creates a new file (fails if it exists). `prefer_direct`: try O_DIRECT, fall back to buffered
    /// when the filesystem refuses it (EINVAL on open or on the first aligned write, e.g. tmpfs).
    pub fn create(path: &Path, prefer_direct: bool) -> io::Result<LogFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        Self::from_file(file, 0, prefer_direct, true)
    }

    /// Opens an existing file to keep appending after its first `valid_len` bytes: the file is
    /// truncated to `valid_len` first (this is how a torn tail is cut after a crash).
    ///
    /// Fails with `InvalidInput` if the file is shorter than `valid_len`.
    pub fn open_append(path: &Path, valid_len: u64, prefer_direct: bool) -> io::Result<LogFile> {
        let file = no_follow().read(true).write(true).open(path)?;
        if file.metadata()?.len() < valid_len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("log file is shorter than valid_len {valid_len}"),
            ));
        }
        file.set_len(valid_len)?;
        Self::from_file(file, valid_len, prefer_direct, true)
    }

    /// Shared tail of the constructors; `allow_uring` lets tests force the pwrite backend.
    fn from_file(
        file: File,
        valid_len: u64,
        prefer_direct: bool,
        allow_uring: bool,
    ) -> io::Result<LogFile> {
        let mut staging = Staging::with_pages(INITIAL_PAGES);
        // Buffered mode starts writing right at the end; Direct mode must rewrite the
        // partial last page, so it starts at that page and keeps its old bytes in memory.
        let tail_start = valid_len - valid_len % PAGE as u64;
        let tail_len = (valid_len - tail_start) as usize;
        let mode = if prefer_direct && set_direct(&file, true)? {
            if tail_len > 0 {
                read_tail(&file, tail_start, tail_len, &mut staging)?;
            }
            IoMode::Direct
        } else {
            IoMode::Buffered
        };
        let base = match mode {
            IoMode::Direct => tail_start,
            IoMode::Buffered => valid_len,
        };
        Ok(LogFile {
            sink: Sink::new(file, allow_uring),
            staging,
            base,
            written: 0,
            mode,
            direct_verified: false,
            finished: false,
        })
    }

    /// How bytes reach the disk (may change from Direct to Buffered on the first flush).
    pub fn mode(&self) -> IoMode {
        self.mode
    }

    /// Which system interface writes the bytes.
    pub fn backend(&self) -> Backend {
        if self.sink.ring.is_some() {
            Backend::IoUring
        } else {
            Backend::Pwrite
        }
    }

    /// Logical length: bytes appended so far (including the `valid_len` it was opened with).
    pub fn len(&self) -> u64 {
        self.base + self.staging.len as u64
    }

    /// True when no byte has been appended (and none was there at open).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues bytes at the end. Only copies into the staging buffer (growing it if needed);
    /// nothing reaches the file before [`flush`](Self::flush).
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.staging.push(bytes);
        self.finished = false;
        Ok(())
    }

    /// Writes every appended byte to the file (submitted through io_uring and completed);
    /// not necessarily durable. On error nothing is lost: see the type's error contract.
    pub fn flush(&mut self) -> io::Result<()> {
        loop {
            match self.write_staged() {
                Err(e) if self.is_direct_refusal(&e) => self.fall_back_to_buffered()?,
                other => return other,
            }
        }
    }

    /// [`flush`](Self::flush), then fdatasync (io_uring Fsync op with the DATASYNC flag;
    /// fdatasync(2) for Pwrite).
    pub fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        self.datasync()
    }

    /// fdatasync; once it succeeds the written bytes are durable and leave the buffer, and
    /// when it fails they are all due to be written again (see the type's error contract).
    fn datasync(&mut self) -> io::Result<()> {
        if let Err(e) = self.sink.datasync() {
            self.written = 0;
            return Err(e);
        }
        self.retire(self.written);
        Ok(())
    }

    /// Everything [`close`](Self::close) does before closing the descriptor: flushes, cuts
    /// the file to its logical length (O_DIRECT pads the tail page) and makes that durable
    /// with fdatasync. On error nothing is lost and it can simply be called again, so a
    /// caller that must not drop data (disk full) finishes first and closes after.
    pub fn finish(&mut self) -> io::Result<()> {
        self.flush()?;
        // Truncate before the final datasync so the shortened size is durable as well.
        self.sink.file.set_len(self.len())?;
        self.datasync()?;
        self.finished = true;
        Ok(())
    }

    /// [`finish`](Self::finish) (unless it already succeeded with nothing appended since),
    /// then closes the file, reporting a close(2) error too.
    ///
    /// On error the `LogFile` is consumed; the file holds what was written so far and can be
    /// reopened with [`open_append`](Self::open_append).
    pub fn close(mut self) -> io::Result<()> {
        if !self.finished {
            self.finish()?;
        }
        let Sink { file, ring, .. } = self.sink;
        drop(ring);
        close_fd(file)
    }

    /// EINVAL from the first Direct write: the filesystem accepted the flag but not the I/O.
    fn is_direct_refusal(&self, e: &io::Error) -> bool {
        self.mode == IoMode::Direct
            && !self.direct_verified
            && e.raw_os_error() == Some(libc::EINVAL)
    }

    fn fall_back_to_buffered(&mut self) -> io::Result<()> {
        set_direct(&self.sink.file, false)?;
        self.mode = IoMode::Buffered;
        Ok(())
    }

    /// Writes what of the staging buffer is not written yet (at `base` + its offset), and
    /// records how far the file is known to be written, also when a write failed part-way
    /// (so a retry continues from there). Direct mode starts at the page holding the first
    /// unwritten byte: the partial last page is rewritten whole.
    fn write_staged(&mut self) -> io::Result<()> {
        let end = match self.mode {
            IoMode::Direct => round_up(self.staging.len),
            IoMode::Buffered => self.staging.len,
        };
        self.staging.zero_padding(end);
        let mut done = match self.mode {
            IoMode::Direct => round_down(self.written),
            IoMode::Buffered => self.written,
        };
        let result = loop {
            if done >= end {
                break Ok(());
            }
            let chunk = (end - done).min(MAX_CHUNK);
            let buf = &self.staging.bytes()[done..done + chunk];
            match self.sink.write_at(buf, self.base + done as u64) {
                Ok(0) => break Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => done = self.advance(done, n)?,
                Err(e) => break Err(e),
            }
        };
        if self.sink.take_abandoned() {
            // The kernel may still read the old buffer: leave it leaked, keep a copy.
            self.staging.leak_and_replace();
        }
        if done > 0 && self.mode == IoMode::Direct {
            self.direct_verified = true;
        }
        self.written = self.written.max(done.min(self.staging.len));
        result
    }

    /// Progress after a (possibly short) write of `n` bytes at `done`. O_DIRECT can only
    /// continue from a page boundary, so a short write there is redone from the page start.
    fn advance(&self, done: usize, n: usize) -> io::Result<usize> {
        let next = done + n;
        if self.mode == IoMode::Buffered {
            return Ok(next);
        }
        let aligned = round_down(next);
        if aligned == done {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short O_DIRECT write made no page-aligned progress",
            ));
        }
        Ok(aligned)
    }

    /// Drops `durable` leading staging bytes that are on disk and synced. Direct mode keeps
    /// the partial last page: it has to be rewritten whole when more bytes arrive.
    fn retire(&mut self, durable: usize) {
        let drop = match self.mode {
            IoMode::Direct => round_down(durable),
            IoMode::Buffered => durable,
        };
        self.staging.consume_front(drop);
        self.base += drop as u64;
        self.written -= drop;
    }
}

/// The file plus the interface that writes it.
struct Sink {
    file: File,
    ring: Option<IoUring>,
    /// The ring was abandoned with an operation possibly still reading the staging buffer.
    abandoned: bool,
    /// Test hook: the next write fails with this errno without doing I/O.
    #[cfg(test)]
    inject_errno: Option<i32>,
    /// Test hook: the next fdatasync fails with this errno without syncing.
    #[cfg(test)]
    inject_sync_errno: Option<i32>,
}

impl Sink {
    fn new(file: File, allow_uring: bool) -> Sink {
        Sink {
            file,
            ring: if allow_uring { new_ring() } else { None },
            abandoned: false,
            #[cfg(test)]
            inject_errno: None,
            #[cfg(test)]
            inject_sync_errno: None,
        }
    }

    /// One write at `offset`; returns the bytes written (possibly fewer than `buf.len()`).
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<usize> {
        #[cfg(test)]
        if let Some(errno) = self.inject_errno.take() {
            return Err(io::Error::from_raw_os_error(errno));
        }
        let Some(ring) = self.ring.as_mut() else {
            return retry_eintr(|| self.file.write_at(buf, offset));
        };
        let entry = opcode::Write::new(
            types::Fd(self.file.as_raw_fd()),
            buf.as_ptr(),
            buf.len() as u32, // callers cap writes at MAX_CHUNK
        )
        .offset(offset)
        .build();
        // SAFETY: `buf` is borrowed for this whole call and `run_one` only returns once the
        // completion is reaped, or after abandoning (leaking) the ring, in which case the
        // caller leaks the buffer too (see `take_abandoned`). Nothing moves it meanwhile.
        let res = unsafe { run_one(ring, &entry) };
        self.finish(res).map(|n| n as usize)
    }

    /// fdatasync through the ring (Fsync + DATASYNC) or directly.
    fn datasync(&mut self) -> io::Result<()> {
        #[cfg(test)]
        if let Some(errno) = self.inject_sync_errno.take() {
            return Err(io::Error::from_raw_os_error(errno));
        }
        let Some(ring) = self.ring.as_mut() else {
            return retry_eintr(|| self.file.sync_data());
        };
        let entry = opcode::Fsync::new(types::Fd(self.file.as_raw_fd()))
            .flags(types::FsyncFlags::DATASYNC)
            .build();
        // SAFETY: Fsync references no memory; the fd stays open for the whole call.
        let res = unsafe { run_one(ring, &entry) };
        self.finish(res).map(drop)
    }

    /// A ring that failed outside any operation's result is not trusted again: it is leaked
    /// (an operation may still be in flight) and later I/O uses pwrite/fdatasync.
    fn finish(&mut self, res: Result<u32, RingError>) -> io::Result<u32> {
        match res {
            Ok(n) => Ok(n),
            Err(RingError::Op(e)) => Err(e),
            Err(RingError::Ring(e)) => {
                std::mem::forget(self.ring.take());
                self.abandoned = true;
                Err(e)
            }
        }
    }

    fn take_abandoned(&mut self) -> bool {
        std::mem::replace(&mut self.abandoned, false)
    }
}

enum RingError {
    /// The operation completed with an error (its CQE result).
    Op(io::Error),
    /// The ring itself failed; the operation may still be in flight.
    Ring(io::Error),
}

/// Sets up the ring, or `None` when io_uring is unavailable (seccomp, old kernel, limits).
fn new_ring() -> Option<IoUring> {
    let ring = IoUring::new(RING_ENTRIES).ok()?;
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe).ok()?;
    let supported =
        probe.is_supported(opcode::Write::CODE) && probe.is_supported(opcode::Fsync::CODE);
    supported.then_some(ring)
}

/// Submits one operation and waits for its completion; returns the CQE's non-negative result.
///
/// # Safety
///
/// Any memory `entry` points to must stay valid and unmoved until this returns `Ok` or
/// `Err(RingError::Op)`; after `Err(RingError::Ring)` it must stay valid forever (leak it).
unsafe fn run_one(ring: &mut IoUring, entry: &squeue::Entry) -> Result<u32, RingError> {
    // SAFETY: forwarded to the caller (see above); operations run one at a time, so the
    // queue is empty and the next completion is this entry's.
    unsafe { ring.submission().push(entry) }
        .map_err(|_| RingError::Ring(io::Error::other("io_uring submission queue full")))?;
    loop {
        if let Some(cqe) = ring.completion().next() {
            let res = cqe.result();
            return if res < 0 {
                Err(RingError::Op(io::Error::from_raw_os_error(-res)))
            } else {
                Ok(res as u32)
            };
        }
        // io_uring_enter may return after submitting without a completion (a signal during
        // the wait), so keep waiting until the CQE is there.
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if is_transient(&e) => {}
            Err(e) => return Err(RingError::Ring(e)),
        }
    }
}

/// io_uring_enter errors that mean "try again": a signal, resource shortage, CQ overflow.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
    )
}

fn retry_eintr<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Options for opening a file in the log directory that refuse a symbolic link as the last
/// component: a NAT started as root must not be led by a link that the unprivileged user
/// owning the directory planted into writing (or cutting short) a file elsewhere.
pub(super) fn no_follow() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.custom_flags(libc::O_NOFOLLOW);
    options
}

/// Turns O_DIRECT on or off. Turning it on returns `Ok(false)` when the filesystem refuses it.
fn set_direct(file: &File, on: bool) -> io::Result<bool> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl(F_GETFL) on an fd we own; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if on {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    // SAFETY: fcntl(F_SETFL) on an fd we own; no memory is passed.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EINVAL) if on => Ok(false),
            _ => Err(e),
        };
    }
    Ok(true)
}

/// Loads the partial last page (`len` bytes at the aligned `start`) into the empty staging
/// buffer, so rewriting that page keeps the bytes already in the file.
fn read_tail(file: &File, start: u64, len: usize, staging: &mut Staging) -> io::Result<()> {
    // Whole-page read into a page-aligned buffer at an aligned offset: valid with O_DIRECT.
    // The file was truncated to `start + len`, so the read stops there.
    let page = &mut staging.bytes_mut()[..PAGE];
    let mut got = 0;
    while got < len {
        match retry_eintr(|| file.read_at(&mut page[got..], start + got as u64))? {
            0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            n => got += n,
        }
    }
    staging.len = len;
    Ok(())
}

/// close(2) with its error reported (dropping a `File` ignores it).
fn close_fd(file: File) -> io::Result<()> {
    let fd = file.into_raw_fd();
    // SAFETY: `fd` came from `into_raw_fd`, so we own it and nothing else will close it.
    // Not retried on EINTR: on Linux the fd is released either way.
    if unsafe { libc::close(fd) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn round_up(n: usize) -> usize {
    n.div_ceil(PAGE) * PAGE
}

fn round_down(n: usize) -> usize {
    n - n % PAGE
}

/// One O_DIRECT-aligned page of the staging buffer.
#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Page([u8; PAGE]);

/// Page-aligned, reusable byte buffer holding the not-yet-retired tail of the log.
struct Staging {
    pages: Vec<Page>,
    /// Bytes in use, from the start of `pages`.
    len: usize,
}

impl Staging {
    fn with_pages(n: usize) -> Staging {
        Staging {
            pages: vec![Page([0; PAGE]); n],
            len: 0,
        }
    }

    /// The whole capacity as bytes.
    fn bytes(&self) -> &[u8] {
        // SAFETY: `Page` is repr(C) around a byte array whose size equals its alignment, so
        // the Vec's pages are contiguous initialised bytes with no padding.
        unsafe { std::slice::from_raw_parts(self.pages.as_ptr().cast(), self.pages.len() * PAGE) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `&mut self` makes the borrow unique.
        unsafe {
            std::slice::from_raw_parts_mut(self.pages.as_mut_ptr().cast(), self.pages.len() * PAGE)
        }
    }

    fn push(&mut self, data: &[u8]) {
        let need = self.len + data.len();
        if need > self.pages.len() * PAGE {
            // Amortised doubling: appends stay allocation-free once the buffer has grown.
            let pages = need.div_ceil(PAGE).max(self.pages.len() * 2);
            self.pages.resize(pages, Page([0; PAGE]));
        }
        let len = self.len;
        self.bytes_mut()[len..need].copy_from_slice(data);
        self.len = need;
    }

    /// Zeroes the bytes between `len` and `end` (O_DIRECT pads the tail page with them).
    fn zero_padding(&mut self, end: usize) {
        let len = self.len;
        self.bytes_mut()[len..end].fill(0);
    }

    fn consume_front(&mut self, n: usize) {
        let len = self.len;
        self.bytes_mut().copy_within(n..len, 0);
        self.len -= n;
    }

    /// Moves the contents to a fresh allocation and leaks the old one (still in the kernel's
    /// hands after a ring failure).
    fn leak_and_replace(&mut self) {
        let fresh = self.pages.clone();
        std::mem::forget(std::mem::replace(&mut self.pages, fresh));
    }
}

#[cfg(test)]
mod tests;
