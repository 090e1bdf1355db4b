"""lvm: a thin snapshot of the thin logical volume that holds the store.

Instant, and costs pool chunks only as the store is rewritten. The
snapshot is not mounted: ``restore --snapshot`` prints the commands that
activate and mount it read-only. Snapshots are named
``inkind-history-<id>`` and tagged ``inkind_history``, apart from the
``lvm`` source's own snapshots of the volumes it backs up.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from inkind import Snapshot, SnapshotError, SnapshotProvider, is_id, lvm
from inkind_snapshots.mounts import Mount, mount_of

PREFIX = "inkind-history-"
TAG = "inkind_history"
# Mount a snapshot of a filesystem that was mounted when it was taken
# without replaying its journal (the snapshot is read-only), and let XFS
# accept the duplicate UUID.
MOUNT_OPTIONS = {"ext4": "ro,noload", "ext3": "ro,noload", "xfs": "ro,norecovery,nouuid"}


@contextlib.contextmanager
def _history_errors() -> Iterator[None]:
    """LVM failures are history failures here."""
    try:
        yield
    except lvm.LvmError as e:
        raise SnapshotError(f"snapshots: {e}") from None


class LvmThin(SnapshotProvider):
    name = "lvm"

    def write_paths(self) -> list[Path]:
        return []  # a snapshot is a logical volume, not a directory

    def _store_volume(self) -> tuple[lvm.Volume, Mount, list[lvm.Volume]]:
        mount = mount_of(self.store)
        with _history_errors():
            every = lvm.list_volumes()
        dev = os.path.realpath(mount.source)
        for v in every:
            if dev in {os.path.realpath(p) for p in (v.path, v.dm_path) if p}:
                if not v.pool:
                    raise SnapshotError(
                        f"snapshots: lvm: the store's volume {v.full_name} is not a thin volume;"
                        " classic snapshots would fill up (use a thin LV, or another provider)"
                    )
                return v, mount, every
        raise SnapshotError(
            f"snapshots: lvm: the store's filesystem ({mount.source}) is not a logical volume"
        )

    def _snaps(self, origin: lvm.Volume, every: list[lvm.Volume]) -> list[Snapshot]:
        found = [
            Snapshot(v.lv.removeprefix(PREFIX), None, f"{v.vg}/{v.lv}")
            for v in every
            if v.vg == origin.vg and v.origin == origin.lv and TAG in v.tags and v.lv.startswith(PREFIX)
        ]
        return sorted((s for s in found if is_id(s.id)), key=lambda s: s.time)

    def create(self, sid: str) -> Snapshot:
        vol, _mount, _ = self._store_volume()
        # Left inactive (activation skip on): restore activates the one it needs.
        with _history_errors():
            lvm.create_snapshot(vol, PREFIX + sid, None, tag=TAG, active=False)
        return Snapshot(sid, None, f"{vol.vg}/{PREFIX}{sid}")

    def list(self) -> list[Snapshot]:
        vol, _mount, every = self._store_volume()
        return self._snaps(vol, every)

    def delete(self, snap: Snapshot) -> None:
        with _history_errors():
            lvm.remove(*snap.handle.split("/", 1))

    def space(self) -> tuple[int, int]:
        """The thin pool's: deleting a snapshot frees pool chunks, not
        filesystem space."""
        vol, _mount, every = self._store_volume()
        pool = next((v for v in every if v.vg == vol.vg and v.lv == vol.pool), None)
        if pool is None:
            raise SnapshotError(f"snapshots: lvm: thin pool {vol.vg}/{vol.pool} not in lvs output")
        return pool.size, int(pool.size * (100 - pool.data_percent) / 100)

    def mount_commands(self, snap: Snapshot) -> tuple[list[list[str]], Path]:
        _vol, mount, _ = self._store_volume()
        where = Path("/mnt") / f"inkind-{snap.id}"
        vg, lv = snap.handle.split("/", 1)
        options = MOUNT_OPTIONS.get(mount.fstype, "ro")
        commands = [
            ["lvchange", "--activate", "y", "--ignoreactivationskip", snap.handle],
            ["mkdir", "-p", str(where)],
            ["mount", "-o", options, f"/dev/{vg}/{lv}", str(where)],
        ]
        return commands, where / mount.inside(self.store)
