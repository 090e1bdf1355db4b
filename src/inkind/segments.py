"""Finding where a sparse file holds data. It only reads, so it sits below
the store primitives (which punch holes, store/sparse.py) and hashing."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator


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
