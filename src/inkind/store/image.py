"""In-place updates of large files by changed byte ranges, atomically.

Two ways to make the update atomic, chosen per file:

* **clone** (btrfs, XFS): FICLONE the image into a sibling temp, write the
  changed ranges into the clone, fsync, rename. Unchanged extents stay shared,
  so a store snapshot pays only for the changed blocks.
* **journal** (ext4 and others): write the ranges to a redo journal under
  ``STORE/.inkind/journal/<source>/``, fsync it, give it its final name, mark
  the image ``user.inkind.dirty``, apply the ranges in place, fsync, drop the
  journal. A run that finds a journal replays it first.

A new image, or one hard-linked into older history (st_nlink > 1), is built
in a temp and renamed, so history never changes under it. Zero ranges become
holes.

A dry run takes the same way (whether clones work is asked of the image
itself, see :func:`clones_in_place`) and counts the same bytes and xattrs,
but the temp is an empty stand-in outside the store, no journal is written
and nothing is applied.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import os
import stat
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

import xxhash

from inkind.hashing import hash_fd
from inkind.stats import Stats
from inkind.store import dryrun
from inkind.store.files import copy_range, temp_name
from inkind.store.paths import DIR_FLAGS, PathLike, fd_path, list_dir, lstat_at, open_at, open_beneath
from inkind.store.sparse import data_segments, punch_hole
from inkind.store.tree import make_dirs
from inkind.store.xattrs import XAttrs, xattr_items

if TYPE_CHECKING:
    import zstandard

FICLONE = 0x40049409
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


@dataclass(frozen=True)
class Extent:
    """A changed byte range: ``data`` to write, or None for zeros (a hole)."""

    offset: int
    length: int
    data: bytes | memoryview | None = None


def _open_store(store: PathLike | int) -> tuple[int, bool]:
    if isinstance(store, int):
        return store, False
    return os.open(store, DIR_FLAGS), True


def _parent_fd(root_fd: int, relpath: str) -> tuple[int, bytes]:
    parent, _, name = os.fsencode(relpath).rpartition(b"/")
    if parent:
        return open_beneath(root_fd, parent, DIR_FLAGS), name
    return os.dup(root_fd), name


def _try_clone(src_fd: int, dst_fd: int) -> bool:
    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.EPERM):
            return False
        raise
    return True


def clones_in_place(fd: int) -> bool:
    """Whether the filesystem of the image ``fd`` can clone it, asked
    without writing: FICLONE of the file onto itself, which a filesystem
    that clones refuses as an overlapping range (EINVAL) before it touches
    anything, and one that cannot refuses as unsupported."""
    try:
        rw = os.open(f"/proc/self/fd/{fd}", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.ioctl(rw, FICLONE, rw)
    except OSError as e:
        return e.errno == errno.EINVAL
    finally:
        os.close(rw)
    return True  # an empty file: nothing to clone, and nothing refused


def reflinks_work(directory: PathLike) -> bool:
    """Whether files in ``directory`` can share extents (FICLONE): btrfs,
    XFS with reflink=1. Probed with two empty temp files, removed again."""
    dfd = os.open(directory, DIR_FLAGS)
    names = [temp_name(), temp_name()]
    fds: list[int] = []
    try:
        for n in names:
            fds.append(os.open(n, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=dfd))
        return _try_clone(fds[0], fds[1])
    finally:
        for fd in fds:
            os.close(fd)
        for n in names[: len(fds)]:
            os.unlink(n, dir_fd=dfd)
        os.close(dfd)


BLOCKS_KEY = "xxh3-blocks"


def set_checksum(x: XAttrs, fd: int, size: int, xxh3: str | None, blocks_xxh3: str | None) -> None:
    """The image's checksum xattr: ``xxh3`` of the whole content (computed by
    reading it when not given), or, for an image updated by ranges whose
    content was not all read, ``xxh3-blocks`` ("BLOCKSIZE:HEX", the xxh3-128
    of its blocks' xxh3-128 digests in order). Only one of them is kept."""
    if blocks_xxh3:
        x[BLOCKS_KEY] = blocks_xxh3
        x.pop("xxh3", None)
    else:
        x["xxh3"] = xxh3 or hash_fd(fd, size)[0]
        x.pop(BLOCKS_KEY, None)


class UpdateImage:
    """Update ``relpath`` (below the store root) to ``size`` bytes by ranges.

    >>> with UpdateImage(run.store_root, "vm1/disk.img", size, stats=run.stats) as img:
    ...     img.write(offset, block)      # changed data
    ...     img.zero(offset2, length)     # became zeros: a hole
    ...     img.xxh3 = whole_content_hash # optional; else computed by reading
    ...     # or img.blocks_xxh3 = "BLOCKSIZE:HEX" when the content was not all read

    Leaving the block without an exception commits; an exception leaves the
    previous image as it was (clone/new) or untouched with no journal.
    ``mode`` tells which way was taken: "new", "clone", "copy" or "journal".
    """

    def __init__(self, store: PathLike | int, relpath: str, size: int, *, stats: Stats | None = None):
        self.relpath = os.fsdecode(relpath).strip("/")
        self.size = size
        self.stats = stats if stats is not None else Stats()
        self.xxh3: str | None = None
        self.blocks_xxh3: str | None = None
        self.mode = ""
        self._store = store
        self._root_fd = -1
        self._own_root = False
        self._pfd = -1
        self._name = b""
        self._fd = -1  # the temp being built (new/clone/copy)
        self._tmp = b""
        self._stand_in = ""  # a dry run's temp
        self._old: os.stat_result | None = None
        self._journal: _JournalWriter | None = None

    def __enter__(self) -> UpdateImage:
        self._root_fd, self._own_root = _open_store(self._store)
        self._pfd, self._name = _parent_fd(self._root_fd, self.relpath)
        try:
            old = open_at(self._pfd, self._name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            old = -1
        try:
            st = os.fstat(old) if old >= 0 else None
            if st is not None and not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EEXIST, "not a regular file in the store", self.relpath)
            self._open_target(old, st)
        finally:
            if old >= 0:
                os.close(old)
        return self

    def _open_target(self, old: int, st: os.stat_result | None) -> None:
        self._old = st
        if st is None:
            self._new_temp()
            self.mode = "new"
        else:
            self._new_temp()
            dry = self._stand_in != ""
            if clones_in_place(old) if dry else _try_clone(old, self._fd):
                self.mode = "clone"
                self._inherit(old, st)
            elif st.st_nlink > 1:
                self.mode = "copy"
                for off, length in data_segments(old, st.st_size):
                    self.stats.bytes_written += length if dry else copy_range(old, self._fd, length, off)
                self._inherit(old, st)
            else:
                self._drop_temp()
                self.mode = "journal"
                self._journal = _JournalWriter(self._root_fd, self.relpath, self.size)
                return
        os.ftruncate(self._fd, self.size)

    def _inherit(self, old: int, st: os.stat_result) -> None:
        """Give the temp the old file's owner, mode and xattrs: to everyone
        but the store's snapshots, the image was updated in place."""
        if (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
            os.fchown(self._fd, st.st_uid, st.st_gid)
        os.fchmod(self._fd, st.st_mode & 0o7777)
        target = XAttrs(self._fd, namespace="", stats=self.stats)
        for key, value in xattr_items(old):
            target[key] = value

    def _new_temp(self) -> None:
        dry = dryrun.active()
        if dry is not None:
            self._fd, self._stand_in = dry.new_file()
            return
        self._tmp = temp_name()
        self._fd = os.open(
            self._tmp,
            os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=self._pfd,
        )

    def _drop_temp(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._stand_in = ""
        if self._tmp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp, dir_fd=self._pfd)
            self._tmp = b""

    def write(self, offset: int, data: bytes | memoryview) -> None:
        """Write changed ``data`` at ``offset``."""
        if self._journal is not None:
            self.stats.bytes_journaled += self._journal.record_data(offset, data)
            return
        view = memoryview(data)
        done = len(view) if self._stand_in else 0
        while done < len(view):
            done += os.pwrite(self._fd, view[done:], offset + done)
        self.stats.bytes_written += len(data)

    def zero(self, offset: int, length: int) -> None:
        """Make ``length`` bytes at ``offset`` read as zeros, as a hole."""
        if self._journal is not None:
            self._journal.record(b"Z", offset, length)
        elif self.mode != "new":
            punch_hole(self._fd, offset, length)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self._commit()
        finally:
            if self._journal is not None:
                self._journal.abort()
            self._drop_temp()
            if self._pfd >= 0:
                os.close(self._pfd)
            if self._own_root:
                os.close(self._root_fd)

    def _commit(self) -> None:
        if self._journal is not None:
            journal, self._journal = self._journal, None
            path = journal.finish(self.xxh3, self.blocks_xxh3)
            if path is None:  # a dry run: count what applying it would write
                _apply(
                    self._root_fd, journal.header(self.xxh3, self.blocks_xxh3), journal.records, self.stats
                )
            else:
                apply_journal(self._root_fd, path, self.stats)
            return
        set_checksum(XAttrs(self._fd, stats=self.stats), self._fd, self.size, self.xxh3, self.blocks_xxh3)
        dry = dryrun.active()
        if dry is not None:
            self._dry_commit(dry)
            return
        os.fsync(self._fd)
        os.rename(self._tmp, self._name, src_dir_fd=self._pfd, dst_dir_fd=self._pfd)
        self._tmp = b""

    def _dry_commit(self, dry: dryrun.DryRun) -> None:
        """A new image is its stand-in from now on. An updated one keeps its
        name on the stored image, whose content the rest of the run reads
        (a stand-in holds no data), with the stand-in's xattrs and a new
        mtime, as the renamed clone would have."""
        if self._old is None:
            dry.put(self._pfd, self._name, self._stand_in)
            return
        old = dryrun.ino_of(self._old)
        dry.xattrs[old] = {k: None for k, _ in xattr_items(fd_path(self._pfd, self._name))}
        dry.xattrs[old].update(dry.xattr_layer(dryrun.ino_of(self._fd)))
        dry.touch(old)
        dry.touch(dryrun.ino_of(self._pfd))


def update_image(
    store: PathLike | int,
    relpath: str,
    size: int,
    extents: Iterable[Extent],
    *,
    xxh3: str | None = None,
    stats: Stats | None = None,
) -> str:
    """Apply ``extents`` to the image at ``relpath``; return the way taken."""
    with UpdateImage(store, relpath, size, stats=stats) as img:
        for ext in extents:
            if ext.data is None:
                img.zero(ext.offset, ext.length)
            else:
                img.write(ext.offset, ext.data)
        img.xxh3 = xxh3
    return img.mode


class _JournalWriter:
    """A redo journal: a header, records, and a digest trailer.

    It is written under a temp name and renamed when complete and fsynced,
    so a journal under its final name is always whole. In a dry run nothing
    is written: ``records`` keeps what each record is, without its data.
    """

    def __init__(self, root_fd: int, relpath: str, size: int):
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
    root_fd, own = _open_store(store)
    try:
        from inkind.store.files import sweep_temps

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


def unshare(dir_fd: int, name: str, *, stats: Stats | None = None) -> os.stat_result:
    """Give ``name`` (a regular file in ``dir_fd``) an inode of its own
    before its metadata is changed in place.

    A hard-link history (``snapshots = "hardlink"``) shares unchanged files'
    inodes with every snapshot; changing the owner, mode, mtime or xattrs of
    a shared inode would rewrite history. The copy shares extents where the
    filesystem allows (FICLONE), else its bytes are copied and counted.
    Returns the new file's stat.
    """
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        size = os.fstat(fd).st_size
        x = XAttrs(fd)
        recorded, blocks = x.text("xxh3"), x.text(BLOCKS_KEY)
    finally:
        os.close(fd)
    with UpdateImage(dir_fd, name, size, stats=stats) as img:
        img.xxh3 = recorded
        img.blocks_xxh3 = None if recorded else blocks
    return lstat_at(dir_fd, name)
