"""The cache warmer's walk, run as its own process (``python -I -S`` on this
file, standard library only, so it starts in milliseconds and never holds
the walk's interpreter lock).

It walks the stored tree about as the backup walk does (a directory's
names sorted as bytes, then the first of the directories found, in the
walk's order) and lstats each stored entry and the source one of that
name, so the inodes and directory blocks that the walk is about to ask for
are in memory when it does. Guided by the store, it visits only what the
last backups kept: nothing excluded, nothing of another filesystem. It
only reads; every directory is opened with O_NOFOLLOW and, where allowed,
O_NOATIME (listing a stored directory must not update its atime: that
would be a write to the store). Any error ends that branch quietly: the
walk does its own lstats and reports what it finds.

It warms THREADS directories at once: a disk serves several reads at a
time, and an lstat lets go of the interpreter lock while it waits. A
directory found is left to a free thread while fewer than FRONTIER wait,
so at most that many are held open; beyond, the thread that found it goes
down into it itself. Cold no-change runs of a copy of /usr/share: 1.54 s
to 1.39 s with two threads (docs/benchmarks.md, "Session 41"); four took
more of the two cores than they gave back.

It stops once the caches are found warm: WARM_RUNS batches in a row of
BATCH entries each, at under EACH seconds an entry (from memory an entry
costs a few µs, from a disk tens of µs or more). From a warm cache it
gains nothing, and it would take the core of the walk's worker.

Usage: python -I -S warmwalk.py SOURCE_DIR_FD STORE_DIR_FD
"""

import heapq
import os
import stat
import sys
import threading
import time

TEMP_PREFIX = b".inkind-tmp-"  # (store.files.TEMP_PREFIX: this file imports nothing of inkind)
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_dir(name: bytes, dir_fd: int) -> int:
    """A directory below ``dir_fd``, without following a link or touching
    its atime where the kernel lets us (-1: not a directory we may open);
    store.noatime.open_noatime's fallback, which this file cannot import."""
    for flags in (DIR_FLAGS | os.O_NOATIME, DIR_FLAGS):
        try:
            return os.open(name, flags, dir_fd=dir_fd)
        except PermissionError:
            continue  # O_NOATIME needs the owner (or root): try without
        except OSError:
            return -1
    return -1


BATCH = 1000  # entries timed together
EACH = 10e-6  # seconds an entry under which a batch was found in memory
WARM_RUNS = 4  # batches in a row found in memory, after which the warmer stops
THREADS = 2  # directories warmed at once: a disk serves several reads at a time
FRONTIER = 256  # directories held open for a free thread; beyond, a thread goes down itself


class Warm(Exception):
    """The caches are warm: nothing left to gain."""


class Clock:
    """Times the walk a batch of entries at a time (see the module's doc)."""

    def __init__(self) -> None:
        self.count = 0
        self.since = time.perf_counter()
        self.warm_runs = 0
        self.lock = threading.Lock()

    def tick(self) -> None:
        with self.lock:
            if self.warm_runs >= WARM_RUNS:
                raise Warm
            self.count += 1
            if self.count % BATCH:
                return
            now = time.perf_counter()
            self.warm_runs = self.warm_runs + 1 if now - self.since < BATCH * EACH else 0
            self.since = now
            if self.warm_runs >= WARM_RUNS:
                raise Warm


class Frontier:
    """Directories opened and not yet warmed, the walk's next one first
    (keys are name tuples: their order is the walk's)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.heap: list = []
        self.cond = threading.Condition()
        self.busy = 0

    def offer(self, key: tuple, src: int, dst: int) -> bool:
        """Leave a directory to a free thread (False: the frontier is full)."""
        with self.cond:
            if len(self.heap) >= FRONTIER:
                return False
            heapq.heappush(self.heap, (key, src, dst))
            self.cond.notify()
            return True

    def serve(self) -> None:
        """One thread's loop: take the first directory and warm it, until
        none is left and none is being warmed (more may come from those)."""
        while True:
            with self.cond:
                while not self.heap and self.busy:
                    self.cond.wait()
                if not self.heap:
                    self.cond.notify_all()
                    return
                key, src, dst = heapq.heappop(self.heap)
                self.busy += 1
            try:
                warm(self, key, src, dst)
            except Warm:
                self.drop()
            finally:
                close(src, dst)
                with self.cond:
                    self.busy -= 1
                    self.cond.notify_all()

    def drop(self) -> None:
        """Close what is left: the caches are warm."""
        with self.cond:
            for _, src, dst in self.heap:
                close(src, dst)
            self.heap.clear()


def warm(frontier: Frontier, key: tuple, src: int, dst: int) -> None:
    """lstat what both trees hold below ``dst``'s names; a subdirectory
    goes to the frontier, or (when it is full) this thread goes down into
    it at once."""
    try:
        names = sorted(os.fsencode(n) for n in os.listdir(dst))
    except OSError:
        return
    for name in names:
        if name.startswith(TEMP_PREFIX):
            continue
        try:
            st = os.stat(name, dir_fd=dst, follow_symlinks=False)
            os.stat(name, dir_fd=src, follow_symlinks=False)
        except OSError:
            continue
        frontier.clock.tick()
        if not stat.S_ISDIR(st.st_mode):
            continue
        sub_dst = open_dir(name, dst)
        if sub_dst < 0:
            continue
        sub_src = open_dir(name, src)
        if sub_src < 0:
            os.close(sub_dst)
        elif not frontier.offer((*key, name), sub_src, sub_dst):
            try:
                warm(frontier, (*key, name), sub_src, sub_dst)
            finally:
                close(sub_src, sub_dst)


def close(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


def main(src_fd: int, dst_fd: int, threads: int = THREADS) -> None:
    """Reopen both roots (the store's with O_NOATIME) and walk them, on
    ``threads`` threads, until done or warm."""
    src, dst = open_dir(b".", src_fd), open_dir(b".", dst_fd)
    if src < 0 or dst < 0:
        return
    frontier = Frontier(Clock())
    frontier.offer((), src, dst)
    workers = [threading.Thread(target=frontier.serve, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


if __name__ == "__main__":
    sys.setrecursionlimit(10_000)  # directories nest deeper than Python's default allows
    main(int(sys.argv[1]), int(sys.argv[2]))
