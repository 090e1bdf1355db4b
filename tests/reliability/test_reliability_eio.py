"""Real read errors (EIO) from the source: a btrfs filesystem on a loop
device whose data block is damaged underneath it fails the checksum, and the
kernel answers EIO. No device-mapper (dm-flakey) needed.

files: the unreadable file is skipped, its previous stored copy kept, the
rest backed up, and the run exits 2 (a failing disk is an error). image: the whole image fails with one
line naming the offset (exit 2), the previous image kept.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from harness import inkind
from loopfs import loop_device as loop_device  # a fixture

from inkind.testing import needs_root, render_config

MiB = 1 << 20


def physical_offset(path: Path, device: Path, offset: int) -> int:
    """Where byte ``offset`` of ``path`` (on btrfs) lies on its device."""
    frag = subprocess.run(
        ["filefrag", "-v", "-b1", str(path)], check=True, capture_output=True, text=True
    ).stdout
    extents = re.findall(r"^\s*\d+:\s+(\d+)\.\.\s*(\d+):\s+(\d+)\.\.", frag, re.M)
    start, at = next((int(a), int(c)) for a, b, c in extents if int(a) <= offset <= int(b))
    logical = at + offset - start
    out = subprocess.run(
        ["btrfs-map-logical", "-l", str(logical), str(device)], check=True, capture_output=True, text=True
    ).stdout
    return int(re.search(r"physical (\d+)", out).group(1))


def damage(path: Path, loop, offset: int = 0) -> None:
    """Flip bytes of ``path``'s first data block on the device, behind
    btrfs's back, and drop its cached pages: the next read fails its
    checksum."""
    os.sync()
    at = physical_offset(path, loop.dev, offset)
    with open(loop.backing, "r+b") as f:
        f.seek(at)
        block = bytearray(f.read(4096))
        block[100] ^= 0xFF
        f.seek(at)
        f.write(block)
    subprocess.run(["losetup", "-c", str(loop.dev)], check=True)  # loop reads the backing file anew
    Path("/proc/sys/vm/drop_caches").write_text("3\n")
    with pytest.raises(OSError) as e, open(path, "rb") as f:
        f.seek(offset)
        f.read(4096)
    assert e.value.errno == 5  # EIO, as a failing disk gives


@pytest.fixture
def btrfs_source(loop_device, tmp_path):
    loop = loop_device(256 * MiB, "source.fs")
    subprocess.run(["mkfs.btrfs", "-q", "-f", str(loop.dev)], check=True)
    mnt = tmp_path / "source"
    mnt.mkdir()
    subprocess.run(["mount", str(loop.dev), str(mnt)], check=True)
    yield loop, mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@needs_root
def test_files_source_skips_an_unreadable_file(btrfs_source, tmp_path, inkind_store):
    loop, mnt = btrfs_source
    (mnt / "good.txt").write_bytes(b"good\n")
    (mnt / "bad.bin").write_bytes(os.urandom(MiB))
    config = tmp_path / "inkind.toml"
    config.write_text(render_config(inkind_store, {"tree": {"type": "files", "path": mnt}}))
    assert inkind("-c", config, "backup").returncode == 0
    old = (inkind_store / "tree" / "bad.bin").read_bytes()
    (mnt / "bad.bin").write_bytes(os.urandom(MiB))  # changed, then unreadable
    (mnt / "good.txt").write_bytes(b"better\n")
    damage(mnt / "bad.bin", loop)
    r = inkind("-c", config, "backup")
    assert r.returncode == 2, r.stderr
    assert "ERROR: tree: bad.bin: read error: Input/output error" in r.stderr
    assert (inkind_store / "tree" / "bad.bin").read_bytes() == old
    assert (inkind_store / "tree" / "good.txt").read_bytes() == b"better\n"
    assert inkind("-c", config, "verify").returncode == 0


@needs_root
def test_image_source_fails_whole_and_keeps_the_image(btrfs_source, tmp_path, inkind_store):
    loop, mnt = btrfs_source
    disk = mnt / "disk.img"
    disk.write_bytes(os.urandom(8 * MiB))
    config = tmp_path / "inkind.toml"
    config.write_text(
        render_config(inkind_store, {"disk": {"type": "image", "path": disk, "block_size": "1M"}})
    )
    assert inkind("-c", config, "backup").returncode == 0
    image = inkind_store / "disk" / "disk.img"
    old = image.read_bytes()
    with open(disk, "r+b") as f:
        f.write(os.urandom(MiB))
    damage(disk, loop, 5 * MiB)  # the first MiB changed, then the sixth unreadable
    r = inkind("-c", config, "backup")
    assert r.returncode == 2
    assert f"read error at byte {5 * MiB}: Input/output error; the previous image is kept" in r.stderr
    assert image.read_bytes() == old
    assert inkind("-c", config, "verify").returncode == 0
