"""Content hashes: xxh3-128, hex, as stored in ``user.inkind.xxh3``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import chain

import xxhash

from inkind.segments import data_segments

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


def hash_range(
    hashers: Sequence[xxhash.xxh3_128], fd: int, start: int, end: int, buf: memoryview
) -> tuple[int, int]:
    """Feed bytes ``start`` to ``end`` of ``fd`` into each of ``hashers``:
    data as read (through ``buf``), holes and what lies past EOF as the zeros
    they read as, without reading them (SEEK_DATA/SEEK_HOLE). A read that
    finds the file shorter than a moment ago (it shrank) stops there.
    Returns (where it stopped, bytes read)."""
    pos, read = start, 0
    for seg_start, length in chain(data_segments(fd, end, start), [(end, 0)]):
        for h in hashers:
            update_zeros(h, seg_start - pos)
        pos = seg_start
        seg_end = seg_start + length
        while pos < seg_end:
            n = os.preadv(fd, [buf[: min(len(buf), seg_end - pos)]], pos)
            if n == 0:
                return pos, read
            for h in hashers:
                h.update(buf[:n])
            pos += n
            read += n
    return pos, read


def hash_fd(fd: int, size: int | None = None) -> tuple[str, int]:
    """Hash a file from offset 0 to EOF; return (hex, bytes read: its data,
    not its holes).

    Holes are hashed as the zeros they read as, without reading them: a
    1 TiB sparse file with a few MiB of data reads those MiB, and its hash
    costs only xxh3 over zeros. With ``size`` given, at most that many bytes
    are hashed; a file that shrinks meanwhile is hashed as far as it went.
    """
    h = xxhash.xxh3_128()
    eof = os.fstat(fd).st_size
    size = eof if size is None else min(size, eof)
    # (a small file's buffer is its size: no MiB zeroed for each of them)
    _, read = hash_range((h,), fd, 0, size, memoryview(bytearray(min(CHUNK, max(size, 1)))))
    return h.hexdigest(), read
