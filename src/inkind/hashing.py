"""Content hashes: xxh3-128, hex, as stored in ``user.inkind.xxh3``."""

from __future__ import annotations

import os

import xxhash

from inkind.store.sparse import data_segments

CHUNK = 1 << 20
# Holes are hashed from this one buffer, never read: xxh3 runs fastest on a
# buffer that stays in the CPU cache, and no zeros are allocated per chunk.
ZERO_CHUNK = 256 << 10
ZEROS = memoryview(bytes(ZERO_CHUNK))


def new_hasher() -> xxhash.xxh3_128:
    return xxhash.xxh3_128()


def hash_bytes(data: bytes | memoryview) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def update_zeros(h: xxhash.xxh3_128, length: int) -> None:
    """Feed ``length`` zero bytes into ``h`` (what a hole reads as)."""
    full, rest = divmod(length, ZERO_CHUNK)
    update = h.update
    for _ in range(full):
        update(ZEROS)
    if rest:
        update(ZEROS[:rest])


def hash_fd(fd: int, size: int | None = None) -> tuple[str, int]:
    """Hash a file from offset 0 to EOF with pread; return (hex, bytes read:
    its data, not its holes).

    Holes are hashed as the zeros they read as, without reading them
    (SEEK_DATA/SEEK_HOLE): a 1 TiB sparse file with a few MiB of data reads
    those MiB, and its hash costs only xxh3 over zeros. With ``size`` given,
    at most that many bytes are hashed.
    """
    h = xxhash.xxh3_128()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    eof = os.fstat(fd).st_size
    size = eof if size is None else min(size, eof)
    offset = read = 0
    segments = [*data_segments(fd, size), (size, 0)]
    for start, length in segments:
        if start > offset:
            update_zeros(h, start - offset)
            offset = start
        end = start + length
        while offset < end:
            n = os.preadv(fd, [view[: min(CHUNK, end - offset)]], offset)
            if n == 0:
                return h.hexdigest(), read  # the file shrank: hash what was there
            h.update(view[:n])
            offset += n
            read += n
    return h.hexdigest(), read
