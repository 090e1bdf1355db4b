"""Mirroring one directory tree into ``STORE/NAME``, entry by entry.

Both trees are worked on through directory file descriptors opened with
O_NOFOLLOW, so neither a symlink in the source nor one planted in the store
can lead a write outside ``STORE/NAME`` or a read outside the source root.
Names are handled as ``str`` with surrogate escapes, which round-trip every
byte string the kernel allows.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass

import xattr

from inkind import (
    CorruptionError,
    RunContext,
    SourceError,
    SourceReadError,
    SourceWarning,
    UpdateFile,
    UpdateImage,
    XAttrs,
)
from inkind.hashing import hash_fd, new_hasher
from inkind.state import SourceState
from inkind.store import is_temp_name, set_mode, set_mtime, set_owner, sync_store
from inkind.store.entries import has_entries, record_entries
from inkind.store.files import is_zero, same_bytes, temp_name
from inkind.store.image import unshare
from inkind.store.paths import DIR_FLAGS, fd_path, list_dir, lstat_at, open_at, open_beneath
from inkind.store.sparse import data_segments
from inkind.store.tree import link, make_dir, make_node, make_symlink, remove, rename
from inkind.store.xattrs import xattr_items
from inkind_files import fakesuper

BIG_FILE = 64 << 20
BLOCK = 4 << 20
GRANULE = 64 << 10  # a changed large file is rewritten in 64 KiB pieces
CHUNK = 1 << 20
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"
_NOATIME = getattr(os, "O_NOATIME", 0)
_ZEROS = memoryview(bytes(BLOCK))

Key = tuple[bytes, ...]
log = logging.getLogger("inkind")

# What Mirror.entry says about one source entry.
LEFT_OUT = 0  # not part of the backup (excluded, a cache directory)
KEPT = 1  # part of the backup, and its name was in the store already
ADDED = 2  # part of the backup, and its name was not in the store before


def changed_ranges(old: memoryview, new: memoryview, granule: int = GRANULE) -> list[tuple[int, int]]:
    """The (start, end) ranges, in ``granule`` steps and merged when
    adjacent, where two equally long buffers differ."""
    ranges: list[tuple[int, int]] = []
    for start in range(0, len(new), granule):
        end = min(start + granule, len(new))
        if not same_bytes(old[start:end], new[start:end]):
            if ranges and ranges[-1][1] == start:
                ranges[-1] = (ranges[-1][0], end)
            else:
                ranges.append((start, end))
    return ranges


@dataclass
class Entry:
    """One entry being mirrored: its directories on both sides, its name,
    its place in the walk, and what lstat said on each side."""

    src: int  # the source directory's fd
    dst: int  # the store directory's fd
    name: str
    key: Key
    st: os.stat_result
    dst_st: os.stat_result | None


class Changed(SourceWarning):
    """The source file changed while it was read; its old copy is kept."""


def key_text(key: Key) -> str:
    return os.fsdecode(b"/".join(key))


def text_key(text: str) -> Key:
    return tuple(p for p in os.fsencode(text).split(b"/") if p)


def previous_count(state: SourceState) -> int | None:
    """The entries the last backup walked, if it walked the whole tree: the
    progress bar's estimate of this walk (None: no estimate)."""
    last = state.data.get("last_backup")
    if not isinstance(last, dict) or last.get("outcome") not in ("ok", "warnings"):
        return None
    return (last.get("stats") or {}).get("objects_seen") or None


@dataclass
class Bounds:
    """Which part of the tree a walk phase covers: keys in (lo, hi].

    Keys are tuples of name components, so tuple order is the walk order
    (a directory sorts before its contents). A directory that is an ancestor
    of a bound is entered but only partly walked.
    """

    lo: Key | None = None
    hi: Key | None = None

    def place(self, key: Key) -> str:
        """ "skip", "stop", "enter" (ancestor of a bound) or "do"."""
        n = len(key)
        if self.lo is not None and key <= self.lo:
            return "enter" if self.lo[:n] == key and key != self.lo else "skip"
        if self.hi is not None:
            if self.hi[:n] == key and key != self.hi:
                return "enter"
            if key == self.hi:
                return "skip"
            if key > self.hi:
                return "stop"
        return "do"

    def inner(self, key: Key) -> Bounds:
        """The bounds that still apply below ``key``."""
        n = len(key)
        lo = self.lo if self.lo is not None and self.lo[:n] == key else None
        hi = self.hi if self.hi is not None and self.hi[:n] == key else None
        return Bounds(lo, hi)


