"""Block hashes (xxh3-128): of zeros, of stored blocks, holes included."""

from __future__ import annotations

import xxhash

from inkind.hashing import hash_range, update_zeros
from inkind.store.sparse import data_segments

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
