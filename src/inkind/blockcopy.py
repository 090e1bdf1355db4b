"""Block-level copy of a device or image file into a stored raw image.

The engine behind the ``image`` and ``lvm`` sources. It reads the source
sequentially, hashes each block with xxh3-128 and compares the hash with a
per-block *manifest*, so an incremental run reads the source once and writes
only the blocks that changed (blocks that became zero become holes) through
:class:`~inkind.store.image.UpdateImage`.

Memory stays flat: a few read buffers (a thread reads ahead while the main
thread hashes, see :mod:`inkind.readahead`) and a small window of the
manifest, whatever the size of the source.

The manifest, ``STORE/.inkind/manifests/<image relpath>.manifest``, is
binary: a header (magic, block size, image size), 16 bytes of xxh3-128 per
block, and a trailer that names the image state it describes (mtime, size
and ``user.inkind.xxh3``). It is written after the image is committed, so a
run killed in between leaves a *stale* manifest, which the next run notices
and replaces by comparing the source with the stored image itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import NoReturn

import xxhash

from inkind.errors import CorruptionError, SourceError
from inkind.hashing import hash_range, update_zeros
from inkind.readahead import PIECE, ReadAhead, ReadError, ShortRead, fill, page_buffer
from inkind.source import Finding
from inkind.stats import Stats
from inkind.store.files import UpdateFile, sweep_temps
from inkind.store.image import BLOCKS_KEY, UpdateImage
from inkind.store.paths import DIR_FLAGS, open_beneath
from inkind.store.sparse import data_segments
from inkind.store.tree import make_dirs, remove
from inkind.store.xattrs import XAttrs
from inkind.ui import Progress, null_progress

log = logging.getLogger("inkind")

BLKGETSIZE64 = 0x80081272
READ_UNIT = 4 << 20  # what the read-ahead thread reads at a time (whole blocks)
READ_BUDGET = 48 << 20  # read-ahead buffers at most (one block if a block is larger)
HOLE_GRANULE = 64 << 10  # zero runs inside a changed block become holes at this size
MANIFEST_DIR = ".inkind/manifests"
HASH_SIZE = 16
_MAGIC = b"INKBLKM1"
_END = b"INKBLKE1"
_HEAD = struct.Struct("<8sQQ")  # magic, block size, image size
_TAIL = struct.Struct("<qQ16s8s")  # image mtime ns, image size, image xxh3, end magic
_WINDOW = 4096  # hashes per manifest read or write


def source_size(fd: int) -> int:
    """The size of a block device (from the kernel) or of a regular file."""
    st = os.fstat(fd)
    if stat.S_ISBLK(st.st_mode):
        buf = bytearray(8)
        try:
            fcntl.ioctl(fd, BLKGETSIZE64, buf)
            return struct.unpack("<Q", buf)[0]
        except OSError:
            return os.lseek(fd, 0, os.SEEK_END)
    return st.st_size


_zero_digests: dict[int, bytes] = {}


def zero_digest(length: int) -> bytes:
    """xxh3-128 of ``length`` zero bytes (cached: few distinct lengths)."""
    d = _zero_digests.get(length)
    if d is None:
        d = _zero_digests[length] = xxhash.xxh3_128_digest(bytes(length))
    return d


def is_zero(view: memoryview, digest: bytes | None = None) -> bool:
    """Whether ``view`` is all zeros: a hash test, confirmed by a compare
    (which only zero data pays for)."""
    if digest is None:
        digest = xxhash.xxh3_128_digest(view)
    return digest == zero_digest(len(view)) and bytes(view) == bytes(len(view))


@dataclass(frozen=True)
class ImageState:
    """What identifies one version of a stored image."""

    size: int
    mtime_ns: int
    xxh3: bytes  # raw 16 bytes, b"" when the image has none
    blocks: int = 0  # xxh3 is the block-hash form (``xxh3-blocks``) over blocks of this size

    def same_version(self, other: ImageState) -> bool:
        return (self.size, self.mtime_ns, self.xxh3) == (other.size, other.mtime_ns, other.xxh3)


def image_state(fd: int) -> ImageState:
    """Size, mtime and checksum: ``user.inkind.xxh3``, or ``xxh3-blocks``
    ("BLOCKSIZE:HEX") after an update by ranges."""
    st = os.fstat(fd)
    x = XAttrs(fd)
    hexd, blocks = x.text("xxh3") or "", 0
    if not hexd:
        size_text, _, hexd = (x.text(BLOCKS_KEY) or "").partition(":")
        blocks = int(size_text) if size_text.isdigit() else 0
    try:
        raw = bytes.fromhex(hexd) if hexd else b""
    except ValueError:
        raw = b""
    return ImageState(st.st_size, st.st_mtime_ns, raw, blocks if raw else 0)


class Manifest:
    """An existing manifest file, read through a small window."""

    def __init__(self, fd: int, block_size: int, image: ImageState):
        self.fd = fd
        self.block_size = block_size
        self.image = image
        self._start = 0
        self._window = b""

    @classmethod
    def open(cls, root_fd: int, rel: str) -> Manifest | None:
        """The manifest at ``rel``, or None if missing or malformed."""
        try:
            fd = open_beneath(root_fd, rel, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            total = os.fstat(fd).st_size
            magic, bs, size = _HEAD.unpack(os.pread(fd, _HEAD.size, 0))
            mtime, tsize, xxh3, end = _TAIL.unpack(os.pread(fd, _TAIL.size, total - _TAIL.size))
            ok = magic == _MAGIC and end == _END and bs > 0 and tsize == size
            ok = ok and total == _HEAD.size + blocks_of(size, bs) * HASH_SIZE + _TAIL.size
        except (struct.error, OSError, ValueError):
            ok = False
        if not ok:
            os.close(fd)
            return None
        return cls(fd, bs, ImageState(size, mtime, xxh3))

    def close(self) -> None:
        os.close(self.fd)

    @property
    def blocks(self) -> int:
        return blocks_of(self.image.size, self.block_size)

    def fresh_for(self, block_size: int, image: ImageState | None) -> bool:
        """Whether it describes exactly this version of the image."""
        return (
            image is not None
            and bool(image.xxh3)
            and self.block_size == block_size
            and self.image.same_version(image)
        )

    def digest(self, index: int) -> bytes:
        """The stored hash of block ``index``."""
        pos = index - self._start
        if not 0 <= pos < len(self._window) // HASH_SIZE:
            self._start = index
            n = min(_WINDOW, self.blocks - index)
            self._window = os.pread(self.fd, n * HASH_SIZE, _HEAD.size + index * HASH_SIZE)
            pos = 0
        return self._window[pos * HASH_SIZE : (pos + 1) * HASH_SIZE]


class ManifestWriter:
    """Streams a new manifest into place through UpdateFile, so rewriting an
    unchanged manifest writes nothing."""

    def __init__(self, root_fd: int, rel: str, block_size: int, image_size: int, stats: Stats):
        make_dirs(root_fd, rel.rpartition("/")[0])
        self._file = UpdateFile(rel, dir_fd=root_fd, stats=stats)
        self._head = _HEAD.pack(_MAGIC, block_size, image_size)
        self._size = image_size
        self._pending = bytearray()

    def __enter__(self) -> ManifestWriter:
        self._file.__enter__()
        try:
            self._file.write(self._head)
        except BaseException as e:
            self._file.__exit__(type(e), e, e.__traceback__)
            raise
        return self

    def add(self, digest: bytes) -> None:
        self._pending += digest
        if len(self._pending) >= _WINDOW * HASH_SIZE:
            self._flush()

    def _flush(self) -> None:
        self._file.write(self._pending)
        self._pending = bytearray()

    def finish(self, image: ImageState) -> None:
        """Name the image version the hashes describe (after its commit)."""
        self._flush()
        self._file.write(_TAIL.pack(image.mtime_ns, self._size, image.xxh3, _END))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._file.__exit__(exc_type, exc, tb)


def blocks_of(size: int, block_size: int) -> int:
    return -(-size // block_size)


def merge_spans(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, disjoint [first, stop) spans; empty ones dropped."""
    out: list[tuple[int, int]] = []
    for first, stop in sorted(spans):
        if first >= stop:
            continue
        if out and first <= out[-1][1]:
            out[-1] = (out[-1][0], max(stop, out[-1][1]))
        else:
            out.append((first, stop))
    return out


