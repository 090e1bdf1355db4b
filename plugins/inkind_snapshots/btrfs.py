"""btrfs: a read-only subvolume snapshot of the subvolume holding the store.

Instant and atomic; costs only the blocks rewritten afterwards, which the
host keeps to what changed (principle 4).
"""

from __future__ import annotations

import os
from pathlib import Path

from inkind import Filesystem, Snapshot, SnapshotError, SnapshotProvider, is_id, run_storage_tool
from inkind_snapshots.mounts import mount_of

SUBVOLUME_ROOT_INO = 256  # every btrfs subvolume's top directory has this inode
QGROUPS = Path("/sys/fs/btrfs")  # per filesystem UUID: qgroups/0_<subvolume id>/exclusive


def subvolume_of(path: Path) -> Path | None:
    """The innermost subvolume holding ``path``: the nearest ancestor with
    inode 256 on the same device (each subvolume has a device of its own)."""
    path = path.resolve()
    dev = path.stat().st_dev
    for p in (path, *path.parents):
        st = p.stat()
        if st.st_dev != dev:
            return None
        if st.st_ino == SUBVOLUME_ROOT_INO:
            return p
    return None


class Btrfs(SnapshotProvider):
    name = "btrfs"
    snapshot_dir_on = "filesystem"  # any mount of the store's btrfs

    @classmethod
    def detect(cls, store: Path) -> bool:
        try:
            return mount_of(store).fstype == "btrfs" and subvolume_of(store) is not None
        except (SnapshotError, OSError):
            return False

    @property
    def subvolume(self) -> Path:
        sub = subvolume_of(self.store)
        if sub is None:
            raise SnapshotError(f"snapshots: btrfs: {self.store} is not inside a btrfs subvolume")
        return sub

    def _snap(self, sid: str) -> Snapshot:
        path = self.snapshot_dir / sid
        return Snapshot(sid, path / self.store.resolve().relative_to(self.subvolume), str(path))

    def _make_folder(self, sub: Path) -> None:
        """Make the snapshot folder. Inside the subvolume that is snapshotted
        (``<store>/.snapshots`` of a store that is a subvolume, or a sibling
        in the same subvolume) it is a subvolume of its own: a snapshot never
        includes a nested subvolume, so each snapshot holds an empty
        directory there and not the snapshots taken before it."""
        if self.snapshot_dir.is_dir():
            return
        self.snapshot_dir.parent.mkdir(parents=True, exist_ok=True)
        if subvolume_of(self.snapshot_dir.parent) == sub:
            run_storage_tool(
                ["btrfs", "subvolume", "create", str(self.snapshot_dir)], f"create {self.snapshot_dir}"
            )
        else:
            self.snapshot_dir.mkdir()

    def create(self, sid: str) -> Snapshot:
        sub = self.subvolume
        self._make_folder(sub)
        run_storage_tool(
            ["btrfs", "subvolume", "snapshot", "-r", str(sub), str(self.snapshot_dir / sid)],
            f"snapshot {sub}",
        )
        return self._snap(sid)

    def list(self) -> list[Snapshot]:
        if not self.snapshot_dir.is_dir():
            return []
        found = [self._snap(e.name) for e in os.scandir(self.snapshot_dir) if is_id(e.name) and e.is_dir()]
        return sorted(found, key=lambda s: s.time)

    def delete(self, snap: Snapshot) -> None:
        run_storage_tool(
            ["btrfs", "subvolume", "delete", "--commit-after", snap.handle], f"delete {snap.handle}"
        )
        # The cleaner frees the space in the background; wait, so that
        # min_free sees what the deletion gave back.
        run_storage_tool(
            ["btrfs", "subvolume", "sync", str(self.snapshot_dir)], f"wait for {snap.handle} to go"
        )

    def exclusive_bytes(self, snap: Snapshot) -> int | None:
        """What deleting the snapshot frees, as btrfs's quota groups count it
        (data and metadata); None unless quotas are on and consistent.
        ``btrfs filesystem du`` is no substitute: it counts data extents
        only, so a snapshot whose files are small (kept inline in the
        metadata) or whose changes are metadata reads 0 there."""
        uuid = Filesystem.of(self.store).uuid
        qgroups = QGROUPS / uuid / "qgroups" if uuid else None
        if qgroups is None or not qgroups.is_dir():
            return None  # quotas off
        # "squota" (simple quotas) charges an extent to the subvolume that
        # wrote it, never to a snapshot; kernels before 6.7 have no mode file.
        mode = qgroups / "mode"
        if mode.exists() and mode.read_text().strip() != "qgroup":
            return None
        if (qgroups / "inconsistent").read_text().strip() != "0":
            return None  # a rescan is due
        root = run_storage_tool(
            ["btrfs", "inspect-internal", "rootid", snap.handle], f"measure {snap.handle}"
        )
        try:
            return int((qgroups / f"0_{root.strip()}" / "exclusive").read_text())
        except (OSError, ValueError):
            return None
