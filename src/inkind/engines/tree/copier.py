"""Copying one source entry that is not a directory into the store: regular
files whole or block by block, hard links, symlinks and special files.

The source is read through its directory's fd with O_NOFOLLOW; every
write goes through the store primitives (UpdateFile, UpdateImage, link,
make_symlink, make_node, rename, remove), so it is compared first, counted,
and dry in a dry run.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterable, Iterator

from inkind.engines.tree import blocks
from inkind.engines.tree.entry import READ_FLAGS, Changed, Entry, key_text, report_change
from inkind.engines.tree.metadata import Metadata, XattrsFrom
from inkind.engines.tree.nodes import NodeCopier
from inkind.engines.tree.prefetch import Prefetcher
from inkind.errors import SourceReadError, SourceWarning
from inkind.hashing import new_hasher
from inkind.segments import data_segments
from inkind.source import RunContext
from inkind.store.content import same_bytes
from inkind.store.files import UpdateFile, temp_name
from inkind.store.image import UpdateImage
from inkind.store.noatime import open_noatime
from inkind.store.paths import DIR_FLAGS, fd_path, lstat_at, open_at, open_beneath
from inkind.store.tree import link, remove, rename
from inkind.store.xattrs import XAttrs

BIG_FILE = 64 << 20
BLOCK = blocks.BLOCK  # the unit of reads, and of block digests
_ZEROS = blocks.ZEROS


def _open_source(e: Entry) -> int:
    """The source file, opened without following a link (and without
    touching its atime where the kernel lets us)."""
    try:
        return open_noatime(e.name, READ_FLAGS, dir_fd=e.src)
    except FileNotFoundError:
        raise SourceWarning(f"{key_text(e.key)}: vanished during the backup") from None
    except OSError as err:
        raise SourceWarning(f"{key_text(e.key)}: cannot read: {err.strerror}") from None


def _segments(fd: int, st: os.stat_result) -> Iterator[tuple[int, int]]:
    """Where the file may hold data. One whose blocks cover its size has no
    hole to skip, so the SEEK_DATA/SEEK_HOLE pair is saved (if it does have
    one after all, its zeros are read, and stored as a hole the same)."""
    if st.st_blocks * 512 >= st.st_size:
        return iter([(0, st.st_size)] if st.st_size else [])
    return data_segments(fd, st.st_size)


def _changed_while_read(e: Entry) -> Changed:
    return Changed(f"{key_text(e.key)}: changed while it was read; previous copy kept")


def _check_stable(fd: int, e: Entry) -> None:
    after = os.fstat(fd)
    if after.st_size != e.st.st_size or after.st_mtime_ns != e.st.st_mtime_ns:
        raise _changed_while_read(e)


class Copier(NodeCopier):
    """Brings the stored copy of one non-directory entry up to date."""

    def __init__(self, run: RunContext, meta: Metadata):
        super().__init__(run, meta)
        self.links: dict[tuple[int, int], tuple[bytes, ...]] = {}
        self.buf = memoryview(bytearray(BLOCK))  # reused for every read
        self.prefetch: Prefetcher | None = None  # a backup walk's read-ahead

    # ----- regular files ----------------------------------------------------

    def up_to_date(self, e: Entry) -> bool:
        """Whether the stored copy of a regular file is taken as up to date:
        a regular file of the same size and mtime (and, as non-root, the
        same recorded stand-in metadata). Decided once per entry: the walk's
        look-ahead asks first."""
        if e.same is None:
            e.same = self._same(e)
        return e.same

    def _same(self, e: Entry) -> bool:
        return (
            e.dst_st is not None
            and stat.S_ISREG(e.dst_st.st_mode)
            and e.dst_st.st_size == e.st.st_size
            and e.dst_st.st_mtime_ns == e.st.st_mtime_ns
            and (self.meta.as_root or self.meta.fake_matches(e.dst, e.name, e.st))
        )

    def will_read(self, e: Entry) -> bool:
        """Whether mirroring the entry reads the source file whole: a regular
        file with one link whose stored copy is not up to date."""
        return stat.S_ISREG(e.st.st_mode) and e.st.st_nlink == 1 and not self.up_to_date(e)

    def may_keep(self, e: Entry) -> bool:
        """Whether mirroring the entry may keep a regular file's stored copy
        as it is (one a scrub may check, if :meth:`regular` says so): one up
        to date, or any name of a file of several links, which the walk's
        hard-link check decides only when its turn comes."""
        return stat.S_ISREG(e.st.st_mode) and (e.st.st_nlink > 1 or self.up_to_date(e))

    def settled(self, e: Entry) -> bool:
        """Whether a regular file needs nothing at all: one link (the walk
        notes the first path of a linked inode), its stored copy up to date,
        with the source's owner, mode and mtime. The common case of a
        no-change run, decided in one call."""
        return (
            e.st.st_nlink == 1
            and stat.S_ISREG(e.st.st_mode)
            and self.up_to_date(e)
            and self.meta.already(e.dst_st, e.st)
        )

    def regular(self, e: Entry) -> bool:
        """Mirror a regular file. Returns True when the stored copy was
        taken as up to date by its size and mtime: one scrub may check."""
        if self.settled(e):
            self.stats.objects_unchanged += 1
            return True
        if e.st.st_nlink > 1 and self.hardlink(e):
            return False
        if not self.up_to_date(e):
            self.copy(e)
            return False
        self.unchanged(e)
        return True

    def hardlink(self, e: Entry) -> bool:
        """Link ``e.name`` to the stored copy of an inode seen earlier in this
        run. Returns False when this is the first path of the inode."""
        first = self.links.setdefault((e.st.st_dev, e.st.st_ino), e.key)
        if first == e.key:
            return False
        parent = b"/".join((self.run.name.encode(), *first[:-1]))
        try:
            pfd = open_beneath(self.run.root_fd, parent, DIR_FLAGS)
        except OSError:
            return False
        try:
            first_st = lstat_at(pfd, first[-1])
            if e.dst_st is not None and (e.dst_st.st_dev, e.dst_st.st_ino) == (
                first_st.st_dev,
                first_st.st_ino,
            ):
                self.stats.objects_unchanged += 1
                return True
            if e.dst_st is not None and stat.S_ISDIR(e.dst_st.st_mode):
                remove(e.dst, e.name)
            tmp = temp_name()
            link(pfd, first[-1], e.dst, tmp)
            rename(e.dst, tmp, e.name)
            self._changed(e)
            return True
        except FileNotFoundError:
            return False
        finally:
            os.close(pfd)

    def copy(self, e: Entry) -> None:
        """Bring the stored copy's content up to date (read the source, or
        take what the read-ahead read of it)."""
        ahead = self.prefetch.take(e.st) if self.prefetch is not None else None
        fd = ahead.fd if ahead is not None else _open_source(e)
        try:
            if ahead is None:  # (the read-ahead made the same check)
                fst = os.fstat(fd)
                if (fst.st_ino, fst.st_dev) != (e.st.st_ino, e.st.st_dev) or not stat.S_ISREG(fst.st_mode):
                    raise Changed(f"{key_text(e.key)}: replaced during the backup")
            change = self.clear_way(e)
            try:
                if e.st.st_size >= BIG_FILE and e.dst_st is not None and stat.S_ISREG(e.dst_st.st_mode):
                    changed = self._copy_blocks(fd, e)
                else:
                    changed = self._copy_whole(fd, e, ahead.data if ahead is not None else None)
            except OSError as err:
                if err.errno == errno.EIO:
                    raise SourceReadError(f"{key_text(e.key)}: read error: {err.strerror}") from None
                raise
        finally:
            os.close(fd)
        self.count(e, change, changed, xattrs_from=(e.src, e.name))

    def clear_way(self, e: Entry) -> str:
        """Before a file's content is stored: a stored directory in its place
        goes. Returns the change a dry run names (create or update)."""
        change = "create" if e.dst_st is None else "update"
        if e.dst_st is not None and stat.S_ISDIR(e.dst_st.st_mode):
            remove(e.dst, e.name)
            e.dst_st = None
        return change

    def count(self, e: Entry, change: str, changed: bool, xattrs_from: XattrsFrom) -> None:
        """After a file's content was stored (``changed``) or found the same:
        counted, and the unchanged one given the source's metadata."""
        if changed:
            report_change(self.run, change, e.key)
            self.stats.objects_changed += 1
        else:
            self.stats.objects_unchanged += 1
            self.meta.apply(e.dst, e.name, e.st, xattrs_from=xattrs_from, new=False)

    def _read_blocks(
        self, fd: int, st: os.stat_result, hasher, buf: memoryview
    ) -> Iterator[tuple[int, memoryview]]:
        """Yield (offset, view) of the file's content in BLOCK pieces, holes
        as zero views without reading, counting bytes read and hashing them
        into ``hasher`` (None: the consumer hashes what it stores itself)."""
        size = st.st_size
        pos = 0
        for off, length in [*_segments(fd, st), (size, 0)]:
            while pos < off:  # a hole
                n = min(BLOCK, off - pos)
                if hasher is not None:
                    hasher.update(_ZEROS[:n])
                yield pos, _ZEROS[:n]
                pos += n
            end = off + length
            while pos < end:
                want = min(BLOCK, end - pos)
                n = os.preadv(fd, [buf[:want]], pos)
                if n == 0:
                    raise Changed("file shrank while it was read")
                self.stats.bytes_read += n
                if hasher is not None:
                    hasher.update(buf[:n])
                yield pos, buf[:n]
                pos += n

    def _copy_whole(self, fd: int, e: Entry, data: bytes | None) -> bool:
        """A file stored whole, from its fd or from ``data``, its content as
        the read-ahead read it (it has no holes)."""
        if data is not None:
            if len(data) != e.st.st_size:
                raise _changed_while_read(e)
            self.stats.bytes_read += len(data)
            pieces: Iterable[memoryview] = [memoryview(data)]
        else:
            pieces = (view for _, view in self._read_blocks(fd, e.st, None, self.buf))
        return self.store_whole(e, pieces, lambda: _check_stable(fd, e), fd, block_digests=True)

    def store_whole(  # size: the entry, its content, how it is checked, and its xattrs
        self,
        e: Entry,
        pieces: Iterable[memoryview],
        check: Callable[[], None],
        xattrs_from: XattrsFrom,
        *,
        block_digests: bool,
    ) -> bool:
        """Store a file's content whole: UpdateFile compares, hashes and
        commits it atomically. ``pieces``: the content in order, a source
        hole as a view of ZEROS (``block_digests``: each piece one BLOCK,
        as _read_blocks gives them); ``check`` raises Changed when the source
        moved while it was read. Whether the stored copy changed."""
        digests = [] if block_digests and e.st.st_size >= BIG_FILE and blocks.applies(e.st) else None

        def before_commit(tfd: int) -> None:
            check()
            if digests is not None:
                XAttrs(tfd, stats=self.stats).put(blocks.XATTR, blocks.encode(f.xxh3, digests))
            self.meta.apply_fresh(tfd, e.st, xattrs_from=xattrs_from)

        with UpdateFile(
            e.name,
            dir_fd=e.dst,
            stats=self.stats,
            before_commit=before_commit,
            fsync=False,
            new=e.dst_st is None,
            mode=self.meta.fresh_mode(e.st),
            size=e.st.st_size,
        ) as f:
            for view in pieces:
                if digests is not None:
                    digests.append(blocks.digest(view))
                if view.obj is _ZEROS.obj:  # a hole of the source
                    f.write_zeros(len(view))
                else:
                    f.write(view)
        if not f.changed:  # (a commit made the check in before_commit)
            check()
        return f.changed

    def _copy_blocks(self, fd: int, e: Entry) -> bool:
        """A large file: compare block by block with the stored copy and
        write only the blocks that differ, through update_image. A block
        whose digest the stored copy records (see blocks) is not read back.

        The image update is opened at the first difference, so an unchanged
        file costs no write, and blocks stream through: memory stays flat.
        """
        old = memoryview(bytearray(BLOCK))
        hasher = new_hasher()
        rel = os.fsdecode(b"/".join((self.run.name.encode(), *e.key)))
        ofd = open_at(e.dst, e.name, READ_FLAGS)
        digests = [] if blocks.applies(e.st) else None
        with contextlib.ExitStack() as stack:
            stack.callback(os.close, ofd)
            old_st = os.fstat(ofd)
            known = blocks.stored(ofd) if digests is not None else None
            img: UpdateImage | None = None
            for off, view in self._read_blocks(fd, e.st, hasher, self.buf):
                n = len(view)
                if digests is not None:
                    digests.append(blocks.digest(view))
                    i = len(digests) - 1
                    if known is not None and i < len(known) and known[i] == digests[i]:
                        continue
                have = os.preadv(ofd, [old[:n]], off) if off < old_st.st_size else 0
                if have == n and same_bytes(old[:n], view):
                    continue
                if img is None:
                    img = stack.enter_context(
                        UpdateImage(self.run.root_fd, rel, e.st.st_size, stats=self.stats)
                    )
                blocks.write_difference(img, off, old[:n] if have == n else None, view)
            _check_stable(fd, e)
            if img is None and old_st.st_size == e.st.st_size:
                if digests is not None and known != digests and old_st.st_nlink == 1:
                    self._record_blocks(e, hasher.hexdigest(), digests)
                return False
            if img is None:
                img = stack.enter_context(UpdateImage(self.run.root_fd, rel, e.st.st_size, stats=self.stats))
            img.xxh3 = hasher.hexdigest()
        if digests is not None:
            self._record_blocks(e, img.xxh3, digests)
        self.meta.apply(e.dst, e.name, e.st, xattrs_from=fd, new=True)
        return True

    def _record_blocks(self, e: Entry, whole: str, digests: list[bytes]) -> None:
        """Record the block digests on the stored file (an image update
        leaves it an inode of its own: none in history shares it)."""
        XAttrs(fd_path(e.dst, e.name), stats=self.stats)[blocks.XATTR] = blocks.encode(whole, digests)
