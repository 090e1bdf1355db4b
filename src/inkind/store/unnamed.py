"""Unnamed temps (O_TMPFILE): a new file written where no name can reach it
and linked under its final name only when whole, so a crash leaves nothing
and no temp name is made, renamed and unlinked."""

from __future__ import annotations

import errno
import os

_PROC_FD = "/proc/self/fd/"
_UNSUPPORTED = (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL)
works = os.path.isdir(_PROC_FD)  # linking an unnamed file needs /proc


def unnamed_temp(dir_fd: int, mode: int) -> int:
    """An unnamed file in ``dir_fd``'s directory, open for writing; -1
    where the filesystem makes none (it is not tried again)."""
    global works
    if not works:
        return -1
    try:
        return os.open(".", os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    except OSError as err:
        if err.errno not in _UNSUPPORTED:
            raise
        works = False
        return -1


def link_unnamed(fd: int, dir_fd: int, name: bytes) -> bool:
    """Give the unnamed file ``fd`` the name ``name`` in ``dir_fd``;
    False when the name is taken (nothing is replaced)."""
    try:
        os.link(_PROC_FD + str(fd), name, dst_dir_fd=dir_fd, follow_symlinks=True)
    except FileExistsError:
        return False
    return True
