"""Set mtime, mode and owner only when they differ (principle 4).

In a dry run the new value goes to the dry run's overlay instead (see
:mod:`inkind.store.dryrun`), counted the same.
"""

from __future__ import annotations

import os

from inkind.stats import Stats
from inkind.store import dryrun
from inkind.store.paths import PathLike, lstat_at


def _lstat(target: PathLike | int, dir_fd: int | None) -> os.stat_result:
    if isinstance(target, int):
        return os.fstat(target)
    if dir_fd is not None:
        return lstat_at(dir_fd, target)
    return os.stat(target, follow_symlinks=False)


def _dry(st: os.stat_result, field: str, value: int) -> bool | None:
    """In a dry run: whether ``field`` would change (and record it); None
    in a real run."""
    dry = dryrun.active()
    if dry is None:
        return None
    if dry.stat_value(st, field) == value:
        return False
    dry.set_stat(st, **{field: value})
    return True


def set_mtime(
    target: PathLike | int,
    ns: int,
    *,
    dir_fd: int | None = None,
    stats: Stats | None = None,
    st: os.stat_result | None = None,
) -> bool:
    """Set the mtime of ``target`` (never following a symlink) if it differs.

    ``st``, when the caller already has a fresh stat, saves the stat call.
    Returns whether utime was called.
    """
    st = st or _lstat(target, dir_fd)
    dry = _dry(st, "mtime", ns)
    if dry is False or (dry is None and st.st_mtime_ns == ns):
        return False
    if dry is None:
        times = (st.st_atime_ns, ns)
        if isinstance(target, int):
            os.utime(target, ns=times)
        else:
            os.utime(target, ns=times, dir_fd=dir_fd, follow_symlinks=False)
    if stats is not None:
        stats.mtimes_set += 1
    return True


def set_mode(
    target: PathLike | int,
    mode: int,
    *,
    dir_fd: int | None = None,
    stats: Stats | None = None,
    st: os.stat_result | None = None,
) -> bool:
    """chmod ``target`` to the permission bits of ``mode`` if they differ.

    Symlinks have no mode of their own on Linux and are left alone.
    """
    st = st or _lstat(target, dir_fd)
    want = mode & 0o7777
    if (st.st_mode & 0o170000) == 0o120000:
        return False
    dry = _dry(st, "mode", (st.st_mode & 0o170000) | want)
    if dry is False or (dry is None and (st.st_mode & 0o7777) == want):
        return False
    if dry is None:
        if isinstance(target, int):
            os.chmod(target, want)
        else:
            os.chmod(target, want, dir_fd=dir_fd)
    if stats is not None:
        stats.modes_set += 1
    return True


def set_owner(
    target: PathLike | int,
    uid: int,
    gid: int,
    *,
    dir_fd: int | None = None,
    stats: Stats | None = None,
    st: os.stat_result | None = None,
) -> bool:
    """lchown ``target`` if its owner or group differ.

    chown clears set-uid/set-gid bits, so callers set the mode afterwards.
    """
    st = st or _lstat(target, dir_fd)
    dry = dryrun.active()
    if dry is not None:
        if (dry.stat_value(st, "uid"), dry.stat_value(st, "gid")) == (uid, gid):
            return False
        dry.set_stat(st, uid=uid, gid=gid)
    elif st.st_uid == uid and st.st_gid == gid:
        return False
    elif isinstance(target, int):
        os.fchown(target, uid, gid)
    else:
        os.chown(target, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
    if stats is not None:
        stats.owners_set += 1
    return True
