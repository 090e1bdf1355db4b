"""The redo journal of an image update on a filesystem without reflinks.

The changed ranges are written to ``STORE/.inkind/journal/<source>/``
under a temp name, fsynced and renamed (a journal under its final name is
always whole: a header, records, and a digest trailer), the image is marked
``user.inkind.dirty``, the ranges are applied in place, and the journal is
dropped. A run that finds a journal replays it first (:func:`replay_journals`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import struct
from typing import TYPE_CHECKING

import xxhash

from inkind.stats import Stats
from inkind.store import dryrun
from inkind.store.checksum import set_checksum
from inkind.store.files import sweep_temps, temp_name
from inkind.store.paths import DIR_FLAGS, PathLike, list_dir, open_beneath, open_store
from inkind.store.sparse import punch_hole
from inkind.store.tree import make_dirs
from inkind.store.xattrs import XAttrs

if TYPE_CHECKING:
    import zstandard

JOURNAL_DIR = ".inkind/journal"
_MAGIC = b"INKJRNL1"
_REC = struct.Struct("<cQQ")  # kind (b"D" data, b"C" compressed data, b"Z" zero), offset, length
_CLEN = struct.Struct("<I")  # the stored size of a b"C" record's data
_END = b"E"


# zstandard is loaded on first use: only the journal path (no reflinks)
# compresses, and importing it costs every run 9 ms of start-up.
@functools.cache
def _zstd() -> zstandard.ZstdCompressor:
    import zstandard

    return zstandard.ZstdCompressor(level=1)


def _unzstd(packed: bytes, length: int) -> bytes:
    import zstandard

    return zstandard.ZstdDecompressor().decompress(packed, max_output_size=length)


class JournalWriter:
    """A redo journal: a header, records, and a digest trailer.

    It is written under a temp name and renamed when complete and fsynced,
    so a journal under its final name is always whole. In a dry run nothing
    is written: ``records`` keeps what each record is, without its data.
    """

    def __init__(self, root_fd: int, relpath: str, size: int):
        self.root_fd = root_fd
        self.relpath = relpath
        self.size = size
        self.records: list[tuple[bytes, int, int, int]] = []
        self.dry = dryrun.active() is not None
        self.fd = self.dir_fd = -1
        self.tmp = b""
        if self.dry:
            return
        source = relpath.split("/", 1)[0]
        self.dir_rel = f"{JOURNAL_DIR}/{source}"
        make_dirs(root_fd, self.dir_rel)
        self.dir_fd = open_beneath(root_fd, self.dir_rel, DIR_FLAGS)
        self.final = xxhash.xxh3_64_hexdigest(relpath.encode()) + ".journal"
        self.tmp = temp_name()
        self.fd = os.open(
            self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=self.dir_fd
        )
        self.hasher = xxhash.xxh3_128()

    def _put(self, data: bytes | memoryview) -> None:
        self.hasher.update(data)
        view = memoryview(data)
        done = 0
        while done < len(view):
            done += os.write(self.fd, view[done:])

    def record(self, kind: bytes, offset: int, length: int, data: bytes | memoryview = b"") -> None:
        if self.dry:
            self.records.append((kind, offset, length, -1))
            return
        self._put(_REC.pack(kind, offset, length))
        if data:
            self._put(data)

    def record_data(self, offset: int, data: bytes | memoryview) -> int:
        """Journal changed data, zstd-compressed when that is smaller (VM
        images often are): the journal's extra write shrinks with it.
        Returns the bytes the record's data took."""
        packed = _zstd().compress(data)
        if len(packed) + _CLEN.size < len(data):
            self.record(b"C", offset, len(data), _CLEN.pack(len(packed)) + packed)
            return len(packed) + _CLEN.size
        self.record(b"D", offset, len(data), data)
        return len(data)

    def header(self, xxh3: str | None, blocks_xxh3: str | None) -> dict:
        return {"target": self.relpath, "size": self.size, "xxh3": xxh3, "blocks_xxh3": blocks_xxh3}

    def finish(self, xxh3: str | None, blocks_xxh3: str | None = None) -> str | None:
        """Make the journal whole under its final name; return its path
        below the store (None in a dry run: nothing was written)."""
        if self.dry:
            return None
        header = json.dumps(self.header(xxh3, blocks_xxh3)).encode()
        # The header goes last in the file body so records can stream first.
        self._put(_END + struct.pack("<I", len(header)) + header)
        os.write(self.fd, self.hasher.digest() + _MAGIC)
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        os.rename(self.tmp, self.final, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        self.tmp = b""
        os.fsync(self.dir_fd)
        os.close(self.dir_fd)
        return f"{self.dir_rel}/{self.final}"

    def commit(self, xxh3: str | None, blocks_xxh3: str | None, stats: Stats) -> None:
        """Make the journal whole, then apply it to the image (in a dry
        run, count what applying it would write)."""
        path = self.finish(xxh3, blocks_xxh3)
        if path is None:
            _apply(self.root_fd, self.header(xxh3, blocks_xxh3), self.records, stats)
        else:
            apply_journal(self.root_fd, path, stats)

    def abort(self) -> None:
        if self.dry:
            return
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.tmp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp, dir_fd=self.dir_fd)
            self.tmp = b""
        with contextlib.suppress(OSError):
            os.close(self.dir_fd)


