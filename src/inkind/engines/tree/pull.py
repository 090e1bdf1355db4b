"""The walk of a tree on another host: the pages of its remote listing
(Channel.scan_pages) mirrored into ``STORE/NAME`` as the local walk
mirrors a local tree, with the same copier, metadata and store primitives.

The listing comes in pages; between them the channel is free, so files
found new or changed wait in a batch and their content is fetched with one
``read`` op (no round trip per file) when the batch is full or the walk
ends. A stored directory whose files are still waiting stays open until
they are stored, and only then gets its entries recorded and its source's
mtime, which their renames would have changed.

A remote walk starts at the root on every run (the host's walk has no
resume pointer); what an interrupted run stored is not fetched again, its
quick check finds it up to date.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field

from inkind.engines.tree.bounds import Bounds
from inkind.engines.tree.checkpoint import previous_count
from inkind.engines.tree.copier import BIG_FILE, BLOCK, Copier
from inkind.engines.tree.dirnames import finish_directory, make_directory
from inkind.engines.tree.entry import REMOTE, Changed, Entry, Key, key_text, log
from inkind.engines.tree.metadata import Metadata
from inkind.engines.tree.pullblocks import pull_blocks, within_limit
from inkind.engines.tree.scrubber import Scrubber
from inkind.engines.tree.selection import TreeSelection
from inkind.engines.tree.walker import Walker
from inkind.errors import SourceError, SourceReadError, SourceWarning
from inkind.remote.channel import PAGE, Channel
from inkind.remote.listing import RemoteEntry, RemoteStat, gitignore_rules
from inkind.remote.transfers import RemoteFile
from inkind.source import RunContext
from inkind.store.files import is_temp_name
from inkind.store.meta import set_mtime
from inkind.store.paths import DIR_FLAGS, lstat_at, open_at, open_beneath

# A batch of waiting files is fetched when it reaches any of these.
BATCH_FILES = 2000
BATCH_BYTES = 64 << 20
BATCH_DIRS = 256  # stored directories held open for their waiting files
_ZEROS = memoryview(bytes(BLOCK))


@dataclass
class Dir:
    """A stored directory of the walk: its key, fd, the source directory's
    stat and xattrs, and what its entries record needs."""

    key: Key
    fd: int
    st: RemoteStat
    xattrs: dict[str, bytes]
    new: bool
    added: bool  # whether its names may have changed in this run
    present: set[str] = field(default_factory=set)
    waiting: int = 0  # its files in the batch


@dataclass
class Waiting:
    """A file of the batch: ``kind`` is fetch, blocks (a large file updated
    block by block), link (a later path of an inode seen earlier) or repair
    (its stored copy failed scrub)."""

    kind: str
    entry: Entry
    dir: Dir


def names_as_text(xattrs: dict[bytes, bytes]) -> dict[str, bytes]:
    return {k.decode("utf-8", "surrogateescape"): v for k, v in xattrs.items()}


class PullWalker:
    """Makes ``run.data_dir`` mirror the tree at ``root`` on the channel's host."""

    def __init__(  # size: the run, the channel and root, and the parts it shares with the local walk
        self, run: RunContext, channel: Channel, root: bytes, selection: TreeSelection, walker: Walker
    ):
        self.run, self.stats, self.channel, self.root = run, run.stats, channel, root
        self.selection, self.walker = selection, walker
        self.meta: Metadata = walker.meta
        self.copier: Copier = walker.copier
        self.scrubber: Scrubber = walker.scrubber
        self.stack: list[Dir] = []
        self.closing: list[Dir] = []  # left by the walk, waiting for their files
        self.batch: list[Waiting] = []
        self.batch_bytes = 0
        self.skipping: Key | None = None  # a directory not mirrored: its listing is passed over
        self.recount = False
        self._tick = 0

    @property
    def where(self) -> str:
        return f"{self.channel.host}:{os.fsdecode(self.root)}"

    def backup(self) -> None:
        """Walk the whole tree, then store what waits and leave every directory."""
        state = self.run.state
        self.recount = state.partial or state.left_running or state.resume is not None
        state.mark_partial()  # durable before the walk's first write
        sel = self.selection
        pages = self.channel.scan_pages(
            self.root,
            page=PAGE,
            one_file_system=sel.one_file_system,
            exclude_caches=sel.exclude_caches,
            exclude=gitignore_rules(sel.patterns) if sel.patterns else (),
        )
        with self.run.progress("files", total=previous_count(state), estimated=True) as self.progress:
            try:
                for page in pages:
                    for entry in page:
                        self.take(entry)
                        if self._batch_full():
                            self.flush()
                while self.stack:
                    self._leave()
                self.flush()
            finally:
                for d in (*self.stack, *self.closing):
                    os.close(d.fd)
        state.clear_partial()
        state.set_resume(None, force=True)

    def take(self, r: RemoteEntry) -> None:
        """Mirror one entry of the listing (a file may wait for the batch)."""
        self._tick += 1
        if self._tick & 255 == 0:
            self.progress.advance(256)
        if not r.key:
            self._root(r)
            return
        if self.skipping is not None and r.key[: len(self.skipping)] == self.skipping:
            return
        self.skipping = None
        while self.stack and self.stack[-1].key != r.key[:-1]:
            self._leave()
        if not self.stack:
            raise SourceError(f"source path {self.where}: a listing out of order at {key_text(r.key)}")
        parent = self.stack[-1]
        name = os.fsdecode(r.name)
        parent.present.add(name)
        self.stats.objects_seen += 1
        try:
            self._entry(parent, name, r)
        except SourceWarning as w:
            self.run.skip(w)
            self.stats.objects_skipped += 1
            parent.added = True  # it may have gone part of the way
            self.skipping = r.key

    def _root(self, r: RemoteEntry) -> None:
        if r.stat is None or r.error is not None:
            raise SourceError(f"source path {self.where}: {r.error or 'cannot read'}")
        if not stat.S_ISDIR(r.stat.st_mode):
            raise SourceError(f"source path {self.where}: not a directory")
        xattrs = names_as_text(r.xattrs)
        self.stack.append(Dir((), os.dup(self.run.data_fd), r.stat, xattrs, True, self.recount))

    def _entry(self, parent: Dir, name: str, r: RemoteEntry) -> None:
        key = r.key
        if is_temp_name(name):
            raise SourceWarning(f"{key_text(key)}: name is reserved for inkind temp files; skipped")
        if r.stat is None:
            gone = r.errno == errno.ENOENT
            raise SourceWarning(
                f"{key_text(key)}: " + ("vanished during the backup" if gone else str(r.error))
            )
        if r.error is not None:
            raise SourceWarning(f"{key_text(key)}: {r.error}")
        try:
            dst_st = lstat_at(parent.fd, name)
        except FileNotFoundError:
            dst_st = None
            parent.added = True
        e = Entry(
            REMOTE, parent.fd, name, key, r.stat, dst_st, xattrs=names_as_text(r.xattrs), target=r.target
        )
        mode = r.stat.st_mode
        if stat.S_ISDIR(mode):
            self._directory(e, r.other_fs)
        elif stat.S_ISREG(mode):
            self._regular(e, parent)
        elif stat.S_ISLNK(mode):
            self.copier.symlink(e)
        else:
            self.copier.special(e)

    def _directory(self, e: Entry, other_fs: bool) -> None:
        new = make_directory(self.run, e)
        if other_fs:  # stored empty, as the local walk stores it
            self.meta.apply(e.dst, e.name, e.st, xattrs_from=e.xattrs, new=new)
            return
        fd = open_at(e.dst, e.name, DIR_FLAGS)
        self.stack.append(Dir(e.key, fd, e.st, e.xattrs or {}, new, self.recount or new))

    def _regular(self, e: Entry, parent: Dir) -> None:
        if e.st.st_nlink > 1:
            ident = (e.st.st_dev, e.st.st_ino)
            if ident in self.copier.links:
                self._wait("link", e, parent)
                return
            self.copier.links[ident] = e.key
        if not self.copier.up_to_date(e):
            self._wait("blocks" if self._by_blocks(e) else "fetch", e, parent)
            return
        self.copier.unchanged(e)
        if self.run.should_scrub():
            found = len(self.scrubber.corrupt)
            self.scrubber.file(None, e.dst, e.name, e.key)
            if len(self.scrubber.corrupt) > found:
                self._wait("repair", e, parent)

    @staticmethod
    def _by_blocks(e: Entry) -> bool:
        """Whether a changed file is updated block by block (see pullblocks):
        a large one with a stored copy, and one link (the update gives the
        stored copy an inode of its own), within pullblocks' limit."""
        d = e.dst_st
        return (
            e.st.st_size >= BIG_FILE
            and within_limit(e.st.st_size)
            and e.st.st_nlink == 1
            and d is not None
            and stat.S_ISREG(d.st_mode)
        )

    def _wait(self, kind: str, e: Entry, parent: Dir) -> None:
        self.batch.append(Waiting(kind, e, parent))
        parent.waiting += 1
        if kind in ("fetch", "repair"):
            self.batch_bytes += e.st.st_size

    def _batch_full(self) -> bool:
        return (
            len(self.batch) >= BATCH_FILES
            or self.batch_bytes >= BATCH_BYTES
            or len(self.closing) >= BATCH_DIRS
        )

    def _leave(self) -> None:
        """The walk is done with the innermost directory: it is closed now,
        or once its waiting files are stored."""
        d = self.stack.pop()
        if d.waiting:
            self.closing.append(d)
        else:
            self._close(d)

    def _close(self, d: Dir) -> None:
        try:
            finish_directory(self.run, d.fd, d.key, d.present, Bounds(), d.added)
            self.meta.apply(d.fd, None, d.st, xattrs_from=d.xattrs, new=d.new)
        finally:
            os.close(d.fd)

    def flush(self) -> None:
        """Fetch and store the batch (one read op), then close the
        directories that waited for it."""
        batch, self.batch, self.batch_bytes = self.batch, [], 0
        again = self._store_batch(batch)
        if again:  # later paths of an inode whose first path did not get stored
            self._store_batch(again)
        for d in self.stack:
            d.waiting = 0
        while self.closing:  # (what is left on an error, backup closes)
            self._close(self.closing.pop(0))

    def _store_batch(self, batch: list[Waiting]) -> list[Waiting]:
        """Store the batch in order: whole files from one read op, later
        paths of an inode as links; then the large files by blocks (their
        ops follow the read). Returns the links whose first path was not
        stored, to fetch."""
        fetched = [w for w in batch if w.kind in ("fetch", "repair")]
        files = self.channel.read_files([self.path(w.entry.key) for w in fetched]) if fetched else iter(())
        again = []
        for w in batch:
            with self._skipping_warnings(w):
                if w.kind == "link":
                    if not self.copier.hardlink(w.entry):
                        again.append(Waiting("fetch", w.entry, w.dir))
                elif w.kind != "blocks":
                    self._store(w.kind, w.entry, next(files))
        for w in batch:
            if w.kind == "blocks":
                with self._skipping_warnings(w):
                    self._store_blocks(w.entry)
        return again

    @contextlib.contextmanager
    def _skipping_warnings(self, w: Waiting) -> Iterator[None]:
        """A file that cannot be stored keeps its previous copy; the run goes on."""
        try:
            yield
        except SourceWarning as warning:
            self.run.skip(warning)
            self.stats.objects_skipped += 1
            w.dir.added = True

    def _store_blocks(self, e: Entry) -> None:
        changed = pull_blocks(self.channel, self.run, e, self.path(e.key))
        if changed:
            self.meta.apply(e.dst, e.name, e.st, xattrs_from=e.xattrs, new=True)
        self.copier.count(e, "update", changed, e.xattrs)

    def path(self, key: Key) -> bytes:
        return b"/".join((self.root.rstrip(b"/") or b"", *key)) or b"/"

    def _store(self, kind: str, e: Entry, rf: RemoteFile) -> None:
        """Store one fetched file through the copier (atomic, compare-first)."""
        if rf.before is None:
            gone = rf.errno == errno.ENOENT
            raise SourceWarning(
                f"{key_text(e.key)}: "
                + ("vanished during the backup" if gone else f"cannot read: {rf.error}")
            )
        b = rf.before
        if (b.st_ino, b.st_dev) != (e.st.st_ino, e.st.st_dev) or not stat.S_ISREG(b.st_mode):
            raise Changed(f"{key_text(e.key)}: replaced during the backup")
        change = self.copier.clear_way(e)
        changed = self.copier.store_whole(
            e, self._pieces(rf), lambda: _check_read(rf, e), e.xattrs, block_digests=False
        )
        self.copier.count(e, change, changed, e.xattrs)
        if kind == "repair":
            self.stats.objects_repaired += 1

    def repair(self, keys: list[Key]) -> None:
        """Fetch again the stored files a scrub found corrupt, each as a
        backup stores it; their directories get their mtimes back."""
        for key in keys:
            try:
                self._repair(key)
            except SourceWarning as w:
                self.run.skip(w)

    def _repair(self, key: Key) -> None:
        path = self.path(key)
        r = next(iter(self.channel.scan(path)))  # a file's listing: itself alone
        if r.stat is None or r.error is not None or not stat.S_ISREG(r.stat.st_mode):
            raise SourceWarning(
                f"{key_text(key)}: not a readable file on the host now; left to the next backup"
            )
        parent = b"/".join((self.run.name.encode(), *key[:-1]))
        pfd = open_beneath(self.run.root_fd, parent, DIR_FLAGS)
        try:
            name = os.fsdecode(key[-1])
            dst_st = lstat_at(pfd, name)
            if (dst_st.st_size, dst_st.st_mtime_ns) != (r.stat.st_size, r.stat.st_mtime_ns):
                return  # a pending change, not a scrub finding: the next backup copies it
            mtime = os.fstat(pfd).st_mtime_ns
            e = Entry(REMOTE, pfd, name, key, r.stat, dst_st, xattrs=names_as_text(r.xattrs))
            self._store("repair", e, next(self.channel.read_files([path])))
            log.error(
                "%s: corruption: %s/%s: fetched again from the host",
                self.run.name,
                self.run.name,
                key_text(key),
            )
            set_mtime(pfd, mtime, stats=self.stats)  # the rename touched the stored directory
        finally:
            os.close(pfd)

    def _pieces(self, rf: RemoteFile) -> Iterator[memoryview]:
        """The file's content in order, what was not sent (holes) as ZEROS."""
        pos = 0
        for off, data in rf.chunks():
            yield from _zeros(off - pos)
            self.stats.bytes_read += len(data)
            yield data
            pos = off + len(data)
        yield from _zeros(rf.size - pos)


def _zeros(n: int) -> Iterator[memoryview]:
    while n > 0:
        piece = _ZEROS[: min(n, BLOCK)]
        yield piece
        n -= len(piece)


def _check_read(rf: RemoteFile, e: Entry) -> None:
    """Raise when the read failed or the file moved while it was read."""
    if rf.error is not None:
        kind = SourceReadError if rf.errno == errno.EIO else SourceWarning
        raise kind(f"{key_text(e.key)}: read error: {rf.error}")
    a = rf.after
    if a is None or rf.changed or (a.st_size, a.st_mtime_ns) != (e.st.st_size, e.st.st_mtime_ns):
        raise Changed(f"{key_text(e.key)}: changed while it was read; previous copy kept")
