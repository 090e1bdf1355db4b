"""An image file or block device on another host, kept as a stored image
with only its changed blocks crossing the network; and ``pull_copy``, a
file on the host rebuilt locally from the blocks of its stored previous
version that still match and the fetched blocks that do not.

The remote side has the standard library only, so it hashes blocks with
SHA-256 or BLAKE2b (whichever its CPU makes faster, cut to 16 bytes) and not
xxh3: beside the image's xxh3 manifest the store keeps the digests of the
blocks the image was last made from (``.inkind/manifests/<image>.remote``,
docs/format.md), and names their hash and the image version they describe.
A run sends those digests with its request for every block's digest (17
bytes a block); the host sends each block whose digest differs in the same
stream, into a sparse scratch file at its offset (a block it should have
sent and did not is fetched after), and that file goes to the block-copy
engine with the changed byte ranges, so the image is updated as by a
thin-pool delta: atomically, compare-first, counted.

When the digests cannot be trusted (the first run, a full pass, a resized
source, an image or manifest changed since they were recorded) every block
with data is fetched and the engine compares it with the stored image
itself, as a local full pass does.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

from inkind.engines.blockcopy.copy import CopyResult
from inkind.engines.blockcopy.engine import BlockCopy
from inkind.engines.blockcopy.manifest import ImageState, image_state
from inkind.engines.blockcopy.ranges import block_spans, blocks_of
from inkind.engines.image.partial import (
    NO_DATA,
    HeldBlocks,
    clear_zeroed,
    drop_partial,
    open_partial,
)
from inkind.errors import SourceError
from inkind.remote.channel import MAX_SPANS, Channel
from inkind.remote.listing import RemoteStat
from inkind.remote.transfers import Ranges
from inkind.remote.wire import BLOCK_DATA, BLOCK_HASHES, DIGEST, block_digest
from inkind.source import RunContext
from inkind.stats import Stats
from inkind.store.files import UpdateFile
from inkind.store.paths import open_beneath
from inkind.ui import Progress, null_progress

FORMAT = "inkind-remote-blocks-1"
# The digests are held in memory (16 bytes a block): a host's claim of a
# larger image is refused before any is read, so a hostile host cannot
# exhaust the server's memory with it (16 TiB at 4 MiB blocks).
MAX_BLOCKS = 1 << 22
SCRATCH_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


@dataclass
class RemoteDigests:
    """The digest of each block an image was last made from, the block
    hash they are made with, and the image version (size, mtime, xxh3) they
    belong to."""

    block_size: int
    size: int
    image: ImageState
    digests: bytes  # DIGEST bytes a block, NO_DATA for holes and zeros
    # The host's file as it was when its blocks were hashed (size, mtime,
    # ctime, inode, device): the quick check; None for a block device.
    source: list[int] | None = None
    hash: str = "blake2b-128"  # one of wire.BLOCK_HASHES

    @classmethod
    def load(cls, root_fd: int, rel: str) -> RemoteDigests | None:
        """The digests recorded at ``rel``, or None if missing or malformed."""
        try:
            fd = open_beneath(root_fd, rel, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            with os.fdopen(os.dup(fd), "rb") as f:
                head = json.loads(f.readline(4096))
                digests = f.read()
            image = ImageState(**head["image"], xxh3=bytes.fromhex(head["xxh3"]))
            found = cls(head["block_size"], head["size"], image, digests, head.get("source"), head["hash"])
        except (ValueError, KeyError, TypeError):
            return None
        finally:
            os.close(fd)
        if (
            head.get("format") != FORMAT
            or found.hash not in BLOCK_HASHES
            or len(digests) != DIGEST * -(-found.size // found.block_size)
        ):
            return None
        return found

    def save(self, root_fd: int, rel: str, stats: Stats) -> None:
        """Write them (compare-first: the same digests write nothing)."""
        img = self.image
        head = {
            "format": FORMAT,
            "hash": self.hash,
            "block_size": self.block_size,
            "size": self.size,
            "image": {"size": img.size, "mtime_ns": img.mtime_ns, "blocks": img.blocks},
            "xxh3": img.xxh3.hex(),
            "source": self.source,
        }
        with UpdateFile(rel, dir_fd=root_fd, stats=stats) as out:
            out.write(json.dumps(head, sort_keys=True).encode() + b"\n")
            out.write(self.digests)

    def trusted_for(self, engine: BlockCopy, size: int, before: ImageState | None) -> bool:
        """Whether these digests describe the stored image as it is now,
        whose manifest is fresh too (so the engine takes the ranges)."""
        if before is None or not self.image.same_version(before):
            return False
        if (self.block_size, self.size) != (engine.block_size, size):
            return False
        manifest = engine.fresh_manifest(before)
        if manifest is None:
            return False
        manifest.close()
        return True


def pull_image(  # size: the channel, the path there, the engine, the run, its progress, the copy's options
    channel: Channel,
    path: bytes,
    engine: BlockCopy,
    run: RunContext,
    progress: Progress = null_progress,
    *,
    changed: Ranges | None = None,
    check: Callable[[], None] | None = None,
    quick_check: bool = True,
) -> CopyResult:
    """Bring ``engine``'s image up to date with ``path`` on the channel's
    host, fetching only the blocks whose digest changed. ``changed``: byte
    ranges known to hold every change since the image was last made (a
    thin-pool delta): while the digests are trusted only the blocks they
    touch are hashed there. ``check`` as :meth:`BlockCopy.copy`'s (raising
    there discards the update). ``quick_check``: a file whose stat is as
    recorded is not hashed (off for a path that names a new snapshot
    every run)."""
    bs = engine.block_size
    before = _stored_state(engine)
    previous = None if run.full else RemoteDigests.load(engine.root_fd, engine.digests_rel)
    if quick_check and previous is not None and _unchanged_on_host(channel, path, previous, engine, before):
        return CopyResult(blocks=blocks_of(previous.size, bs), old_size=previous.size, size=previous.size)
    trusted = previous is not None and previous.trusted_for(engine, previous.size, before)
    # Digests that can be compared keep their hash; new ones take the host's.
    name = previous.hash if trusted else channel.block_hash
    spans = _spans(changed, previous) if trusted and changed is not None else None
    first = before is None and not run.dry_run  # fetched into the partial file, kept if cut short
    with run.scratch_dir() as scratch:
        if first:
            fd, held = open_partial(engine, name)
            adopt = run.store_path / engine.partial_rel
        else:
            fd, held, adopt = os.open(scratch / "image", SCRATCH_FLAGS, 0o600), None, scratch / "image"
        try:
            size, digests, hashed, got = _remote_digests(
                channel, path, bs, name, spans, previous if trusted else held, fd
            )
            if spans is not None and size != previous.size:  # resized meanwhile: hash all of it
                spans = None
                size, digests, hashed, got = _remote_digests(channel, path, bs, name)
            trusted = trusted and previous.trusted_for(engine, size, before)
            differs, wanted = _differing(digests, previous if trusted else held, spans, got)
            if held is not None:
                clear_zeroed(fd, held, digests, bs)
            os.ftruncate(fd, size)
            if wanted:
                _fetch(channel, path, wanted, bs, fd, size, digests, name)
            ranges = [(i * bs, min(bs, size - i * bs)) for i in differs] if trusted else None
            result = engine.copy(
                fd,
                size,
                full=run.full,
                ranges=ranges,
                skip_holes=True,
                check=check,
                progress=progress,
                adopt=adopt,  # a first copy is the file fetched into, not a copy of it
            )
        finally:
            os.close(fd)
    if first:
        drop_partial(engine)
    after = _stored_state(engine)
    if after is not None:
        source = quick_key(hashed) if quick_check and stat.S_ISREG(hashed.st_mode) else None
        RemoteDigests(bs, size, after, bytes(digests), source, name).save(
            engine.root_fd, engine.digests_rel, run.stats
        )
    return result


def differing_on_host(
    channel: Channel, path: bytes, engine: BlockCopy, ranges: Ranges
) -> list[tuple[int, int]]:
    """:meth:`BlockCopy.differing` for a source on another host, hashing
    there and reading nothing here: of the byte ``ranges`` (a sample, to
    test what a change record says), the blocks whose digest on the host
    differs from the stored image's, each once as its whole byte range (a
    digest tells the block, not the part of it). Each range counts as one
    scrubbed object; none differ when the digests are not the image's own."""
    bs = engine.block_size
    previous = RemoteDigests.load(engine.root_fd, engine.digests_rel)
    if previous is None or not previous.trusted_for(engine, previous.size, _stored_state(engine)):
        return []
    wanted = list(ranges)
    runs = _runs(wanted, previous)
    engine.stats.objects_scrubbed += len(wanted)
    found = []
    for at in range(0, len(runs), MAX_SPANS):  # a large sample: in as many requests as it takes
        spans = runs[at : at + MAX_SPANS]
        size, digests, _, _ = _remote_digests(channel, path, bs, previous.hash, spans, previous)
        found += [
            (i * bs, min(bs, previous.size - i * bs))
            for first, n in spans
            for i in range(first, first + n)
            if size != previous.size or _digest(digests, i) != _digest(previous.digests, i)
        ]
    return found


