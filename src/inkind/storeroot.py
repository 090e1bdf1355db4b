"""The store directory: checks, ``.inkind/`` layout, per-source locks."""

from __future__ import annotations

import errno
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

from inkind.errors import StoreError
from inkind.state import SourceState, now_iso, write_json
from inkind.store.paths import DIR_FLAGS

FORMAT = 1


@dataclass
class Store:
    """An opened store. ``root_fd`` pins the directory for fd-relative work."""

    path: Path
    root_fd: int

    @classmethod
    def open(cls, path: Path, *, create: bool = True, fresh_ok: bool = False) -> Store:
        """Check the store and create ``.inkind/`` on first use.

        A missing, non-directory or read-only store is a StoreError naming
        the path; nothing is written then. ``fresh_ok`` (a dry run) accepts
        a store that was never written without creating anything.
        """
        if not path.exists():
            raise StoreError(f"store: {path}: does not exist (create the directory first)")
        if not path.is_dir():
            raise StoreError(f"store: {path}: is not a directory")
        if create and not os.access(path, os.W_OK):
            raise StoreError(f"store: {path}: is not writable (read-only filesystem or permissions)")
        meta = path / ".inkind"
        info = meta / "store.json"
        if info.exists():
            try:
                data = json.loads(info.read_text())
                fmt = data["format"]
            except (ValueError, KeyError, TypeError):
                raise StoreError(f"store: {info}: is not valid store metadata") from None
            if fmt != FORMAT:
                raise StoreError(f"store: {info}: format {fmt} is not supported (this inkind reads {FORMAT})")
        elif create:
            try:
                (meta / "sources").mkdir(parents=True, exist_ok=True)
                write_json(info, {"format": FORMAT, "created": now_iso()})
            except OSError as e:
                raise StoreError(f"store: {path}: cannot write: {e.strerror}") from None
        elif not fresh_ok:
            raise StoreError(f"store: {path}: not an inkind store (no .inkind/store.json)")
        return cls(path, os.open(path, DIR_FLAGS))

    def close(self) -> None:
        os.close(self.root_fd)

    def data_dir(self, name: str) -> Path:
        return self.path / name

    def state_path(self, name: str) -> Path:
        return self.path / ".inkind" / "sources" / f"{name}.json"

    def load_state(self, name: str) -> SourceState:
        return SourceState.load(self.state_path(name))

    def lock(self, name: str, *, shared: bool = False) -> int | None:
        """Take the source's flock on its data directory without waiting.

        Returns the fd holding the lock, or None when another run holds it.
        The kernel drops the lock when the process dies, so there is no lock
        file to go stale.
        """
        d = self.data_dir(name)
        d.mkdir(exist_ok=True)
        fd = os.open(d, DIR_FLAGS)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            raise
        return fd
