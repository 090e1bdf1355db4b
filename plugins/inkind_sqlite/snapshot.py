"""Consistent copies of live databases, and integrity checks of copies.

The copy is the public API's ``copy_sqlite_database`` (one read transaction
of SQLite's online backup API, the source opened read-only, nothing created
beside it); the integrity check reads the copy, which nothing else uses.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from urllib.parse import quote

from inkind import SourceError, copy_sqlite_database


def check_readable(path: Path) -> None:
    """Raise SourceError naming ``path`` if it is missing, unreadable or not a
    regular file (SQLite itself would only say "unable to open"); looked at
    before it is opened, so a fifo or a device is never opened."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise SourceError(f"{path}: not a regular file")
        os.close(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
    except OSError as e:
        raise SourceError(f"{path}: {e.strerror}") from None


def take_copy(src: Path, dest: Path, busy_timeout: float) -> None:
    """Copy the database ``src`` into the new file ``dest`` (one read
    transaction; nothing is created beside ``src``).

    Raises SourceError if a writer holds its lock for more than
    ``busy_timeout`` seconds, sqlite3.Error if it is not a database.
    """
    check_readable(src)
    try:
        copy_sqlite_database(os.fsdecode(src), os.fsdecode(dest), busy_timeout)
    except OSError as e:
        raise SourceError(f"{src}: {e.strerror}") from None


def integrity_problems(path: str | Path, limit: int = 5) -> list[str]:
    """What ``PRAGMA integrity_check`` finds in a database file that nothing
    else uses (at most ``limit`` lines); empty when it is sound."""
    try:
        # immutable: no locks, and no -wal/-shm file is made next to it
        con = sqlite3.connect(f"file:{quote(os.fsdecode(path))}?mode=ro&immutable=1", uri=True)
        try:
            rows = con.execute(f"PRAGMA integrity_check({int(limit)})").fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        return [str(e)]
    lines = [str(r[0]) for r in rows]
    return [] if lines == ["ok"] else lines
