"""Shared setup of the lvm source tests: a config and volumes with data."""

from __future__ import annotations

import os
from pathlib import Path

CHUNK = 64 << 10  # the fake pools' chunk size
BLOCK = 256 << 10  # the engine's block size in these tests
SIZE = 32 * BLOCK  # 8 MiB: 32 engine blocks, 128 pool chunks


def random_bytes(n: int, seed: int) -> bytes:
    import random

    return random.Random(seed).randbytes(n)


def thin_setup(fake_lvm, inkind_config, vg: str = "vg0", lv: str = "data", **options) -> Path:
    fake_lvm.pool(vg, "pool", chunk=CHUNK)
    fake_lvm.thin(vg, "pool", lv, SIZE)
    # Half the volume holds data, the rest was never written (unprovisioned).
    fake_lvm.write(vg, lv, 0, random_bytes(SIZE // 2, 1))
    return inkind_config({"vols": {"type": "lvm", "volume": f"{vg}/{lv}", "block_size": BLOCK, **options}})


def image_of(store: Path, vg_lv_dm: str) -> Path:
    return store / "vols" / f"{vg_lv_dm}.img"


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512
