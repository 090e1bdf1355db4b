"""What the data ops of a Channel return: a file's ranges, a file's or
device's block hashes, listed blocks, a command's output. Each is iterated
once, streams as its frames arrive, and checks them: data only within what
was asked, every block against its hash, nothing past a claimed size.

Each holds the stat the host gave before (``before``) and, once iterated
to the end, after (``after``): ``changed`` says the object changed while it
was read, which the caller turns into its warning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from inkind.remote.listing import MAX_SIZE, RemoteStat, checked_stat
from inkind.remote.wire import (
    BLOCK_DATA,
    BLOCK_HOLE,
    BLOCK_ZERO,
    DATA,
    DIGEST,
    HASH,
    HASHES,
    JSON,
    MAX_BLOCK,
    OFFSET,
    FrameError,
    block_digest,
    to_text,
)

if TYPE_CHECKING:
    from inkind.remote.connection import Connection

Ranges = Sequence[tuple[int, int]]  # (offset, length)
SAME = ("st_size", "st_mtime_ns", "st_ctime_ns", "st_ino", "st_dev")


def want_int(msg: dict, key: str, hi: int = MAX_SIZE) -> int:
    value = msg.get(key)
    if type(value) is not int or not 0 <= value <= hi:
        raise FrameError(f"a bad {key!r} in a reply: {str(value)[:80]}")
    return value


def want_stat(msg: dict, key: str = "stat") -> RemoteStat:
    value = msg.get(key)
    if not isinstance(value, list):
        raise FrameError(f"a reply without its {key!r}")
    return checked_stat(value)


@dataclass
class Transfer:
    """The stats around one object's transfer."""

    path: bytes
    before: RemoteStat | None = None
    after: RemoteStat | None = None
    size: int = 0

    @property
    def changed(self) -> bool:
        """Whether size, mtime, ctime or identity moved while it was read
        (False until the transfer has ended)."""
        b, a = self.before, self.after
        return b is not None and a is not None and any(getattr(b, k) != getattr(a, k) for k in SAME)


@dataclass
class RemoteFile(Transfer):
    """One file of ``Channel.read_files``: ``chunks()`` yields (offset, data)
    for the parts that hold data (holes are not sent; what is not sent of
    the asked ranges reads as zeros). ``error``/``errno``: it could not be
    opened (before) or read (then ``after`` stays None)."""

    error: str | None = None
    errno: int = 0
    stream: Iterator[tuple[int, memoryview]] = field(default_factory=lambda: iter(()), repr=False)

    def chunks(self) -> Iterator[tuple[int, memoryview]]:
        return self.stream


def normal_ranges(ranges: Ranges | None) -> list[list[int]] | None:
    """Sorted, merged, non-empty (offset, length) ranges, as sent."""
    if ranges is None:
        return None
    out: list[list[int]] = []
    for off, n in sorted((int(o), int(n)) for o, n in ranges):
        if off < 0 or n < 0 or off + n > MAX_SIZE:
            raise ValueError(f"bad range {off}+{n}")
        if n and out and off <= out[-1][0] + out[-1][1]:
            out[-1][1] = max(out[-1][1], off + n - out[-1][0])
        elif n:
            out.append([off, n])
    return out


def file_chunks(ch: Connection, rf: RemoteFile, index: int, ranges: list[list[int]] | None):
    """The data frames of one file, checked against the asked ranges (or
    its claimed size), then its end message."""
    spans = [(o, min(o + n, rf.size)) for o, n in ranges] if ranges is not None else [(0, rf.size)]
    at, pos = 0, 0
    while True:
        kind, obj = ch.recv()
        if kind == JSON:
            if obj.get("file_end") != index:
                raise FrameError(f"a reply out of place in a read: {str(obj)[:200]}")
            if "error" in obj:
                rf.error, rf.errno = str(obj["error"]), want_int(obj, "errno", 1 << 16)
            else:
                rf.after = want_stat(obj)
            return
        if kind != DATA or len(obj) < OFFSET.size:
            raise FrameError(f"an unexpected frame of kind {kind} in a read")
        off = OFFSET.unpack_from(obj)[0]
        data = memoryview(obj)[OFFSET.size :]
        while at < len(spans) and spans[at][1] <= off:
            at += 1
        if at == len(spans) or off < max(pos, spans[at][0]) or off + len(data) > spans[at][1]:
            raise FrameError(f"data at {off}+{len(data)} outside what was asked of {to_text(rf.path[:300])}")
        pos = off + len(data)
        yield off, data


