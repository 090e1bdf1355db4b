"""Helpers of the image source tests: loop devices, writes, digests."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

from loopfs import Loop, MiB, sh

__all__ = ["Loop", "MiB", "sh"]


def fill(path: Path | str, blocks: dict[int, bytes]) -> None:
    """Write ``blocks`` ({offset: data}) into a file or device, durably."""
    fd = os.open(path, os.O_WRONLY)
    try:
        for offset, data in blocks.items():
            os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def scribble(path: Path | str, size: int, block: int, count: int, rng: random.Random) -> list[int]:
    """Overwrite ``count`` distinct random blocks with random data; return
    their offsets (sorted)."""
    offsets = sorted(rng.sample(range(0, size // block), count))
    fill(path, {i * block: rng.randbytes(block) for i in offsets})
    return [i * block for i in offsets]


def digest(path: Path | str, size: int | None = None) -> str:
    """sha256 of a file or device (its first ``size`` bytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = size
        while left is None or left > 0:
            chunk = f.read(MiB if left is None else min(MiB, left))
            if not chunk:
                break
            h.update(chunk)
            if left is not None:
                left -= len(chunk)
    return h.hexdigest()


def allocated(path: Path) -> int:
    """Bytes the filesystem allocated to ``path`` (st_blocks)."""
    return os.stat(path).st_blocks * 512
