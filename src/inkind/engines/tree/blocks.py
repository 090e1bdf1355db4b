"""The block digests of a large stored file (``user.inkind.blocks``), so a
changed file is compared with its stored copy by digest, and only the
blocks whose digest differs are read back from the store.

The value is the xxh3-128 of the whole content it describes (16 bytes:
it is valid only while that equals the file's ``user.inkind.xxh3``), then
one xxh3-128 per 4 MiB block. At most ``MAX_BLOCKS`` of them, so that the
value fits one ext4 xattr block: a larger file, or a sparse one (whose
reads are not block-aligned), is compared by reading its stored copy.
"""

from __future__ import annotations

import os

import xxhash

from inkind.store.xattrs import XAttrs

BLOCK = 4 << 20
MAX_BLOCKS = 200
XATTR = "blocks"
_DIGEST = 16


def applies(st: os.stat_result) -> bool:
    """Whether a source file of this lstat gets block digests."""
    return st.st_size <= MAX_BLOCKS * BLOCK and st.st_blocks * 512 >= st.st_size


def digest(view: bytes | memoryview) -> bytes:
    return xxhash.xxh3_128_digest(view)


def encode(whole: str, digests: list[bytes]) -> bytes:
    """The xattr's value for content of xxh3 ``whole`` (hex)."""
    return bytes.fromhex(whole) + b"".join(digests)


def stored(fd: int) -> list[bytes] | None:
    """The digests recorded on a stored file, if they describe its content."""
    xattrs = XAttrs(fd)
    value, whole = xattrs.get(XATTR), xattrs.text("xxh3")
    if value is None or whole is None or len(value) % _DIGEST or value[:_DIGEST].hex() != whole:
        return None
    return [value[i : i + _DIGEST] for i in range(_DIGEST, len(value), _DIGEST)]