class JournalError(Exception):
    """A journal under its final name failed its digest: it cannot be trusted."""


def read_journal(fd: int) -> tuple[dict, list[tuple[bytes, int, int, int]]]:
    """Check a journal's digest; return its header and records.

    Each record is (kind, offset, length, file offset of its data).
    """
    total = os.fstat(fd).st_size
    tail = 16 + len(_MAGIC)
    if total < tail or os.pread(fd, len(_MAGIC), total - len(_MAGIC)) != _MAGIC:
        raise JournalError("journal is truncated")
    body = total - tail
    hasher = xxhash.xxh3_128()
    pos = 0
    while pos < body:
        chunk = os.pread(fd, min(1 << 20, body - pos), pos)
        hasher.update(chunk)
        pos += len(chunk)
    if hasher.digest() != os.pread(fd, 16, body):
        raise JournalError("journal digest mismatch")
    records = []
    pos = 0
    while True:
        kind = os.pread(fd, 1, pos)
        if kind == _END:
            (hlen,) = struct.unpack("<I", os.pread(fd, 4, pos + 1))
            header = json.loads(os.pread(fd, hlen, pos + 5))
            return header, records
        kind, offset, length = _REC.unpack(os.pread(fd, _REC.size, pos))
        data_at = pos + _REC.size
        records.append((kind, offset, length, data_at))
        if kind == b"C":
            (stored,) = _CLEN.unpack(os.pread(fd, _CLEN.size, data_at))
            pos = data_at + _CLEN.size + stored
        else:
            pos = data_at + (length if kind == b"D" else 0)


def apply_journal(root_fd: int, journal_rel: str, stats: Stats) -> None:
    """Apply a complete journal to its image, then remove it. Idempotent."""
    jfd = open_beneath(root_fd, journal_rel, os.O_RDONLY)
    try:
        header, records = read_journal(jfd)
        _apply(root_fd, header, records, stats, jfd)
    finally:
        os.close(jfd)
    parent, _, name = journal_rel.rpartition("/")
    dfd = open_beneath(root_fd, parent, DIR_FLAGS)
    try:
        os.unlink(name, dir_fd=dfd)
    finally:
        os.close(dfd)


def _apply(
    root_fd: int, header: dict, records: list[tuple[bytes, int, int, int]], stats: Stats, jfd: int = -1
) -> None:
    """Apply journal ``records`` (their data read from ``jfd``) to the
    image. In a dry run (no ``jfd``), count what it would write: the
    image's mtime changes, its xattrs are set (to the overlay)."""
    img = open_beneath(root_fd, header["target"], os.O_RDWR)
    try:
        x = XAttrs(img, stats=stats)
        x["dirty"] = b"journal"
        dry = dryrun.active()
        if dry is not None:
            dry.touch(dryrun.ino_of(img))
            stats.bytes_written += sum(length for kind, _, length, _ in records if kind != b"Z")
        else:
            os.ftruncate(img, header["size"])
            for kind, offset, length, data_at in records:
                _apply_record(img, jfd, kind, offset, length, data_at)
                stats.bytes_written += 0 if kind == b"Z" else length
            os.fsync(img)
        set_checksum(x, img, header["size"], header["xxh3"], header.get("blocks_xxh3"))
        del x["dirty"]
        if dry is None:
            os.fsync(img)
    finally:
        os.close(img)


def _apply_record(img: int, jfd: int, kind: bytes, offset: int, length: int, data_at: int) -> None:
    if kind == b"Z":
        punch_hole(img, offset, length)
        return
    if kind == b"C":
        (stored,) = _CLEN.unpack(os.pread(jfd, _CLEN.size, data_at))
        packed = os.pread(jfd, stored, data_at + _CLEN.size)
        data = _unzstd(packed, length)
        if len(data) != length:
            raise JournalError(f"record at {offset}: {len(data)} bytes, expected {length}")
        os.pwrite(img, data, offset)
        return
    done = 0
    while done < length:
        n = min(1 << 22, length - done)
        os.pwrite(img, os.pread(jfd, n, data_at + done), offset + done)
        done += n


def pending_journals(root_fd: int, source: str) -> list[str]:
    """Store-relative paths of the complete journals waiting for ``source``."""
    rel = f"{JOURNAL_DIR}/{source}"
    try:
        dfd = open_beneath(root_fd, rel, DIR_FLAGS)
    except FileNotFoundError:
        return []
    try:
        return sorted(f"{rel}/{n}" for n in list_dir(dfd) if n.endswith(".journal"))
    finally:
        os.close(dfd)


def replay_journals(store: PathLike | int, source: str, stats: Stats | None = None) -> int:
    """Finish every update of ``source`` a killed run left journaled.

    Also removes unfinished journal temps. Returns how many were replayed.
    """
    root_fd, own = open_store(store)
    try:
        try:
            jfd = open_beneath(root_fd, f"{JOURNAL_DIR}/{source}", DIR_FLAGS)
        except FileNotFoundError:
            return 0
        try:
            sweep_temps(jfd)
        finally:
            os.close(jfd)
        journals = pending_journals(root_fd, source)
        for rel in journals:
            apply_journal(root_fd, rel, stats if stats is not None else Stats())
        return len(journals)
    finally:
        if own:
            os.close(root_fd)
