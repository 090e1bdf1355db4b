"""Consistent copies of live databases, and integrity checks of copies.

The copy is made with SQLite's online backup API in a single step, so it is
one read transaction: one consistent state of the database, whatever
writers do meanwhile (in WAL mode they go on writing; in rollback mode they
wait for the read to end). The source is opened read-only, so inkind never
writes to it (no checkpoint, no journal rollback).
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from urllib.parse import quote

from inkind import SourceError

SQLITE_BUSY = 5
SQLITE_LOCKED = 6


def open_readonly(path: str | Path, *, immutable: bool = False, timeout: float = 5.0) -> sqlite3.Connection:
    """A read-only connection; ``immutable`` for a file nobody else uses (no
    locks, and no ``-wal``/``-shm`` file is ever made next to it)."""
    uri = f"file:{quote(os.fsdecode(path))}?mode=ro" + ("&immutable=1" if immutable else "")
    return sqlite3.connect(uri, uri=True, timeout=timeout)


def check_readable(path: Path) -> None:
    """Raise SourceError naming ``path`` if it is missing, unreadable or not a
    regular file (SQLite itself would only say "unable to open")."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise SourceError(f"{path}: {e.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SourceError(f"{path}: not a regular file")
    finally:
        os.close(fd)


def take_copy(src: Path, dest: Path, busy_timeout: float) -> None:
    """Copy the database ``src`` into the new file ``dest``.

    Raises SourceError if a writer holds its lock for more than
    ``busy_timeout`` seconds, sqlite3.Error if it is not a database.
    """
    check_readable(src)

    def give_up_when_busy(status: int, remaining: int, total: int) -> None:
        # SQLite already waited busy_timeout for the lock before saying busy.
        if status in (SQLITE_BUSY, SQLITE_LOCKED):
            raise SourceError(f"{src}: locked by a writer for more than {busy_timeout:g} s")

    source = open_readonly(src, timeout=busy_timeout)
    try:
        target = sqlite3.connect(dest)
        try:
            # A scratch file: a rollback journal or fsync would only cost I/O.
            target.execute("PRAGMA journal_mode=OFF")
            target.execute("PRAGMA synchronous=OFF")
            source.backup(target, pages=-1, progress=give_up_when_busy)
        finally:
            target.close()
    finally:
        source.close()


def integrity_problems(path: str | Path, limit: int = 5) -> list[str]:
    """What ``PRAGMA integrity_check`` finds in a database file that nothing
    else uses (at most ``limit`` lines); empty when it is sound."""
    try:
        con = open_readonly(path, immutable=True)
        try:
            rows = con.execute(f"PRAGMA integrity_check({int(limit)})").fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        return [str(e)]
    lines = [str(r[0]) for r in rows]
    return [] if lines == ["ok"] else lines
