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
/// Dropping a `LogFile` without [`close`](Self::close) does no I/O: bytes not yet flushed are
/// lost, and with O_DIRECT the file may end in zero padding, exactly as after a crash.
pub struct LogFile {
    sink: Sink,
    staging: Staging,
    /// File offset of `staging`'s first byte; page-aligned in Direct mode. Everything before
    /// it has been written to the file.
    base: u64,
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
        self.sink.datasync()
    }

    /// Everything [`close`](Self::close) does before closing the descriptor: flushes, cuts
    /// the file to its logical length (O_DIRECT pads the tail page) and makes that durable
    /// with fdatasync. On error nothing is lost and it can simply be called again, so a
    /// caller that must not drop data (disk full) finishes first and closes after.
    pub fn finish(&mut self) -> io::Result<()> {
        self.flush()?;
        // Truncate before the final datasync so the shortened size is durable as well.
        self.sink.file.set_len(self.len())?;
        self.sink.datasync()?;
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

    /// Writes the staging buffer at `base`, then retires what is known to be on disk, also
    /// when a write failed part-way (so a retry continues from there).
    fn write_staged(&mut self) -> io::Result<()> {
        let end = match self.mode {
            IoMode::Direct => round_up(self.staging.len),
            IoMode::Buffered => self.staging.len,
        };
        self.staging.zero_padding(end);
        let mut done = 0;
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
        self.retire(done.min(self.staging.len));
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

    /// Drops `written` leading staging bytes that are on disk. Direct mode keeps the partial
    /// last page: it has to be rewritten whole when more bytes arrive.
    fn retire(&mut self, written: usize) {
        let drop = match self.mode {
            IoMode::Direct => round_down(written),
            IoMode::Buffered => written,
        };
        self.staging.consume_front(drop);
        self.base += drop as u64;
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
}

impl Sink {
    fn new(file: File, allow_uring: bool) -> Sink {
        Sink {
            file,
            ring: if allow_uring { new_ring() } else { None },
            abandoned: false,
            #[cfg(test)]
            inject_errno: None,
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
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::process::Command;

    /// Deterministic bytes with no zeros, so zero padding is distinguishable from data.
    fn pattern(n: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x % 255) as u8 + 1
            })
            .collect()
    }

    /// Sizes that straddle page boundaries in many ways, including empty appends.
    fn odd_sizes() -> impl Iterator<Item = usize> {
        (0..200).map(|i| [0, 1, 7, 511, 4095, 4096, 4097, 9000, 13][i % 9] + i % 3)
    }

    /// A temporary directory on the disk-backed filesystem (not tmpfs).
    fn disk_dir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("tracenat-io-")
            .tempdir_in(std::env::temp_dir())
            .unwrap()
    }

    /// Appends `total` pattern bytes in odd sizes, flushing every few appends.
    fn append_many(log: &mut LogFile, expected: &mut Vec<u8>, seed: u32) {
        for (i, n) in odd_sizes().enumerate() {
            let data = pattern(n, seed + i as u32);
            log.append(&data).unwrap();
            expected.extend_from_slice(&data);
            assert_eq!(log.len(), expected.len() as u64);
            if i % 7 == 3 {
                log.flush().unwrap();
            }
        }
    }

    fn round_trip(prefer_direct: bool, allow_uring: bool) -> (IoMode, Backend) {
        let dir = disk_dir();
        let path = dir.path().join("log");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let mut log = LogFile::from_file(file, 0, prefer_direct, allow_uring).unwrap();
        assert!(log.is_empty());
        let mut expected = Vec::new();
        append_many(&mut log, &mut expected, 1);
        let (mode, backend) = (log.mode(), log.backend());
        log.sync().unwrap();
        log.close().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), expected);
        (mode, backend)
    }

    #[test]
    fn round_trip_buffered_uring() {
        let (mode, backend) = round_trip(false, true);
        assert_eq!(mode, IoMode::Buffered);
        println!("backend: {backend}");
    }

    #[test]
    fn round_trip_direct_uring() {
        let (mode, backend) = round_trip(true, true);
        // Whatever the filesystem supports, the bytes must round-trip; report what we got.
        println!("mode: {mode}, backend: {backend}");
    }

    #[test]
    fn round_trip_pwrite_backend() {
        for direct in [false, true] {
            let (_, backend) = round_trip(direct, false);
            assert_eq!(backend, Backend::Pwrite);
        }
    }

    #[test]
    fn create_refuses_existing_file() {
        let dir = disk_dir();
        let path = dir.path().join("log");
        std::fs::write(&path, b"old").unwrap();
        let err = LogFile::create(&path, false).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }

    #[test]
    fn direct_mode_really_is_o_direct() {
        let dir = disk_dir();
        let log = LogFile::create(&dir.path().join("log"), true).unwrap();
        if log.mode() != IoMode::Direct {
            println!("note: O_DIRECT unsupported on {:?}", dir.path());
            return;
        }
        // A misaligned write must be refused: proof the kernel applies O_DIRECT to the fd.
        let err = log.sink.file.write_at(b"x", 1).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn einval_on_first_direct_write_falls_back_to_buffered() {
        let dir = disk_dir();
        let path = dir.path().join("log");
        let mut log = LogFile::create(&path, true).unwrap();
        if log.mode() != IoMode::Direct {
            return;
        }
        log.sink.inject_errno = Some(libc::EINVAL);
        log.append(b"hello").unwrap();
        log.flush().unwrap();
        assert_eq!(log.mode(), IoMode::Buffered);
        log.append(b" world").unwrap();
        log.close().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello world");
    }

    #[test]
    fn einval_after_a_direct_write_is_an_error() {
        let dir = disk_dir();
        let path = dir.path().join("log");
        let mut log = LogFile::create(&path, true).unwrap();
        if log.mode() != IoMode::Direct {
            return;
        }
        log.append(b"hello").unwrap();
        log.flush().unwrap();
        log.sink.inject_errno = Some(libc::EINVAL);
        log.append(b" world").unwrap();
        assert_eq!(log.flush().unwrap_err().raw_os_error(), Some(libc::EINVAL));
        assert_eq!((log.mode(), log.len()), (IoMode::Direct, 11));
        log.close().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello world");
    }

    #[test]
    fn open_append_truncates_and_continues() {
        for direct in [false, true] {
            // valid_len values: page-aligned, mid-page, zero.
            for valid_len in [8192usize, 5000, 0] {
                let dir = disk_dir();
                let path = dir.path().join("log");
                let mut log = LogFile::create(&path, direct).unwrap();
                let mut expected = Vec::new();
                append_many(&mut log, &mut expected, 7);
                log.close().unwrap();

                let mut log = LogFile::open_append(&path, valid_len as u64, direct).unwrap();
                assert_eq!(log.len(), valid_len as u64);
                expected.truncate(valid_len);
                assert_eq!(std::fs::read(&path).unwrap(), expected, "truncated");
                append_many(&mut log, &mut expected, 99);
                log.close().unwrap();
                assert_eq!(std::fs::read(&path).unwrap(), expected, "direct={direct}");
            }
        }
    }

    #[test]
    fn open_append_rejects_valid_len_past_end() {
        let dir = disk_dir();
        let path = dir.path().join("log");
        std::fs::write(&path, b"abc").unwrap();
        let err = LogFile::open_append(&path, 4, true).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(std::fs::read(&path).unwrap(), b"abc");
    }

    #[test]
    fn crash_leaves_flushed_prefix_then_zeros() {
        let dir = disk_dir();
        let path = dir.path().join("log");
        let mut log = LogFile::create(&path, true).unwrap();
        let mut expected = Vec::new();
        append_many(&mut log, &mut expected, 3);
        log.flush().unwrap();
        log.append(b"never flushed").unwrap();
        let mode = log.mode();
        std::mem::forget(log); // a crash: no close, no drop

        let on_disk = std::fs::read(&path).unwrap();
        assert!(on_disk.len() >= expected.len());
        assert_eq!(on_disk[..expected.len()], expected[..]);
        assert!(on_disk[expected.len()..].iter().all(|&b| b == 0));
        if mode == IoMode::Direct {
            assert_eq!(on_disk.len() % PAGE, 0, "O_DIRECT writes whole pages");
            assert!(on_disk.len() > expected.len(), "tail page padded");
        } else {
            assert_eq!(on_disk.len(), expected.len());
        }
        // Recovery: reopen at the valid length and keep going.
        let mut log = LogFile::open_append(&path, expected.len() as u64, true).unwrap();
        log.append(b"after crash").unwrap();
        expected.extend_from_slice(b"after crash");
        log.close().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }

    /// A mounted filesystem in a tempdir, unmounted on drop.
    struct Mount {
        dir: tempfile::TempDir,
    }

    impl Mount {
        fn new(fstype: &str, options: &str) -> Option<Mount> {
            let dir = tempfile::tempdir().ok()?;
            let ok = Command::new("mount")
                .args(["-t", fstype, "-o", options, "none"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                println!("note: cannot mount {fstype} (not root?); test skipped");
                return None;
            }
            Some(Mount { dir })
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }
    }

    impl Drop for Mount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.dir.path()).status();
        }
    }

    #[test]
    fn ramfs_refuses_o_direct_and_falls_back() {
        // ramfs has no direct I/O support at all (tmpfs gained it in Linux 6.6).
        let Some(mnt) = Mount::new("ramfs", "mode=0700") else {
            return;
        };
        let path = mnt.path("log");
        let mut log = LogFile::create(&path, true).unwrap();
        assert_eq!(log.mode(), IoMode::Buffered);
        let mut expected = Vec::new();
        append_many(&mut log, &mut expected, 5);
        log.close().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }

    #[test]
    fn disk_full_is_an_error_and_retry_succeeds() {
        for direct in [false, true] {
            for allow_uring in [true, false] {
                disk_full_case(direct, allow_uring);
            }
        }
    }

    fn disk_full_case(direct: bool, allow_uring: bool) {
        let Some(mnt) = Mount::new("tmpfs", "size=64k,mode=0700") else {
            return;
        };
        let path = mnt.path("log");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let mut log = LogFile::from_file(file, 0, direct, allow_uring).unwrap();
        // 20 KiB that fit, then 80 KiB that cannot (the filesystem holds 64 KiB).
        let first = pattern(20_000, 1);
        log.append(&first).unwrap();
        log.sync().unwrap();
        let second = pattern(80_000, 2);
        log.append(&second).unwrap();
        let len = log.len();
        assert_eq!(len, 100_000);

        let err = log.flush().and_then(|()| log.sync()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(log.len(), len, "a failed flush loses nothing");
        // The failure is repeatable, and still loses nothing.
        assert!(log.flush().is_err());
        assert_eq!(log.len(), len);

        // The disk frees up (here: the filesystem grows) and a retry writes it all intact.
        let ok = Command::new("mount")
            .args(["-o", "remount,size=256k"])
            .arg(mnt.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount with more space");
        log.sync().unwrap();
        log.close().unwrap();
        let mut expected = first;
        expected.extend_from_slice(&second);
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }

    #[test]
    fn finish_is_retried_after_an_error_then_close_does_no_io() {
        for direct in [false, true] {
            let dir = disk_dir();
            let path = dir.path().join("log");
            let mut log = LogFile::create(&path, direct).unwrap();
            let mut expected = Vec::new();
            append_many(&mut log, &mut expected, 11);
            log.append(b"unflushed").unwrap();
            expected.extend_from_slice(b"unflushed");
            log.sink.inject_errno = Some(libc::ENOSPC);
            let err = log.finish().unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
            assert_eq!(
                log.len(),
                expected.len() as u64,
                "a failed finish loses nothing"
            );
            log.finish().unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), expected, "direct={direct}");
            // Any I/O now would hit this error: close must not do any.
            log.sink.inject_errno = Some(libc::EIO);
            log.close().unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), expected, "direct={direct}");
        }
    }

    #[test]
    fn display_names() {
        assert_eq!(IoMode::Direct.to_string(), "O_DIRECT");
        assert_eq!(IoMode::Buffered.to_string(), "buffered");
        assert_eq!(Backend::IoUring.to_string(), "io_uring");
        assert_eq!(Backend::Pwrite.to_string(), "pwrite");
    }

    #[test]
    fn staging_is_page_aligned_and_reused() {
        let mut s = Staging::with_pages(1);
        s.push(&pattern(10_000, 4));
        assert_eq!(s.bytes().as_ptr() as usize % PAGE, 0);
        let cap = s.pages.len();
        s.consume_front(8192);
        assert_eq!(s.len, 10_000 - 8192);
        assert_eq!(s.bytes()[..s.len], pattern(10_000, 4)[8192..]);
        s.push(&pattern(100, 5));
        assert_eq!(s.pages.len(), cap, "no growth when there is room");
    }
}
