"""Which filesystem a store lives on, so a run can tell the store's own disk
from the empty mount point it leaves when it is not mounted."""

from __future__ import annotations

import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from inkind.mountinfo import where


@dataclass(frozen=True)
class Filesystem:
    """The filesystem holding a path: its type and mount point (from
    /proc/self/mountinfo) and, where blkid can read it from the device, its
    UUID (ext4, XFS, btrfs on a block device; root only)."""

    type: str
    uuid: str | None
    target: str

    @classmethod
    def of(cls, path: Path) -> Filesystem:
        at = where(path)
        return cls(at.fstype, _uuid(at.source), at.mount_point)

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


def _uuid(source: str) -> str | None:
    """The filesystem UUID on block device ``source``, or None. Read from
    the device itself (``-c /dev/null``): blkid's cache answers for a
    device it looked at moments ago without looking again, so right after
    a device got another filesystem (a loop device reused, a disk
    reformatted) it names the one that was there before, and init would
    record a UUID that no later run finds."""
    if not source.startswith("/dev/"):
        return None
    try:
        out = subprocess.run(
            ["blkid", "-c", "/dev/null", "-o", "value", "-s", "UUID", source],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None
