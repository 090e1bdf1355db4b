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


@dataclass
class Measurement:
    """One command's cost."""

    wall: float  # seconds
    read_bytes: int  # rchar: bytes the process tree read (page-cache hits included)
    write_bytes: int  # write_bytes: bytes it sent towards storage
    peak_rss: int  # bytes, the largest process of the tree
    extra: dict = field(default_factory=dict)


def measure(cmd: list[str], stdout: int | None = subprocess.DEVNULL) -> Measurement:
    """Run ``cmd`` under GNU time; read /proc/PID/io of ``time`` after it
    exited but before it is reaped, so every reaped descendant (rsync forks
    two) is included.

    Peak RSS comes from ``time`` (the largest process of the tree): a child
    forked straight from this (large) Python process would inherit its RSS
    high-water mark and report that instead of its own.
    """
    with tempfile.NamedTemporaryFile() as rss, tempfile.TemporaryFile() as errors:
        timed = ["/usr/bin/time", "-f", "%M", "-o", rss.name, *cmd]
        start = time.monotonic()
        proc = subprocess.Popen(timed, stdout=stdout, stderr=errors)
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        wall = time.monotonic() - start
        io = dict(line.split(": ") for line in Path(f"/proc/{proc.pid}/io").read_text().splitlines())
        _, status, _ = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode not in (0,):
            errors.seek(0)
            raise SystemExit(f"{shlex.join(cmd)}: exit {proc.returncode}: {errors.read().decode()}")
        peak_kib = int(Path(rss.name).read_text().split()[-1])
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
