"""A database on another host (``host``): copied there with SQLite's backup
API into a temp file of the remote side, then rebuilt in the server's
scratch file from the blocks of the stored copy that still match and the
blocks fetched because they do not. The temp is removed on the host
whatever happens (and by the remote side itself if the connection dies).

Only plain paths are read remotely: a glob's matching (``**``, hidden
names) is Python's glob module on this machine, which the remote side does
not reproduce.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from inkind import Channel, RunContext, SourceError, open_beneath, pull_copy
from inkind_sqlite.discover import Database, is_glob
from inkind_sqlite.storing import BLOCK


def remote_databases(path: Path, host: str) -> list[Database]:
    """The one database a remote source names."""
    if is_glob(path):
        raise SourceError(
            f"source path {path}: a glob cannot be read on host {host}; name each database in its own source"
        )
    return [Database(path, path.name)]


def fetch_copy(  # size: the channel, the run, the database, where to put it, how long to wait
    channel: Channel, run: RunContext, db: Database, dest: Path, busy_timeout: float
) -> None:
    """Make the new file ``dest`` a consistent copy of ``db`` on the
    channel's host, moving only the blocks its stored copy lacks."""
    temp = channel.sqlite_backup(os.fsencode(db.path), busy_timeout=busy_timeout)
    try:
        base = _open_stored(run, db.name)
        try:
            fd = os.open(dest, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                pull_copy(channel, temp.path, base, fd, BLOCK)
            finally:
                os.close(fd)
        finally:
            if base >= 0:
                os.close(base)
    except BaseException:
        # The connection may be gone; the remote side then removes its temps as it ends.
        with contextlib.suppress(Exception):
            channel.remove(temp)
        raise
    channel.remove(temp)


def _open_stored(run: RunContext, name: str) -> int:
    try:
        return open_beneath(run.data_fd, name, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return -1
