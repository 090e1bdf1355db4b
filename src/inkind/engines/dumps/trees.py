"""A dump directory (``pg_dump -Fd``) stored as ``STORE/NAME/<entry>/``.

The new directory replaces the stored one atomically (one
``renameat2(RENAME_EXCHANGE)``), built from hard links of the stored files
that did not change, so that an unchanged file costs no write even when the
tool renamed it; an unchanged dump touches nothing in the store.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

from inkind.engines.dumps.entries import CHUNK, READ_FLAGS, count, regular_files
from inkind.hashing import hash_fd
from inkind.source import RunContext
from inkind.store import tree
from inkind.store.entries import record_entries
from inkind.store.files import UpdateFile, sync_store, temp_name
from inkind.store.paths import DIR_FLAGS, fd_path, open_at
from inkind.store.reflink import clones_in_place
from inkind.store.xattrs import XAttrs


def same_file(a_fd: int, b_fd: int) -> bool:
    if os.fstat(a_fd).st_size != os.fstat(b_fd).st_size:
        return False
    offset = 0
    while True:
        a = os.pread(a_fd, CHUNK, offset)
        if a != os.pread(b_fd, CHUNK, offset):
            return False
        if not a:
            return True
        offset += len(a)


def same_tree(new_fd: int, old_fd: int, names: list[str]) -> bool:
    """Whether the stored directory holds exactly ``names`` with the same
    bytes (read-only: the unchanged case touches nothing in the store)."""
    if regular_files(old_fd) != names:
        return False
    for name in names:
        a = os.open(name, READ_FLAGS, dir_fd=new_fd)
        try:
            b = open_at(old_fd, name, READ_FLAGS)
        except OSError:
            os.close(a)
            return False
        try:
            if not same_file(a, b):
                return False
        finally:
            os.close(a)
            os.close(b)
    return True


def store_tree(run: RunContext, src: Path, entry: str) -> bool:
    """Make ``STORE/NAME/<entry>/`` hold the flat directory ``src``; return
    whether it changed.

    Unchanged: nothing in the store is touched. Changed: a temp directory is
    filled with hard links of stored files whose content reappears (under the
    same name or, when the tool renumbered its files, another one), each
    checked byte by byte through UpdateFile, which writes only what differs;
    then it is swapped in at once, so the entry is always a whole dump.
    """
    new_fd = os.open(src, DIR_FLAGS)
    old_fd = -1
    try:
        names = regular_files(new_fd)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            old_fd = open_at(run.data_fd, entry, DIR_FLAGS)
        run.stats.bytes_read += sum(os.stat(n, dir_fd=new_fd).st_size for n in names)
        if old_fd >= 0 and same_tree(new_fd, old_fd, names):
            for _ in names:
                count(run, False)
            return False
        _build_and_swap(run, new_fd, old_fd, names, entry)
        return True
    finally:
        os.close(new_fd)
        if old_fd >= 0:
            os.close(old_fd)


def _stored_hashes(old_fd: int) -> dict[str, str]:
    if old_fd < 0:
        return {}
    return {n: XAttrs(fd_path(old_fd, n)).text("xxh3") or "" for n in regular_files(old_fd)}


def _build_and_swap(run: RunContext, new_fd: int, old_fd: int, names: list[str], entry: str) -> None:
    stored = _stored_hashes(old_fd)
    unused = dict(stored)  # each stored inode is linked at most once
    shares = functools.cache(lambda base: _shares_extents(old_fd, base))
    tmp = os.fsdecode(temp_name())
    tree.make_dir(run.data_fd, tmp)
    try:
        tmp_fd = open_at(run.data_fd, tmp, DIR_FLAGS)
        try:
            for name in names:
                fd = os.open(name, READ_FLAGS, dir_fd=new_fd)
                try:
                    digest, _ = hash_fd(fd)
                    base = _base_for(name, digest, unused)
                    if base is not None:
                        del unused[base]
                    # New, or changed where a copy could share nothing with
                    # the stored version: the tool's output is the stored file.
                    adopt = base is None or (stored[base] != digest and not shares(base))
                    adopted = adopt and tree.adopt_file(new_fd, name, tmp_fd, name, digest, run.stats)
                    if not adopted and base is not None:
                        tree.link(old_fd, base, tmp_fd, name)
                    changed = adopted or _update(run, fd, tmp_fd, name)
                finally:
                    os.close(fd)
                count(run, changed)
            run.stats.objects_deleted += len(unused)  # stored files no new file reused
            # The dump arrives with the record of its files, so that verify
            # finds one deleted later.
            record_entries(tmp_fd, names, run.stats)
            sync_store(tmp_fd)
        finally:
            os.close(tmp_fd)
        tree.exchange(run.data_fd, tmp, entry)
    finally:
        tree.discard(run.data_fd, tmp)


def _shares_extents(old_fd: int, name: str) -> bool:
    """Whether a copy of the stored ``name`` can share its extents (btrfs,
    XFS), asked of the file without writing; the answer is the store's."""
    fd = open_at(old_fd, name, READ_FLAGS)
    try:
        return clones_in_place(fd)
    finally:
        os.close(fd)


def _update(run: RunContext, fd: int, tmp_fd: int, name: str) -> bool:
    """Make ``name`` of the new directory hold ``fd``'s content, writing
    only where it differs from what is there (a stored file linked in);
    whether it changed. A changed file is written this way, not adopted,
    where the filesystem lets the copy share the unchanged part's extents
    with the stored version (btrfs, XFS): a snapshot then keeps only what
    changed. Elsewhere (ext4) the copy would be a second write of the whole
    file, and the tool's output is adopted instead."""
    with UpdateFile(name, dir_fd=tmp_fd, stats=run.stats, fsync=False) as f:
        offset = 0
        while chunk := os.pread(fd, CHUNK, offset):
            f.write(chunk)
            offset += len(chunk)
    return f.changed


def _base_for(name: str, digest: str, unused: dict[str, str]) -> str | None:
    """The stored file to start ``name`` from: one with the same content
    (same name first), else the stored file of the same name."""
    if unused.get(name) == digest:
        return name
    for other, h in unused.items():
        if h == digest:
            return other
    return name if name in unused else None
