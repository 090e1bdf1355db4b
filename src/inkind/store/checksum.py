"""The checksum xattr of a stored image: ``user.inkind.xxh3`` of its whole
content, or ``user.inkind.xxh3-blocks`` after an update by ranges that did
not read it all."""

from __future__ import annotations

from inkind.hashing import hash_fd
from inkind.store.xattrs import XAttrs

BLOCKS_KEY = "xxh3-blocks"


def set_checksum(x: XAttrs, fd: int, size: int, xxh3: str | None, blocks_xxh3: str | None) -> None:
    """The image's checksum xattr: ``xxh3`` of the whole content (computed by
    reading it when not given), or, for an image updated by ranges whose
    content was not all read, ``xxh3-blocks`` ("BLOCKSIZE:HEX", the xxh3-128
    of its blocks' xxh3-128 digests in order). Only one of them is kept."""
    if blocks_xxh3:
        x[BLOCKS_KEY] = blocks_xxh3
        x.pop("xxh3", None)
    else:
        x["xxh3"] = xxh3 or hash_fd(fd, size)[0]
        x.pop(BLOCKS_KEY, None)