def block_spans(ranges: Iterable[tuple[int, int]], block_size: int, blocks: int) -> list[tuple[int, int]]:
    """Byte (offset, length) ranges as sorted, disjoint [first, stop) block spans."""
    return merge_spans(
        (offset // block_size, min(blocks, blocks_of(offset + length, block_size)))
        for offset, length in ranges
        if length > 0
    )


def data_block_spans(fd: int, size: int, block_size: int) -> list[tuple[int, int]]:
    """The blocks of ``fd`` that hold data (SEEK_DATA/SEEK_HOLE), as sorted,
    disjoint [first, stop) spans; the others read as zeros.

    It seeks on from the end of each block that holds data, so a hole
    smaller than a block is stepped over: at most two lseeks per data block
    however fragmented the file, and memory for the spans only.
    """
    spans: list[tuple[int, int]] = []
    pos = 0
    while pos < size:
        segment = next(data_segments(fd, size, pos), None)
        if segment is None:
            break
        start, length = segment
        first, stop = start // block_size, blocks_of(start + length, block_size)
        if spans and first <= spans[-1][1]:
            spans[-1] = (spans[-1][0], stop)
        else:
            spans.append((first, stop))
        pos = stop * block_size
    return spans


class _ImageDamaged(Exception):
    """The image does not match its own checksum."""


def read_units(spans: Iterable[tuple[int, int]], block_size: int, size: int) -> Iterator[tuple[int, int]]:
    """The reads that cover the blocks of ``spans`` (made as they are needed,
    so memory does not grow with the source): runs of whole blocks of about
    READ_UNIT bytes each (one read a block for larger blocks), never across a
    span's end, the last one cut at ``size``."""
    per = read_unit_blocks(block_size)
    for start, end in spans:
        for i in range(start, end, per):
            offset = i * block_size
            yield offset, min(min(end, i + per) * block_size, size) - offset


def read_unit_blocks(block_size: int) -> int:
    return max(1, READ_UNIT // block_size)


def hash_stored(fd: int, offset: int, length: int, scratch: memoryview, *extra: xxhash.xxh3_128) -> bytes:
    """xxh3-128 of ``length`` stored bytes at ``offset``; also fed to
    ``extra``. Holes, and what lies past EOF (what the image reads as once
    extended), are hashed as the zeros they read as without reading them:
    checking a sparse image reads its data only."""
    end = offset + length
    if next(data_segments(fd, end, offset), None) is None:  # all hole: its digest is known
        for e in extra:
            update_zeros(e, length)
        return zero_digest(length)
    hashers = (xxhash.xxh3_128(), *extra)
    pos, _ = hash_range(hashers, fd, offset, end, scratch)
    for h in hashers:
        update_zeros(h, end - pos)  # it shrank meanwhile: zeros, as past EOF
    return hashers[0].digest()


@dataclass
class CopyResult:
    """What one :meth:`BlockCopy.copy` did."""

    blocks: int = 0  # blocks in the source
    blocks_read: int = 0
    blocks_changed: int = 0  # written or turned into holes
    old_size: int | None = None  # None: there was no image
    size: int = 0
    mode: str = ""  # UpdateImage's way ("new", "clone", "journal", "copy"); "" if untouched
    compared_with_image: bool = False  # the manifest was missing, stale, or a full pass
    suspect: bool = False  # all blocks matched, yet the image's xxh3 did not
    ranged: bool = False  # only the blocks of the given ranges were read

    @property
    def changed(self) -> bool:
        return bool(self.mode)


class _LazyImage:
    """Opens the UpdateImage at the first changed block, so an unchanged
    source costs no temp, no clone and no xattr write."""

    def __init__(self, root_fd: int, rel: str, size: int, stats: Stats):
        self.args = (root_fd, rel, size)
        self.stats = stats
        self.img: UpdateImage | None = None

    def get(self) -> UpdateImage:
        if self.img is None:
            root_fd, rel, size = self.args
            self.img = UpdateImage(root_fd, rel, size, stats=self.stats).__enter__()
        return self.img

    def __enter__(self) -> _LazyImage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.img is not None:
            self.img.__exit__(exc_type, exc, tb)


@dataclass
class BlockCopy:
    """Keep the image ``image_rel`` (below the store root) equal to a source.

    ``label`` names the source in messages (a path or volume name).
    """

    root_fd: int
    image_rel: str
    block_size: int
    stats: Stats
    label: str = "source"

    @property
    def manifest_rel(self) -> str:
        return f"{MANIFEST_DIR}/{self.image_rel}.manifest"

    def sweep_manifest_temps(self) -> None:
        """Remove manifest temps a killed run left (the caller holds the lock)."""
        parent = self.manifest_rel.rpartition("/")[0]
        with contextlib.suppress(FileNotFoundError):
            fd = open_beneath(self.root_fd, parent, DIR_FLAGS)
            try:
                sweep_temps(fd)
            finally:
                os.close(fd)

    def _open_image(self) -> int:
        try:
            return open_beneath(self.root_fd, self.image_rel, os.O_RDONLY)
        except FileNotFoundError:
            return -1

    def _fresh_manifest(self, image: ImageState | None) -> Manifest | None:
        m = Manifest.open(self.root_fd, self.manifest_rel)
        if m is not None and not m.fresh_for(self.block_size, image):
            m.close()
            m = None
        return m

    def copy(
        self,
        src_fd: int,
        size: int,
        *,
        full: bool = False,
        ranges: Iterable[tuple[int, int]] | None = None,
        skip_holes: bool = False,
        check: Callable[[], None] | None = None,
        progress: Progress = null_progress,
    ) -> CopyResult:
        """Bring the image up to date with ``size`` bytes of ``src_fd``.

        Incremental: each block's hash is compared with the manifest. With
        ``full``, or when the manifest is missing or stale, each block is
        compared with the stored image itself and the manifest is rebuilt.
        ``ranges`` (byte ranges known to hold every change since the last
        run, e.g. from a thin-pool delta) limits the reads to those blocks;
        it is ignored when the manifest cannot be trusted or the size
        changed. With ``skip_holes``, blocks that lie wholly in what the
        source reports as holes (SEEK_DATA: a sparse image file) are taken as
        zeros without reading them (the list of data spans is asked for
        once, before reading: see :func:`data_block_spans`). ``check``
        runs after the last read and before the image is
        committed: raising there (e.g. the snapshot read from filled up)
        discards the update. Raises SourceError if the source cannot be read
        whole or changes size meanwhile; the previous image and manifest
        then stay.
        """
        with contextlib.suppress(OSError):
            os.posix_fadvise(src_fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        img_fd = self._open_image()
        try:
            before = image_state(img_fd) if img_fd >= 0 else None
            manifest = None if full else self._fresh_manifest(before)
            try:
                result = CopyResult(old_size=before.size if before else None, size=size)
                result.compared_with_image = img_fd >= 0 and manifest is None
                if result.compared_with_image and not full:
                    log.info(
                        "%s: block manifest missing or stale; comparing with the stored image", self.image_rel
                    )
                blocks = blocks_of(size, self.block_size)
                spans = [(0, blocks)]
                if ranges is not None and manifest is not None and before and before.size == size:
                    spans = block_spans(ranges, self.block_size, blocks)
                    result.ranged = True
                elif skip_holes:
                    spans = data_block_spans(src_fd, size, self.block_size)
                self._copy(src_fd, size, img_fd, manifest, before, spans, result, check, progress)
            finally:
                if manifest is not None:
                    manifest.close()
        finally:
            if img_fd >= 0:
                os.close(img_fd)
        return result

    def _copy(
        self,
        src_fd: int,
        size: int,
        img_fd: int,
        manifest: Manifest | None,
        before: ImageState | None,
        spans: list[tuple[int, int]],
        result: CopyResult,
        check: Callable[[], None] | None,
        progress: Progress,
    ) -> None:
        bs = self.block_size
        blocks = result.blocks = blocks_of(size, bs)
        # Between the spans: blocks unchanged since the last run (ranged:
        # the image's checksum takes the block-hash form), or else holes.
        whole = xxhash.xxh3_128() if not result.ranged or spans == [(0, blocks)] else None
        per_block = xxhash.xxh3_128() if whole is None else None
        old_size = before.size if before else 0

        def stored(i: int, offset: int, length: int) -> bytes:
            """What block ``i`` of the image held (b"" if unknown)."""
            if offset >= old_size:
                return zero_digest(length)  # past the old end: a hole once extended
            if manifest is not None:
                fits = offset + length <= old_size and min(bs, old_size - offset) == length
                return manifest.digest(i) if fits else b""
            return hash_stored(img_fd, offset, length, scratch) if img_fd >= 0 else b""

        scratch = page_buffer(min(PIECE, bs))
        unit_size = min(read_unit_blocks(bs) * bs, max(size, 1))
        # Three 4 MiB reads ahead; for blocks over 16 MiB, one block, as
        # before the read-ahead, so the buffers stay within READ_BUDGET.
        depth = max(1, min(3, READ_BUDGET // unit_size))
        span_iter = iter(spans)
        span = next(span_iter, (blocks, blocks))
        unit, unit_offset = memoryview(b""), 0
        with ManifestWriter(self.root_fd, self.manifest_rel, bs, size, self.stats) as writer:
            with (
                _LazyImage(self.root_fd, self.image_rel, size, self.stats) as lazy,
                ReadAhead(src_fd, read_units(spans, bs, size), unit_size, depth) as reader,
            ):
                for i in range(blocks):
                    if i >= span[1]:
                        span = next(span_iter, (blocks, blocks))
                    offset = i * bs
                    length = min(bs, size - offset)
                    if i < span[0] and per_block is not None:
                        assert manifest is not None
                        writer.add(manifest.digest(i))
                        per_block.update(manifest.digest(i))
                        progress.advance(length)  # not read, but passed: the bar reaches the size
                        continue
                    view: memoryview | None = None
                    if i < span[0]:  # a hole in the source: zeros, not read
                        assert whole is not None
                        digest = zero_digest(length)
                        update_zeros(whole, length)
                    else:
                        if offset >= unit_offset + len(unit):
                            unit_offset = offset
                            unit = self._next_unit(reader, size)
                        view = unit[offset - unit_offset : offset - unit_offset + length]
                        self.stats.bytes_read += length
                        result.blocks_read += 1
                        digest = xxhash.xxh3_128_digest(view)
                        if whole is not None:
                            whole.update(view)
                    progress.advance(length)
                    if digest != stored(i, offset, length):
                        if view is None:
                            lazy.get().zero(offset, length)
                        else:
                            put_block(lazy.get(), offset, view, digest)
                        result.blocks_changed += 1
                    writer.add(digest)
                    if per_block is not None:
                        per_block.update(digest)
                if source_size(src_fd) != size:
                    raise SourceError(
                        f"{self.label}: changed size while being read; the previous image is kept"
                    )
                if check is not None:
                    check()
                xxh3 = whole.hexdigest() if whole is not None else None
                if lazy.img is None and (before is None or before.size != size):
                    lazy.get()  # a new image, or only its size changed
                if lazy.img is not None:
                    lazy.img.xxh3 = xxh3
                    if per_block is not None:
                        lazy.img.blocks_xxh3 = f"{bs}:{per_block.hexdigest()}"
                    result.mode = lazy.img.mode
                elif xxh3 is not None and before is not None and before.xxh3.hex() != xxh3:
                    self._unchanged_but_hash_differs(xxh3, result)
            # The image is committed; only now may the manifest name it.
            fd = open_beneath(self.root_fd, self.image_rel, os.O_RDONLY)
            try:
                writer.finish(image_state(fd))
            finally:
                os.close(fd)

    def _next_unit(self, reader: ReadAhead, size: int) -> memoryview:
        try:
            return reader.next()
        except (ShortRead, ReadError) as e:
            raise self._read_failed(e, size) from None

    def _read(self, fd: int, view: memoryview, offset: int, size: int) -> bytes:
        """Fill ``view`` from the source at ``offset``; its xxh3-128."""
        self.stats.bytes_read += len(view)
        try:
            fill(fd, view, offset)
        except (ShortRead, ReadError) as e:
            raise self._read_failed(e, size) from None
        return xxhash.xxh3_128_digest(view)

    def _read_failed(self, e: ShortRead | ReadError, size: int) -> SourceError:
        if isinstance(e, ShortRead):
            return SourceError(
                f"{self.label}: ended at byte {e.offset} of {size} (shrunk or gone while being read); "
                "the previous image is kept"
            )
        return SourceError(
            f"{self.label}: read error at byte {e.offset}: {e.error.strerror}; the previous image is kept"
        )

    def _unchanged_but_hash_differs(self, xxh3: str, result: CopyResult) -> None:
        """Every block matched, yet the whole hash differs from the image's.

        Compared with the image itself, the image is right and only its
        checksum was wrong: fix it. Compared with the manifest, the image or
        its manifest may be damaged: the caller schedules a full pass.
        """
        fd = open_beneath(self.root_fd, self.image_rel, os.O_RDONLY)
        try:
            if result.compared_with_image or image_state(fd).blocks:
                # Every block matched the image itself, or the manifest that
                # the block-hash checksum vouches for: the content checksum
                # is now known.
                x = XAttrs(fd, stats=self.stats)
                x["xxh3"] = xxh3
                x.pop(BLOCKS_KEY, None)
            else:
                result.suspect = True
                log.warning(
                    "%s: matches its manifest but not its user.inkind.xxh3; a full pass is scheduled",
                    self.image_rel,
                )
        finally:
            os.close(fd)

    def scrub(
        self,
        src_fd: int | None,
        pick: Callable[[int], bool],
        progress: Progress = null_progress,
    ) -> int:
        """Check the blocks ``pick(index)`` chooses: stored block against the
        manifest (a mismatch is corruption), then against the source (a
        mismatch is a change the last backup missed: repaired and counted).

        Without a fresh manifest there is nothing to check against; the next
        backup rebuilds it. Returns how many blocks were repaired.
        """
        img_fd = self._open_image()
        if img_fd < 0:
            return 0
        try:
            state = image_state(img_fd)
            manifest = self._fresh_manifest(state)
            if manifest is None:
                self._scrub_whole(img_fd, state)
                return 0
            size = manifest.image.size
            if src_fd is not None and source_size(src_fd) != size:
                log.info("%s: source size changed since the backup; scrubbing the store only", self.image_rel)
                src_fd = None
            try:
                bad, stale = self._scrub_blocks(img_fd, manifest, src_fd, pick, progress)
                if bad:
                    self._blame(img_fd, state, manifest, bad)
            finally:
                manifest.close()
        finally:
            os.close(img_fd)
        if stale:
            assert src_fd is not None
            result = self.copy(src_fd, size, ranges=stale)
            self.stats.objects_repaired += result.blocks_changed
            return result.blocks_changed
        return 0

    def _scrub_blocks(
        self,
        img_fd: int,
        manifest: Manifest,
        src_fd: int | None,
        pick: Callable[[int], bool],
        progress: Progress,
    ) -> tuple[list[int], list[tuple[int, int]]]:
        """Offsets of stored blocks that disagree with the manifest, and the
        spans where the source differs from both (changes to copy)."""
        bs, size = self.block_size, manifest.image.size
        scratch = page_buffer(min(PIECE, bs))
        buf = page_buffer(bs) if src_fd is not None else None
        bad: list[int] = []
        stale: list[tuple[int, int]] = []
        for i in range(manifest.blocks):
            if not pick(i):
                continue
            offset = i * bs
            length = min(bs, size - offset)
            self.stats.objects_scrubbed += 1
            progress.advance()
            want = manifest.digest(i)
            if hash_stored(img_fd, offset, length, scratch) != want:
                bad.append(offset)
            elif buf is not None and self._read(src_fd, buf[:length], offset, size) != want:
                stale.append((offset, length))
        return bad, stale

    def _scrub_whole(self, img_fd: int, state: ImageState) -> None:
        """No fresh manifest (a killed run, or a change outside inkind): no
        block can be checked on its own, so the whole image is checked
        against its checksum, unless an update is pending in a journal
        (recoverable: the next run replays it). A malformed manifest is
        damage: rewritten from a sound image, and named."""
        if not state.xxh3 or XAttrs(img_fd).get("dirty") is not None:
            log.info(
                "%s: no fresh block manifest and no settled checksum; left to the next backup", self.image_rel
            )
            return
        log.info("%s: no fresh block manifest; checking the whole image against its checksum", self.image_rel)
        self.stats.objects_scrubbed += 1
        malformed = self._manifest_malformed()
        if malformed and self._rewrite_manifest(img_fd, state):
            raise CorruptionError(
                self.manifest_rel, "malformed (truncated or overwritten): rewritten from the image"
            )
        if self._hash_image(img_fd, state, lambda _offset, _digest: None):
            if malformed:  # a sound image whose checksum is over blocks of another size
                raise CorruptionError(
                    self.manifest_rel, "malformed (truncated or overwritten); the next backup rebuilds it"
                )
            return
        name = BLOCKS_KEY if state.blocks else "xxh3"
        raise CorruptionError(self.image_rel, f"content does not match user.inkind.{name}")

    def _blame(self, img_fd: int, state: ImageState, manifest: Manifest, bad: list[int]) -> NoReturn:
        """Stored blocks disagree with a fresh manifest: read the whole image
        to tell which of the two is damaged."""
        if self._rewrite_manifest(img_fd, state):
            raise CorruptionError(
                self.manifest_rel,
                f"block hash at offset {bad[0]} did not match the image, which matches its checksum: "
                "rewritten from the image",
            )
        more = f" (and {len(bad) - 1} more block(s))" if len(bad) > 1 else ""
        undecided = self._undecided(state, manifest)
        raise CorruptionError(
            self.image_rel, f"block at offset {bad[0]} does not match its manifest hash{more}{undecided}"
        )

    def _undecided(self, state: ImageState, manifest: Manifest) -> str:
        """After an update by ranges, the image's checksum (``xxh3-blocks``)
        was built from the manifest's hashes of the blocks it did not read:
        if it still matches them, it cannot tell a damaged manifest from a
        damaged image. Say so, and how to settle it."""
        if state.blocks != manifest.block_size:
            return ""
        h = xxhash.xxh3_128()
        for i in range(manifest.blocks):
            h.update(manifest.digest(i))
        if h.digest() != state.xxh3:
            return ""
        return (
            f"; {BLOCKS_KEY} was built from that manifest, so the damage may be in either: "
            "`inkind backup --full` compares with the source and rewrites both"
        )

    def _rewrite_manifest(self, img_fd: int, state: ImageState) -> bool:
        """Write the manifest anew from the image if the image matches its
        own checksum (it is sound, so the manifest was the damaged one);
        False, and nothing written, if it does not."""
        if (state.blocks or self.block_size) != self.block_size:
            return False
        try:
            with ManifestWriter(
                self.root_fd, self.manifest_rel, self.block_size, state.size, self.stats
            ) as w:
                if not self._hash_image(img_fd, state, lambda _offset, digest: w.add(digest)):
                    raise _ImageDamaged
                w.finish(state)
        except _ImageDamaged:
            return False
        self.stats.objects_repaired += 1
        return True

    def _manifest_malformed(self) -> bool:
        """The manifest file exists but is not a manifest. Written through a
        temp and a rename, it is never left half-written by inkind."""
        manifest = Manifest.open(self.root_fd, self.manifest_rel)
        if manifest is not None:
            manifest.close()
            return False
        try:
            os.close(open_beneath(self.root_fd, self.manifest_rel, os.O_RDONLY))
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True

    def _hash_image(self, fd: int, state: ImageState, on_block: Callable[[int, bytes], None]) -> bool:
        """Read the image once, hand each block's digest to ``on_block``
        (blocks of the checksum's size), and say whether the image matches
        its own checksum (``user.inkind.xxh3`` or ``xxh3-blocks``)."""
        bs = state.blocks or self.block_size
        whole = xxhash.xxh3_128()
        scratch = page_buffer(min(PIECE, bs))
        for offset, length in self._blocks(state.size, bs):
            digest = hash_stored(fd, offset, length, scratch, *([] if state.blocks else [whole]))
            if state.blocks:
                whole.update(digest)
            on_block(offset, digest)
        return bool(state.xxh3) and whole.digest() == state.xxh3

    def verify(self) -> list[Finding]:
        """Check the image against its ``user.inkind.xxh3`` and its manifest,
        reading it once. A stale manifest, or an update pending in a journal,
        is recoverable: the next run fixes it."""
        fd = open_beneath(self.root_fd, self.image_rel, os.O_RDONLY)
        try:
            x = XAttrs(fd)
            if x.get("dirty") is not None:
                return [Finding(self.image_rel, "update pending in a journal; the next run replays it", True)]
            state = image_state(fd)
            manifest = self._fresh_manifest(state)
            try:
                return self._verify(fd, state, manifest)
            finally:
                if manifest is not None:
                    manifest.close()
        finally:
            os.close(fd)

    def _verify(self, fd: int, state: ImageState, manifest: Manifest | None) -> list[Finding]:
        findings = []
        if manifest is None and self._manifest_malformed():
            findings.append(
                Finding(self.manifest_rel, "malformed (truncated or overwritten); a scrub rewrites it")
            )
        elif manifest is None:
            findings.append(Finding(self.manifest_rel, "missing or stale; the next run rebuilds it", True))
        comparable = manifest is not None and (state.blocks or self.block_size) == self.block_size
        bad: list[int] = []

        def compare(offset: int, digest: bytes) -> None:
            if comparable and digest != manifest.digest(offset // self.block_size):
                bad.append(offset)

        sound = self._hash_image(fd, state, compare)
        name = BLOCKS_KEY if state.blocks else "xxh3"
        if not state.xxh3:
            findings.append(Finding(self.image_rel, "no user.inkind.xxh3 checksum"))
        elif not sound:
            where = f" (first bad block at offset {bad[0]})" if bad else ""
            undecided = self._undecided(state, manifest) if bad and manifest is not None else ""
            findings.append(
                Finding(self.image_rel, f"content does not match user.inkind.{name}{where}{undecided}")
            )
        elif bad:
            # A fresh manifest names this very version of the image, and the
            # image matches its checksum: only damage makes them disagree.
            findings.append(
                Finding(
                    self.manifest_rel,
                    f"block hash at offset {bad[0]} does not match the image, which matches its checksum "
                    "(a scrub rewrites it from the image)",
                )
            )
        return findings

    def _blocks(self, size: int, block_size: int) -> Iterator[tuple[int, int]]:
        for offset in range(0, size, block_size):
            yield offset, min(block_size, size - offset)

    def remove(self) -> None:
        """Delete the image and its manifest (counted as one deleted object)."""
        for rel in (self.image_rel, self.manifest_rel):
            parent, _, name = rel.rpartition("/")
            try:
                dfd = open_beneath(self.root_fd, parent, DIR_FLAGS)
            except FileNotFoundError:
                continue
            try:
                remove(dfd, name)
            except FileNotFoundError:
                pass
            finally:
                os.close(dfd)
        self.stats.objects_deleted += 1


def put_block(img: UpdateImage, offset: int, view: memoryview, digest: bytes) -> None:
    """Hand one changed block to the image: zero runs as holes, the rest as
    data, in HOLE_GRANULE steps."""
    if is_zero(view, digest):
        img.zero(offset, len(view))
        return
    start = 0
    run_zero = False
    for pos in range(0, len(view), HOLE_GRANULE):
        zero = is_zero(view[pos : pos + HOLE_GRANULE])
        if pos and zero != run_zero:
            _put(img, offset + start, view[start:pos], run_zero)
            start = pos
        run_zero = zero
    _put(img, offset + start, view[start:], run_zero)


def _put(img: UpdateImage, offset: int, view: memoryview, zero: bool) -> None:
    if zero:
        img.zero(offset, len(view))
    else:
        img.write(offset, view)
