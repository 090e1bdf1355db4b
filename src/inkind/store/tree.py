"""Entries of the store: make, link, rename, exchange and remove them.

fd-relative and never following a symlink. In a dry run each one leaves
the store as it is and records its effect in the dry run's overlay (see
:mod:`inkind.store.dryrun`), so what follows in the run sees the entry.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from inkind.libc import libc
from inkind.stats import Stats
from inkind.store import dryrun
from inkind.store.files import TEMP_MODE, temp_name
from inkind.store.paths import DIR_FLAGS, lstat_at, open_at, open_beneath
from inkind.store.xattrs import XAttrs

AT_RENAME_EXCHANGE = 2


def make_dir(dir_fd: int, name: str | bytes, mode: int = 0o700) -> None:
    """mkdir ``name`` in ``dir_fd`` (FileExistsError if something is there)."""
    dry = dryrun.active()
    if dry is None:
        os.mkdir(name, mode, dir_fd=dir_fd)
        return
    with contextlib.suppress(FileNotFoundError):
        lstat_at(dir_fd, name)
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(name))
    dry.put(dir_fd, name, dry.new_dir(mode))


def make_dirs(root_fd: int, rel: str | bytes, mode: int = 0o777) -> None:
    """Make each missing directory of ``rel`` below ``root_fd``."""
    fd = os.dup(root_fd)
    try:
        for part in [p for p in os.fsencode(rel).split(b"/") if p and p != b"."]:
            try:
                nfd = open_at(fd, part, DIR_FLAGS)
            except FileNotFoundError:
                with contextlib.suppress(FileExistsError):
                    make_dir(fd, part, mode)
                nfd = open_at(fd, part, DIR_FLAGS)
            os.close(fd)
            fd = nfd
    finally:
        os.close(fd)


def make_symlink(target: str | bytes, dir_fd: int, name: str | bytes) -> None:
    dry = dryrun.active()
    if dry is None:
        os.symlink(target, name, dir_fd=dir_fd)
    else:
        dry.put(dir_fd, name, dry.new_symlink(target))


def make_node(dir_fd: int, name: str | bytes, mode: int, rdev: int = 0) -> None:
    """A device node, fifo or socket placeholder (mknod)."""
    dry = dryrun.active()
    if dry is None:
        os.mknod(name, mode, rdev, dir_fd=dir_fd)
    else:
        dry.put(dir_fd, name, dry.new_node(mode, rdev))


def link(src_dir_fd: int, src_name: str | bytes, dir_fd: int, name: str | bytes) -> None:
    """Hard-link ``src_name`` of ``src_dir_fd`` as ``name`` of ``dir_fd``."""
    dry = dryrun.active()
    if dry is None:
        os.link(src_name, name, src_dir_fd=src_dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    else:
        dry.put(dir_fd, name, dry.ref(src_dir_fd, src_name))


def adopt_file(  # size: where the file is, where it goes, its checksum and the counts
    src_dir_fd: int, src_name: str, dir_fd: int, name: str, xxh3: str, stats: Stats
) -> bool:
    """Store a file that this run made on the store's filesystem and needs
    no more as itself (a dump tool's output in a scratch directory) as
    ``name`` of ``dir_fd``, where nothing is yet: its mode made 0600 and
    its ``user.inkind.xxh3`` set to ``xxh3`` (its content's, hashed by the
    caller) before it is moved there, its size counted as written, as
    UpdateFile would have written a copy. Whether it was: not in a dry run,
    nor for a file of another user, with another link, or on another
    filesystem (then nothing is done, and the caller writes a copy)."""
    if dryrun.active() is not None:
        return False
    fd = os.open(src_name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dir_fd)
    try:
        st = os.fstat(fd)
        if not (stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_uid == os.geteuid()):
            return False
        if st.st_dev != os.fstat(dir_fd).st_dev:
            return False
        os.fchmod(fd, TEMP_MODE)
        XAttrs(fd, stats=stats)["xxh3"] = xxh3
    finally:
        os.close(fd)
    os.rename(src_name, name, src_dir_fd=src_dir_fd, dst_dir_fd=dir_fd)
    stats.bytes_written += st.st_size
    return True


def rename(dir_fd: int, old: str | bytes, new: str | bytes) -> None:
    """Rename within one directory, replacing ``new``."""
    dry = dryrun.active()
    if dry is None:
        os.rename(old, new, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return
    dry.put(dir_fd, new, dry.ref(dir_fd, old))
    dry.put(dir_fd, old, None)


def exchange(dir_fd: int, tmp: str, entry: str) -> None:
    """Put ``tmp`` at ``entry`` in one step; the old ``entry`` (if any) ends
    up at ``tmp``. Where the filesystem cannot exchange, the old entry is
    renamed aside first: ``entry`` is then briefly absent, never partial."""
    dry = dryrun.active()
    if dry is not None:
        new = dry.ref(dir_fd, tmp)
        try:
            old: str | None = dry.ref(dir_fd, entry)
        except FileNotFoundError:
            old = None
        dry.put(dir_fd, entry, new)
        dry.put(dir_fd, tmp, old)
        return
    rc = libc.renameat2(dir_fd, os.fsencode(tmp), dir_fd, os.fsencode(entry), AT_RENAME_EXCHANGE)
    if rc == 0:
        return
    err = ctypes.get_errno()
    if err == errno.ENOENT:  # no old entry: a plain rename
        os.rename(tmp, entry, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return
    if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        raise OSError(err, os.strerror(err), entry)
    aside = os.fsdecode(temp_name())
    os.rename(entry, aside, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    os.rename(tmp, entry, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    os.rename(aside, tmp, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def remove(dir_fd: int, name: str | bytes) -> None:
    """Remove an entry of any kind, a directory with all below it
    (FileNotFoundError if there is none)."""
    st = lstat_at(dir_fd, name)
    dry = dryrun.active()
    if dry is not None:
        dry.put(dir_fd, name, None)
    elif stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def remove_dir(dir_fd: int, name: str | bytes) -> None:
    """rmdir: remove an empty directory (OSError if it is not empty)."""
    dry = dryrun.active()
    if dry is None:
        os.rmdir(name, dir_fd=dir_fd)
        return
    fd = open_at(dir_fd, name, DIR_FLAGS)
    try:
        if dry.listdir(fd):
            raise OSError(errno.ENOTEMPTY, os.strerror(errno.ENOTEMPTY), os.fsdecode(name))
    finally:
        os.close(fd)
    dry.put(dir_fd, name, None)


def discard(dir_fd: int, rel: str | bytes, stats: Stats | None = None) -> bool:
    """Remove ``rel`` below ``dir_fd`` (an entry of any kind, a directory
    with all below it) if it is there; return whether it was.

    Given ``stats``, the entry is one stored object: counted in
    ``objects_deleted`` when it was there. A temp or derived data (a block
    manifest) is removed without ``stats``.
    """
    parent, _, name = os.fsencode(rel).rpartition(b"/")
    try:
        pfd = open_beneath(dir_fd, parent, DIR_FLAGS) if parent else os.dup(dir_fd)
    except (FileNotFoundError, NotADirectoryError):
        return False
    try:
        remove(pfd, name)
    except FileNotFoundError:
        return False
    finally:
        os.close(pfd)
    if stats is not None:
        stats.objects_deleted += 1
    return True


@contextlib.contextmanager
def scratch_dir(dir_fd: int, dir_path: Path) -> Iterator[Path]:
    """A temp directory for a tool's output or a copy to compare: in
    ``dir_path`` (``dir_fd``), on the store's filesystem, removed afterwards
    or by the next run's temp sweep if this one is killed. In a dry run it
    lies outside the store (in the system's temp directory)."""
    if dryrun.active() is not None:
        path = tempfile.mkdtemp(prefix="inkind-dry-run-scratch-")
        try:
            yield Path(path)
        finally:
            shutil.rmtree(path, ignore_errors=True)
        return
    name = os.fsdecode(temp_name())
    os.mkdir(name, 0o700, dir_fd=dir_fd)
    try:
        yield dir_path / name
    finally:
        with contextlib.suppress(FileNotFoundError):
            remove(dir_fd, name)
