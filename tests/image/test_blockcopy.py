"""The block-copy engine on plain files (no root needed; the store sits on
the test's tmp filesystem, so updates take the journal or new path)."""

from __future__ import annotations

import errno
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import xxhash
from image_helpers import allocated, digest, fill

from inkind import CorruptionError, SourceError, Stats, XAttrs
from inkind.engines.blockcopy.digest import hash_stored
from inkind.engines.blockcopy.engine import BlockCopy
from inkind.engines.blockcopy.manifest import HASH_SIZE
from inkind.engines.blockcopy.ranges import block_spans, data_block_spans
from inkind.engines.blockcopy.readahead import PIECE, page_buffer
from inkind.store.checksum import BLOCKS_KEY
from inkind.store.image import UpdateImage
from inkind.store.paths import DIR_FLAGS
from inkind.store.sparse import data_segments, punch_hole

BS = 256 << 10
SIZE = 64 * BS  # 16 MiB


@dataclass
class Bench:
    """A source file, a store and an engine that copies one into the other."""

    src: Path
    store: Path
    root_fd: int
    stats: Stats = field(default_factory=Stats)

    @property
    def image(self) -> Path:
        return self.store / "disk" / "disk.img"

    @property
    def manifest(self) -> Path:
        return self.store / ".inkind" / "manifests" / "disk" / "disk.img.manifest"

    def engine(self) -> BlockCopy:
        self.stats = Stats()
        return BlockCopy(self.root_fd, "disk/disk.img", BS, self.stats, label=f"source {self.src}")

    def copy(self, **kwargs):
        fd = os.open(self.src, os.O_RDONLY)
        try:
            return self.engine().copy(fd, os.fstat(fd).st_size, **kwargs)
        finally:
            os.close(fd)

    def manifest_bytes(self) -> int:
        return self.manifest.stat().st_size

    def same(self) -> bool:
        return digest(self.src) == digest(self.image)


@pytest.fixture
def bench(tmp_path: Path, inkind_store: Path):
    """The engine writing into a store on each store filesystem (clone on
    btrfs and XFS, journal on ext4)."""
    store = inkind_store
    (store / "disk").mkdir()
    src = tmp_path / "src.raw"
    rng = random.Random(7)
    with open(src, "wb") as f:
        f.truncate(SIZE)
    # Data in every other block of the first half; the rest zeros/holes.
    fill(src, {i * BS: rng.randbytes(BS) for i in range(0, 32, 2)})
    fd = os.open(store, DIR_FLAGS)
    yield Bench(src, store, fd)
    os.close(fd)


def test_first_copy_is_sparse_and_exact(bench):
    result = bench.copy()
    assert result.mode == "new" and result.blocks == 64 and result.blocks_changed == 16
    assert bench.same()
    data = 16 * BS
    assert bench.stats.bytes_written == data + bench.manifest_bytes()
    assert data <= allocated(bench.image) <= data + (64 << 10)
    want = xxhash.xxh3_128_hexdigest(bench.src.read_bytes())
    assert XAttrs(str(bench.image)).text("xxh3") == want
    assert bench.manifest_bytes() == 24 + 64 * HASH_SIZE + 40


