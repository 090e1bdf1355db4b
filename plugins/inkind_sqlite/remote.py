"""A database on another host (``host``): copied there with SQLite's backup
API into a temp file of the remote side, then rebuilt in the server's
scratch file from the blocks of the stored copy that still match and the
blocks fetched because they do not. The temp is removed on the host
whatever happens (and by the remote side itself if the connection dies).
A restore to ``host:/path`` goes the other way with ssh and ``rsync -S``.

Only plain paths are read remotely: a glob's matching (``**``, hidden
names) is Python's glob module on this machine, which the remote side does
not reproduce.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


SIDES = ("-wal", "-shm", "-journal")


@dataclass
class Copier:
    """The restore commands of one stored copy: ``cp`` here, or through
    ``via`` (the SshTarget of ``--to host:/path``): ``ssh`` for the stale
    side files and ``rsync -S`` for the copy."""

    via: Any = None  # SshTarget | None

    def commands(self, stored: Path, target: Path) -> list[list[str]]:
        sides = [f"{target}{suffix}" for suffix in SIDES]
        if self.via is None:
            return [["rm", "-f", *sides], ["cp", "--sparse=always", str(stored), str(target)]]
        sudo = ["--rsync-path=sudo -n rsync"] if self.via.remote_sudo else []
        rsync = ["rsync", "-S", "-e", self.via.rsh(), *sudo, str(stored), f"{self.via.host}:{target}"]
        return [self._ssh(["rm", "-f", *sides]), rsync]

    def mkdir(self, directory: Path) -> list[str]:
        argv = ["mkdir", "-p", str(directory)]
        return argv if self.via is None else self._ssh(argv)

    def _ssh(self, argv: list[str]) -> list[str]:
        remote = (["sudo", "-n"] if self.via.remote_sudo else []) + argv
        return [*self.via.ssh_command, "--", self.via.host, shlex.join(remote)]