def pull_copy(channel: Channel, path: bytes, base_fd: int, fd: int, block_size: int) -> int:
    """Make the empty file ``fd`` equal to the file ``path`` on the
    channel's host, taking every block whose BLAKE2b matches the same block
    of the local file ``base_fd`` (-1: none) from there and fetching only
    the others; return its size. For a file copied on the host (a SQLite
    backup) whose previous version is in the store: no digests need be
    recorded, the base is hashed where it lies."""
    name = channel.block_hash
    digest_of = block_digest(name)
    size, digests, _, _ = _remote_digests(channel, path, block_size, name)
    os.ftruncate(fd, size)
    wanted = []
    for i in range(len(digests) // DIGEST):
        digest = _digest(digests, i)
        if digest == NO_DATA:
            continue  # zeros: left a hole
        data = (
            os.pread(base_fd, min(block_size, size - i * block_size), i * block_size) if base_fd >= 0 else b""
        )
        if data and digest_of(data) == digest:
            os.pwrite(fd, data, i * block_size)
        else:
            wanted.append(i)
    _fetch(channel, path, wanted, block_size, fd, size, digests, name)
    return size


def _unchanged_on_host(  # size: what the quick check compares
    channel: Channel, path: bytes, previous: RemoteDigests, engine: BlockCopy, before: ImageState | None
) -> bool:
    """The quick check, as rsync's: the host's image file has the size,
    mtime, ctime and inode it had when the blocks of the stored image were
    hashed, and the image is still that version (a full pass hashes all)."""
    if previous.source is None or not previous.trusted_for(engine, previous.size, before):
        return False
    return quick_key(channel.stat(path)) == previous.source


def quick_key(st: RemoteStat) -> list[int]:
    """What the quick check of a host's image file compares."""
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _runs(ranges: Ranges, previous: RemoteDigests) -> list[tuple[int, int]]:
    """The (first, count) block runs that byte ``ranges`` touch, within the
    recorded size."""
    blocks = blocks_of(previous.size, previous.block_size)
    return [(a, b - a) for a, b in block_spans(ranges, previous.block_size, blocks)]


def _spans(ranges: Ranges, previous: RemoteDigests) -> list[tuple[int, int]] | None:
    """:func:`_runs`, or None when there are more than one request may ask
    for (a delta that fragmented: the whole is hashed then)."""
    runs = _runs(ranges, previous)
    return runs if len(runs) <= MAX_SPANS else None


def _remote_digests(  # size: the channel, the path there, the blocks asked, how they are hashed, and where
    channel: Channel,
    path: bytes,
    bs: int,
    name: str,
    spans: list[tuple[int, int]] | None = None,
    previous: RemoteDigests | HeldBlocks | None = None,
    into: int = -1,
) -> tuple[int, bytearray, RemoteStat, set[int]]:
    """The size of ``path`` on the host, its blocks' digests with the block
    hash ``name`` (NO_DATA for holes and zeros), refused before they are
    read past MAX_BLOCKS, its stat before they were hashed, and the blocks
    that came with their data. ``previous``: trusted digests, or those of
    the blocks ``into`` holds already (a partial first copy); the host gets
    them, and a block whose digest differs comes with its data, written
    into the file ``into`` at its offset (no second request for it). With
    ``spans``, only those blocks are hashed; the others keep ``previous``'s
    digests (a size that changed keeps none: the caller hashes all)."""
    known = (previous.digests if previous is not None and into >= 0 else None) or None  # none: b"" too
    hashes = channel.hashes(path, bs, spans, name, known=known)
    size = hashes.size
    if blocks_of(size, bs) > MAX_BLOCKS:
        raise SourceError(
            f"host {channel.host}: {os.fsdecode(path)}: {size} bytes is {blocks_of(size, bs)} blocks of "
            f"{bs}, over the {MAX_BLOCKS} a remote image may have (a larger block_size allows more); "
            "the stored copy is kept"
        )
    resized = spans is not None and size != previous.size
    digests = bytearray() if spans is None or resized else bytearray(previous.digests)
    got: set[int] = set()
    for r in hashes:
        if resized:
            continue  # (the stream is the channel's: finish it)
        if r.data is not None:
            os.pwrite(into, r.data, r.index * bs)
            got.add(r.index)
        record = r.digest if r.kind == BLOCK_DATA else NO_DATA
        if spans is None:
            digests += record
        else:
            digests[r.index * DIGEST : (r.index + 1) * DIGEST] = record
    if hashes.after is not None and hashes.after.st_size != size:
        raise _resized(channel, path)
    return size, digests, hashes.before, got


def _differing(
    digests: bytearray,
    previous: RemoteDigests | HeldBlocks | None,
    spans: list[tuple[int, int]] | None,
    got: set[int],
) -> tuple[list[int], list[int]]:
    """The blocks whose digest is not ``previous``'s (all, with none to
    compare with; of ``spans`` alone, when given), and of those the ones
    with data still to fetch (not in ``got``)."""
    count = len(digests) // DIGEST
    asked = (i for first, n in spans for i in range(first, first + n)) if spans is not None else range(count)
    if previous is not None:
        differs = [i for i in asked if _digest(digests, i) != _digest(previous.digests, i)]
    else:
        differs = list(range(count))
    return differs, [i for i in differs if _digest(digests, i) != NO_DATA and i not in got]


def _resized(channel: Channel, path: bytes) -> SourceError:
    return SourceError(
        f"host {channel.host}: {os.fsdecode(path)}: changed size while it was read; the stored copy is kept"
    )


def _fetch(  # size: the channel, what to fetch from where into what, and its block hash
    channel: Channel,
    path: bytes,
    wanted: list[int],
    bs: int,
    fd: int,
    size: int,
    digests: bytearray,
    name: str,
) -> None:
    """Write the ``wanted`` blocks of ``path`` into ``fd`` at their offsets,
    recording the digest each came with (made with the block hash
    ``name``); the file must keep its size."""
    blocks = channel.blocks(path, wanted, bs, hash=name)
    for block in blocks:
        os.pwrite(fd, block.data, block.index * bs)
        digests[block.index * DIGEST : (block.index + 1) * DIGEST] = block.digest
    if blocks.after is not None and blocks.after.st_size != size:
        raise _resized(channel, path)


def _digest(digests: bytes | bytearray, index: int) -> bytes:
    return bytes(digests[index * DIGEST : (index + 1) * DIGEST])


def _stored_state(engine: BlockCopy) -> ImageState | None:
    fd = engine.open_image()
    if fd < 0:
        return None
    try:
        return image_state(fd)
    finally:
        os.close(fd)
