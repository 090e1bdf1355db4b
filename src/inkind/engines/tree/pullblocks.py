"""A large file on another host that changed, its stored copy updated
block by block: the host hashes its blocks (SHA-256 or BLAKE2b, whichever
its CPU makes faster), the server hashes the stored copy's, and only the blocks
that differ cross, written through UpdateImage (atomic, only the changed
64 KiB pieces written).

Blocks are 64 KiB, larger for a file of more than 8,192 of them (a power
of two, up to 4 MiB), so a few changed bytes cost one small block on the
wire while the hash list stays under 140 KiB a file (17 bytes a block) up
to 32 GiB.

The stored copy is read twice on the server (to hash it, and for the
old content of the changed blocks), which costs local reads, never the
network; the image update hashes the result for ``user.inkind.xxh3``.
"""

from __future__ import annotations

import os

from inkind.engines.tree import blocks
from inkind.engines.tree.entry import READ_FLAGS, Changed, Entry, key_text
from inkind.remote.channel import Channel
from inkind.remote.transfers import Transfer
from inkind.remote.wire import BLOCK_DATA, block_digest
from inkind.source import RunContext
from inkind.store.content import is_zero
from inkind.store.image import UpdateImage
from inkind.store.paths import open_at

MIN_BLOCK = 64 << 10
MAX_BLOCK = blocks.BLOCK
MAX_COUNT = 8192
MAX_BLOCKS = 1 << 22  # 16 TiB of 4 MiB blocks: the list of differing ones stays bounded


def block_size(size: int) -> int:
    """The hashed block of a file of ``size`` bytes."""
    bs = MIN_BLOCK
    while bs < MAX_BLOCK and size > bs * MAX_COUNT:
        bs *= 2
    return bs


def within_limit(size: int) -> bool:
    """Whether a file of ``size`` bytes has at most MAX_BLOCKS blocks: the
    server keeps the list of the differing ones, so a larger file streams
    whole instead."""
    return size <= MAX_BLOCKS * block_size(size)


def pull_blocks(channel: Channel, run: RunContext, e: Entry, path: bytes) -> bool:
    """Bring the stored copy of ``e`` (a regular file stored before) up to
    date with ``path`` on the host; whether its content changed."""
    ofd = open_at(e.dst, e.name, READ_FLAGS)
    try:
        old_size = os.fstat(ofd).st_size
        bs = block_size(e.st.st_size)
        differ = _differing(channel, e, path, ofd, bs)
        if not differ and old_size == e.st.st_size:
            return False
        rel = os.fsdecode(b"/".join((run.name.encode(), *e.key)))
        old = memoryview(bytearray(bs))
        with UpdateImage(run.root_fd, rel, e.st.st_size, stats=run.stats) as img:
            stream = channel.blocks(path, differ, bs)
            for block in stream:
                off, n = block.index * bs, len(block.data)
                run.stats.bytes_read += n
                have = os.preadv(ofd, [old[:n]], off) if off < old_size else 0
                blocks.write_difference(img, off, old[:n] if have == n else None, block.data)
            _check_stable(stream, e)
        return True
    finally:
        os.close(ofd)


def _differing(channel: Channel, e: Entry, path: bytes, ofd: int, bs: int) -> list[int]:
    """The indices of the blocks whose hash on the host differs from the
    stored copy's (or that the stored copy lacks)."""
    hashes = channel.hashes(path, bs)
    digest = block_digest(hashes.hash)
    b = hashes.before
    if b is None or (b.st_ino, b.st_dev) != (e.st.st_ino, e.st.st_dev):
        raise Changed(f"{key_text(e.key)}: replaced during the backup")
    if hashes.size != e.st.st_size:  # (and so no more records than the listed size has blocks)
        raise _changed_while_read(e)
    buf = memoryview(bytearray(bs))
    differ = []
    for h in hashes:
        off = h.index * bs
        n = min(bs, hashes.size - off)
        if os.preadv(ofd, [buf[:n]], off) != n:
            differ.append(h.index)
        elif h.kind == BLOCK_DATA:
            if digest(buf[:n]) != h.digest:
                differ.append(h.index)
        elif not is_zero(buf[:n]):  # a hole or zeros on the host
            differ.append(h.index)
    _check_stable(hashes, e)
    return differ


def _check_stable(t: Transfer, e: Entry) -> None:
    a = t.after
    if a is None or t.changed or (a.st_size, a.st_mtime_ns) != (e.st.st_size, e.st.st_mtime_ns):
        raise _changed_while_read(e)


def _changed_while_read(e: Entry) -> Changed:
    return Changed(f"{key_text(e.key)}: changed while it was read; previous copy kept")
