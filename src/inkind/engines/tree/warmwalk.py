"""The cache warmer's walk, run as its own process (``python -I -S`` on this
file, standard library only, so it starts in milliseconds and never holds
the walk's interpreter lock).

It walks the stored tree in the backup walk's order (names sorted as bytes)
and lstats each stored entry and the source entry of the same name, so the
inodes and directory blocks that the walk is about to ask for are in memory
when it does. Guided by the store, it visits only what the last backups
kept: nothing excluded, nothing of another filesystem. It only reads; every
directory is opened with O_NOFOLLOW and, where allowed, O_NOATIME (listing
a stored directory must not update its atime: that would be a write to the
store). Any error ends that branch quietly: the walk does its own lstats
and reports what it finds.

It stops once the caches are found warm: WARM_RUNS batches in a row of
BATCH entries each, at under EACH seconds an entry (from memory an entry
costs a few µs, from a disk tens of µs or more). From a warm cache it
gains nothing, and it would take the core of the walk's worker.

Usage: python -I -S warmwalk.py SOURCE_DIR_FD STORE_DIR_FD
"""

import contextlib
import os
import stat
import sys
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


class Warm(Exception):
    """The caches are warm: nothing left to gain."""


class Clock:
    """Times the walk a batch of entries at a time (see the module's doc)."""

    def __init__(self) -> None:
        self.count = 0
        self.since = time.perf_counter()
        self.warm_runs = 0

    def tick(self) -> None:
        self.count += 1
        if self.count % BATCH:
            return
        now = time.perf_counter()
        self.warm_runs = self.warm_runs + 1 if now - self.since < BATCH * EACH else 0
        self.since = now
        if self.warm_runs >= WARM_RUNS:
            raise Warm


def warm(src: int, dst: int, clock: Clock) -> None:
    """lstat what both trees hold below ``dst``'s names, depth first."""
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
        clock.tick()
        if not stat.S_ISDIR(st.st_mode):
            continue
        sub_dst = open_dir(name, dst)
        if sub_dst < 0:
            continue
        sub_src = open_dir(name, src)
        if sub_src >= 0:
            warm(sub_src, sub_dst, clock)
            os.close(sub_src)
        os.close(sub_dst)


def main(src_fd: int, dst_fd: int) -> None:
    """Reopen both roots (the store's with O_NOATIME) and walk them until
    done or warm."""
    src, dst = open_dir(b".", src_fd), open_dir(b".", dst_fd)
    if src >= 0 and dst >= 0:
        with contextlib.suppress(Warm):
            warm(src, dst, Clock())


if __name__ == "__main__":
    sys.setrecursionlimit(10_000)  # directories nest deeper than Python's default allows
    main(int(sys.argv[1]), int(sys.argv[2]))