def test_differing_names_the_ranges_where_source_and_image_differ(bench):
    """``differing`` reads each range from both sides (what lies past the
    image's end reads as zeros) and counts it as one scrubbed object."""
    bench.copy()
    fill(bench.src, {5 * BS + 10: b"changed"})
    with open(bench.src, "r+b") as f:
        f.truncate(SIZE + BS)
    fill(bench.src, {SIZE + 3: b"x"})  # past the image's end
    ranges = [(0, BS), (5 * BS, BS), (7 * BS, 100), (SIZE, BS // 2), (SIZE + BS // 2, BS // 2)]
    engine = bench.engine()
    fd = os.open(bench.src, os.O_RDONLY)
    try:
        assert engine.differing(fd, ranges) == [(5 * BS, BS), (SIZE, BS // 2)]
    finally:
        os.close(fd)
    assert bench.stats.objects_scrubbed == 5 and bench.stats.bytes_read == 3 * BS + 100


def test_unchanged_source_writes_nothing(bench):
    bench.copy()
    mtimes = (bench.image.stat().st_mtime_ns, bench.manifest.stat().st_mtime_ns)
    result = bench.copy()
    assert not result.changed and result.blocks_changed == 0
    s = bench.stats
    assert (s.bytes_written, s.bytes_journaled, s.xattrs_written) == (0, 0, 0)
    assert (bench.image.stat().st_mtime_ns, bench.manifest.stat().st_mtime_ns) == mtimes
    assert s.bytes_read == SIZE


def test_incremental_writes_exactly_the_changed_blocks(bench, inkind_store_fs):
    bench.copy()
    rng = random.Random(3)
    changed = {5 * BS: rng.randbytes(BS), 40 * BS: rng.randbytes(BS), 63 * BS: rng.randbytes(BS)}
    changed[2 * BS] = bytes(BS)  # a data block that became zeros: a hole, no bytes
    fill(bench.src, changed)
    before = allocated(bench.image)
    result = bench.copy()
    journaled = inkind_store_fs == "ext4"  # btrfs and XFS update a reflinked clone
    assert result.mode == ("journal" if journaled else "clone") and result.blocks_changed == 4
    assert bench.same()
    assert bench.stats.bytes_written == 3 * BS + bench.manifest_bytes()
    assert bench.stats.bytes_journaled == (3 * BS if journaled else 0)
    assert allocated(bench.image) == before + 2 * BS  # +3 data blocks, -1 punched


def test_zero_runs_inside_a_changed_block_become_holes(bench):
    bench.copy()
    half = os.urandom(BS // 2)
    fill(bench.src, {0: half + bytes(BS // 2)})  # block 0: data then zeros
    before = allocated(bench.image)
    bench.copy()
    assert bench.same()
    assert bench.stats.bytes_written == BS // 2 + bench.manifest_bytes()
    assert allocated(bench.image) == before - BS // 2


@pytest.mark.parametrize("new_size", [SIZE + 3 * BS + 4097, SIZE - 7 * BS - 12345, BS // 3, 0])
def test_growth_and_shrink(bench, new_size):
    bench.copy()
    os.truncate(bench.src, new_size)
    if new_size > SIZE:
        fill(bench.src, {SIZE + BS: b"grown"})
    result = bench.copy()
    assert (result.old_size, result.size) == (SIZE, new_size)
    assert result.changed and bench.image.stat().st_size == new_size
    assert bench.same()
    assert bench.copy().changed is False  # and the manifest fits the new size


def test_missing_or_stale_manifest_is_rebuilt_from_the_image(bench):
    bench.copy()
    good = bench.manifest.read_bytes()
    bench.manifest.unlink()
    result = bench.copy()
    assert result.compared_with_image and not result.changed
    assert bench.manifest.read_bytes() == good
    assert bench.stats.bytes_written == len(good)
    # An image touched behind the manifest's back (mtime differs): stale.
    os.utime(bench.image, ns=(1, 1))
    fill(bench.src, {9 * BS: os.urandom(BS)})
    result = bench.copy()
    assert result.compared_with_image and result.blocks_changed == 1
    assert bench.same()


def test_full_pass_repairs_a_damaged_image(bench):
    bench.copy()
    st = bench.image.stat()
    fill(bench.image, {4 * BS + 10: b"rot"})  # bit rot: content differs, xattr does not
    os.utime(bench.image, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert bench.copy().changed is False  # the manifest cannot see it...
    result = bench.copy(full=True)  # ...a full pass compares with the image
    assert result.compared_with_image and result.blocks_changed == 1
    assert bench.same() and bench.engine().verify() == []


def test_source_shrinking_mid_run_keeps_the_previous_image(bench):
    bench.copy()
    fill(bench.src, {0: os.urandom(BS)})
    image, manifest = digest(bench.image), bench.manifest.read_bytes()

    class Shrinker:
        def advance(self, n: int = 1) -> None:
            os.truncate(bench.src, SIZE // 2)  # the device shrinks under us

    # Where the read ends depends on how far the read-ahead got before the
    # truncate: at or past the new end, short of the old one.
    with pytest.raises(SourceError, match=r"ended at byte \d+ of 16777216 \(shrunk or gone"):
        bench.copy(progress=Shrinker())
    assert digest(bench.image) == image and bench.manifest.read_bytes() == manifest
    assert bench.engine().verify() == []
    assert sorted(os.listdir(bench.store / "disk")) == ["disk.img"]


def test_a_failed_image_write_ends_the_copy_and_keeps_the_previous_image(bench, monkeypatch):
    """The error reaches the caller, no block after the failed one is
    written, and image and manifest stay as they were."""
    bench.copy()
    fill(bench.src, {i * BS: os.urandom(BS) for i in (3, 9, 50)})
    image, manifest = digest(bench.image), bench.manifest.read_bytes()
    written: list[int] = []
    real_write = UpdateImage.write

    def write(self, offset, data):
        written.append(offset)
        if offset == 9 * BS:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, offset, data)

    monkeypatch.setattr(UpdateImage, "write", write)
    with pytest.raises(OSError, match="No space left on device"):
        bench.copy()
    assert written == [3 * BS, 9 * BS]
    assert digest(bench.image) == image and bench.manifest.read_bytes() == manifest
    assert bench.engine().verify() == []
    assert sorted(os.listdir(bench.store / "disk")) == ["disk.img"]


def test_ranges_limit_the_reads_to_the_named_blocks(bench):
    bench.copy()
    fill(bench.src, {3 * BS + 100: b"in range", 50 * BS: b"outside"})
    result = bench.copy(ranges=[(3 * BS + 100, 8), (10 * BS, 2 * BS)])
    assert (result.blocks_read, result.blocks_changed) == (3, 1)
    assert bench.image.read_bytes()[3 * BS + 100 : 3 * BS + 108] == b"in range"
    assert bench.engine().verify() == []  # whole hash recomputed from the image
    assert bench.copy().blocks_changed == 1  # the change outside was not looked at


def test_ranges_are_ignored_when_the_manifest_is_stale(bench):
    bench.copy()
    bench.manifest.unlink()
    fill(bench.src, {50 * BS: b"outside"})
    result = bench.copy(ranges=[(0, BS)])
    assert result.blocks_read == 64 and result.blocks_changed == 1 and bench.same()


def test_holes_of_a_sparse_source_are_not_read(bench):
    result = bench.copy(skip_holes=True)
    assert result.blocks_read == 16 and bench.stats.bytes_read == 16 * BS  # the data, not the holes
    assert bench.same() and bench.engine().verify() == []
    want = xxhash.xxh3_128_hexdigest(bench.src.read_bytes())
    assert XAttrs(str(bench.image)).text("xxh3") == want
    manifest = bench.manifest.read_bytes()
    again = bench.copy()  # reading everything finds nothing to change
    assert again.blocks_read == 64 and again.blocks_changed == 0
    assert bench.stats.bytes_written == 0 and bench.manifest.read_bytes() == manifest


def test_a_block_that_becomes_a_hole_in_the_source_becomes_one_in_the_image(bench):
    bench.copy(skip_holes=True)
    fd = os.open(bench.src, os.O_WRONLY)
    try:
        punch_hole(fd, 4 * BS, BS)
    finally:
        os.close(fd)
    result = bench.copy(skip_holes=True)
    assert (result.blocks_read, result.blocks_changed) == (15, 1) and bench.stats.bytes_written < BS
    assert bench.same() and bench.engine().verify() == []
    fd = os.open(bench.image, os.O_RDONLY)
    try:
        assert not any(data_segments(fd, 5 * BS, 4 * BS))  # a hole, not written zeros
    finally:
        os.close(fd)
    fill(bench.src, {BS: b"data in a former hole"})
    result = bench.copy(skip_holes=True)
    assert (result.blocks_read, result.blocks_changed) == (16, 1) and bench.same()


def test_a_full_pass_zeroes_an_image_block_where_the_source_has_a_hole(bench):
    bench.copy(skip_holes=True)
    st = bench.image.stat()
    fill(bench.image, {3 * BS + 10: b"rot"})  # block 3 is a hole in the source
    os.utime(bench.image, ns=(st.st_atime_ns, st.st_mtime_ns))
    result = bench.copy(full=True, skip_holes=True)
    assert result.blocks_read == 16 and result.blocks_changed == 1
    assert bench.same() and bench.engine().verify() == []


def test_data_block_spans_step_over_holes_smaller_than_a_block(tmp_path):
    path = tmp_path / "sparse.raw"
    with open(path, "wb") as f:
        f.truncate(16 * BS)
    page = b"x" * 4096
    # block 0: data at both ends, a hole between; block 1: data inside;
    # blocks 2-4: a hole; block 5: its last page; block 9 to the end: data
    # every other page (an extent per page).
    fill(path, {0: page, BS - 4096: page, BS + 8192: page, 6 * BS - 4096: page})
    fill(path, {9 * BS + k: page for k in range(0, 7 * BS, 8192)})
    fd = os.open(path, os.O_RDONLY)
    try:
        assert data_block_spans(fd, 16 * BS, BS) == [(0, 2), (5, 6), (9, 16)]
        assert data_block_spans(fd, 16 * BS, 4 * BS) == [(0, 4)]
        assert data_block_spans(fd, 5 * BS, BS) == [(0, 2)]  # cut at size
    finally:
        os.close(fd)


def rchar() -> int:
    """Bytes this process has read so far (/proc/self/io)."""
    io = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(io["rchar"])


def test_hash_stored_reads_the_data_and_hashes_holes_and_the_end_as_zeros(tmp_path):
    path = tmp_path / "sparse.raw"
    with open(path, "wb") as f:
        f.truncate(16 * BS)
    fill(path, {3 * BS + 8192: b"y" * 8192, 15 * BS: b"z" * 4096})
    content = path.read_bytes()
    scratch = page_buffer(PIECE)
    fd = os.open(path, os.O_RDONLY)
    try:
        before = rchar()
        assert hash_stored(fd, 0, 16 * BS, scratch) == xxhash.xxh3_128_digest(content)
        # the data only (and the read of /proc/self/io itself, about 100 bytes)
        assert 8192 + 4096 <= rchar() - before < 8192 + 4096 + 1024
        past_end = hash_stored(fd, 15 * BS, 3 * BS, scratch)
        assert past_end == xxhash.xxh3_128_digest(content[15 * BS :] + bytes(2 * BS))
        whole = xxhash.xxh3_128()
        hash_stored(fd, 2 * BS, 2 * BS, scratch, whole)
        assert whole.digest() == xxhash.xxh3_128_digest(content[2 * BS : 4 * BS])
        before = rchar()
        assert hash_stored(fd, 5 * BS, BS, scratch, whole) == xxhash.xxh3_128_digest(bytes(BS))
        assert whole.digest() == xxhash.xxh3_128_digest(content[2 * BS : 4 * BS] + bytes(BS))
        assert rchar() - before < 1024  # a hole: nothing read
    finally:
        os.close(fd)


def test_ranges_over_every_block_keep_the_content_checksum(bench):
    bench.copy()
    fill(bench.src, {5 * BS: b"changed"})
    result = bench.copy(ranges=[(0, SIZE)])
    assert result.ranged and result.blocks_read == 64 and result.blocks_changed == 1
    x = XAttrs(str(bench.image))
    assert x.text("xxh3") == xxhash.xxh3_128_hexdigest(bench.src.read_bytes())
    assert x.text(BLOCKS_KEY) is None


def test_block_spans_merge_and_clip():
    assert block_spans([(BS * 5, 1), (0, BS + 1), (BS * 2, BS), (BS * 6, 0), (BS * 99, BS)], BS, 64) == [
        (0, 3),
        (5, 6),
    ]


def test_scrub_names_a_corrupt_block_and_its_offset(bench):
    bench.copy()
    st = bench.image.stat()
    fill(bench.image, {7 * BS + 3: b"X"})  # bit rot leaves the mtime alone
    os.utime(bench.image, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(CorruptionError, match=r"disk/disk.img: block at offset 1835008 does not match"):
        bench.engine().scrub(None, lambda _i: True)


def test_scrub_blames_a_damaged_manifest_not_the_image_and_rewrites_it(bench):
    bench.copy()
    good = bench.manifest.read_bytes()
    raw = bytearray(good)
    raw[24 + 16 * 2] ^= 1
    bench.manifest.write_bytes(bytes(raw))
    with pytest.raises(
        CorruptionError, match=r"disk.img.manifest: block hash at offset 524288 did not match the image"
    ):
        bench.engine().scrub(None, lambda _i: True)
    assert bench.manifest.read_bytes() == good
    assert bench.stats.objects_repaired == 1
    assert bench.stats.bytes_written == len(good)
    assert bench.engine().verify() == []


def test_a_truncated_manifest_is_damage_and_scrub_rewrites_it(bench):
    bench.copy()
    good = bench.manifest.read_bytes()
    bench.manifest.write_bytes(good[:100])
    (found,) = bench.engine().verify()
    assert found.obj.endswith("disk.img.manifest") and "malformed" in found.message and not found.recoverable
    with pytest.raises(CorruptionError, match=r"disk.img.manifest: malformed .*: rewritten from the image"):
        bench.engine().scrub(None, lambda _i: True)
    assert bench.manifest.read_bytes() == good
    assert bench.engine().verify() == []


def test_a_damaged_manifest_folded_into_xxh3_blocks_is_reported_as_undecided(bench):
    """A ranged update builds the checksum from the manifest's hashes of the
    blocks it did not read: a damaged hash there leaves nothing to tell the
    image from the manifest. Both commands say so; a full pass settles it."""
    bench.copy()
    raw = bytearray(bench.manifest.read_bytes())
    raw[24 + 16 * 5] ^= 1
    bench.manifest.write_bytes(bytes(raw))
    fill(bench.src, {1 * BS: os.urandom(BS)})
    assert bench.copy(ranges=[(BS, BS)]).ranged and bench.same()
    (found,) = bench.engine().verify()
    assert found.obj == "disk/disk.img" and "was built from that manifest" in found.message
    with pytest.raises(CorruptionError, match=r"was built from that manifest.*backup --full"):
        bench.engine().scrub(None, lambda _i: True)
    result = bench.copy(full=True)
    assert result.blocks_changed == 0 and bench.stats.bytes_written == bench.manifest_bytes()
    assert bench.engine().verify() == []


def test_scrub_without_a_fresh_manifest_checks_the_whole_image(bench):
    bench.copy()
    bench.manifest.unlink()
    bench.engine().scrub(None, lambda _i: True)  # sound: nothing to report
    assert bench.stats.objects_scrubbed == 1
    fill(bench.image, {9 * BS: b"rot"})  # the mtime moves too: no manifest could be fresh
    with pytest.raises(CorruptionError, match=r"disk/disk.img: content does not match user.inkind.xxh3"):
        bench.engine().scrub(None, lambda _i: True)


def test_scrub_repairs_a_change_the_backup_missed(bench):
    bench.copy()
    st = bench.src.stat()
    fill(bench.src, {1 * BS: os.urandom(BS)})
    engine = bench.engine()
    fd = os.open(bench.src, os.O_RDONLY)
    try:
        assert engine.scrub(fd, lambda _i: True) == 1
    finally:
        os.close(fd)
    assert (bench.stats.objects_scrubbed, bench.stats.objects_repaired) == (64, 1)
    assert bench.same() and bench.engine().verify() == []
    assert st.st_size == SIZE


def test_verify_tells_damage_from_recoverable_states(bench):
    engine = bench.copy() and bench.engine()
    assert engine.verify() == []
    good = bench.manifest.read_bytes()
    raw = bytearray(good)
    raw[24 + 16 * 3] ^= 1  # one hash of a fresh manifest is wrong: damage, not a stale manifest
    bench.manifest.write_bytes(bytes(raw))
    (found,) = engine.verify()
    assert found.obj.endswith("disk.img.manifest") and not found.recoverable
    assert "offset 786432 does not match the image" in found.message
    bench.manifest.write_bytes(good)
    st = bench.image.stat()
    fill(bench.image, {5 * BS: b"rot"})
    os.utime(bench.image, ns=(st.st_atime_ns, st.st_mtime_ns))
    found = [f for f in engine.verify() if not f.recoverable]
    assert [f.obj for f in found] == ["disk/disk.img"]
    assert "first bad block at offset 1310720" in found[0].message
    bench.manifest.unlink()
    assert [f.recoverable for f in engine.verify()] == [True, False]
