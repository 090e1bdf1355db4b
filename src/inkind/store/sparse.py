"""Holes: punch them in the store, find them in a source."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator

from inkind.libc import libc

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02

libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
libc.fallocate.restype = ctypes.c_int


def punch_hole(fd: int, offset: int, length: int) -> None:
    """Deallocate a byte range; it then reads as zeros. Falls back to
    writing zeros on filesystems that cannot punch holes."""
    if length <= 0:
        return
    mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
    if libc.fallocate(fd, mode, offset, length) == 0:
        return
    err = ctypes.get_errno()
    if err not in (errno.EOPNOTSUPP, errno.ENOSYS):
        raise OSError(err, os.strerror(err))
    zeros = bytes(min(length, 1 << 20))
    done = 0
    while done < length:
        done += os.pwrite(fd, zeros[: length - done], offset + done)


def data_segments(fd: int, size: int, start: int = 0) -> Iterator[tuple[int, int]]:
    """Yield (offset, length) of the ranges of ``fd`` from ``start`` to
    ``size`` that may hold data.

    Uses SEEK_DATA/SEEK_HOLE, so a 1 TiB sparse file costs a few syscalls;
    where the filesystem does not know, the whole range is one segment.
    """
    pos = start
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:  # only a hole remains
                return
            if e.errno == errno.EINVAL:
                yield pos, size - pos
                return
            raise
        if start >= size:
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end - start
        pos = end
