"""Which filesystem holds a path, asked of ``findmnt`` (util-linux), so
that tests can answer for a ZFS dataset or an LVM volume with a fake."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from inkind import SnapshotError, run_storage_tool


@dataclass(frozen=True)
class Mount:
    source: str  # a device path, or a ZFS dataset name
    fstype: str
    target: Path  # where it is mounted

    def inside(self, path: Path) -> Path:
        """``path`` relative to the mount point."""
        return path.resolve().relative_to(self.target)


def mount_of(path: Path) -> Mount:
    out = run_storage_tool(
        ["findmnt", "--json", "--target", str(path), "-o", "SOURCE,FSTYPE,TARGET"],
        f"find the mount of {path}",
    )
    try:
        fs = json.loads(out)["filesystems"][0]
        source = fs["source"]
        # A bind mount or btrfs subvolume shows as "/dev/x[/sub]".
        if "[" in source:
            source = source.split("[", 1)[0]
        return Mount(source, fs["fstype"], Path(fs["target"]))
    except (ValueError, KeyError, IndexError, TypeError):
        raise SnapshotError(f"snapshots: findmnt printed no mount for {path}") from None
