"""A consistent copy of a live SQLite database that leaves nothing beside it.

The copy is made with SQLite's online backup API in a single step: one read
transaction, one state of the database, whatever writers do meanwhile. The
source is opened read-only, so it is never written (no checkpoint, no
journal rollback).

A read-only connection to a WAL database still creates its ``-wal`` and
``-shm`` files when they are not both there (nobody has it open), and
cannot remove them: a write beside what is backed up (on a host, one a
restricted key would let the server make), and one that fails where the
directory cannot be written (a read-only snapshot mount). So a WAL database without both is read
without them: with ``immutable=1`` when its ``-wal`` is empty or
missing (the main file is the whole state), else as a copy of the two
files in a private directory; either way only if the files did not change
meanwhile, and retried if they did.

Used by the local sqlite source and sent to a host as part of the remote
side: standard library only, Python 3.9 syntax.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import tempfile
from urllib.parse import quote

ATTEMPTS = 3  # a database opened and closed again during each copy: give up


def copy_sqlite_database(path: str, dest: str, timeout: float) -> None:
    """Copy the database ``path`` into ``dest`` (a new file, overwritten).

    Raises OSError(EBUSY) if a writer holds its lock for more than
    ``timeout`` seconds or it changes during each of ATTEMPTS copies
    without its -shm, sqlite3.Error if it is not a database.
    """
    for _ in range(ATTEMPTS):
        before = _identities(path)
        _, wal, shm = before
        if not _is_wal(path) or (wal is not None and shm):
            _backup(_uri(path), dest, timeout)  # open elsewhere (or not WAL): nothing is created
            return
        if wal is None or wal[0] == 0:  # a stale -shm alone is not read either
            _backup(_uri(path) + "&immutable=1", dest, timeout)
        else:
            _backup_private_copy(path, dest, timeout)
        if _identities(path) == before:
            return
    raise OSError(
        errno.EBUSY, f"changed during each of {ATTEMPTS} copies (opened and closed again each time)"
    )


def _is_wal(path: str) -> bool:
    """Whether the header says WAL (file format versions 2 at bytes 18-19)."""
    with open(path, "rb") as f:
        return f.read(20)[18:20] == b"\x02\x02"


def _identities(path: str) -> tuple:
    """What changes when anyone writes the database or its -wal: size,
    mtime, ctime and inode of each (None for a file that is not there)."""

    def one(p: str):
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            return None
        return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)

    return (one(path), one(path + "-wal"), os.path.lexists(path + "-shm"))


def _uri(path: str) -> str:
    return f"file:{quote(path)}?mode=ro"


def _backup_private_copy(path: str, dest: str, timeout: float) -> None:
    """Back up from a copy of the database and its -wal in a private
    directory beside ``dest``: SQLite reads the -wal there, and what it
    creates for that stays there."""
    with tempfile.TemporaryDirectory(prefix=".inkind-wal-", dir=os.path.dirname(dest) or ".") as private:
        copy = os.path.join(private, "db")
        shutil.copyfile(path, copy)
        shutil.copyfile(path + "-wal", copy + "-wal")
        _backup(_uri(copy), dest, timeout)


def _backup(uri: str, dest: str, timeout: float) -> None:
    def give_up_when_busy(status: int, remaining: int, total: int) -> None:
        if status in (5, 6):  # SQLITE_BUSY, SQLITE_LOCKED, after SQLite waited the timeout
            raise OSError(errno.EBUSY, f"locked by a writer for more than {timeout:g} s")

    source = sqlite3.connect(uri, uri=True, timeout=timeout)
    try:
        target = sqlite3.connect(dest)
        try:
            target.execute("PRAGMA journal_mode=OFF")  # a scratch file: a journal or fsync only costs I/O
            target.execute("PRAGMA synchronous=OFF")
            source.backup(target, pages=-1, progress=give_up_when_busy)
        finally:
            target.close()
    finally:
        source.close()
