"""A sparse file of a huge apparent size (64 GiB; 1 TiB with --soak) and a
few MiB of data: backed up with its holes kept, not read again by a
no-change run, and passed by verify and scrub. The source on a tmpfs (it
keeps holes and user xattrs), the store on each store filesystem."""

from __future__ import annotations

import json
import os
import random
import subprocess
import time

import pytest
import xxhash
from harness import inkind

from inkind.hashing import hash_fd
from inkind.segments import data_segments
from inkind.store.xattrs import XAttrs
from inkind.testing import render_config

pytestmark = [pytest.mark.slow, pytest.mark.root]

GiB, MiB = 1 << 30, 1 << 20
TIMINGS = "/tmp/inkind-sparse-timings.json"


@pytest.fixture
def tmpfs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "fs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def make_sparse(path, size: int, rng: random.Random) -> dict[int, bytes]:
    """A file of ``size`` bytes with a few data extents (one unaligned, one
    at the very end); returns them by offset."""
    extents = {
        0: rng.randbytes(MiB),
        size // 3 + 12345: rng.randbytes(3 * MiB + 17),
        size // 2: rng.randbytes(64 << 10),
        size - MiB: rng.randbytes(MiB),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        for off, data in extents.items():
            os.pwrite(fd, data, off)
        os.ftruncate(fd, size)
    finally:
        os.close(fd)
    return extents


def test_a_huge_sparse_file_keeps_its_holes(tmpfs, inkind_store, request):
    size = (1 << 40) if request.config.getoption("--soak") else 64 * GiB
    rng = random.Random(23)
    src, store = tmpfs / "src", inkind_store
    src.mkdir()
    extents = make_sparse(src / "huge.raw", size, rng)
    data = sum(len(d) for d in extents.values())
    cfg = tmpfs / "c.toml"
    source = {"type": "files", "path": src}
    cfg.write_text(render_config(store, {"sp": source}, full_probability=0.0, scrub_fraction=0.0))
    timings = {"apparent_size": size, "data_bytes": data}

    start = time.monotonic()
    r = inkind("-c", cfg, "backup", "--json", timeout=1800)
    timings["backup_s"] = time.monotonic() - start
    assert r.returncode == 0, r.stderr
    stored = store / "sp" / "huge.raw"
    st = os.stat(stored)
    assert st.st_size == size
    assert st.st_blocks * 512 <= data + 4 * MiB, f"holes not kept: {st.st_blocks * 512} bytes allocated"
    fd = os.open(stored, os.O_RDONLY)
    try:
        for off, content in extents.items():
            assert os.pread(fd, len(content), off) == content
        allocated = sum(length for _, length in data_segments(fd, size))
        assert allocated <= data + 4 * MiB
        assert XAttrs(fd).text("xxh3") == hash_fd(fd)[0]
    finally:
        os.close(fd)

    start = time.monotonic()
    r = inkind("-c", cfg, "backup", "--json", timeout=1800)
    timings["no_change_s"] = time.monotonic() - start
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)["sources"][0]["stats"]
    assert stats["bytes_read"] == 0 and stats["bytes_written"] == 0, stats
    assert stats["objects_changed"] == 0 and stats["xattrs_written"] == 0, stats

    start = time.monotonic()
    r = inkind("-c", cfg, "verify", timeout=1800)
    timings["verify_s"] = time.monotonic() - start
    assert r.returncode == 0, r.stdout + r.stderr

    start = time.monotonic()
    r = inkind("-c", cfg, "scrub", "--fraction", "1", "--json", timeout=1800)
    timings["scrub_s"] = time.monotonic() - start
    assert r.returncode == 0, r.stdout + r.stderr
    stats = json.loads(r.stdout)["sources"][0]["stats"]
    assert stats["objects_scrubbed"] == 1 and stats["objects_repaired"] == 0, stats
    assert stats["bytes_read"] <= 2 * data + 8 * MiB, stats  # the data, never the holes
    with open(TIMINGS, "a") as f:
        f.write(json.dumps(timings) + "\n")


def test_hash_fd_hashes_holes_as_zeros_without_reading_them(tmp_path):
    """The checksum's definition does not change: xxh3-128 of the content,
    holes as zeros, whatever the layout of data and holes."""
    rng = random.Random(29)
    for trial in range(40):
        path = tmp_path / f"f{trial}"
        size = rng.randrange(0, 12 * MiB)
        content = bytearray(size)
        with open(path, "wb") as f:
            for _ in range(rng.randrange(0, 5)):
                if not size:
                    break
                off = rng.randrange(size)
                piece = rng.randbytes(min(size - off, rng.randrange(1, 2 * MiB)))
                content[off : off + len(piece)] = piece
                f.seek(off)
                f.write(piece)
            f.truncate(size)
        fd = os.open(path, os.O_RDONLY)
        try:
            digest, read = hash_fd(fd)
            assert digest == xxhash.xxh3_128_hexdigest(bytes(content))
            assert read == sum(length for _, length in data_segments(fd, size))
            cut = rng.randrange(0, size + 10)
            assert hash_fd(fd, cut)[0] == xxhash.xxh3_128_hexdigest(bytes(content[:cut]))
        finally:
            os.close(fd)
