"""Reading the small files a walk is about to copy on the other core.

The walk knows, a window of entries ahead, which source files it will copy
(new or changed, by lstat of both sides). A thread opens and reads those
while the walk writes the ones before them, so a cold disk's latency and
the kernel's work for the source overlap the store's (the system calls
release the GIL). Only the source is read here; every store write stays
in the walk, through the primitives.

Bounded: files of at most ``SMALL`` bytes with no holes, at most
``BUDGET`` bytes read ahead in all. A file that does not fit, or that the
walk reaches before the thread does, is read by the walk itself, so the
thread never holds the walk up for long and nothing depends on it.
"""

from __future__ import annotations

import os
import stat
import threading
from collections import deque
from dataclasses import dataclass, field

from inkind.engines.tree.entry import READ_FLAGS
from inkind.store.noatime import open_noatime

SMALL = 1 << 20
BUDGET = 16 << 20


@dataclass
class Read:
    """One file read ahead: its open fd (positioned nowhere: read with
    pread) and its content."""

    fd: int
    data: bytes


Key = tuple[int, int]  # (st_dev, st_ino)


def _key(st: os.stat_result) -> Key:
    return (st.st_dev, st.st_ino)


@dataclass
class _Window:
    """The files of one window of a walked directory, in walk order."""

    dir_fd: int  # a dup of the walk's source directory fd: the thread's to close
    todo: deque[tuple[str, os.stat_result]]
    keys: set[Key]
    cancelled: bool = False


@dataclass
class _Shared:
    windows: deque[_Window] = field(default_factory=deque)
    pending: set[Key] = field(default_factory=set)  # queued, not yet read
    ready: dict[Key, Read | None] = field(default_factory=dict)  # None: left to the walk
    held: int = 0  # bytes in ``ready``
    stop: bool = False

    def drop(self, key: Key) -> None:
        self.pending.discard(key)
        got = self.ready.pop(key, None)
        if got is not None:
            self.held -= len(got.data)
            os.close(got.fd)


def wanted(st: os.stat_result) -> bool:
    """Whether a source file is one the thread reads ahead."""
    return 0 < st.st_size <= SMALL and st.st_blocks * 512 >= st.st_size


class Prefetcher:
    """The read-ahead thread of one backup walk (a context manager)."""

    def __init__(self) -> None:
        self._s = _Shared()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="inkind-prefetch", daemon=True)

    def __enter__(self) -> Prefetcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._s.stop = True
            self._cond.notify_all()
        self._thread.join()
        for window in self._s.windows:
            os.close(window.dir_fd)
        for key in list(self._s.ready):
            self._s.drop(key)
        self._s.windows.clear()

    def queue(self, src: int, files: list[tuple[str, os.stat_result]]) -> _Window | None:
        """Read ``files`` (name, lstat) of the directory ``src`` ahead, in
        order; returns the window to :meth:`discard` once it is walked."""
        files = [(n, st) for n, st in files if wanted(st)]
        if not files:
            return None
        window = _Window(os.dup(src), deque(files), {_key(st) for _, st in files})
        with self._cond:
            self._s.windows.append(window)
            self._s.pending |= window.keys
            self._cond.notify_all()
        return window

    def take(self, st: os.stat_result) -> Read | None:
        """The file read ahead for this lstat, waiting while the thread is
        still to come to it; None when the walk must read it itself."""
        key = _key(st)
        with self._cond:
            self._cond.wait_for(lambda: key not in self._s.pending)
            got = self._s.ready.pop(key, None)
            if got is not None:
                self._s.held -= len(got.data)
                self._cond.notify_all()
            return got

    def discard(self, window: _Window | None) -> None:
        """The walk is past this window: what it did not take is dropped."""
        if window is None:
            return
        with self._cond:
            window.cancelled = True
            for key in window.keys:
                self._s.drop(key)
            self._cond.notify_all()

    def _next(self) -> tuple[_Window, str, os.stat_result] | None:
        """The next file to read (None: stop), under the lock."""
        while True:
            self._cond.wait_for(lambda: self._s.stop or self._s.windows)
            if self._s.stop:
                return None
            window = self._s.windows[-1]  # the walk is depth first: the newest is next
            if window.cancelled or not window.todo:
                self._s.windows.pop()
                os.close(window.dir_fd)
                continue
            name, st = window.todo.popleft()
            return window, name, st

    def _run(self) -> None:
        while True:
            with self._cond:
                got = self._next()
                if got is None:
                    return
                window, name, st = got
                room = self._s.held + st.st_size <= BUDGET
            read = _read(window.dir_fd, name, st) if room else None
            with self._cond:
                key = _key(st)
                if window.cancelled or self._s.stop or key not in self._s.pending:
                    if read is not None:
                        os.close(read.fd)
                    continue
                self._s.pending.discard(key)
                self._s.ready[key] = read
                if read is not None:
                    self._s.held += len(read.data)
                self._cond.notify_all()


def _read(dir_fd: int, name: str, st: os.stat_result) -> Read | None:
    """Open and read one source file, if it is still the file lstat saw;
    None on any doubt (the walk then reads it itself, and reports)."""
    try:
        fd = open_noatime(name, READ_FLAGS | os.O_NONBLOCK, dir_fd=dir_fd)  # a fifo swapped in never blocks
    except OSError:
        return None
    try:
        fst = os.fstat(fd)
        if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(fst.st_mode):
            os.close(fd)
            return None
        data = os.pread(fd, st.st_size + 1, 0)  # one byte more shows a file that grew
    except OSError:
        os.close(fd)
        return None
    return Read(fd, data)
