"""Dry run: the store primitives compare and count, and write nothing.

While :func:`dry_run` is active (the runner enters it for ``backup
--dry-run``), every primitive of :mod:`inkind.store` decides exactly as in
a real run and counts the write it would make in Stats, but leaves the
store as it is. What a write would have changed is kept in an in-memory
overlay, so that later comparisons in the same run see the store as the
real run would have left it (a directory that gained an entry has a new
mtime to set back, a checksum written once is not written twice):

* ``xattrs``: per inode, the values set (None: removed);
* ``meta``: per inode, the mtime, mode, owner and group set;
* ``names``: per directory inode, the entries created, renamed or
  removed, each naming what it would be.

An object that a real run would create (a temp file, a directory, a clone
of an image) is a *stand-in*: an empty sparse file, directory, symlink or
node in a scratch directory outside the store, made as the real one would
be made (mode from the same umask, owner the running user) and removed
when the dry run ends. No data is ever written into a stand-in.

The mode is carried by a context variable, not by an argument: a source
calls the same primitives in both modes and cannot forget to pass it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextvars import ContextVar

from inkind.store.noatime import open_noatime

Ino = tuple[int, int]  # (st_dev, st_ino)

TOUCHED = -1  # the mtime of an inode a dry write touched: not any source's mtime
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC

_PROC = "/proc/self/fd/"

_active: ContextVar[DryRun | None] = ContextVar("inkind_dry_run", default=None)


def active() -> DryRun | None:
    """The dry run in progress, or None in a real run."""
    return _active.get()


@contextlib.contextmanager
def dry_run(enabled: bool = True) -> Iterator[DryRun | None]:
    """Make every store primitive dry for the duration (a no-op when not
    ``enabled``); the stand-ins are removed at the end."""
    if not enabled:
        yield None
        return
    dry = DryRun()
    token = _active.set(dry)
    try:
        yield dry
    finally:
        _active.reset(token)
        dry.close()


def ino_of(target: int | os.stat_result) -> Ino:
    st = os.fstat(target) if isinstance(target, int) else target
    return st.st_dev, st.st_ino


def target_ino(target: int | str | bytes | os.PathLike) -> Ino:
    """The inode of an fd or of a path (never following a symlink at its end)."""
    if isinstance(target, int):
        return ino_of(target)
    raw = os.fsencode(target)
    if raw.startswith(_PROC.encode()) and raw[len(_PROC) :].isdigit():
        return ino_of(int(raw[len(_PROC) :]))  # a descriptor's own path
    return ino_of(os.stat(raw, follow_symlinks=False))


class DryRun:
    """The overlay of one dry run, and its scratch directory of stand-ins."""

    def __init__(self) -> None:
        self.scratch = tempfile.mkdtemp(prefix="inkind-dry-run-")
        self._scratch_fd = os.open(self.scratch, _DIR_FLAGS)
        self._count = 0
        self.fresh: set[Ino] = set()  # stand-ins: no xattrs of their own
        self.xattrs: dict[Ino, dict[str, bytes | None]] = {}
        self.meta: dict[Ino, dict[str, int]] = {}
        self.names: dict[Ino, dict[str, str | None]] = {}
        self._kept: list[int] = []  # O_PATH fds behind entries that name a stored object

    def close(self) -> None:
        for fd in self._kept:
            os.close(fd)
        os.close(self._scratch_fd)
        shutil.rmtree(self.scratch, ignore_errors=True)

    # --- stand-ins ---------------------------------------------------------

    def _name(self) -> str:
        self._count += 1
        return str(self._count)

    def _made(self, name: str) -> str:
        path = os.path.join(self.scratch, name)
        self.fresh.add(ino_of(os.stat(path, follow_symlinks=False)))
        return path

    def new_file(self, mode: int = 0o600) -> tuple[int, str]:
        """An empty stand-in file open for writing, and its path."""
        name = self._name()
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode, dir_fd=self._scratch_fd)
        return fd, self._made(name)

    def new_dir(self, mode: int = 0o700) -> str:
        name = self._name()
        os.mkdir(name, mode, dir_fd=self._scratch_fd)
        return self._made(name)

    def new_symlink(self, target: str | bytes) -> str:
        name = self._name()
        os.symlink(target, name, dir_fd=self._scratch_fd)
        return self._made(name)

    def new_node(self, mode: int, rdev: int) -> str:
        """A device node or fifo (a fifo where nodes cannot be made)."""
        name = self._name()
        try:
            os.mknod(name, mode, rdev, dir_fd=self._scratch_fd)
        except PermissionError:
            os.mkfifo(name, mode & 0o7777, dir_fd=self._scratch_fd)
        return self._made(name)

    # --- entries -----------------------------------------------------------

    def lookup(self, dir_fd: int, name: str | bytes) -> str | bool | None:
        """What ``name`` in ``dir_fd`` would be: the path of a stand-in or of
        a stored object it now names, None when it would be gone, or False
        when the dry run did not change it (the store answers)."""
        entries = self.names.get(ino_of(dir_fd))
        key = os.fsdecode(name)
        if entries is None or key not in entries:
            return False
        return entries[key]

    def ref(self, dir_fd: int, name: str | bytes) -> str:
        """A path to what ``name`` in ``dir_fd`` is now (FileNotFoundError
        if nothing): a stored object is pinned by an O_PATH descriptor."""
        found = self.lookup(dir_fd, name)
        if found is None:
            raise FileNotFoundError(os.strerror(2), os.fsdecode(name))
        if found:
            return found
        fd = os.open(name, _PATH_FLAGS, dir_fd=dir_fd)
        self._kept.append(fd)
        return f"{_PROC}{fd}"

    @staticmethod
    def open(ref: str, flags: int) -> int:
        """Open what ``ref`` names, read-only."""
        flags = (flags & ~(os.O_ACCMODE | os.O_CREAT | os.O_EXCL | os.O_TRUNC)) | os.O_RDONLY
        if ref.startswith(_PROC):
            return open_noatime(ref, flags & ~os.O_NOFOLLOW)
        return open_noatime(ref, flags)

    @staticmethod
    def open_store(dir_fd: int, name: str | bytes, flags: int) -> int:
        """Open a stored object that the dry run did not change, read-only."""
        flags = (flags & ~(os.O_ACCMODE | os.O_CREAT | os.O_EXCL | os.O_TRUNC)) | os.O_RDONLY
        return open_noatime(name, flags, dir_fd=dir_fd)

    @staticmethod
    def lstat(ref: str) -> os.stat_result:
        if ref.startswith(_PROC):
            return os.fstat(int(ref[len(_PROC) :]))
        return os.stat(ref, follow_symlinks=False)

    def put(self, dir_fd: int, name: str | bytes, ref: str | None) -> None:
        """``name`` in ``dir_fd`` would now be ``ref`` (None: removed); the
        directory's mtime changes, as a real create or rename changes it."""
        d = ino_of(dir_fd)
        self.names.setdefault(d, {})[os.fsdecode(name)] = ref
        self.touch(d)

    def listdir(self, dir_fd: int) -> list[str]:
        fd = open_noatime(".", _DIR_FLAGS, dir_fd=dir_fd)  # a new open (see paths.list_dir)
        try:
            names = {n: True for n in os.listdir(fd)}
        finally:
            os.close(fd)
        for name, ref in self.names.get(ino_of(dir_fd), {}).items():
            if ref is None:
                names.pop(name, None)
            else:
                names[name] = True
        return list(names)

    # --- metadata ----------------------------------------------------------

    def touch(self, ino: Ino) -> None:
        self.meta.setdefault(ino, {})["mtime"] = TOUCHED

    def stat_value(self, st: os.stat_result, field: str) -> int:
        """``st``'s ``mtime``, ``mode``, ``uid`` or ``gid`` as the dry run
        would have left it."""
        over = self.meta.get((st.st_dev, st.st_ino), {})
        if field in over:
            return over[field]
        return {"mtime": st.st_mtime_ns, "mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid}[field]

    def set_stat(self, st: os.stat_result, **values: int) -> None:
        self.meta.setdefault((st.st_dev, st.st_ino), {}).update(values)

    def xattr_layer(self, ino: Ino) -> dict[str, bytes | None]:
        return self.xattrs.setdefault(ino, {})
