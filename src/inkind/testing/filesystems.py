"""The filesystems stores live on, loop-mounted for a test session.

Users put stores on ext4, btrfs and XFS, which differ where it matters to a
backup (reflinks, directory listings, xattrs, holes), so every test that
writes a store runs once on each. The three are made once per session, on
sparse backing files, and each test gets a fresh directory on them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

STORE_FILESYSTEMS = ("ext4", "btrfs", "xfs")
MKFS = {
    "btrfs": ["mkfs.btrfs", "-q", "-f"],
    "xfs": ["mkfs.xfs", "-q", "-f"],
    "ext4": ["mkfs.ext4", "-q", "-F"],
}
SESSION_FS_SIZE = 16 << 30  # sparse: costs what the tests write
NEEDS_ROOT = "needs root to loop-mount the ext4, btrfs and XFS stores (CI runs as root)"


def sh(*argv: str | Path) -> str:
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True, text=True).stdout


def unmount(mnt: Path) -> None:
    """Unmount, lazily if something still holds the filesystem."""
    if subprocess.run(["umount", str(mnt)], capture_output=True).returncode:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _subvolumes(path: Path, depth: int = 4) -> list[Path]:
    """btrfs subvolumes (inode 256) a few levels below ``path``: where store
    snapshots are made (``store.snapshots/ID``, ``store/.snapshots/ID``)."""
    found = []
    with contextlib.suppress(OSError), os.scandir(path) as it:
        for e in it:
            if e.is_dir(follow_symlinks=False):
                if e.inode() == 256:
                    found.append(Path(e.path))
                if depth > 1:
                    found += _subvolumes(Path(e.path), depth - 1)
    return found


def remove_tree(path: Path) -> None:
    """Remove a test's directory, read-only btrfs snapshots included
    (shutil.rmtree works through descriptors: any depth)."""
    for sub in _subvolumes(path):
        subprocess.run(["btrfs", "property", "set", "-ts", str(sub), "ro", "false"], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class SessionFilesystems:
    """One loop-mounted filesystem of each type, made on first use."""

    workdir: Path
    mounts: dict[str, Path] = field(default_factory=dict)
    _made: int = 0

    @classmethod
    def make(cls) -> SessionFilesystems:
        """In a new directory any user can enter (pytest's own tmp is 0700),
        so that tests which run inkind as an unprivileged user reach their
        store too."""
        workdir = Path(tempfile.mkdtemp(prefix="inkind-test-fs-"))
        workdir.chmod(0o755)
        return cls(workdir)

    def mount(self, fstype: str) -> Path:
        if fstype not in self.mounts:
            backing = self.workdir / f"{fstype}.fs"
            with open(backing, "wb") as f:
                f.truncate(SESSION_FS_SIZE)
            sh(*MKFS[fstype], backing)
            mnt = self.workdir / f"mnt-{fstype}"
            mnt.mkdir()
            sh("mount", "-o", "loop", backing, mnt)
            mnt.chmod(0o755)
            self.mounts[fstype] = mnt
        return self.mounts[fstype]

    def new_dir(self, fstype: str, name: str) -> Path:
        """A fresh directory for one test on ``fstype``."""
        self._made += 1
        d = self.mount(fstype) / f"{self._made:05d}-{name}"[:200]
        d.mkdir()
        return d

    def close(self) -> None:
        for mnt in self.mounts.values():
            unmount(mnt)
        self.mounts.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)
