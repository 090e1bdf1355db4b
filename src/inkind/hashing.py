"""Content hashes: xxh3-128, hex, as stored in ``user.inkind.xxh3``."""

from __future__ import annotations

import os

import xxhash

CHUNK = 1 << 20


def new_hasher() -> xxhash.xxh3_128:
    return xxhash.xxh3_128()


def hash_bytes(data: bytes | memoryview) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def hash_fd(fd: int, size: int | None = None) -> tuple[str, int]:
    """Hash a file from offset 0 to EOF with pread; return (hex, bytes read).

    Holes are read as zeros, which is what the stored content means.
    """
    h = xxhash.xxh3_128()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    offset = 0
    while size is None or offset < size:
        want = CHUNK if size is None else min(CHUNK, size - offset)
        n = os.preadv(fd, [view[:want]], offset)
        if n == 0:
            break
        h.update(view[:n])
        offset += n
    return h.hexdigest(), offset
