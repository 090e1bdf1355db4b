"""A large stored file updated block by block: which 64 KiB pieces of a
block changed, and the block digests of the stored file
(``user.inkind.blocks``), so that a changed file is compared with its
stored copy by digest and only the blocks whose digest differs are read
back from the store.

The digests' value is the xxh3-128 of the whole content it describes (16 bytes:
it is valid only while that equals the file's ``user.inkind.xxh3``), then
one xxh3-128 per 4 MiB block. At most ``MAX_BLOCKS`` of them, so that the
value fits one ext4 xattr block: a larger file, or a sparse one (whose
reads are not block-aligned), is compared by reading its stored copy.
"""

from __future__ import annotations

import os

import xxhash

from inkind.store.content import is_zero, same_bytes
from inkind.store.image import UpdateImage
from inkind.store.xattrs import XAttrs

BLOCK = 4 << 20
GRANULE = 4 << 10  # a changed large file is rewritten in 4 KiB pieces: the store filesystems' block
ZEROS = memoryview(bytes(BLOCK))  # a source hole, as the copier yields it
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


def changed_ranges(old: memoryview, new: memoryview, granule: int = GRANULE) -> list[tuple[int, int]]:
    """The (start, end) ranges, in ``granule`` steps and merged when
    adjacent, where two equally long buffers differ. Compared 16 granules
    at a time first, so an unchanged stretch costs one comparison."""
    ranges: list[tuple[int, int]] = []
    coarse = granule * 16
    for outer in range(0, len(new), coarse):
        if same_bytes(old[outer : outer + coarse], new[outer : outer + coarse]):
            continue
        for start in range(outer, min(outer + coarse, len(new)), granule):
            end = min(start + granule, len(new))
            if not same_bytes(old[start:end], new[start:end]):
                if ranges and ranges[-1][1] == start:
                    ranges[-1] = (ranges[-1][0], end)
                else:
                    ranges.append((start, end))
    return ranges


def write_difference(img: UpdateImage, off: int, old: memoryview | None, view: memoryview) -> None:
    """Write one block that differs from its stored copy (``old``; None
    when the stored file is shorter): a source hole as zeros, else only
    the changed granules, zero ones as holes."""
    hole = view.obj is ZEROS.obj
    n = len(view)
    for start, end in [(0, n)] if old is None or hole else changed_ranges(old, view):
        part = view[start:end]
        if hole or is_zero(part):
            img.zero(off + start, end - start)
        else:
            img.write(off + start, part)
