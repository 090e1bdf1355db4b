"""Which mount and which filesystem a path is on, read from /proc.

Two paths can be on one filesystem and still not share a mount (a btrfs
subvolume mounted apart, a bind mount): ``link()`` works only within one
mount, a btrfs snapshot or a reflink only within one filesystem. ``st_dev``
tells neither apart on btrfs, where every subvolume has a device number of
its own; the mount's id and its filesystem's device (``major:minor`` in
/proc/self/mountinfo, one per filesystem) do.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Where:
    mount: int  # the mount id: link() and rename() work within one
    filesystem: str  # "major:minor" of the filesystem: snapshots and reflinks work within one
    mount_point: str = ""
    fstype: str = ""
    source: str = ""  # the device (or what the filesystem names as its source)


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def where(path: Path) -> Where:
    """The mount and filesystem of ``path`` (which must exist)."""
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    finally:
        os.close(fd)
    mount = int(fields["mnt_id"])
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if int(parts[0]) == mount:
                rest = parts[parts.index("-") + 1 :]
                return Where(mount, parts[2], _unescape(parts[4]), rest[0], _unescape(rest[1]))
    raise OSError(f"mount {mount} of {path} is not in /proc/self/mountinfo")


def where_it_would_be(path: Path) -> Where:
    """Where ``path`` is, or would be once made: its nearest existing ancestor's."""
    for p in (path, *path.parents):
        if p.exists():
            return where(p)
    return where(Path("/"))
