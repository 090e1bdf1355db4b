"""Which filesystem a store lives on, so a run can tell the store's own disk
from the empty mount point it leaves when it is not mounted."""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Filesystem:
    """The filesystem holding a path, as ``findmnt`` (util-linux) sees it.

    ``uuid`` is the filesystem's UUID where the kernel or blkid knows one
    (ext4, XFS, btrfs on a block device); ``target`` is the mount point.
    """

    type: str
    uuid: str | None
    target: str

    @classmethod
    def of(cls, path: Path) -> Filesystem:
        out = subprocess.run(
            ["findmnt", "--json", "--output", "FSTYPE,UUID,TARGET", "--target", str(path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        (fs,) = json.loads(out)["filesystems"]
        return cls(fs["fstype"], fs.get("uuid") or None, fs["target"])

    @classmethod
    def from_record(cls, data: dict) -> Filesystem:
        return cls(str(data["type"]), data.get("uuid") or None, str(data["target"]))

    def record(self) -> dict:
        return asdict(self)

    def same_as(self, recorded: Filesystem) -> bool:
        """Whether this is the filesystem recorded at init: the same UUID
        when both are known, else the same type mounted at the same place."""
        if self.uuid and recorded.uuid:
            return self.uuid == recorded.uuid
        return (self.type, self.target) == (recorded.type, recorded.target)

    def __str__(self) -> str:
        ident = f"UUID {self.uuid}" if self.uuid else "no UUID"
        return f"{self.type} at {self.target} ({ident})"
