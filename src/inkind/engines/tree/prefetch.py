"""Having the kernel read the small files a walk is about to copy.

The walk knows, a window of entries ahead, which source files it will copy
(new or changed, by lstat of both sides). Each is opened then and advised
WILLNEED (posix_fadvise), which starts its read in the kernel and returns
at once; by the time the walk has stored the files before it, its pages
are in memory, so a cold disk's latency overlaps the walk's work with no
thread of ours: a read-ahead thread cost more in handing the interpreter
back and forth than it saved (see docs/design.md). Only the source is
read here; every store write stays in the walk, through the primitives.

Bounded: files of at most ``SMALL`` bytes with no holes, at most
``OPEN_MAX`` held open. A file that does not fit is read by the walk
itself, so nothing depends on the read-ahead.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from inkind.engines.tree.entry import READ_FLAGS
from inkind.store.noatime import open_noatime

SMALL = 1 << 20
OPEN_MAX = 256  # (each window holds at most 128; the ones above it in the walk stay open)


@dataclass
class Read:
    """One file read ahead: its open fd (positioned nowhere: read with
    pread) and its content."""

    fd: int
    data: bytes


Key = tuple[int, int]  # (st_dev, st_ino)


def _key(st: os.stat_result) -> Key:
    return (st.st_dev, st.st_ino)


def wanted(st: os.stat_result) -> bool:
    """Whether a source file is one that is read ahead."""
    return 0 < st.st_size <= SMALL and st.st_blocks * 512 >= st.st_size


class Prefetcher:
    """The read-ahead of one backup walk (a context manager)."""

    def __init__(self) -> None:
        self._open: dict[Key, int] = {}

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self._open.values():
            os.close(fd)
        self._open.clear()

    def queue(self, src: int, files: list[tuple[str, os.stat_result]]) -> list[Key] | None:
        """Start reading ``files`` (name, lstat) of the directory ``src``;
        returns the window to :meth:`discard` once it is walked."""
        window = []
        for name, st in files:
            if len(self._open) >= OPEN_MAX:
                break
            key = _key(st)
            if not wanted(st) or key in self._open:  # (a hard link's other name)
                continue
            fd = _open_ahead(src, name, st)
            if fd is not None:
                self._open[key] = fd
                window.append(key)
        return window or None

    def take(self, st: os.stat_result) -> Read | None:
        """The file read ahead for this lstat; None when the walk must read
        it itself (never queued, or the read failed: the walk reports)."""
        fd = self._open.pop(_key(st), None)
        if fd is None:
            return None
        try:
            data = os.pread(fd, st.st_size + 1, 0)  # one byte more shows a file that grew
        except OSError:
            os.close(fd)
            return None
        return Read(fd, data)

    def discard(self, window: list[Key] | None) -> None:
        """The walk is past this window: what it did not take is closed."""
        for key in window or ():
            fd = self._open.pop(key, None)
            if fd is not None:
                os.close(fd)


def _open_ahead(dir_fd: int, name: str, st: os.stat_result) -> int | None:
    """Open one source file and advise the kernel to read it, if it is still
    the file lstat saw; None on any doubt (the walk then reads it itself,
    and reports)."""
    try:
        fd = open_noatime(name, READ_FLAGS | os.O_NONBLOCK, dir_fd=dir_fd)  # a fifo swapped in never blocks
    except OSError:
        return None
    try:
        fst = os.fstat(fd)
        if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(fst.st_mode):
            os.close(fd)
            return None
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
    except OSError:
        os.close(fd)
        return None
    return fd
