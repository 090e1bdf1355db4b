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
``OPEN_MAX`` held open. A larger file without holes is read ahead by the
kernel too, asked by a thread of ours piece by piece (one advice reads at
most the device's read-ahead window, a few MiB, and may wait for the
device's queue), and at most ``LARGE_AHEAD`` bytes of those are asked for
and not yet reached by the walk (the first part of a file larger than
what is left); the walk then reads it itself, from memory where the
kernel was faster. Nothing depends on the read-ahead.
"""

from __future__ import annotations

import os
import queue
import stat
import threading
from dataclasses import dataclass

from inkind.engines.tree.entry import READ_FLAGS
from inkind.store.noatime import open_noatime

# A file opened only to be read ahead: a fifo swapped in never blocks.
AHEAD_FLAGS = READ_FLAGS | os.O_NONBLOCK
SMALL = 1 << 20
OPEN_MAX = 256  # (each window holds at most 128; the ones above it in the walk stay open)
LARGE_AHEAD = 256 << 20  # larger files' bytes asked for ahead (page cache, not our memory)
PIECE = 2 << 20  # one advice of a larger file


@dataclass
class Read:
    """One file read ahead: its open fd (positioned nowhere: read with
    pread) and its content."""

    fd: int
    data: bytes


Key = tuple[int, int]  # (st_dev, st_ino)


def _key(st: os.stat_result) -> Key:
    return (st.st_dev, st.st_ino)


def _whole(st: os.stat_result) -> bool:
    """No holes: every byte is data to read (a sparse file's holes are not)."""
    return st.st_size > 0 and st.st_blocks * 512 >= st.st_size


def wanted(st: os.stat_result) -> bool:
    """Whether a source file is one that is read ahead and kept open."""
    return st.st_size <= SMALL and _whole(st)


class _Advisor:
    """The thread that asks the kernel to read larger files, in the order
    asked; it owns (and closes) the fds it is given."""

    def __init__(self) -> None:
        self._todo: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inkind-read-ahead", daemon=True)
        self._thread.start()

    def advise(self, fd: int, length: int) -> None:
        self._todo.put((fd, length))

    def close(self) -> None:
        """Stop asking (what is queued is only closed) and wait for the thread."""
        self._stop.set()
        self._todo.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (job := self._todo.get()) is not None:
            fd, length = job
            try:
                for off in range(0, length, PIECE):
                    if self._stop.is_set():
                        break
                    os.posix_fadvise(fd, off, min(PIECE, length - off), os.POSIX_FADV_WILLNEED)
            except OSError:
                pass  # (the walk reads the file itself, and reports)
            finally:
                os.close(fd)


class Prefetcher:
    """The read-ahead of one backup walk (a context manager)."""

    def __init__(self) -> None:
        self._open: dict[Key, int] = {}
        self._asked: dict[Key, int] = {}  # larger files: the bytes asked for, not yet reached
        self._advisor: _Advisor | None = None  # started by the first larger file

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._advisor is not None:
                self._advisor.close()
                self._advisor = None
        finally:
            for fd in self._open.values():
                os.close(fd)
            self._open.clear()

    def queue(self, src: int, files: list[tuple[str, os.stat_result]]) -> list[Key] | None:
        """Start reading ``files`` (name, lstat) of the directory ``src``;
        returns the window to :meth:`discard` once it is walked."""
        window = []
        for name, st in files:
            key = _key(st)
            if key in self._open or key in self._asked:  # (a hard link's other name)
                continue
            if wanted(st):
                fd = _open_ahead(src, name, st) if len(self._open) < OPEN_MAX else None
                if fd is not None:
                    self._open[key] = fd
                    window.append(key)
            elif _whole(st) and self._ask(src, name, st, key):
                window.append(key)
        return window or None

    def _ask(self, src: int, name: str, st: os.stat_result, key: Key) -> bool:
        """Have a larger file read ahead, as much of it as the bound leaves."""
        length = min(st.st_size, LARGE_AHEAD - sum(self._asked.values()))
        if length <= SMALL:
            return False
        if self._advisor is None:
            try:
                self._advisor = _Advisor()
            except RuntimeError:  # (no thread to be had: the walk reads it itself)
                return False
        fd = _checked(src, name, st)
        if fd is None:
            return False
        self._advisor.advise(fd, length)
        self._asked[key] = length
        return True

    def take(self, st: os.stat_result) -> Read | None:
        """The file read ahead for this lstat; None when the walk must read
        it itself (never queued, larger, or the read failed: the walk
        reports)."""
        key = _key(st)
        self._asked.pop(key, None)  # (a larger file: the walk reads it now, its share is free)
        fd = self._open.pop(key, None)
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
            self._asked.pop(key, None)
            fd = self._open.pop(key, None)
            if fd is not None:
                os.close(fd)


def _checked(dir_fd: int, name: str, st: os.stat_result) -> int | None:
    """One source file opened, if it is still the regular file lstat saw;
    None on any doubt (the walk then reads it itself, and reports)."""
    try:
        fd = open_noatime(name, AHEAD_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        fst = os.fstat(fd)
        if (fst.st_dev, fst.st_ino) == (st.st_dev, st.st_ino) and stat.S_ISREG(fst.st_mode):
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def advise(dir_fd: int, name: str, st: os.stat_result) -> None:
    """Have the kernel start reading a small file that a look found the
    walk will read (the walk's worker, a window ahead); nothing is kept."""
    if wanted(st) and (fd := _open_ahead(dir_fd, name, st)) is not None:
        os.close(fd)


def _open_ahead(dir_fd: int, name: str, st: os.stat_result) -> int | None:
    """Open one small source file and advise the kernel to read it; its
    fd, or None (see _checked)."""
    fd = _checked(dir_fd, name, st)
    if fd is not None:
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        except OSError:
            os.close(fd)
            return None
    return fd
