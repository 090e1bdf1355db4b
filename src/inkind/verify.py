"""Checks of the store alone: every stored file against its own checksum."""

from __future__ import annotations

import os
import stat

from inkind.hashing import hash_fd
from inkind.source import Finding, RunContext
from inkind.store.files import is_temp_name
from inkind.store.image import pending_journals
from inkind.store.paths import DIR_FLAGS
from inkind.store.xattrs import XAttrs


def check_file(fd: int, relpath: str, size: int) -> Finding | None:
    """Compare one stored regular file with its ``user.inkind.xxh3``."""
    x = XAttrs(fd)
    if x.get("dirty") is not None:
        return Finding(relpath, "update pending in a journal; the next run replays it", True)
    want = x.text("xxh3")
    if want is None:
        return Finding(relpath, "no user.inkind.xxh3 checksum")
    got, _ = hash_fd(fd, size)
    if got != want:
        return Finding(relpath, "content does not match user.inkind.xxh3")
    return None


def verify_tree(run: RunContext) -> list[Finding]:
    """Hash every regular file below ``run.data_dir`` and compare.

    Leftover temps and pending journals are reported as recoverable.
    """
    findings = [
        Finding(j, "pending journal; the next run replays it", True)
        for j in pending_journals(run.root_fd, run.name)
    ]
    stack = [(os.dup(run.data_fd), run.name)]
    while stack:
        dfd, rel = stack.pop()
        try:
            for name in sorted(os.listdir(dfd), key=os.fsencode):
                path = f"{rel}/{name}"
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                if is_temp_name(name):
                    findings.append(Finding(path, "leftover temp; the next run removes it", True))
                elif stat.S_ISDIR(st.st_mode):
                    stack.append((os.open(name, DIR_FLAGS, dir_fd=dfd), path))
                elif stat.S_ISREG(st.st_mode):
                    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
                    try:
                        run.stats.objects_seen += 1
                        found = check_file(fd, path, st.st_size)
                    finally:
                        os.close(fd)
                    if found:
                        findings.append(found)
        finally:
            os.close(dfd)
    return findings
