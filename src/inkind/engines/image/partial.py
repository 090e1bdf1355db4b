"""A first copy from another host that was cut short, kept so the next run
goes on from it: the blocks fetched so far stay in
``.inkind/manifests/NAME/<image>.partial`` (on the store's filesystem, so
the finished copy is renamed into the image and not written twice).

Nothing about the file is recorded or trusted: the next first copy hashes
its blocks here (with the host's block hash) and sends those digests with
its request, so the host sends only the blocks that differ (the ones not
fetched yet, a torn or lost write after a crash, a block changed on the
host since); a block the host now has as zeros is made a hole. What the
file holds is checked block by block, as the host's own digests say it
should be, before it becomes the image.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from inkind.engines.blockcopy.engine import BlockCopy
from inkind.engines.blockcopy.ranges import blocks_of, data_block_spans
from inkind.errors import SourceError
from inkind.remote.wire import DIGEST, block_digest
from inkind.store.paths import open_beneath
from inkind.store.sparse import punch_hole
from inkind.store.tree import make_dirs

NO_DATA = bytes(DIGEST)  # a hole or a block of zeros, as the host sends it


@dataclass
class HeldBlocks:
    """The digests of the blocks a file holds already (NO_DATA for holes
    and zeros), of ``size`` bytes: what a host need not send again."""

    size: int
    digests: bytes


def open_partial(engine: BlockCopy, hash_name: str) -> tuple[int, HeldBlocks]:
    """The partial file of ``engine``'s image, made if there is none, opened
    to write, with the digests of what it holds."""
    rel = engine.partial_rel
    make_dirs(engine.root_fd, rel.rpartition("/")[0])
    fd = open_beneath(engine.root_fd, rel, os.O_RDWR | os.O_CREAT)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise SourceError(f"{rel}: not a file of its own (remove it; the first copy then starts over)")
        return fd, held_blocks(fd, st.st_size, engine.block_size, hash_name)
    except BaseException:
        os.close(fd)
        raise


def held_blocks(fd: int, size: int, bs: int, hash_name: str) -> HeldBlocks:
    """The digest of each block of ``fd``'s first ``size`` bytes, holes not read."""
    digest_of = block_digest(hash_name)
    digests = bytearray(NO_DATA * blocks_of(size, bs))
    zeros = bytes(bs)
    for first, stop in data_block_spans(fd, size, bs):
        for i in range(first, stop):
            data = os.pread(fd, min(bs, size - i * bs), i * bs)
            if data != zeros[: len(data)]:
                digests[i * DIGEST : (i + 1) * DIGEST] = digest_of(data)
    return HeldBlocks(size, bytes(digests))


def clear_zeroed(fd: int, held: HeldBlocks, digests: bytes, bs: int) -> None:
    """Make a hole of each block the file holds data in and the host now
    has as zeros (the host sends nothing for those)."""
    count = min(len(held.digests), len(digests)) // DIGEST
    for i in range(count):
        had = held.digests[i * DIGEST : (i + 1) * DIGEST]
        if had != NO_DATA and digests[i * DIGEST : (i + 1) * DIGEST] == NO_DATA:
            punch_hole(fd, i * bs, bs)


def drop_partial(engine: BlockCopy) -> None:
    """Remove the partial file, if one is left (the image is committed)."""
    engine.remove_file(engine.partial_rel)
