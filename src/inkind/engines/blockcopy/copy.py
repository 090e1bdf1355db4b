"""The copy pass: bring a stored image up to date with its source.

Each block of the source is read (ahead, in a thread), hashed and compared
with what the image held: the manifest's hash, or, when the manifest is
missing or stale, the stored block itself. Changed blocks go to the image
through :class:`~inkind.store.image.UpdateImage`, opened at the first
change, so an unchanged source writes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType

import xxhash

from inkind.engines.blockcopy.digest import hash_stored, is_zero, zero_digest
from inkind.engines.blockcopy.manifest import ImageState, Manifest, ManifestWriter, image_state
from inkind.engines.blockcopy.ranges import (
    block_spans,
    blocks_of,
    data_block_spans,
    read_unit_blocks,
    read_units,
)
from inkind.engines.blockcopy.readahead import (
    PIECE,
    ReadAhead,
    ReadError,
    ShortRead,
    page_buffer,
    source_size,
)
from inkind.engines.blockcopy.stored import StoredImage
from inkind.errors import SourceError
from inkind.hashing import update_zeros
from inkind.stats import Stats
from inkind.store.checksum import BLOCKS_KEY
from inkind.store.image import UpdateImage
from inkind.store.paths import PathLike, open_beneath
from inkind.store.xattrs import XAttrs
from inkind.ui import Progress, null_progress

log = logging.getLogger("inkind")

READ_BUDGET = 48 << 20  # read-ahead buffers at most (one block if a block is larger)
HOLE_GRANULE = 64 << 10  # zero runs inside a changed block become holes at this size

Spans = list[tuple[int, int]]


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


@dataclass
class CopyRequest:
    """What one copy is asked for (the options of :meth:`BlockCopy.copy`)."""

    src_fd: int
    size: int
    full: bool = False
    ranges: Iterable[tuple[int, int]] | None = None
    skip_holes: bool = False
    check: Callable[[], None] | None = None
    progress: Progress = null_progress
    adopt: PathLike | None = None


def copy_image(target: StoredImage, req: CopyRequest) -> CopyResult:
    """Run one copy (see :meth:`BlockCopy.copy`)."""
    with contextlib.suppress(OSError):
        os.posix_fadvise(req.src_fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    if req.adopt is not None and not _same_file(req.adopt, req.src_fd):
        req.adopt = None  # only the very file read may become the image
    img_fd = target.open_image()
    try:
        before = image_state(img_fd) if img_fd >= 0 else None
        manifest = None if req.full else target.fresh_manifest(before)
        try:
            result = CopyResult(old_size=before.size if before else None, size=req.size)
            result.compared_with_image = img_fd >= 0 and manifest is None
            if result.compared_with_image and not req.full:
                log.info(
                    "%s: block manifest missing or stale; comparing with the stored image", target.image_rel
                )
            spans = _spans_to_read(req, target.block_size, manifest, before, result)
            _CopyPass(target, req, result, img_fd, manifest, before, spans).run()
        finally:
            if manifest is not None:
                manifest.close()
    finally:
        if img_fd >= 0:
            os.close(img_fd)
    return result


def _same_file(path: PathLike, fd: int) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    here = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (here.st_dev, here.st_ino)


def _spans_to_read(
    req: CopyRequest,
    block_size: int,
    manifest: Manifest | None,
    before: ImageState | None,
    result: CopyResult,
) -> Spans:
    """The blocks to read: the given ranges' when a fresh manifest vouches
    for the others and the size is the same, the source's data when holes
    may be skipped, else all of them."""
    blocks = blocks_of(req.size, block_size)
    if req.ranges is not None and manifest is not None and before and before.size == req.size:
        result.ranged = True
        return block_spans(req.ranges, block_size, blocks)
    if req.skip_holes:
        return data_block_spans(req.src_fd, req.size, block_size)
    return [(0, blocks)]


class _LazyImage:
    """Opens the UpdateImage at the first changed block, so an unchanged
    source costs no temp, no clone and no xattr write."""

    def __init__(self, root_fd: int, rel: str, size: int, stats: Stats, adopt: PathLike | None):
        self.args = (root_fd, rel, size)
        self.stats = stats
        self.adopt = adopt
        self.img: UpdateImage | None = None

    def get(self) -> UpdateImage:
        if self.img is None:
            root_fd, rel, size = self.args
            self.img = UpdateImage(root_fd, rel, size, stats=self.stats, adopt=self.adopt).__enter__()
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


class _SourceUnits:
    """The source's blocks as the read-ahead hands them over, in order."""

    def __init__(self, target: StoredImage, reader: ReadAhead, size: int):
        self.target = target
        self.reader = reader
        self.size = size
        self.unit, self.unit_offset = memoryview(b""), 0

    def view(self, offset: int, length: int) -> memoryview:
        """The ``length`` bytes at ``offset`` (past the last view's)."""
        if offset >= self.unit_offset + len(self.unit):
            self.unit_offset = offset
            try:
                self.unit = self.reader.next()
            except (ShortRead, ReadError) as e:
                raise self.target.read_failed(e, self.size) from None
        start = offset - self.unit_offset
        return self.unit[start : start + length]


