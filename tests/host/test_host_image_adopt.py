"""UpdateImage(adopt=...): a new image takes a file that this run made on
the store's filesystem (fetched blocks, a database's copy) as its temp, so
its blocks are written once; anywhere else the file is left alone."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import xxhash

from inkind import BlockCopy, Stats, XAttrs, update_image
from inkind.store.dryrun import dry_run
from inkind.store.image import Extent, UpdateImage

SIZE = 1 << 20
PIECE = 64 << 10


@pytest.fixture
def store(inkind_store):
    (inkind_store / "src").mkdir()
    (inkind_store / "scratch").mkdir()
    return inkind_store


def made_here(path: Path) -> bytes:
    """A file of SIZE bytes of data, 64 KiB of it zeros written as data."""
    data = bytearray(random.Random(3).randbytes(SIZE))
    data[PIECE : 2 * PIECE] = bytes(PIECE)
    path.write_bytes(data)
    return bytes(data)


def fill(img: UpdateImage, data: bytes) -> None:
    """What the block-copy engine does with a new image: the data as data,
    the zero run as a hole."""
    img.write(0, data[:PIECE])
    img.zero(PIECE, PIECE)
    img.write(2 * PIECE, data[2 * PIECE :])


def test_a_new_image_is_the_adopted_file_and_its_blocks_are_counted_not_rewritten(store):
    scratch = store / "scratch" / "image"
    data = made_here(scratch)
    ino = scratch.stat().st_ino
    s = Stats()
    with UpdateImage(store, "src/disk.img", SIZE, stats=s, adopt=scratch) as img:
        fill(img, data)
    stored = store / "src" / "disk.img"
    assert (img.mode, img.adopted) == ("new", True)
    assert not scratch.exists() and stored.stat().st_ino == ino
    assert stored.read_bytes() == data and stored.stat().st_mode & 0o777 == 0o600
    assert s.bytes_written == SIZE - PIECE
    assert stored.stat().st_blocks * 512 <= SIZE - PIECE  # the zero run became a hole
    assert XAttrs(stored).text("xxh3") == xxhash.xxh3_128_hexdigest(data)
    assert os.listdir(store / "src") == ["disk.img"]


def test_an_image_to_update_leaves_the_file_alone(store):
    update_image(store, "src/disk.img", SIZE, [Extent(0, 3, b"old")])
    scratch = store / "scratch" / "image"
    data = made_here(scratch)
    with UpdateImage(store, "src/disk.img", SIZE, adopt=scratch) as img:
        img.write(0, data[:3])
    assert img.mode in ("clone", "journal") and not img.adopted
    assert scratch.read_bytes() == data
    assert (store / "src" / "disk.img").read_bytes()[:4] == data[:3] + b"\0"


def test_a_failed_update_removes_the_adopted_file_and_makes_no_image(store):
    scratch = store / "scratch" / "image"
    data = made_here(scratch)
    with pytest.raises(RuntimeError), UpdateImage(store, "src/disk.img", SIZE, adopt=scratch) as img:
        fill(img, data)
        raise RuntimeError("the source changed size")
    assert img.adopted and not scratch.exists()
    assert os.listdir(store / "src") == []


def test_a_file_on_another_filesystem_is_copied_as_before(store, tmp_path):
    elsewhere = tmp_path / "image"
    if os.stat(tmp_path).st_dev == os.stat(store).st_dev:
        pytest.skip("the test's temp directory is on the store's filesystem")
    data = made_here(elsewhere)
    s = Stats()
    with UpdateImage(store, "src/disk.img", SIZE, stats=s, adopt=elsewhere) as img:
        fill(img, data)
    assert (img.mode, img.adopted) == ("new", False)
    assert elsewhere.read_bytes() == data and (store / "src" / "disk.img").read_bytes() == data
    assert s.bytes_written == SIZE - PIECE


def test_a_dry_run_adopts_nothing_and_counts_the_same(store):
    scratch = store / "scratch" / "image"
    data = made_here(scratch)
    s = Stats()
    with dry_run(), UpdateImage(store, "src/disk.img", SIZE, stats=s, adopt=scratch) as img:
        fill(img, data)
    assert (img.mode, img.adopted) == ("new", False)
    assert scratch.read_bytes() == data and os.listdir(store / "src") == []
    assert s.bytes_written == SIZE - PIECE


def test_a_file_with_another_link_or_another_size_is_not_adopted(store):
    scratch = store / "scratch" / "image"
    data = made_here(scratch)
    os.link(scratch, store / "scratch" / "other")
    with UpdateImage(store, "src/a.img", SIZE, adopt=scratch) as img:
        fill(img, data)
    assert not img.adopted and scratch.read_bytes() == data
    os.unlink(store / "scratch" / "other")
    with UpdateImage(store, "src/b.img", SIZE + 1, adopt=scratch) as img:
        fill(img, data)
    assert not img.adopted and scratch.read_bytes() == data


BS = 64 << 10


def engine_source(store: Path) -> tuple[Path, bytes]:
    """Four blocks: data, zeros written as data, data, data."""
    rng = random.Random(5)
    data = rng.randbytes(BS) + bytes(BS) + rng.randbytes(2 * BS)
    path = store / "scratch" / "image"
    path.write_bytes(data)
    return path, data


def test_the_engine_reads_and_hashes_the_adopted_file_and_leaves_its_zero_blocks_as_holes(store):
    path, data = engine_source(store)
    ino = path.stat().st_ino
    s = Stats()
    root = os.open(store, os.O_RDONLY | os.O_DIRECTORY)
    fd = os.open(path, os.O_RDONLY)
    try:
        engine = BlockCopy(root, "src/disk.img", BS, s, label="scratch")
        result = engine.copy(fd, len(data), skip_holes=True, adopt=path)
        assert engine.verify() == []
    finally:
        os.close(fd)
        os.close(root)
    stored = store / "src" / "disk.img"
    assert result.mode == "new" and stored.stat().st_ino == ino and not path.exists()
    assert stored.read_bytes() == data and stored.stat().st_blocks * 512 <= 3 * BS
    assert (
        s.bytes_written
        == 3 * BS + (store / ".inkind" / "manifests" / "src" / "disk.img.manifest").stat().st_size
    )


def test_the_engine_adopts_only_the_file_it_reads(store):
    path, data = engine_source(store)
    other = store / "scratch" / "other"
    other.write_bytes(data)
    root = os.open(store, os.O_RDONLY | os.O_DIRECTORY)
    fd = os.open(other, os.O_RDONLY)
    try:
        BlockCopy(root, "src/disk.img", BS, Stats(), label="other").copy(fd, len(data), adopt=path)
    finally:
        os.close(fd)
        os.close(root)
    assert path.read_bytes() == data and (store / "src" / "disk.img").stat().st_ino != path.stat().st_ino
