//! LogFile against real files: durability, O_DIRECT, fallbacks and every error path.

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

/// A failed fdatasync may have lost written pages that the kernel then marks clean (so a
/// second fdatasync would succeed with nothing to write): the retry writes every byte
/// since the last good sync again. The loss is played by zeroing the file behind the log.
#[test]
fn a_failed_sync_rewrites_everything_since_the_last_good_one() {
    for direct in [false, true] {
        let dir = disk_dir();
        let path = dir.path().join("log");
        let mut log = LogFile::create(&path, direct).unwrap();
        let synced = pattern(5000, 1);
        log.append(&synced).unwrap();
        log.sync().unwrap();
        let mut expected = synced.clone();
        append_many(&mut log, &mut expected, 21); // written by its flushes, not synced
        log.sink.inject_sync_errno = Some(libc::EIO);
        let err = log.sync().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
        let lost = vec![0u8; expected.len() - synced.len()];
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all_at(&lost, synced.len() as u64)
            .unwrap();
        log.sync().unwrap();
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
