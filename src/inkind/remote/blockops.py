"""inkind's remote side, its reading ops: files (``read``), the block
hashes of a file or device (``hashes``, of every block or of the spans a
thin delta names) and listed blocks (``blocks``), holes found with
SEEK_DATA/SEEK_HOLE and never sent.

Sent with the other modules of the remote side as one source (bootstrap.py),
so standard library only and Python 3.9 syntax.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import stat
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from inkind.remote.wire import (
    BATCH,
    BLOCK_DATA,
    BLOCK_HOLE,
    BLOCK_ZERO,
    CHUNK,
    DATA,
    DIGEST,
    HASH,
    HASHES,
    MAX_BLOCK,
    MAX_KNOWN,
    OFFSET,
    OPEN_FLAGS,
    FrameError,
    Writer,
    block_digest,
    read_frame,
    stat_fields,
    to_bytes,
)

# Where a file looked at through an O_PATH descriptor is opened from
# (Linux); elsewhere a path is opened directly.
REOPEN = "/proc/self/fd" if hasattr(os, "O_PATH") and os.path.isdir("/proc/self/fd") else None


def open_source(path: bytes):
    """A regular file or block device opened to read (never through a
    symlink, never blocking on a fifo), its fstat and its size. Opening a
    character device can act on it (a watchdog starts its countdown), so
    where there is O_PATH the path's inode is looked at first and only a
    file or a block device is opened."""
    if REOPEN is None:
        fd = open_read(path, OPEN_FLAGS)
    else:
        probe = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            mode = os.fstat(probe).st_mode
            if stat.S_ISLNK(mode):
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
            readable_kind(mode)
            fd = open_read(f"{REOPEN}/{probe}", OPEN_FLAGS & ~os.O_NOFOLLOW)
        finally:
            os.close(probe)
    st = os.fstat(fd)
    try:
        readable_kind(st.st_mode)
    except OSError:
        os.close(fd)
        raise
    size = st.st_size if stat.S_ISREG(st.st_mode) else os.lseek(fd, 0, os.SEEK_END)
    return fd, st, size


def readable_kind(mode: int) -> None:
    if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
        raise OSError(errno.EINVAL, "not a regular file or block device")


def open_read(path, flags: int) -> int:
    try:
        return os.open(path, flags | getattr(os, "O_NOATIME", 0))
    except PermissionError:  # O_NOATIME needs the owner or CAP_FOWNER
        return os.open(path, flags)


def data_segments(fd: int, start: int, end: int):
    """(offset, end) of the parts of [start, end) that may hold data
    (SEEK_DATA/SEEK_HOLE; all of it where the filesystem does not say)."""
    pos = start
    while pos < end:
        try:
            begin = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:
                return
            if e.errno != errno.EINVAL:
                raise
            begin, stop = pos, end
        else:
            stop = os.lseek(fd, begin, os.SEEK_HOLE)
        if begin >= end:
            return
        yield begin, min(stop, end)
        pos = stop


def op_read(w: Writer, req: dict, session: object) -> None:
    """Files, each its fstat, the data of its ranges (holes left out) and its
    fstat after; an error for one file does not end the op."""
    compress = bool(req.get("compress", True))
    for i, (path, ranges) in enumerate(req["files"]):
        try:
            fd, st, size = open_source(to_bytes(path))
        except OSError as e:
            w.fail(e, file=i)
            continue
        try:
            w.json(file=i, stat=stat_fields(st), size=size)
            for offset, length in ranges if ranges is not None else [(0, size)]:
                for begin, stop in data_segments(fd, offset, min(offset + length, size)):
                    if not send_span(w, fd, begin, stop, compress):
                        break
            w.json(file_end=i, stat=stat_fields(os.fstat(fd)))
        except OSError as e:
            w.fail(e, file_end=i)
        finally:
            os.close(fd)
    w.json(end=True)


def send_span(w: Writer, fd: int, pos: int, stop: int, compress: bool) -> bool:
    while pos < stop:
        data = os.pread(fd, min(CHUNK, stop - pos), pos)
        if not data:
            return False  # the file shrank: the fstat after says so
        w.send(DATA, data, OFFSET.pack(pos), compress)
        pos += len(data)
    return True


def block_size(req: dict) -> int:
    bs = int(req.get("block_size", 4 << 20))
    if not 4096 <= bs <= MAX_BLOCK:
        raise ValueError(f"block_size out of range: {bs}")
    return bs


def op_hashes(w: Writer, req: dict, session) -> None:
    """One (kind, digest) per block, with the block hash ``hash`` names;
    holes and zero blocks are flagged and not hashed. ``spans`` ([first,
    count] of block indices, in order): only those blocks (a thin volume's
    changed ones), each frame a run of consecutive blocks. ``known`` (a
    byte count): the server's digests of every block, DIGEST bytes a block,
    sent in DATA frames after the request; a block with data whose digest
    is not its known one is sent too, as a DATA frame (index, digest, data)
    right before its record, so a change crosses with no second request."""
    known = read_known(session.read, int(req.get("known", 0)))
    bs = block_size(req)
    digest = block_digest(req["hash"])
    compress = bool(req.get("compress", True))
    fd, st, size = open_source(to_bytes(req["path"]))
    try:
        indices = block_indices(req.get("spans"), (size + bs - 1) // bs)
        w.json(stat=stat_fields(st), size=size, block_size=bs)
        records, first = [], 0
        hashed = contextlib.closing(hashed_blocks(fd, size, bs, indices, digest, known))
        with hashed as blocks:  # (closed before fd: its threads read fd)
            for i, record, data in blocks:
                if records and (
                    data is not None or i != first + len(records) or len(records) * HASH.size >= BATCH
                ):
                    w.send(HASHES, b"".join(records), OFFSET.pack(first))
                    records = []
                if data is not None:
                    w.send(DATA, data, OFFSET.pack(i) + record[1:], compress)
                if not records:
                    first = i
                records.append(record)
        if records:
            w.send(HASHES, b"".join(records), OFFSET.pack(first))
        w.json(end=True, stat=stat_fields(os.fstat(fd)))
    finally:
        os.close(fd)


def read_known(read, n: int):
    """The ``n`` bytes of known digests a request announced, from the DATA
    frames that follow it (None for none)."""
    if not n:
        return None
    if not 0 < n <= MAX_KNOWN or n % DIGEST:
        raise FrameError(f"known digests of {n} bytes")
    parts, got = [], 0
    while got < n:
        frame = read_frame(read)
        if frame is None or frame[0] != DATA or got + len(frame[1]) > n:
            raise FrameError("known digests cut short or overlong")
        parts.append(frame[1])
        got += len(frame[1])
    return b"".join(parts)


HASH_THREADS = 2  # the host's cores a hashes op keeps busy at most
GROUP = 1 << 20  # the bytes of blocks one thread reads and hashes at a time


def hashed_blocks(fd: int, size: int, bs: int, indices, digest, known=None):
    """(index, HASH record, data) of each block, in order: data is the
    block's content where ``known`` holds another digest for it, else None.
    Holes are found here (SEEK_DATA); the blocks with data are read and
    hashed on HASH_THREADS threads, a group of GROUP bytes each (pread and
    hashlib let go of the GIL), with a few groups in flight so memory stays
    bounded."""
    zeros = memoryview(bytes(bs))

    def hash_group(group):
        out = []
        for i in group:
            begin = i * bs
            data = os.pread(fd, min(bs, size - begin), begin)
            if data == zeros[: len(data)]:
                out.append((i, HASH.pack(BLOCK_ZERO, b""), None))
                continue
            d = digest(data)
            changed = known is not None and known[i * DIGEST : (i + 1) * DIGEST] != d
            out.append((i, HASH.pack(BLOCK_DATA, d), data if changed else None))
        return out

    per_group = max(1, GROUP // bs)
    segments = data_segments(fd, 0, size)
    seg = next(segments, None)
    pending, group = deque(), []
    with ThreadPoolExecutor(HASH_THREADS) as pool:
        for i in indices:
            begin, stop = i * bs, min(i * bs + bs, size)
            while seg is not None and seg[1] <= begin:
                seg = next(segments, None)
            if seg is None or seg[0] >= stop:
                if group:
                    pending.append(pool.submit(hash_group, group))
                    group = []
                pending.append([(i, HASH.pack(BLOCK_HOLE, b""), None)])
            else:
                group.append(i)
                if len(group) == per_group:
                    pending.append(pool.submit(hash_group, group))
                    group = []
            while len(pending) > 2 * HASH_THREADS:
                yield from _result(pending.popleft())
        if group:
            pending.append(pool.submit(hash_group, group))
        while pending:
            yield from _result(pending.popleft())


def _result(done):
    return done if isinstance(done, list) else done.result()


def block_indices(spans, count: int):
    """The block indices of ``spans`` (all ``count`` when None), checked
    first (in order, not overlapping, inside the file), then given one at
    a time: a span may name millions of blocks."""
    if spans is None:
        return range(count)
    runs, end = [], 0
    for first, n in spans:
        first, n = int(first), int(n)
        if first < end or n < 1 or first + n > count:
            raise ValueError(f"block span {first}+{n} out of order or past block {count}")
        runs.append(range(first, first + n))
        end = first + n
    return itertools.chain.from_iterable(runs)


def op_blocks(w: Writer, req: dict, session: object) -> None:
    """The listed blocks, each with its digest (the block hash ``hash``
    names) so the server can check the data against it."""
    bs = block_size(req)
    digest = block_digest(req["hash"])
    compress = bool(req.get("compress", True))
    fd, st, size = open_source(to_bytes(req["path"]))
    try:
        w.json(stat=stat_fields(st), size=size)
        for index in req["indices"]:
            data = os.pread(fd, bs, int(index) * bs)
            w.send(DATA, data, OFFSET.pack(index) + digest(data), compress)
        w.json(end=True, stat=stat_fields(os.fstat(fd)))
    finally:
        os.close(fd)
