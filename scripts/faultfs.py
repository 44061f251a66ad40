#!/usr/bin/python3
"""A disk that fails on demand: a FUSE file system passing everything through to a
backing directory, except that writes and syncs obey a mode read from a control file.

    faultfs.py BACKING MOUNTPOINT CONTROL

CONTROL holds one word, re-read on every write and sync:
  ok     pass through (also when the file is missing or holds anything else);
  fail   writes and syncs fail with EIO, as a dying disk's do;
  full   writes fail with ENOSPC;
  stall  writes and syncs wait until the mode changes, as a hung controller would.

Runs in the foreground until unmounted (`umount MOUNTPOINT`). The slow-disk lab test
(tests/disk.rs) mounts the NAT's log directory on it. Needs root, /dev/fuse and
python3-fusepy (scripts/setup.sh installs it).
"""

import errno
import os
import sys
import time

try:  # Debian names the module fusepy; PyPI's package installs it as fuse
    from fusepy import FUSE, FuseOSError, Operations
except ImportError:
    from fuse import FUSE, FuseOSError, Operations

STAT_FIELDS = ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink",
               "st_size", "st_uid", "st_blocks")
STATVFS_FIELDS = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree",
                  "f_files", "f_flag", "f_frsize", "f_namemax")


class FaultFS(Operations):
    def __init__(self, backing, control):
        self.backing = os.path.realpath(backing)
        self.control = control

    def _path(self, path):
        return os.path.join(self.backing, path.lstrip("/"))

    def _mode(self):
        try:
            with open(self.control) as f:
                return f.read().strip()
        except OSError:
            return "ok"

    def _obey(self, writing):
        """Applies the control file's mode to a write (writing) or a sync."""
        while True:
            mode = self._mode()
            if mode == "stall":
                time.sleep(0.01)
                continue
            if mode == "fail":
                raise FuseOSError(errno.EIO)
            if mode == "full" and writing:
                raise FuseOSError(errno.ENOSPC)
            return

    def _call(self, f, *args):
        try:
            return f(*args)
        except OSError as e:
            raise FuseOSError(e.errno)

    # Metadata and directories: always passed through.
    def getattr(self, path, fh=None):
        st = self._call(os.lstat, self._path(path))
        return {k: getattr(st, k) for k in STAT_FIELDS}

    def statfs(self, path):
        st = self._call(os.statvfs, self._path(path))
        return {k: getattr(st, k) for k in STATVFS_FIELDS}

    def access(self, path, amode):
        if not os.access(self._path(path), amode):
            raise FuseOSError(errno.EACCES)

    def readdir(self, path, fh):
        return [".", ".."] + self._call(os.listdir, self._path(path))

    def mkdir(self, path, mode):
        self._call(os.mkdir, self._path(path), mode)

    def rmdir(self, path):
        self._call(os.rmdir, self._path(path))

    def unlink(self, path):
        self._call(os.unlink, self._path(path))

    def rename(self, old, new):
        self._call(os.rename, self._path(old), self._path(new))

    def chmod(self, path, mode):
        self._call(os.chmod, self._path(path), mode)

    def chown(self, path, uid, gid):
        self._call(os.chown, self._path(path), uid, gid)

    def utimens(self, path, times=None):
        self._call(os.utime, self._path(path), times)

    def readlink(self, path):
        return self._call(os.readlink, self._path(path))

    def symlink(self, target, source):
        self._call(os.symlink, source, self._path(target))

    # Files. O_DIRECT is the caller's business with the kernel; the backing file is
    # written through the page cache (this process's buffers are not aligned).
    def open(self, path, flags):
        return self._call(os.open, self._path(path), flags & ~os.O_DIRECT)

    def create(self, path, mode, fi=None):
        return self._call(os.open, self._path(path), os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)

    def read(self, path, size, offset, fh):
        return self._call(os.pread, fh, size, offset)

    def write(self, path, data, offset, fh):
        self._obey(writing=True)
        return self._call(os.pwrite, fh, data, offset)

    def truncate(self, path, length, fh=None):
        self._obey(writing=True)
        self._call(os.truncate, self._path(path), length)

    def fsync(self, path, datasync, fh):
        self._obey(writing=False)
        self._call(os.fsync, fh)

    def fsyncdir(self, path, datasync, fh):
        self._obey(writing=False)

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        self._call(os.close, fh)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    backing, mountpoint, control = sys.argv[1:]
    # hard_remove: a file deleted while open goes at once (no .fuse_hidden files left).
    FUSE(FaultFS(backing, control), mountpoint, foreground=True, nothreads=False,
         hard_remove=True)


if __name__ == "__main__":
    main()
