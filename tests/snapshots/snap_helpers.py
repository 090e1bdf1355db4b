"""Helpers of the history tests: configs with a provider, and FIEMAP to
measure how many bytes a snapshot holds that the previous one does not."""

from __future__ import annotations

import fcntl
import os
import random
import struct
from pathlib import Path
from typing import Any

from inkind.testing import render_config, toml_value

FS_IOC_FIEMAP = 0xC020660B
FIEMAP_FLAG_SYNC = 0x1
FIEMAP_EXTENT_LAST = 0x1
FIEMAP_EXTENT_DATA_INLINE = 0x200
_HEAD = struct.Struct("=QQLLLL")
_EXTENT = struct.Struct("=QQQQQLLLL")
_BATCH = 256


def history_config(
    path: Path,
    store: Path,
    sources: dict[str, dict[str, Any]],
    provider: str,
    snapshot_dir: Path | None = None,
    **retention: Any,
) -> Path:
    """Write a config whose store keeps history with ``provider``."""
    line = f"snapshots = {toml_value(provider)}"
    if snapshot_dir is not None:
        line += f"\nsnapshot_dir = {toml_value(snapshot_dir)}"
    text = render_config(store, sources).replace('snapshots = "none"', line)
    if retention:
        text += "\n[store.retention]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in retention.items())
    path.write_text(text)
    return path


def physical_ranges(path: Path) -> list[tuple[int, int]]:
    """The on-disk byte ranges holding ``path``'s data (inline data, which
    lives in the filesystem's metadata, is left out)."""
    out: list[tuple[int, int]] = []
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        start = 0
        while True:
            buf = bytearray(_HEAD.size + _BATCH * _EXTENT.size)
            _HEAD.pack_into(buf, 0, start, (1 << 64) - 1 - start, FIEMAP_FLAG_SYNC, 0, _BATCH, 0)
            fcntl.ioctl(fd, FS_IOC_FIEMAP, buf)
            mapped = _HEAD.unpack_from(buf, 0)[3]
            last = False
            for i in range(mapped):
                logical, physical, length, _r1, _r2, flags, *_ = _EXTENT.unpack_from(
                    buf, _HEAD.size + i * _EXTENT.size
                )
                if not flags & FIEMAP_EXTENT_DATA_INLINE:
                    out.append((physical, physical + length))
                start = logical + length
                last = bool(flags & FIEMAP_EXTENT_LAST)
            if last or mapped == 0:
                return out
    finally:
        os.close(fd)


def tree_ranges(root: Path) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if p.is_file() and not p.is_symlink():
                ranges += physical_ranges(p)
    return ranges


def _union(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def new_bytes(newer: Path, older: Path) -> int:
    """Bytes of disk that ``newer``'s files use and ``older``'s do not: what
    the newer snapshot costs on top of the older one."""
    old = _union(tree_ranges(older))
    total = 0
    j = 0
    for a, b in _union(tree_ranges(newer)):
        covered = 0
        while j < len(old) and old[j][1] <= a:
            j += 1
        k = j
        while k < len(old) and old[k][0] < b:
            covered += min(b, old[k][1]) - max(a, old[k][0])
            k += 1
        total += (b - a) - covered
    return total


def make_sources(
    base: Path,
    rng: random.Random,
    *,
    files: int = 200,
    dirs: int = 10,
    size: int = 20 << 10,
    disk: int = 16 << 20,
) -> tuple[Path, Path]:
    """A tree of ``files`` random files (``size`` bytes and a few more each)
    in ``dirs`` directories, and a random disk image of ``disk`` bytes."""
    tree = base / "tree"
    for i in range(files):
        d = tree / f"d{i % dirs}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}.bin").write_bytes(rng.randbytes(size + i))
    image = base / "disk.raw"
    image.write_bytes(rng.randbytes(disk))
    return tree, image