class Mirror:
    """Makes ``run.data_dir`` mirror a source tree (see FilesSource)."""

    def __init__(
        self,
        run: RunContext,
        root: str,
        *,
        excluded: Callable[[str, bool], bool],
        one_file_system: bool,
        exclude_caches: bool,
    ):
        self.run = run
        self.stats = run.stats
        self.root = root
        self.excluded = excluded
        self.one_file_system = one_file_system
        self.exclude_caches = exclude_caches
        self.as_root = os.geteuid() == 0
        self.links: dict[tuple[int, int], Key] = {}
        self.corrupt: list[str] = []
        self.buf = memoryview(bytearray(BLOCK))  # reused for every read
        self.root_dev = 0
        self.last: Key | None = None
        self._tick = 0
        self._next_save = 0.0
        # Re-list every stored directory to record its entries: the last
        # walk did not finish, so directories it left mid-way are not what
        # their user.inkind.entries says.
        self.recount = False

    # ----- the walk -------------------------------------------------------

    def backup(self) -> None:
        """Walk the whole tree, starting after the resume pointer and
        wrapping around to it, so repeated interruptions still advance."""
        try:
            src = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            raise SourceError(f"source path {self.root}: {err.strerror}") from None
        try:
            st = os.fstat(src)
            self.root_dev = st.st_dev
            state = self.run.state
            resume = state.resume
            start = text_key(resume) if resume else None
            self.recount = state.partial or state.left_running or resume is not None
            state.mark_partial()  # durable before the walk's first write
            phases = [Bounds(lo=start), Bounds(hi=start)] if start else [Bounds()]
            seen = previous_count(self.run.state)
            with self.run.progress("files", total=seen, estimated=True) as progress:
                self.progress = progress
                try:
                    for bounds in phases:
                        self.walk(src, self.run.data_fd, (), bounds)
                except BaseException:
                    # Stopped (Ctrl-C, SIGTERM, an error): the next run
                    # starts right after the last completed entry.
                    self.save_pointer()
                    raise
            self.apply_meta(self.run.data_fd, None, st, src_fd=src, new=True)
            state.clear_partial()
            state.set_resume(None, force=True)
        finally:
            os.close(src)
        self.raise_corruption()

    def walk(self, src: int, dst: int, prefix: Key, bounds: Bounds) -> None:
        """Mirror the entries of one directory that fall within ``bounds``."""
        try:
            names = os.listdir(src)
        except OSError as err:
            raise SourceWarning(f"{key_text(prefix) or '.'}: cannot list: {err.strerror}") from None
        entries = sorted((os.fsencode(n), n) for n in names)
        present: set[str] = set()
        added = self.recount  # whether the stored directory's names may have changed
        for raw, name in entries:
            key = (*prefix, raw)
            where = bounds.place(key)
            if where == "stop":
                break
            if where == "skip":
                present.add(name)
                continue
            try:
                kept = self.entry(src, dst, name, key, bounds if where == "enter" else Bounds())
            except SourceWarning as w:
                self.run.skip(w)
                self.stats.objects_skipped += 1
                kept = KEPT  # its previous copy stays (or none, if it had none)
                added = True  # it may have gone part of the way
            if kept:
                present.add(name)
                added = added or kept == ADDED
            if where == "do":
                self._done(key)
        listed = self.sweep(dst, prefix, present, bounds) if self.run.full else None
        self.record(dst, listed, added)

    def record(self, dst: int, listed: list[str] | None, changed: bool) -> None:
        """Record the stored directory's entries (``user.inkind.entries``).

        Only a directory whose names may have changed in this run is listed
        again (the sweep's listing serves in a full pass), so an unchanged
        tree costs one getxattr per directory and no write.
        """
        if listed is None:
            if not changed and has_entries(dst):
                return
            listed = list_dir(dst)
        record_entries(dst, listed, self.stats)

    def _done(self, key: Key) -> None:
        """Advance the resume pointer; save it every few seconds."""
        if self.last is None or self.last[: len(key)] != key:
            self.last = key
        self._tick += 1
        if self._tick & 255 == 0:
            self.progress.advance(256)
            now = time.monotonic()
            if now >= self._next_save:
                self.save_pointer()
                self._next_save = now + 5.0

    def save_pointer(self) -> None:
        """Record the resume pointer once what precedes it is durable."""
        if self.last is not None:
            sync_store(self.run.data_fd)
            self.run.state.set_resume(key_text(self.last), force=True)

    def entry(self, src: int, dst: int, name: str, key: Key, bounds: Bounds) -> int:
        """Mirror one entry (and, for a directory, what is below it).

        Returns LEFT_OUT when the entry is not part of the backup (excluded,
        a cache directory, the store or its snapshot folder), so that a full
        pass removes its stored copy;
        else ADDED when its name was not in the store before, KEPT when it was.
        """
        if is_temp_name(name):
            raise SourceWarning(f"{key_text(key)}: name is reserved for inkind temp files; skipped")
        try:
            st = os.stat(name, dir_fd=src, follow_symlinks=False)
        except FileNotFoundError:
            raise SourceWarning(f"{key_text(key)}: vanished during the backup") from None
        is_dir = stat.S_ISDIR(st.st_mode)
        kept_out = self.run.keep_out.which(st) if is_dir else None
        if kept_out is not None:  # the store, or its snapshots, in the source tree
            log.info("%s: %s: not entered: it is %s", self.run.name, key_text(key), kept_out)
            self.stats.objects_kept_out += 1
            return LEFT_OUT
        if self.excluded(key_text(key), is_dir):
            return LEFT_OUT
        if is_dir and self.exclude_caches and self._cache_dir(src, name):
            return LEFT_OUT
        self.stats.objects_seen += 1
        try:
            dst_st = lstat_at(dst, name)
        except FileNotFoundError:
            dst_st = None
        e = Entry(src, dst, name, key, st, dst_st)
        if is_dir:
            self.directory(e, bounds)
        elif stat.S_ISREG(st.st_mode):
            self.regular(e)
        elif stat.S_ISLNK(st.st_mode):
            self.symlink(e)
        else:
            self.special(e)
        return ADDED if dst_st is None else KEPT

    def sweep(self, dst: int, prefix: Key, present: set[str], bounds: Bounds) -> list[str] | None:
        """Full pass: remove what the source no longer has (within bounds).
        Returns the names the stored directory holds afterwards."""
        left = []
        for name in list_dir(dst):
            if name in present:
                left.append(name)
                continue
            key = (*prefix, os.fsencode(name))
            if not is_temp_name(name) and bounds.place(key) != "do":
                left.append(name)
                continue
            self.remove(dst, name)
            if not is_temp_name(name):
                self.report("delete", key)
                self.stats.objects_deleted += 1
        return left

    # ----- entry kinds ----------------------------------------------------

    def report(self, change: str, key: Key) -> None:
        """A dry run names each entry it would create, update or delete
        (the counts alone say how much)."""
        if self.run.dry_run:
            log.info("%s: would %s %s", self.run.name, change, key_text(key))

    def directory(self, e: Entry, bounds: Bounds) -> None:
        new = e.dst_st is None or not stat.S_ISDIR(e.dst_st.st_mode)
        if new:
            if e.dst_st is not None:
                self.remove(e.dst, e.name)
            make_dir(e.dst, e.name)
            self.report("create", e.key)
            self.stats.objects_changed += 1
        else:
            self.stats.objects_unchanged += 1
        try:
            sfd = os.open(e.name, DIR_FLAGS, dir_fd=e.src)
        except OSError as err:
            if err.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                raise SourceWarning(
                    f"{key_text(e.key)}: changed type or vanished during the backup"
                ) from None
            raise SourceWarning(f"{key_text(e.key)}: cannot open: {err.strerror}") from None
        try:
            if not self.one_file_system or e.st.st_dev == self.root_dev:
                dfd = open_at(e.dst, e.name, DIR_FLAGS)
                try:
                    self.walk(sfd, dfd, e.key, bounds.inner(e.key))
                    self.apply_meta(dfd, None, os.fstat(sfd), src_fd=sfd, new=new)
                finally:
                    os.close(dfd)
            else:
                self.apply_meta(e.dst, e.name, e.st, src_fd=sfd, new=new)
        finally:
            os.close(sfd)

    def _cache_dir(self, src: int, name: str) -> bool:
        try:
            fd = os.open(f"{name}/CACHEDIR.TAG", READ_FLAGS, dir_fd=src)
        except OSError:
            return False
        try:
            return os.read(fd, len(CACHEDIR_SIGNATURE)) == CACHEDIR_SIGNATURE
        finally:
            os.close(fd)

    def regular(self, e: Entry) -> None:
        if e.st.st_nlink > 1 and self._hardlink(e):
            return
        same = (
            e.dst_st is not None
            and stat.S_ISREG(e.dst_st.st_mode)
            and e.dst_st.st_size == e.st.st_size
            and e.dst_st.st_mtime_ns == e.st.st_mtime_ns
            and (self.as_root or self._fake_matches(e.dst, e.name, e.st))
        )
        if not same:
            self.copy(e)
            return
        self.stats.objects_unchanged += 1
        self.apply_meta(e.dst, e.name, e.st, src_fd=None, new=False, dst_st=e.dst_st, src=e.src)
        if self.run.should_scrub():
            self.scrub(e.src, e.dst, e.name, e.key)

    def _hardlink(self, e: Entry) -> bool:
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
                self.remove(e.dst, e.name)
            tmp = temp_name()
            link(pfd, first[-1], e.dst, tmp)
            rename(e.dst, tmp, e.name)
            self.report("create" if e.dst_st is None else "update", e.key)
            self.stats.objects_changed += 1
            return True
        except FileNotFoundError:
            return False
        finally:
            os.close(pfd)

    def copy(self, e: Entry) -> None:
        """Bring the stored copy's content up to date (read the source)."""
        try:
            fd = os.open(e.name, READ_FLAGS | _NOATIME, dir_fd=e.src)
        except PermissionError:
            try:
                fd = os.open(e.name, READ_FLAGS, dir_fd=e.src)
            except OSError as err:
                raise SourceWarning(f"{key_text(e.key)}: cannot read: {err.strerror}") from None
        except FileNotFoundError:
            raise SourceWarning(f"{key_text(e.key)}: vanished during the backup") from None
        except OSError as err:
            raise SourceWarning(f"{key_text(e.key)}: cannot read: {err.strerror}") from None
        try:
            fst = os.fstat(fd)
            if (fst.st_ino, fst.st_dev) != (e.st.st_ino, e.st.st_dev) or not stat.S_ISREG(fst.st_mode):
                raise Changed(f"{key_text(e.key)}: replaced during the backup")
            change = "create" if e.dst_st is None else "update"
            if e.dst_st is not None and stat.S_ISDIR(e.dst_st.st_mode):
                self.remove(e.dst, e.name)
                e.dst_st = None
            try:
                if e.st.st_size >= BIG_FILE and e.dst_st is not None and stat.S_ISREG(e.dst_st.st_mode):
                    changed = self._copy_blocks(fd, e)
                else:
                    changed = self._copy_whole(fd, e)
            except OSError as err:
                if err.errno == errno.EIO:
                    raise SourceReadError(f"{key_text(e.key)}: read error: {err.strerror}") from None
                raise
        finally:
            os.close(fd)
        if changed:
            self.report(change, e.key)
            self.stats.objects_changed += 1
        else:
            self.stats.objects_unchanged += 1
            self.apply_meta(e.dst, e.name, e.st, src_fd=None, new=False, src=e.src)

    def _check_stable(self, fd: int, e: Entry) -> None:
        after = os.fstat(fd)
        if after.st_size != e.st.st_size or after.st_mtime_ns != e.st.st_mtime_ns:
            raise Changed(f"{key_text(e.key)}: changed while it was read; previous copy kept")

    def _read_blocks(self, fd: int, size: int, hasher, buf: memoryview):
        """Yield (offset, view) of the file's content in BLOCK pieces, holes
        as zero views without reading, counting bytes read and hashing."""
        pos = 0
        for off, length in [*data_segments(fd, size), (size, 0)]:
            while pos < off:  # a hole
                n = min(BLOCK, off - pos)
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
                hasher.update(buf[:n])
                yield pos, buf[:n]
                pos += n

    def _copy_whole(self, fd: int, e: Entry) -> bool:
        buf = self.buf
        hasher = new_hasher()

        def before_commit(tfd: int) -> None:
            self._check_stable(fd, e)
            self.apply_meta(tfd, None, e.st, src_fd=fd, new=True)

        with UpdateFile(
            e.name, dir_fd=e.dst, stats=self.stats, before_commit=before_commit, fsync=False
        ) as f:
            for _, view in self._read_blocks(fd, e.st.st_size, hasher, buf):
                if view.obj is _ZEROS.obj:  # a hole of the source
                    f.write_zeros(len(view))
                else:
                    f.write(view)
            self._check_stable(fd, e)
        return f.changed

    def _copy_blocks(self, fd: int, e: Entry) -> bool:
        """A large file: compare block by block with the stored copy and
        write only the blocks that differ, through update_image.

        The image update is opened at the first difference, so an unchanged
        file costs no write, and blocks stream through: memory stays flat.
        """
        buf = self.buf
        old = memoryview(bytearray(BLOCK))
        hasher = new_hasher()
        rel = os.fsdecode(b"/".join((self.run.name.encode(), *e.key)))
        ofd = open_at(e.dst, e.name, READ_FLAGS)
        with contextlib.ExitStack() as stack:
            stack.callback(os.close, ofd)
            old_size = os.fstat(ofd).st_size
            img: UpdateImage | None = None
            for off, view in self._read_blocks(fd, e.st.st_size, hasher, buf):
                n = len(view)
                have = os.preadv(ofd, [old[:n]], off) if off < old_size else 0
                if have == n and same_bytes(old[:n], view):
                    continue
                if img is None:
                    img = stack.enter_context(
                        UpdateImage(self.run.root_fd, rel, e.st.st_size, stats=self.stats)
                    )
                hole = view.obj is _ZEROS.obj
                for start, end in [(0, n)] if have < n or hole else changed_ranges(old[:n], view):
                    part = view[start:end]
                    if hole or is_zero(part):
                        img.zero(off + start, end - start)
                    else:
                        img.write(off + start, part)
            self._check_stable(fd, e)
            if img is None:
                if old_size == e.st.st_size:
                    return False
                img = stack.enter_context(UpdateImage(self.run.root_fd, rel, e.st.st_size, stats=self.stats))
            img.xxh3 = hasher.hexdigest()
        self.apply_meta(e.dst, e.name, e.st, src_fd=fd, new=True)
        return True

    def symlink(self, e: Entry) -> None:
        try:
            target = os.readlink(e.name, dir_fd=e.src)
        except FileNotFoundError:
            raise SourceWarning(f"{key_text(e.key)}: vanished during the backup") from None
        if not self.as_root:
            self._fake_file(e, os.fsencode(target))
            return
        if (
            e.dst_st is not None
            and stat.S_ISLNK(e.dst_st.st_mode)
            and os.readlink(e.name, dir_fd=e.dst) == target
        ):
            self.stats.objects_unchanged += 1
            self.apply_meta(e.dst, e.name, e.st, src_fd=None, new=False, dst_st=e.dst_st, src=e.src)
            return
        self._replace(e, lambda tmp: make_symlink(target, e.dst, tmp))

    def special(self, e: Entry) -> None:
        """Fifos, sockets and device nodes: never opened, only recreated."""
        if not self.as_root:
            self._fake_file(e, b"")
            return
        kind = stat.S_IFMT(e.st.st_mode)
        if (
            e.dst_st is not None
            and stat.S_IFMT(e.dst_st.st_mode) == kind
            and e.dst_st.st_rdev == e.st.st_rdev
        ):
            self.stats.objects_unchanged += 1
            self.apply_meta(e.dst, e.name, e.st, src_fd=None, new=False, dst_st=e.dst_st, src=e.src)
            return
        self._replace(e, lambda tmp: make_node(e.dst, tmp, kind | 0o600, e.st.st_rdev))

    def _replace(self, e: Entry, make: Callable[[bytes], None]) -> None:
        """Create a non-regular entry under a temp name, set its metadata,
        and rename it into place."""
        if e.dst_st is not None and stat.S_ISDIR(e.dst_st.st_mode):
            self.remove(e.dst, e.name)
        tmp = temp_name()
        make(tmp)
        try:
            self.apply_meta(e.dst, os.fsdecode(tmp), e.st, src_fd=None, new=True, src=e.src, src_name=e.name)
            rename(e.dst, tmp, e.name)
        except BaseException:
            with contextlib.suppress(OSError):
                remove(e.dst, tmp)
            raise
        self.report("create" if e.dst_st is None else "update", e.key)
        self.stats.objects_changed += 1

    def _fake_file(self, e: Entry, content: bytes) -> None:
        """Non-root: a symlink or special file stored as rsync's stand-in."""
        if e.dst_st is not None and stat.S_ISDIR(e.dst_st.st_mode):
            self.remove(e.dst, e.name)

        def before_commit(tfd: int) -> None:
            self.apply_meta(tfd, None, e.st, src_fd=None, new=True)

        with UpdateFile(
            e.name, dir_fd=e.dst, stats=self.stats, before_commit=before_commit, fsync=False
        ) as f:
            f.write(content)
        if f.changed:
            self.report("create" if e.dst_st is None else "update", e.key)
            self.stats.objects_changed += 1
        else:
            self.stats.objects_unchanged += 1
            self.apply_meta(e.dst, e.name, e.st, src_fd=None, new=False)

    def _fake_matches(self, dst: int, name: str, st: os.stat_result) -> bool:
        got = XAttrs(fd_path(dst, name), namespace="").get(fakesuper.STAT_XATTR)
        return got == fakesuper.encode(st)

    # ----- metadata -------------------------------------------------------

    def apply_meta(
        self,
        dst: int,
        name: str | None,
        st: os.stat_result,
        *,
        src_fd: int | None,
        new: bool,
        dst_st: os.stat_result | None = None,
        src: int | None = None,
        src_name: str | None = None,
    ) -> None:
        """Give a stored entry the source's owner, mode, xattrs and mtime.

        ``dst``/``name`` name the stored entry (``name`` None: ``dst`` is the
        entry's own fd). Owner and mode are compared on every run, xattrs
        only for new or rewritten entries and in a full pass, mtime last.
        """
        target: int | str = dst if name is None else name
        dir_fd = None if name is None else dst
        is_link = stat.S_ISLNK(st.st_mode)
        cur = dst_st or (os.fstat(dst) if name is None else lstat_at(dst, name))
        xattrs = None
        if new or self.run.full:
            xattrs = self._wanted_xattrs(st, src_fd, src, src_name or name)
        if not new and name is not None and self._shared_with_history(cur, st, xattrs, dst, name):
            cur = unshare(dst, name, stats=self.stats)
        if xattrs is not None:
            self._sync_xattrs(dst, name, xattrs)
            cur = os.fstat(dst) if name is None else lstat_at(dst, name)
        if self.as_root:
            if set_owner(target, st.st_uid, st.st_gid, dir_fd=dir_fd, stats=self.stats, st=cur):
                cur = os.fstat(dst) if name is None else lstat_at(dst, name)
            if not is_link:
                set_mode(target, st.st_mode, dir_fd=dir_fd, stats=self.stats, st=cur)
        else:
            set_mode(target, fakesuper.stored_mode(st), dir_fd=dir_fd, stats=self.stats, st=cur)
        set_mtime(target, st.st_mtime_ns, dir_fd=dir_fd, stats=self.stats, st=cur)

    def _shared_with_history(
        self, cur: os.stat_result, st: os.stat_result, xattrs: dict[str, bytes] | None, dst: int, name: str
    ) -> bool:
        """Whether the stored file's inode has links the source does not
        explain (a hard-link history, a hand-made link) and its metadata is
        about to change: then it must get an inode of its own first."""
        if not stat.S_ISREG(cur.st_mode) or cur.st_nlink <= st.st_nlink:
            return False
        mode = st.st_mode if self.as_root else fakesuper.stored_mode(st)
        if cur.st_mtime_ns != st.st_mtime_ns or (cur.st_mode & 0o7777) != (mode & 0o7777):
            return True
        if self.as_root and (cur.st_uid, cur.st_gid) != (st.st_uid, st.st_gid):
            return True
        if xattrs is None:
            return False
        have = {k: v for k, v in xattr_items(fd_path(dst, name)) if not k.startswith("user.inkind.")}
        return have != xattrs

    def _wanted_xattrs(
        self, st: os.stat_result, src_fd: int | None, src: int | None, src_name: str | None
    ) -> dict[str, bytes]:
        """The xattrs the stored entry should carry (inkind's own aside)."""
        if src_fd is not None:
            src_item: int | bytes = src_fd
        elif src is not None:
            src_item = fd_path(src, src_name or "")
        else:
            src_item = -1
        wanted: dict[str, bytes] = {}
        if src_item != -1:
            wanted = dict(self._source_xattrs(src_item))
        if not self.as_root:
            wanted = {k: v for k, v in wanted.items() if k.startswith("user.")}
            wanted[fakesuper.STAT_XATTR] = fakesuper.encode(st)
        if stat.S_ISLNK(st.st_mode) and self.as_root:
            wanted = {k: v for k, v in wanted.items() if not k.startswith("user.")}
        return wanted

    def _sync_xattrs(self, dst: int, name: str | None, wanted: dict[str, bytes]) -> None:
        dst_item: int | bytes = dst if name is None else fd_path(dst, name)
        try:
            XAttrs(dst_item, namespace="", stats=self.stats).sync(
                wanted, keep=lambda k: k.startswith("user.inkind.")
            )
        except OSError as err:
            if err.errno not in (errno.ENOTSUP, errno.EPERM):
                raise
            self.run.warn(f"{self.run.name}: cannot set xattrs: {err.strerror}")

    def _source_xattrs(self, item: int | bytes) -> list[tuple[str, bytes]]:
        kwargs = {} if isinstance(item, int) else {"nofollow": True}
        try:
            pairs = xattr.get_all(item, **kwargs)
        except OSError as err:
            if err.errno in (errno.ENOTSUP, errno.EPERM, errno.ENOENT):
                return []
            raise
        return [
            (k.decode("utf-8", "surrogateescape"), v) for k, v in pairs if not k.startswith(b"user.inkind.")
        ]

    # ----- scrub ----------------------------------------------------------

    def scrub(self, src: int | None, dst: int, name: str, key: Key) -> None:
        """Check one stored file against its checksum, then the source.

        A stored file that fails its own checksum is corruption: it is named
        in the log and in the error that ends the run (exit 2), and rebuilt
        from the source when the source is at hand. A file that only differs
        from a source with the same size and mtime is repaired and counted.
        """
        self.stats.objects_scrubbed += 1
        rel = f"{self.run.name}/{key_text(key)}"
        fd = os.open(name, READ_FLAGS, dir_fd=dst)
        try:
            dst_st = os.fstat(fd)
            want = XAttrs(fd).text("xxh3")
            got, _ = hash_fd(fd, dst_st.st_size)
        finally:
            os.close(fd)
        corrupt = want != got
        if corrupt:
            self.corrupt.append(rel)
            self.stats.objects_corrupt += 1
            log.error(
                "%s: corruption: %s: %s",
                self.run.name,
                rel,
                "content does not match user.inkind.xxh3" if want else "no user.inkind.xxh3",
            )
        if src is None:
            return
        try:
            st = os.stat(name, dir_fd=src, follow_symlinks=False)
        except FileNotFoundError:
            return
        same_meta = (st.st_size, st.st_mtime_ns) == (dst_st.st_size, dst_st.st_mtime_ns)
        if not stat.S_ISREG(st.st_mode) or not same_meta:
            return  # a pending change, not a scrub finding: the next backup copies it
        if not corrupt:
            sfd = os.open(name, READ_FLAGS, dir_fd=src)
            try:
                src_hash, n = hash_fd(sfd, st.st_size)
            finally:
                os.close(sfd)
            self.stats.bytes_read += n
            if src_hash == got:
                return
            log.info(
                "%s: %s: differed from the source with the same size and mtime; repaired",
                self.run.name,
                rel,
            )
        self.copy(Entry(src, dst, name, key, st, None))
        self.stats.objects_repaired += 1
        # The rename touched the stored directory: give it back its mtime.
        set_mtime(dst, os.fstat(src).st_mtime_ns, stats=self.stats)

    def raise_corruption(self) -> None:
        """End the run with exit 2 if scrub found corruption."""
        if self.corrupt:
            shown = ", ".join(self.corrupt[:10]) + (" ..." if len(self.corrupt) > 10 else "")
            raise CorruptionError(shown, f"{len(self.corrupt)} stored object(s) corrupt or missing")

    # ----- removal --------------------------------------------------------

    def remove(self, dst: int, name: str) -> None:
        """Remove a stored entry of any kind, never following a symlink."""
        remove(dst, name)
