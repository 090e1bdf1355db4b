"""Putting a checked copy into the store, writing only what differs.

Below ``LARGE`` a copy is streamed through UpdateFile: an unchanged database
costs no write (SQLite's backup output is byte-stable for an unchanged
source), a changed one is replaced atomically. From ``LARGE`` up it is kept
as an image and updated by the host's block-copy engine: only the
``BLOCK``-sized blocks whose hash changed are written (a per-block hash
manifest lives under ``STORE/.inkind/manifests/``).
"""

from __future__ import annotations

import os
from pathlib import Path

from inkind import (
    BlockCopy,
    RunContext,
    UpdateFile,
    XAttrs,
    discard,
    is_temp_name,
    make_dirs,
    open_beneath,
    remove_dir,
)

LARGE = 64 << 20
BLOCK = 64 << 10
CHUNK = 1 << 20


def engine(run: RunContext, name: str) -> BlockCopy:
    return BlockCopy(run.root_fd, f"{run.name}/{name}", BLOCK, run.stats, label=f"copy of {name}")


def store_copy(run: RunContext, copy: Path, name: str, *, source: str, full: bool) -> bool:
    """Make ``STORE/NAME/<name>`` equal to ``copy``; return whether it changed.

    ``full`` compares a large copy with the stored image itself rather than
    with its manifest. ``user.inkind.source`` records the live path.
    """
    make_dirs(run.data_fd, name.rpartition("/")[0])
    fd = os.open(copy, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if size >= LARGE:
            changed = _store_image(run, fd, size, name, full, copy)
        else:
            changed = _store_file(run, fd, name, source)
    finally:
        os.close(fd)
    stored = open_beneath(run.data_fd, name, os.O_RDONLY)
    try:
        XAttrs(stored, stats=run.stats)["source"] = source
    finally:
        os.close(stored)
    return changed


def _store_file(run: RunContext, fd: int, name: str, source: str) -> bool:
    def describe(tmp_fd: int) -> None:
        XAttrs(tmp_fd, stats=run.stats)["source"] = source

    with UpdateFile(name, dir_fd=run.data_fd, stats=run.stats, before_commit=describe) as f:
        offset = 0
        while chunk := os.pread(fd, CHUNK, offset):
            f.write(chunk)
            offset += len(chunk)
    run.stats.bytes_read += offset
    _drop_manifest(run, name)
    return f.changed


def _store_image(run: RunContext, fd: int, size: int, name: str, full: bool, copy: Path) -> bool:
    """The copy as an image; a first one is the copy itself (adopted, not
    written again: the copy is scratch)."""
    eng = engine(run, name)
    eng.sweep_manifest_temps()
    result = eng.copy(fd, size, full=full, adopt=copy)
    if result.suspect:
        run.state.data["full_pending"] = True
    return result.changed


def _drop_manifest(run: RunContext, name: str) -> None:
    """A database that shrank below LARGE leaves its block manifest behind."""
    discard(run.root_fd, engine(run, name).manifest_rel)


def stored_names(data_fd: int) -> list[str]:
    """Every stored copy below ``STORE/NAME`` (temps left out), sorted."""
    names = []
    for dirpath, dirnames, filenames, _ in os.fwalk(".", dir_fd=data_fd):
        dirnames[:] = [d for d in dirnames if not is_temp_name(d)]
        base = "" if dirpath == "." else dirpath[2:] + "/"
        names += [base + f for f in filenames if not is_temp_name(f)]
    return sorted(names)


def remove_stored(run: RunContext, name: str) -> None:
    """Delete a stored copy (and its manifest), then its emptied directories."""
    engine(run, name).remove()
    parent = name.rpartition("/")[0]
    while parent:
        try:
            remove_dir(run.data_fd, parent)
        except OSError:
            return
        parent = parent.rpartition("/")[0]
