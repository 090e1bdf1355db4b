"""Whether a filesystem shares extents between files (FICLONE: btrfs, XFS
with reflink=1), and cloning one file into another."""

from __future__ import annotations

import errno
import fcntl
import os

from inkind.store.files import temp_name
from inkind.store.paths import DIR_FLAGS, PathLike

FICLONE = 0x40049409


def try_clone(src_fd: int, dst_fd: int) -> bool:
    """Clone ``src_fd`` into ``dst_fd``; False if the filesystem cannot."""
    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.EPERM):
            return False
        raise
    return True


def clones_in_place(fd: int) -> bool:
    """Whether the filesystem of the image ``fd`` can clone it, asked
    without writing: FICLONE of the file onto itself, which a filesystem
    that clones refuses as an overlapping range (EINVAL) before it touches
    anything, and one that cannot refuses as unsupported."""
    try:
        rw = os.open(f"/proc/self/fd/{fd}", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.ioctl(rw, FICLONE, rw)
    except OSError as e:
        return e.errno == errno.EINVAL
    finally:
        os.close(rw)
    return True  # an empty file: nothing to clone, and nothing refused


def reflinks_work(directory: PathLike) -> bool:
    """Whether files in ``directory`` can share extents (FICLONE): btrfs,
    XFS with reflink=1. Probed with two empty temp files, removed again."""
    dfd = os.open(directory, DIR_FLAGS)
    names = [temp_name(), temp_name()]
    fds: list[int] = []
    try:
        for n in names:
            fds.append(os.open(n, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=dfd))
        return try_clone(fds[0], fds[1])
    finally:
        for fd in fds:
            os.close(fd)
        for n in names[: len(fds)]:
            os.unlink(n, dir_fd=dfd)
        os.close(dfd)
