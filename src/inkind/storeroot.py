"""The store directory: init, checks, ``.inkind/`` layout, per-source locks.

A store exists only once ``inkind init`` (or ``backup --init``) made it:
every other command refuses a directory without ``.inkind/store.json``, or
one on another filesystem than the one recorded at init, before it writes
anything. That is what keeps a run from filling the empty mount point of an
unmounted backup disk (rsnapshot's ``no_create_root``).
"""

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
from inkind.storefs import Filesystem

FORMAT = 1
STATE_DIR = Path(".inkind") / "sources"  # NAME.json: each source's state (inkind.state)
NOT_A_STORE = "not an inkind store (is the disk mounted?)"
# What a fresh filesystem's root may hold when it becomes a store.
_FRESH_FS_ENTRIES = frozenset({"lost+found"})


def _info_path(path: Path) -> Path:
    return path / ".inkind" / "store.json"


def _filesystem(path: Path) -> Filesystem:
    try:
        return Filesystem.of(path)
    except (OSError, ValueError, IndexError) as e:
        raise StoreError(f"store: {path}: cannot tell its filesystem ({e})") from None


def _read_info(path: Path) -> dict:
    info = _info_path(path)
    try:
        data = json.loads(info.read_text())
        fmt = data["format"]
    except FileNotFoundError:
        raise StoreError(
            f"store: {path}: {NOT_A_STORE}: no .inkind/store.json (`inkind init` makes a store)"
        ) from None
    except NotADirectoryError:
        raise StoreError(f"store: {path}: is not a directory") from None
    except (ValueError, KeyError, TypeError):
        raise StoreError(f"store: {info}: is not valid store metadata") from None
    if fmt != FORMAT:
        raise StoreError(f"store: {info}: format {fmt} is not supported (this inkind reads {FORMAT})")
    return data


def check_filesystem(path: Path, data: dict) -> Filesystem | None:
    """Refuse a store whose filesystem is not the one recorded at init;
    return the one it is on (None for a store made before it was recorded)."""
    if "filesystem" not in data:  # made before the filesystem was recorded
        return None
    try:
        recorded = Filesystem.from_record(data["filesystem"])
    except (KeyError, TypeError):
        raise StoreError(f"store: {_info_path(path)}: is not valid store metadata") from None
    now = _filesystem(path)
    if not now.same_as(recorded):
        raise StoreError(
            f"store: {path}: {NOT_A_STORE}: it is on {now}, but `inkind init` made it on {recorded}"
            " (if the store was moved there on purpose, `inkind init --adopt` records the new one)"
        )
    return now


@dataclass(frozen=True)
class InitResult:
    path: Path
    created: bool  # False: it already was a store
    filesystem: Filesystem


def init_store(path: Path, *, adopt: bool = False) -> InitResult:
    """Make ``path`` a store: ``.inkind/store.json`` with the format and the
    filesystem it is on. An existing store is left as it is (``adopt``
    records the filesystem it is on now); a directory holding anything else
    is refused, naming what it holds."""
    if _info_path(path).exists():
        data = _read_info(path)
        if adopt:
            fs = _filesystem(path)
            _write_info(path, {**data, "filesystem": fs.record()})
            return InitResult(path, False, fs)
        return InitResult(path, False, check_filesystem(path, data) or _filesystem(path))
    if path.exists():
        if not path.is_dir():
            raise StoreError(f"store: {path}: is not a directory")
        others = sorted(set(os.listdir(path)) - _FRESH_FS_ENTRIES)
        if others:
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise StoreError(
                f"store: {path}: is not empty and not an inkind store (holds {shown}); "
                "init makes a store only in an empty directory"
            )
    else:
        try:
            path.mkdir()
        except OSError as e:
            raise StoreError(f"store: {path}: cannot create: {e.strerror}") from None
    fs = _filesystem(path)
    _write_info(path, {"format": FORMAT, "created": now_iso(), "filesystem": fs.record()})
    return InitResult(path, True, fs)


def _write_info(path: Path, data: dict) -> None:
    try:
        StoreLayout(path).state_dir.mkdir(parents=True, exist_ok=True)
        write_json(_info_path(path), data)
    except OSError as e:
        raise StoreError(f"store: {path}: cannot write: {e.strerror}") from None


def unusable_store(path: Path) -> str | None:
    """Why ``path`` is not a usable store (as ``Store.open`` would say it),
    or None: for reports that go on past the problem (``status``)."""
    try:
        check_filesystem(path, _read_info(path))
    except StoreError as e:
        return str(e)
    return None


@dataclass
class StoreLayout:
    """Where a store keeps each source's data and state: the one place that
    knows. Paths only, nothing checked or opened, so reports on a store that
    may not be mounted (``list``, ``status``), a snapshot's copy of a store
    (``restore``) and plugins after a run (``inkind_run_finished``) ask it."""

    path: Path

    def data_dir(self, name: str) -> Path:
        return self.path / name

    @property
    def state_dir(self) -> Path:
        return self.path / STATE_DIR

    def state_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.json"

    def load_state(self, name: str) -> SourceState:
        """The source's state (a missing one is empty; one that does not
        parse is set aside, see :class:`inkind.state.SourceState`)."""
        return SourceState.load(self.state_path(name))


@dataclass
class Store(StoreLayout):
    """An opened store. ``root_fd`` pins the directory for fd-relative work."""

    root_fd: int

    @classmethod
    def open(cls, path: Path, *, writable: bool = True) -> Store:
        """Check that ``path`` is a store made by ``init`` on the filesystem
        recorded then (and, when ``writable``, that it can be written).

        Anything else is a StoreError naming the path; nothing is written.
        """
        data = _read_info(path)
        check_filesystem(path, data)
        if writable and not os.access(path, os.W_OK):
            raise StoreError(f"store: {path}: is not writable (read-only filesystem or permissions)")
        return cls(path, os.open(path, DIR_FLAGS))

    def close(self) -> None:
        os.close(self.root_fd)

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