@dataclass(frozen=True, slots=True)
class BlockHash:
    """One block: BLOCK_DATA with its digest, or BLOCK_HOLE/BLOCK_ZERO
    (no digest: the remote side does not hash what it knows is zeros)."""

    index: int
    kind: int
    digest: bytes | None
    data: memoryview | None = None  # the block itself, when known digests were sent and it differs


@dataclass
class BlockHashes(Transfer):
    """``Channel.hashes``: iterate for one BlockHash per block, in order."""

    block_size: int = 0
    spans: list[list[int]] | None = None  # the (first, count) runs asked; None: every block
    hash: str = ""  # the block hash the digests are made with (wire.BLOCK_HASHES)
    with_data: bool = False  # known digests were sent: changed blocks come with their data
    stream: Iterator[BlockHash] = field(default_factory=lambda: iter(()), repr=False)

    def __iter__(self) -> Iterator[BlockHash]:
        return self.stream


def block_spans(spans: Ranges | None) -> list[list[int]] | None:
    """(first, count) runs of block indices, checked: in order, not
    overlapping, none empty; as sent."""
    if spans is None:
        return None
    out: list[list[int]] = []
    for first, n in spans:
        first, n = int(first), int(n)
        if first < (out[-1][0] + out[-1][1] if out else 0) or n < 1 or first + n > MAX_SIZE // 4096:
            raise ValueError(f"block span {first}+{n} out of order or range")
        out.append([first, n])
    return out


def _expected(bh: BlockHashes, count: int) -> Iterator[int]:
    if bh.spans is None:
        yield from range(count)
        return
    for first, n in bh.spans:
        if first + n > count:
            raise FrameError(f"block span {first}+{n} past the {count} blocks the host names")
        yield from range(first, first + n)


