"""What the tests of postgres and mysql over ``host`` share: the source
table that reaches the test sshd, the stored files as they are, the run's
error lines, and the ssh a running backup started."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

HOST = "root@127.0.0.1"


def over_ssh(sshd, table: dict[str, Any], host: str = HOST) -> dict[str, Any]:
    """``table`` read on ``host`` through the test sshd."""
    return {**table, "host": host, "ssh_command": shlex.join(sshd.ssh_command())}


def files(top: Path) -> dict[str, bytes]:
    """Every stored file below ``top`` by its relative path, with its bytes."""
    return {str(p.relative_to(top)): p.read_bytes() for p in sorted(top.rglob("*")) if p.is_file()}


def identities(top: Path) -> dict[str, tuple[int, int]]:
    """Every stored file's (inode, mtime): the same after a run that
    rewrote nothing."""
    out = {}
    for p in sorted(top.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(top))] = (st.st_ino, st.st_mtime_ns)
    return out


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("inkind: ERROR:")]


def dump_temps() -> set[str]:
    """The remote side's temp directories (the host is this machine)."""
    return {n for n in os.listdir("/var/tmp") if n.startswith(".inkind-dump-")}


def children(pid: int, name: str) -> list[int]:
    """The descendants of ``pid`` whose command is ``name``."""
    parents: dict[int, int] = {}
    comms: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        parents[int(entry)], comms[int(entry)] = int(text[text.rindex(")") + 2 :].split()[1]), comm
    found = []
    for p, comm in comms.items():
        q = p
        while q in parents and q != pid and q > 1:
            q = parents[q]
        if q == pid and p != pid and comm == name:
            found.append(p)
    return found
