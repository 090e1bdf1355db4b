"""zfs: ``zfs snapshot dataset@inkind-<id>`` of the dataset that holds the
store; browsable read-only under ``<mountpoint>/.zfs/snapshot/``."""

from __future__ import annotations

from pathlib import Path

from inkind import Snapshot, SnapshotError, SnapshotProvider, is_id, run_storage_tool
from inkind_snapshots.mounts import Mount, mount_of

PREFIX = "inkind-"


class Zfs(SnapshotProvider):
    name = "zfs"

    def write_paths(self) -> list[Path]:
        return []  # a snapshot is part of the dataset, not a directory

    def _dataset(self) -> Mount:
        mount = mount_of(self.store)
        if mount.fstype != "zfs":
            raise SnapshotError(
                f"snapshots: zfs: the store {self.store} is on {mount.fstype}, not a ZFS dataset"
            )
        return mount

    def _snap(self, mount: Mount, sid: str) -> Snapshot:
        store = mount.target / ".zfs" / "snapshot" / f"{PREFIX}{sid}" / mount.inside(self.store)
        return Snapshot(sid, store, f"{mount.source}@{PREFIX}{sid}")

    def create(self, sid: str) -> Snapshot:
        mount = self._dataset()
        run_storage_tool(["zfs", "snapshot", f"{mount.source}@{PREFIX}{sid}"], f"snapshot {mount.source}")
        return self._snap(mount, sid)

    def _listing(self, mount: Mount) -> list[tuple[str, int]]:
        out = run_storage_tool(
            ["zfs", "list", "-H", "-p", "-t", "snapshot", "-d", "1", "-o", "name,used", mount.source],
            f"list snapshots of {mount.source}",
        )
        rows = []
        for line in out.splitlines():
            name, _, used = line.partition("\t")
            snap = name.partition("@")[2]
            if snap.startswith(PREFIX) and is_id(snap.removeprefix(PREFIX)):
                rows.append((snap.removeprefix(PREFIX), int(used) if used.isdigit() else 0))
        return rows

    def list(self) -> list[Snapshot]:
        mount = self._dataset()
        return sorted((self._snap(mount, sid) for sid, _ in self._listing(mount)), key=lambda s: s.time)

    def delete(self, snap: Snapshot) -> None:
        run_storage_tool(["zfs", "destroy", snap.handle], f"destroy {snap.handle}")

    def space(self) -> tuple[int, int]:
        mount = self._dataset()
        out = run_storage_tool(
            ["zfs", "list", "-H", "-p", "-o", "used,avail", mount.source], f"space of {mount.source}"
        )
        try:
            used, avail = (int(x) for x in out.split())
        except ValueError:
            raise SnapshotError(f"snapshots: zfs list printed {out.strip()!r} for {mount.source}") from None
        return used + avail, avail

    def exclusive_bytes(self, snap: Snapshot) -> int | None:
        sid = snap.id
        return dict(self._listing(self._dataset())).get(sid)
