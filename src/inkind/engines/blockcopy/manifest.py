"""The block manifest: one xxh3-128 per block of a stored image.

``STORE/.inkind/manifests/<image relpath>.manifest`` is binary: a header
(magic, block size, image size), 16 bytes of xxh3-128 per block, and a
trailer that names the image state it describes (mtime, size and
``user.inkind.xxh3``). It is written after the image is committed, so a
run killed in between leaves a *stale* manifest, which the next run notices
and replaces by comparing the source with the stored image itself.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from types import TracebackType

from inkind.engines.blockcopy.ranges import blocks_of
from inkind.stats import Stats
from inkind.store.checksum import BLOCKS_KEY
from inkind.store.files import UpdateFile
from inkind.store.paths import open_beneath
from inkind.store.tree import make_dirs
from inkind.store.xattrs import XAttrs

MANIFEST_DIR = ".inkind/manifests"
HASH_SIZE = 16
_MAGIC = b"INKBLKM1"
_END = b"INKBLKE1"
_HEAD = struct.Struct("<8sQQ")  # magic, block size, image size
_TAIL = struct.Struct("<qQ16s8s")  # image mtime ns, image size, image xxh3, end magic
_WINDOW = 4096  # hashes per manifest read or write


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