@dataclass
class _CopyPass:
    """One pass over the source's blocks: hash each, compare it with what
    the image held, hand the changed ones to the image, and write the new
    manifest once the image is committed."""

    target: StoredImage
    req: CopyRequest
    result: CopyResult
    img_fd: int
    manifest: Manifest | None
    before: ImageState | None
    spans: Spans
    whole: xxhash.xxh3_128 | None = field(default=None, init=False)
    per_block: xxhash.xxh3_128 | None = field(default=None, init=False)
    scratch: memoryview = field(default=memoryview(b""), init=False)  # for hashing stored blocks

    def run(self) -> None:
        t, bs, size = self.target, self.target.block_size, self.req.size
        blocks = self.result.blocks = blocks_of(size, bs)
        # Between the spans: blocks unchanged since the last run (ranged:
        # the image's checksum takes the block-hash form), or else holes.
        if not self.result.ranged or self.spans == [(0, blocks)]:
            self.whole = xxhash.xxh3_128()
        else:
            self.per_block = xxhash.xxh3_128()
        self.scratch = page_buffer(min(PIECE, bs))
        unit_size = min(read_unit_blocks(bs) * bs, max(size, 1))
        # Three 4 MiB reads ahead; for blocks over 16 MiB, one block, as
        # before the read-ahead, so the buffers stay within READ_BUDGET.
        depth = max(1, min(3, READ_BUDGET // unit_size))
        with ManifestWriter(t.root_fd, t.manifest_rel, bs, size, t.stats) as writer:
            with (
                _LazyImage(t.root_fd, t.image_rel, size, t.stats, self.req.adopt) as lazy,
                ReadAhead(self.req.src_fd, read_units(self.spans, bs, size), unit_size, depth) as reader,
            ):
                self._blocks(_SourceUnits(t, reader, size), lazy, writer)
                self._settle(lazy)
            # The image is committed; only now may the manifest name it.
            fd = open_beneath(t.root_fd, t.image_rel, os.O_RDONLY)
            try:
                writer.finish(image_state(fd))
            finally:
                os.close(fd)

    def _blocks(self, units: _SourceUnits, lazy: _LazyImage, writer: ManifestWriter) -> None:
        bs, size, blocks = self.target.block_size, self.req.size, self.result.blocks
        span_iter = iter(self.spans)
        span = next(span_iter, (blocks, blocks))
        for i in range(blocks):
            if i >= span[1]:
                span = next(span_iter, (blocks, blocks))
            offset = i * bs
            length = min(bs, size - offset)
            if i < span[0] and self.per_block is not None:
                self._pass(i, length, writer)
                continue
            view: memoryview | None = None
            if i < span[0]:  # a hole in the source: zeros, not read
                assert self.whole is not None
                digest = zero_digest(length)
                update_zeros(self.whole, length)
            else:
                view = units.view(offset, length)
                digest = self._hash_read(view)
            self.req.progress.advance(length)
            if digest != self._stored(i, offset, length):
                if view is None:
                    lazy.get().zero(offset, length)
                else:
                    put_block(lazy.get(), offset, view, digest)
                self.result.blocks_changed += 1
            elif view is not None and self.before is None and self.req.adopt is not None:
                lazy.get().zero(offset, length)  # zeros read from a file to adopt: a hole, as in a new temp
            writer.add(digest)
            if self.per_block is not None:
                self.per_block.update(digest)

    def _pass(self, i: int, length: int, writer: ManifestWriter) -> None:
        """Block ``i`` lies outside the ranges: unchanged since the last
        run, its manifest hash stands (not read, but passed: the bar still
        reaches the size)."""
        assert self.manifest is not None and self.per_block is not None
        digest = self.manifest.digest(i)
        writer.add(digest)
        self.per_block.update(digest)
        self.req.progress.advance(length)

    def _hash_read(self, view: memoryview) -> bytes:
        self.target.stats.bytes_read += len(view)
        self.result.blocks_read += 1
        if self.whole is not None:
            self.whole.update(view)
        return xxhash.xxh3_128_digest(view)

    def _stored(self, i: int, offset: int, length: int) -> bytes:
        """What block ``i`` of the image held (b"" if unknown)."""
        old_size = self.before.size if self.before else 0
        if offset >= old_size:
            return zero_digest(length)  # past the old end: a hole once extended
        if self.manifest is not None:
            fits = offset + length <= old_size and min(self.target.block_size, old_size - offset) == length
            return self.manifest.digest(i) if fits else b""
        return hash_stored(self.img_fd, offset, length, self.scratch) if self.img_fd >= 0 else b""

    def _settle(self, lazy: _LazyImage) -> None:
        """The source read whole and unchanged in size: give the image its
        checksum, or, untouched, check the one it has."""
        t, size, before, result = self.target, self.req.size, self.before, self.result
        if source_size(self.req.src_fd) != size:
            raise SourceError(f"{t.label}: changed size while being read; the previous image is kept")
        if self.req.check is not None:
            self.req.check()
        xxh3 = self.whole.hexdigest() if self.whole is not None else None
        if lazy.img is None and (before is None or before.size != size):
            lazy.get()  # a new image, or only its size changed
        if lazy.img is not None:
            lazy.img.xxh3 = xxh3
            if self.per_block is not None:
                lazy.img.blocks_xxh3 = f"{t.block_size}:{self.per_block.hexdigest()}"
            result.mode = lazy.img.mode
        elif xxh3 is not None and before is not None and before.xxh3.hex() != xxh3:
            _unchanged_but_hash_differs(t, xxh3, result)


def _unchanged_but_hash_differs(target: StoredImage, xxh3: str, result: CopyResult) -> None:
    """Every block matched, yet the whole hash differs from the image's.

    Compared with the image itself, the image is right and only its
    checksum was wrong: fix it. Compared with the manifest, the image or
    its manifest may be damaged: the caller schedules a full pass.
    """
    fd = open_beneath(target.root_fd, target.image_rel, os.O_RDONLY)
    try:
        if result.compared_with_image or image_state(fd).blocks:
            # Every block matched the image itself, or the manifest that
            # the block-hash checksum vouches for: the content checksum
            # is now known.
            x = XAttrs(fd, stats=target.stats)
            x["xxh3"] = xxh3
            x.pop(BLOCKS_KEY, None)
        else:
            result.suspect = True
            log.warning(
                "%s: matches its manifest but not its user.inkind.xxh3; a full pass is scheduled",
                target.image_rel,
            )
    finally:
        os.close(fd)


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
