"""rsync's ``--fake-super`` encoding, for a store written by a non-root user.

Ownership, the full mode and device numbers go into the ``user.rsync.%stat``
xattr as ``"<octal mode> <major>,<minor> <uid>:<gid>"``; symlinks become
regular files holding the target and special files become empty regular
files, exactly as rsync stores them, so ``rsync --fake-super`` restores
them.
"""

from __future__ import annotations

import os
import stat

STAT_XATTR = "user.rsync.%stat"


def encode(st: os.stat_result) -> bytes:
    major = minor = 0
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    return b"%o %d,%d %d:%d" % (st.st_mode, major, minor, st.st_uid, st.st_gid)


def stored_mode(st: os.stat_result) -> int:
    """The permission bits the stand-in file gets: the owner can always read
    and write it (and enter a directory), as rsync does."""
    if stat.S_ISDIR(st.st_mode):
        return (st.st_mode & 0o777) | 0o700
    if stat.S_ISREG(st.st_mode):
        return (st.st_mode & 0o777) | 0o600
    return 0o600
