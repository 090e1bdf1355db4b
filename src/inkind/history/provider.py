"""The interface of snapshot providers: what a plugin implements to keep
history of the store on one kind of storage.

A provider (btrfs, lvm, zfs, reflink, hardlink, ...) comes from a plugin
through the ``inkind_snapshot_providers`` hook. A snapshot is a read-only
copy of the whole store, ``.inkind/`` included, so it says itself which
sources ran and how; its id is the time it was taken (:mod:`inkind.history.ids`).
"""

from __future__ import annotations

import shutil
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from inkind.errors import InkindError
from inkind.history.ids import parse_id


class SnapshotError(InkindError):
    """Taking, listing or deleting a snapshot failed; the backup's data are kept."""


@dataclass(frozen=True)
class Snapshot:
    """One snapshot. ``store`` is where the copy of the store can be read
    (None when it must be mounted first, see :meth:`SnapshotProvider.mount_commands`)."""

    id: str
    store: Path | None
    handle: str = ""  # the provider's own name for it (path, vg/lv, dataset@snap)

    @property
    def time(self) -> datetime:
        return parse_id(self.id)


def run_storage_tool(argv: list[str], what: str) -> str:
    """Run a storage command; its failure is one SnapshotError line naming
    the command and what it printed."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise SnapshotError(f"snapshots: {what}: command not found: {argv[0]}") from None
    if done.returncode:
        detail = (done.stderr or done.stdout).strip().splitlines()
        tail = f": {detail[-1]}" if detail else ""
        raise SnapshotError(f"snapshots: {what}: {argv[0]} exited {done.returncode}{tail}")
    return done.stdout


class SnapshotProvider(ABC):
    """One way to keep history of the store at ``store``.

    ``snapshot_dir`` is where providers that make directories put them
    (beside the store, or its ``.snapshots`` folder:
    :func:`inkind.history.folders.default_snapshot_dir`);
    providers that snapshot a volume or dataset ignore it.
    """

    name: ClassVar[str]
    snapshot_dir_on: ClassVar[str | None] = None
    """Where ``snapshot_dir`` must be for this provider to work: "mount"
    (the store's own mount: hard links cross no mount), "filesystem" (the
    store's filesystem, any mount of it: btrfs snapshots, reflinks), or
    None when the provider keeps its snapshots elsewhere."""

    def __init__(self, store: Path, snapshot_dir: Path):
        self.store = store
        self.snapshot_dir = snapshot_dir

    @classmethod
    def detect(cls, store: Path) -> bool:
        """Whether this provider works for ``store`` (asked by "auto")."""
        return False

    @abstractmethod
    def create(self, sid: str) -> Snapshot:
        """Take a snapshot with id ``sid``. A half-made one must never be
        listed: be atomic, or build under a temp name and rename."""

    @abstractmethod
    def list(self) -> list[Snapshot]:
        """The snapshots, oldest first. Providers that can leave half-made
        snapshots remove them here (the caller holds the snapshots lock)."""

    @abstractmethod
    def delete(self, snap: Snapshot) -> None:
        """Delete one snapshot, freeing its space before returning where
        the storage allows it (``min_free`` measures right after)."""

    @property
    def inner_entry(self) -> str | None:
        """The name of the store's top-level entry that holds the snapshot
        folder, when the folder is inside the store (a copy of the store
        leaves it out); None when it is outside."""
        try:
            return self.snapshot_dir.resolve().relative_to(self.store.resolve()).parts[0]
        except (ValueError, IndexError):
            return None

    def space(self) -> tuple[int, int]:
        """(total, free) bytes of the storage that snapshots consume."""
        usage = shutil.disk_usage(self.store)
        return usage.total, usage.free

    def exclusive_bytes(self, snap: Snapshot) -> int | None:
        """Bytes only this snapshot holds (what deleting it frees), when the
        provider can tell cheaply enough for ``snapshots list``."""
        return None

    def mount_commands(self, snap: Snapshot) -> tuple[list[list[str]], Path]:
        """Commands that make a snapshot readable, and where its copy of the
        store then is. Directory snapshots need none."""
        assert snap.store is not None
        return [], snap.store

    def write_paths(self) -> list[Path]:
        """Where taking and pruning snapshots writes, outside the store (the
        units ``inkind systemd`` prints may write there and nowhere else)."""
        return [self.snapshot_dir]


class NoSnapshots(SnapshotProvider):
    """``snapshots = "none"``: the store keeps only the latest state."""

    name = "none"

    def write_paths(self) -> list[Path]:
        return []

    def create(self, sid: str) -> Snapshot:
        raise SnapshotError("snapshots: store.snapshots is 'none': no history is kept")

    def list(self) -> list[Snapshot]:
        return []

    def delete(self, snap: Snapshot) -> None:
        raise SnapshotError("snapshots: store.snapshots is 'none'")
