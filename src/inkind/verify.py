"""Checks of the store alone: every stored file against its own checksum,
every directory that records its entries against them, every object the
state says was stored against the store, and the state file itself."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from inkind.findings import Finding
from inkind.hashing import hash_fd
from inkind.store.entries import entries_problem
from inkind.store.files import holds_data, is_temp_name
from inkind.store.journal import pending_journals
from inkind.store.paths import DIR_FLAGS, list_dir, open_at
from inkind.store.xattrs import XAttrs
from inkind.storeroot import StoreLayout

if TYPE_CHECKING:  # the runs are handed in; inkind.source imports this module
    from inkind.source import RunContext


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


def verify_tree(run: RunContext, *, unfinished: bool = False) -> list[Finding]:
    """Hash every regular file below ``run.data_dir`` and compare; compare
    each directory that carries ``user.inkind.entries`` with its listing.

    Leftover temps and pending journals are reported as recoverable, and so
    are differing entries when ``unfinished`` (a run stopped mid-directory).
    """
    findings = [
        Finding(j, "pending journal; the next run replays it", True)
        for j in pending_journals(run.root_fd, run.name)
    ]
    stack = [(os.dup(run.data_fd), run.name)]
    while stack:
        dfd, rel = stack.pop()
        try:
            names = sorted(list_dir(dfd), key=os.fsencode)
            problem = entries_problem(dfd, names)
            if problem:
                findings.append(entries_finding(rel, problem, unfinished))
            for name in names:
                path = f"{rel}/{name}"
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                if is_temp_name(name):
                    findings.append(Finding(path, "leftover temp; the next run removes it", True))
                elif stat.S_ISDIR(st.st_mode):
                    stack.append((open_at(dfd, name, DIR_FLAGS), path))
                elif stat.S_ISREG(st.st_mode):
                    fd = open_at(dfd, name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
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


def entries_finding(rel: str, problem: str, unfinished: bool) -> Finding:
    """A directory whose entries differ from its ``user.inkind.entries``."""
    if unfinished:
        return Finding(rel, f"{problem}; the last backup did not finish, the next one completes it", True)
    return Finding(rel, f"{problem}: deleted or added outside inkind")


def missing_objects(run: RunContext) -> list[Finding]:
    """The objects the state says the last backup left in the store
    (``objects``: store-relative paths, see Source.stored_objects) that are
    not there. Recoverable only after a run that did not finish."""
    findings = []
    for rel in run.state.data.get("objects") or ():
        if not _exists(run.root_fd, rel):
            derived = rel.startswith(".inkind/")
            what = (
                "derived data, the next backup rebuilds it" if derived else "the next backup stores it again"
            )
            findings.append(
                Finding(
                    rel,
                    f"missing: the last backup left it here (deleted outside inkind?); {what}",
                    run.state.unfinished,
                )
            )
    return findings


def existing(root_fd: int, rels: list[str]) -> list[str]:
    """Those of the store-relative paths ``rels`` that exist."""
    return [rel for rel in rels if _exists(root_fd, rel)]


def _exists(root_fd: int, rel: str) -> bool:
    try:
        os.stat(rel, dir_fd=root_fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


def state_findings(run: RunContext) -> list[Finding]:
    """``.inkind/sources/NAME.json`` missing while ``STORE/NAME`` holds data:
    it was deleted outside inkind (the next backup rebuilds it)."""
    if not run.state.missing or not holds_data(run.data_fd):
        return []
    rel = str(StoreLayout(Path()).state_path(run.name))
    return [Finding(rel, f"missing while {run.name}/ holds data; the next backup rebuilds it")]
