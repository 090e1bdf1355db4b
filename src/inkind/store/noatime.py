"""Reading the store without writing to it: opens that leave atime alone.

Under ``relatime`` (the default mount option) the first read of a file, or
listing of a directory, after its ctime changed rewrites the inode's atime,
and so does the first one each day after that. inkind sets every stored
entry's mtime after creating it, so its first read always counts: scrub's
sample, verify, the compare of a changed file. On btrfs with snapshots each
such inode costs a metadata leaf that the previous snapshot keeps (a
no-change backup scrubbing 1% of 54,000 files grew the store's filesystem
by 15 MiB). ``O_NOATIME``, allowed to the file's owner and to root, keeps
reads read-only; where it is refused (EPERM: another user's file) the open
is made without it. The tree engine opens source files the same way, so
a backup leaves the source's atimes as they were too.
"""

from __future__ import annotations

import errno
import os

NOATIME = getattr(os, "O_NOATIME", 0)
_NOT_A_READ = os.O_PATH | os.O_CREAT


def open_noatime(name: str | bytes, flags: int, mode: int = 0o600, dir_fd: int | None = None) -> int:
    """``os.open``; a read-only open leaves the atime as it is where the
    kernel lets the caller (a write changes the inode anyway)."""
    if NOATIME and (flags & os.O_ACCMODE) == os.O_RDONLY and not flags & _NOT_A_READ:
        try:
            return os.open(name, flags | NOATIME, mode, dir_fd=dir_fd)
        except PermissionError as e:
            if e.errno != errno.EPERM:
                raise
    return os.open(name, flags, mode, dir_fd=dir_fd)
