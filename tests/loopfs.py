"""Loop devices and filesystems on them, for the tests that need a real
btrfs, XFS or ext4 (image, snapshots). Every loop device is detached and
every mount unmounted at teardown, also when the test fails."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from inkind.testing.filesystems import MKFS, sh, unmount

MiB = 1 << 20
FS_SIZE = 512 * MiB  # XFS wants at least 300 MB


@dataclass
class Loop:
    """A loop device over a sparse backing file."""

    dev: Path
    backing: Path

    def resize(self, size: int) -> None:
        """Grow or shrink the device, as a resized volume would."""
        os.truncate(self.backing, size)
        sh("losetup", "-c", self.dev)


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[Callable[..., Loop]]:
    """``loop_device(size)``: a new loop device, detached at teardown."""
    made: list[Loop] = []

    def make(size: int, name: str | None = None) -> Loop:
        backing = tmp_path / (name or f"loop{len(made)}.raw")
        with open(backing, "wb") as f:
            f.truncate(size)
        dev = Path(sh("losetup", "--find", "--show", backing).strip())
        made.append(Loop(dev, backing))
        return made[-1]

    yield make
    for loop in reversed(made):
        subprocess.run(["losetup", "-d", str(loop.dev)], capture_output=True)


@pytest.fixture
def mounted(tmp_path: Path, loop_device) -> Iterator[Callable[..., Path]]:
    """``mounted("btrfs")``: a fresh filesystem on a loop device, mounted;
    unmounted at teardown (before its loop device is detached)."""
    mounts: list[Path] = []

    def make(fstype: str, size: int = FS_SIZE) -> Path:
        loop = loop_device(size, f"{fstype}-{len(mounts)}.fs")
        sh(*MKFS[fstype], loop.dev)
        mnt = tmp_path / f"mnt-{fstype}-{len(mounts)}"
        mnt.mkdir()
        sh("mount", loop.dev, mnt)
        mounts.append(mnt)
        return mnt

    yield make
    for mnt in reversed(mounts):
        unmount(mnt)
