"""Path helpers that never follow a symlink out of the store."""

from __future__ import annotations

import os

from inkind.store import dryrun
from inkind.store.noatime import open_noatime

PathLike = str | bytes | os.PathLike

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def fd_path(dir_fd: int, name: str | bytes = b"") -> bytes:
    """A path that names ``name`` inside the open directory ``dir_fd``.

    ``/proc/self/fd/N`` resolves to the directory itself, so the result is
    safe against a symlink swapped in for a parent directory; it serves the
    calls that take no ``dir_fd`` (pyxattr).
    """
    base = b"/proc/self/fd/%d" % dir_fd
    if not name:
        return base
    dry = dryrun.active()
    found = dry.lookup(dir_fd, name) if dry is not None else False
    if found:  # a dry run changed it: what it names now
        return os.fsencode(found)
    return base + b"/" + os.fsencode(name)


def open_at(dir_fd: int, name: str | bytes, flags: int, mode: int = 0o600) -> int:
    """``os.open(name, flags, dir_fd=dir_fd)``, a read leaving the atime as
    it is (see :mod:`inkind.store.noatime`); in a dry run, what ``name``
    would be by now, and only ever read-only."""
    dry = dryrun.active()
    if dry is None:
        return open_noatime(name, flags, mode, dir_fd=dir_fd)
    found = dry.lookup(dir_fd, name)
    if found is None:
        raise FileNotFoundError(2, os.strerror(2), os.fsdecode(name))
    if found:
        return dry.open(found, flags)
    return dry.open_store(dir_fd, name, flags)


def lstat_at(dir_fd: int, name: str | bytes) -> os.stat_result:
    """``os.stat(name, dir_fd=dir_fd, follow_symlinks=False)``, seeing what
    a dry run changed."""
    dry = dryrun.active()
    found = dry.lookup(dir_fd, name) if dry is not None else False
    if found is None:
        raise FileNotFoundError(2, os.strerror(2), os.fsdecode(name))
    if found:
        return dry.lstat(found)
    return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)


def list_dir(dir_fd: int) -> list[str]:
    """The names in an open directory, as a fresh open of it sees them.

    Listing through a descriptor that entries were created through is not
    the same on every filesystem: btrfs (since Linux 6.5) does not return,
    on a directory opened before, the entries added after its first read.
    A new open file description of the same directory (``"."`` relative to
    it, so no path is followed) answers the same everywhere. In a dry run,
    with what the dry run added or removed.
    """
    dry = dryrun.active()
    if dry is not None:
        return dry.listdir(dir_fd)
    fd = reopen_dir(dir_fd)
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


def reopen_dir(dir_fd: int) -> int:
    """A new descriptor (a new open file description, unlike ``os.dup``) of
    the open directory ``dir_fd``, for listings that must see every entry
    (see :func:`list_dir`). The caller closes it."""
    return open_noatime(".", DIR_FLAGS, dir_fd=dir_fd)


def open_beneath(root_fd: int, relpath: str | bytes, flags: int, mode: int = 0o600) -> int:
    """Open ``relpath`` below ``root_fd``, refusing any symlink on the way.

    Every directory component is opened with O_NOFOLLOW, and so is the last
    one, so a planted symlink raises ``OSError(ELOOP/ENOTDIR)`` instead of
    leading out of the store.
    """
    parts = [p for p in os.fsencode(relpath).split(b"/") if p and p != b"."]
    if not parts or b".." in parts:
        raise ValueError(f"not a path below the store: {relpath!r}")
    fd = os.dup(root_fd)
    try:
        for part in parts[:-1]:
            nfd = open_at(fd, part, DIR_FLAGS)
            os.close(fd)
            fd = nfd
        return open_at(fd, parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    finally:
        os.close(fd)


def split_path(path: PathLike, dir_fd: int | None) -> tuple[int, bytes]:
    """Open the parent directory of ``path``; return (parent fd, base name).

    The caller closes the returned fd. Relative to ``dir_fd``, no symlink
    is followed on the way. In a dry run, a parent that does not exist yet
    (a real run would have made it) is an empty stand-in.
    """
    raw = os.fsencode(path)
    parent, name = os.path.split(raw)
    if not name:
        raise ValueError(f"path has no file name: {raw!r}")
    if not parent and dir_fd is not None:
        return os.dup(dir_fd), name
    try:
        if dir_fd is not None:
            return open_beneath(dir_fd, parent, DIR_FLAGS), name
        return os.open(parent or b".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), name
    except FileNotFoundError:
        dry = dryrun.active()
        if dry is None:
            raise
        return os.open(dry.new_dir(), DIR_FLAGS), name


def open_store(store: PathLike | int) -> tuple[int, bool]:
    """The store root as an fd, and whether the caller opened it (and closes
    it): a path is opened, an fd is used as given."""
    if isinstance(store, int):
        return store, False
    return os.open(store, DIR_FLAGS), True


def open_parent(root_fd: int, relpath: str) -> tuple[int, bytes]:
    """The directory holding ``relpath`` (below ``root_fd``), opened, and
    the entry's name in it."""
    parent, _, name = os.fsencode(relpath).rpartition(b"/")
    if parent:
        return open_beneath(root_fd, parent, DIR_FLAGS), name
    return os.dup(root_fd), name
