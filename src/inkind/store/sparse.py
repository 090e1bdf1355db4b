"""Punching holes in a stored file (reading them is inkind.segments)."""

from __future__ import annotations

import ctypes
import errno
import os

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