def hash_records(ch: Connection, bh: BlockHashes) -> Iterator[BlockHash]:
    """The records of the blocks asked, each frame a run of consecutive
    ones, in order and no other; with known digests, a changed block's data
    frame right before its record (checked against the digest it names,
    which the record must repeat)."""
    count = -(-bh.size // bh.block_size)
    expected = _expected(bh, count)
    due = next(expected, None)
    digest_of = block_digest(bh.hash) if bh.with_data else None
    data: tuple[bytes, memoryview] | None = None  # a block's digest and data, its record due next
    while True:
        kind, obj = ch.recv()
        if kind == JSON:
            ch.check(obj, bh.path)
            if due is not None or "end" not in obj or data is not None:
                raise FrameError(f"the block hashes end before block {due} of {count}")
            bh.after = want_stat(obj)
            return
        if kind == DATA and digest_of is not None and data is None:
            data = _block_data(bh, obj, due, digest_of)
            continue
        if kind != HASHES or len(obj) < OFFSET.size or (len(obj) - OFFSET.size) % HASH.size:
            raise FrameError(f"an unexpected frame of kind {kind} in the hashes")
        index = OFFSET.unpack_from(obj)[0]
        for flag, digest in HASH.iter_unpack(memoryview(obj)[OFFSET.size :]):
            if index != due:
                raise FrameError(f"block hashes out of order or past block {count}")
            if flag not in (BLOCK_DATA, BLOCK_HOLE, BLOCK_ZERO):
                raise FrameError(f"an unknown block kind {flag}")
            block = None
            if data is not None:
                if flag != BLOCK_DATA or data[0] != digest:
                    raise FrameError(f"block {index}'s data and its record name other digests")
                block, data = data[1], None
            yield BlockHash(index, flag, digest if flag == BLOCK_DATA else None, block)
            index += 1
            due = next(expected, None)


def _block_data(
    bh: BlockHashes, obj: bytes, due: int | None, digest_of: Callable[[bytes], bytes]
) -> tuple[bytes, memoryview]:
    """A changed block's data frame in the hashes: the next block due, its
    whole length, matching the digest it names."""
    if due is None or not is_block_frame(obj, due):
        raise FrameError(f"block data out of order in the hashes of {to_text(bh.path[:300])}")
    return checked_block(obj, due, bh.path, min(bh.block_size, bh.size - due * bh.block_size), digest_of)


def is_block_frame(obj: bytes, index: int) -> bool:
    """Whether a DATA payload is long enough for a block's head and names block ``index``."""
    return len(obj) >= OFFSET.size + DIGEST and OFFSET.unpack_from(obj)[0] == index


def checked_block(  # size: the frame, which block of what, how long it may be, and its check
    obj: bytes, index: int, path: bytes, length: int, digest_of: Callable[[bytes], bytes], exact: bool = True
) -> tuple[bytes, memoryview]:
    """The digest a block's data frame announces and its data, checked: of
    ``length`` bytes (at most, unless ``exact``) and matching the digest."""
    head = OFFSET.size + DIGEST
    announced, data = bytes(obj[OFFSET.size : head]), memoryview(obj)[head:]
    if len(data) > length or (exact and len(data) != length):
        wrong = "not its block's length" if exact else "over the block size"
        raise FrameError(f"block {index} of {len(data)} bytes, {wrong}")
    if digest_of(data) != announced:
        raise FrameError(f"block {index} of {to_text(path[:300])} does not match its announced hash")
    return announced, data


@dataclass(frozen=True, slots=True)
class Block:
    """One block's data, checked against the digest it came with."""

    index: int
    digest: bytes
    data: memoryview


@dataclass
class BlockStream(Transfer):
    """``Channel.blocks``: iterate for one Block per index asked, in order."""

    stream: Iterator[Block] = field(default_factory=lambda: iter(()), repr=False)

    def __iter__(self) -> Iterator[Block]:
        return self.stream


def block_frames(  # size: the channel, the stream, what was asked and how it is checked
    ch: Connection, bs: BlockStream, indices: list[int], block_size: int, digest: Callable[[bytes], bytes]
) -> Iterator[Block]:
    for index in indices:
        kind, obj = ch.recv()
        if kind == JSON:
            ch.check(obj, bs.path)
        if kind != DATA or not is_block_frame(obj, index):
            raise FrameError(f"not block {index} of {to_text(bs.path[:300])}")
        announced, data = checked_block(obj, index, bs.path, block_size, digest, exact=False)
        yield Block(index, announced, data)


@dataclass
class RemoteProcess:
    """``Channel.run``: iterate for the command's stdout, in chunks; then
    ``status`` (negative: killed by that signal) and ``stderr`` (its last
    lines)."""

    argv: list[str]
    pid: int = 0
    status: int | None = None
    stderr: str = ""
    stream: Iterator[memoryview] = field(default_factory=lambda: iter(()), repr=False)

    def __iter__(self) -> Iterator[memoryview]:
        return self.stream


def process_output(ch: Connection, rp: RemoteProcess) -> Iterator[memoryview]:
    offset = 0
    while True:
        kind, obj = ch.recv()
        if kind == JSON:
            ch.check(obj, rp.argv[0].encode())
            status = obj.get("status")
            if "end" not in obj or type(status) is not int or not -64 <= status <= 255:
                raise FrameError(f"a bad end of {rp.argv[0]}: {str(obj)[:200]}")
            rp.status, rp.stderr = status, str(obj.get("stderr", ""))[-16384:]
            return
        if kind != DATA or len(obj) < OFFSET.size or OFFSET.unpack_from(obj)[0] != offset:
            raise FrameError(f"output of {rp.argv[0]} out of order")
        data = memoryview(obj)[OFFSET.size :]
        offset += len(data)
        yield data


def check_block_size(block_size: int) -> int:
    if not 4096 <= block_size <= MAX_BLOCK:
        raise ValueError(f"block size {block_size} out of range")
    return block_size
