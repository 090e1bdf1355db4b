"""Shared measuring for the benchmarks (not tests): wall time, I/O and peak
RSS of a command and of everything it forks, medians, markdown tables."""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from inkind.storeroot import init_store

# Measure inkind as installed: with its bytecode cached. A shell that sets
# PYTHONDONTWRITEBYTECODE would make every run compile the project's modules
# again (0.1 s of each start on this machine).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


@dataclass
class Measurement:
    """One command's cost."""

    wall: float  # seconds
    read_bytes: int  # rchar: bytes the process tree read (page-cache hits included)
    write_bytes: int  # write_bytes: bytes it sent towards storage
    peak_rss: int  # bytes, the largest process of the tree
    extra: dict = field(default_factory=dict)


def measure(
    cmd: list[str], stdout: int | None = subprocess.DEVNULL, env: dict[str, str] | None = None
) -> Measurement:
    """Run ``cmd`` under GNU time (``env`` added to this process's
    environment); read /proc/PID/io of ``time`` after it exited but before
    it is reaped, so every reaped descendant (rsync forks two) is included.

    Peak RSS comes from ``time`` (the largest process of the tree): a child
    forked straight from this (large) Python process would inherit its RSS
    high-water mark and report that instead of its own.
    """
    with tempfile.NamedTemporaryFile() as rss, tempfile.TemporaryFile() as errors:
        timed = ["/usr/bin/time", "-f", "%M", "-o", rss.name, *cmd]
        start = time.monotonic()
        full_env = {**os.environ, **env} if env else None
        proc = subprocess.Popen(timed, stdout=stdout, stderr=errors, env=full_env)
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        wall = time.monotonic() - start
        io = dict(line.split(": ") for line in Path(f"/proc/{proc.pid}/io").read_text().splitlines())
        _, status, _ = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode not in (0,):
            errors.seek(0)
            raise SystemExit(f"{shlex.join(cmd)}: exit {proc.returncode}: {errors.read().decode()}")
        written = Path(rss.name).read_text().split()
        if not written:  # (a full disk: time could not write its one line)
            raise SystemExit(f"{shlex.join(cmd)}: /usr/bin/time wrote no peak RSS to {rss.name}")
        peak_kib = int(written[-1])
    return Measurement(wall, int(io["rchar"]), int(io["write_bytes"]), peak_kib * 1024)


def drop_caches() -> None:
    """Cold-cache runs: write back and drop the page cache (root only)."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def median(values) -> float:
    return statistics.median(list(values))


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {mem:.0f} GiB memory, kernel {os.uname().release}"


def sh(*argv: str | Path) -> str:
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True, text=True).stdout


def du_bytes(path: Path | None) -> int:
    """Apparent size of everything under ``path`` (``du -sb``: hard links
    once), 0 if it does not exist: what a store or repository holds."""
    if path is None or not path.exists():
        return 0
    return int(sh("du", "-sb", path).split()[0])


def disk_written(path: Path) -> int | None:
    """Bytes the block device holding ``path``'s filesystem has written since
    boot (its /sys/class/block/NAME/stat, sectors written; the device as
    /proc/self/mounts names it, since btrfs reports an anonymous st_dev), or
    None where there is no one block device (tmpfs, several devices).
    Read before a command and after an ``os.sync()`` that follows it, the
    difference is what it cost the disk, metadata and journal included,
    whoever wrote it back."""
    where = os.path.realpath(path)
    best = ("", "")
    for line in Path("/proc/self/mounts").read_text().splitlines():
        device, mount = line.split()[:2]
        inside = where == mount or where.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best[1]):
            best = (device, mount)
    if not best[0].startswith("/dev/"):
        return None
    stat = Path("/sys/class/block") / os.path.basename(os.path.realpath(best[0])) / "stat"
    if not stat.exists():
        return None
    return int(stat.read_text().split()[6]) * 512


def version(*argv: str) -> str:
    """The first line a tool prints for its version (``rsync --version``)."""
    return sh(*argv).splitlines()[0].strip()


def evict(*paths: Path) -> None:
    """Drop these files' pages from the page cache (only theirs: other
    work on the machine keeps its cache)."""
    for path in paths:
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def settle(cold: bool, *paths: Path) -> None:
    """Start each measurement alike: no writeback of an earlier command
    still running, and (cold) the files involved out of the page cache."""
    os.sync()
    if cold:
        evict(*paths)


class Btrfs:
    """A btrfs filesystem on a loop device (direct I/O, so reads of the
    targets come from the disk and not from the backing file's cache)."""

    def __init__(self, work: Path, size: int):
        self.backing = work / "btrfs.raw"
        with open(self.backing, "wb") as f:
            f.truncate(size)
        self.dev = sh("losetup", "--find", "--show", "--direct-io=on", self.backing).strip()
        sh("mkfs.btrfs", "-q", "-f", self.dev)
        self.mnt = work / "mnt"
        self.mnt.mkdir()
        # No discard: a discard is a hole punched in the backing file, and
        # btrfs's async discard (the default on a device that has it) goes
        # on in the background for seconds after a tool freed space (cp
        # replacing 4 GiB), slowing whichever command is measured next.
        sh("mount", "-o", "nodiscard", self.dev, self.mnt)

    def subvolume(self, name: str) -> Path:
        sh("btrfs", "subvolume", "create", self.mnt / name)
        return self.mnt / name

    def store(self, name: str) -> Path:
        """A subvolume made an inkind store (``inkind init``)."""
        sub = self.subvolume(name)
        init_store(sub)
        return sub

    def snapshot(self, sub: Path) -> Path:
        snap = self.mnt / f".before-{sub.name}"
        sh("btrfs", "subvolume", "snapshot", "-r", sub, snap)
        return snap

    def drop(self, snap: Path) -> None:
        sh("btrfs", "subvolume", "delete", snap)
        sh("btrfs", "subvolume", "sync", self.mnt)  # space back before the next command

    def close(self) -> None:
        subprocess.run(["umount", str(self.mnt)], check=False)
        subprocess.run(["losetup", "-d", self.dev], check=False)
