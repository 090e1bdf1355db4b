"""Comparing and copying byte ranges at memory speed: whether a buffer or
a file range is all zeros, whether two buffers are equal, and a copy
between files that the filesystem may reflink."""

from __future__ import annotations

import os

from inkind.segments import data_segments

_ZEROS = bytes(1 << 20)


def is_zero(data: bytes | memoryview) -> bool:
    """Whether ``data`` holds only zero bytes.

    Compared as bytes, a MiB at a time: memoryview equality goes element by
    element (about 0.5 GB/s); a copy and a memcmp run at memory speed.
    """
    view = memoryview(data).cast("B")
    for start in range(0, len(view), len(_ZEROS)):
        part = view[start : start + len(_ZEROS)]
        if bytes(part) != _ZEROS[: len(part)]:
            return False
    return True


def reads_as_zeros(fd: int, offset: int, length: int) -> bool:
    """Whether ``length`` bytes of ``fd`` at ``offset`` read as zeros: holes
    by SEEK_DATA/SEEK_HOLE, only data ranges are read."""
    for start, n in data_segments(fd, offset + length, offset):
        for at in range(start, start + n, len(_ZEROS)):
            if not is_zero(os.pread(fd, min(len(_ZEROS), start + n - at), at)):
                return False
    return True


def same_bytes(a: bytes | memoryview, b: bytes | memoryview) -> bool:
    """Whether two buffers hold the same bytes, at memory speed (see is_zero)."""
    return len(a) == len(b) and bytes(a) == bytes(b)


def copy_range(src_fd: int, dst_fd: int, length: int, offset: int = 0) -> int:
    """Copy ``length`` bytes at ``offset`` between files (reflinked where the
    filesystem can). Returns the bytes copied."""
    done = 0
    while done < length:
        n = os.copy_file_range(src_fd, dst_fd, length - done, offset + done, offset + done)
        if n == 0:
            break
        done += n
    return done
