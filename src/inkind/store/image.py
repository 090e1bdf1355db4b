"""In-place updates of large files by changed byte ranges, atomically.

Two ways to make the update atomic, chosen per file:

* **clone** (btrfs, XFS): FICLONE the image into a sibling temp, write the
  changed ranges into the clone, fsync, rename. Unchanged extents stay shared,
  so a store snapshot pays only for the changed blocks.
* **journal** (ext4 and others): write the ranges to a redo journal under
  ``STORE/.inkind/journal/<source>/``, fsync it, give it its final name, mark
  the image ``user.inkind.dirty``, apply the ranges in place, fsync, drop the
  journal (:mod:`inkind.store.journal`). A run that finds a journal replays
  it first.

A new image, or one hard-linked into older history (st_nlink > 1), is built
in a temp and renamed, so history never changes under it. Zero ranges become
holes. A new image may instead *adopt* a file that already holds its
content, one this run made on the store's filesystem (the blocks fetched
from a remote host, a database's copy): that file is renamed to be the
temp, so its blocks are not written a second time.

A dry run takes the same way (whether clones work is asked of the image
itself, see :func:`~inkind.store.reflink.clones_in_place`) and counts the same bytes and xattrs,
but the temp is an empty stand-in outside the store, no journal is written
and nothing is applied.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType

from inkind.segments import data_segments
from inkind.stats import Stats
from inkind.store import dryrun
from inkind.store.checksum import BLOCKS_KEY, set_checksum
from inkind.store.content import copy_range
from inkind.store.files import temp_name
from inkind.store.journal import JournalWriter
from inkind.store.paths import PathLike, fd_path, lstat_at, open_at, open_parent, open_store
from inkind.store.reflink import clones_in_place, try_clone
from inkind.store.sparse import punch_hole
from inkind.store.xattrs import XAttrs, xattr_items


@dataclass(frozen=True)
class Extent:
    """A changed byte range: ``data`` to write, or None for zeros (a hole)."""

    offset: int
    length: int
    data: bytes | memoryview | None = None


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

    ``adopt``: the path of a file on the store's filesystem that already
    holds the new content, made by this run and no longer needed as itself
    (a regular file of this user, of ``size`` bytes, with one link).
    Where the image is new it becomes the temp (renamed, not copied):
    ``write`` then counts the range as the image's data without writing it
    again, and ``zero`` punches the range into a hole. Elsewhere (an image
    to update, a dry run, another filesystem) it is left alone.
    """

    # size: where the image is, its size, the run's counts and a file to adopt
    def __init__(
        self,
        store: PathLike | int,
        relpath: str,
        size: int,
        *,
        stats: Stats | None = None,
        adopt: PathLike | None = None,
    ):
        self.relpath = os.fsdecode(relpath).strip("/")
        self.size = size
        self.stats = stats if stats is not None else Stats()
        self.xxh3: str | None = None
        self.blocks_xxh3: str | None = None
        self.mode = ""
        self.adopted = False  # the temp is ``adopt`` (see above)
        self._adopt = adopt
        self._store = store
        self._root_fd = -1
        self._own_root = False
        self._pfd = -1
        self._name = b""
        self._fd = -1  # the temp being built (new/clone/copy)
        self._tmp = b""
        self._stand_in = ""  # a dry run's temp
        self._old: os.stat_result | None = None
        self._journal: JournalWriter | None = None

    def __enter__(self) -> UpdateImage:
        self._root_fd, self._own_root = open_store(self._store)
        try:
            self._pfd, self._name = open_parent(self._root_fd, self.relpath)
            self._open_old()
        except BaseException:
            # What was opened or made so far (an adopted file among it) goes.
            self.__exit__(*sys.exc_info())
            raise
        return self

    def _open_old(self) -> None:
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

    def _open_target(self, old: int, st: os.stat_result | None) -> None:
        self._old = st
        if st is None:
            if not self._adopt_temp():
                self._new_temp()
            self.mode = "new"
        else:
            self._new_temp()
            dry = self._stand_in != ""
            if clones_in_place(old) if dry else try_clone(old, self._fd):
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
                self._journal = JournalWriter(self._root_fd, self.relpath, self.size)
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

    def _adopt_temp(self) -> bool:
        """Make the file to adopt the new image's temp; whether it was. Only
        a regular file of this process's user, of the image's size and with
        no other link, is taken: nothing else may see the image change."""
        if self._adopt is None or dryrun.active() is not None:
            return False
        st = os.stat(self._adopt, follow_symlinks=False)
        if not (
            stat.S_ISREG(st.st_mode)
            and st.st_nlink == 1
            and st.st_size == self.size
            and st.st_uid == os.geteuid()
        ):
            return False
        tmp = temp_name()
        try:
            os.rename(self._adopt, tmp, dst_dir_fd=self._pfd)
        except OSError as e:
            if e.errno == errno.EXDEV:
                return False  # on another filesystem: built as any new image
            raise
        self._tmp = tmp
        self._fd = os.open(tmp, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self._pfd)
        os.fchmod(self._fd, 0o600)
        self.adopted = True
        return True

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
        """Write changed ``data`` at ``offset`` (an adopted temp holds it
        already: counted, not written again)."""
        if self._journal is not None:
            self.stats.bytes_journaled += self._journal.record_data(offset, data)
            return
        view = memoryview(data)
        done = len(view) if self._stand_in or self.adopted else 0
        while done < len(view):
            done += os.pwrite(self._fd, view[done:], offset + done)
        self.stats.bytes_written += len(data)

    def zero(self, offset: int, length: int) -> None:
        """Make ``length`` bytes at ``offset`` read as zeros, as a hole."""
        if self._journal is not None:
            self._journal.record(b"Z", offset, length)
        elif self.mode != "new" or self.adopted:
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
            journal.commit(self.xxh3, self.blocks_xxh3, self.stats)
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


def unshare(dir_fd: int, name: str, *, stats: Stats | None = None) -> os.stat_result:
    """Give ``name`` (a regular file in ``dir_fd``) an inode of its own
    before its metadata is changed in place.

    A hard-link history (``snapshots = "hardlink"``) shares unchanged files'
    inodes with every snapshot; changing the owner, mode, mtime or xattrs of
    a shared inode would rewrite history. The copy shares extents where the
    filesystem allows (FICLONE), else its bytes are copied and counted.
    Returns the new file's stat.
    """
    fd = open_at(dir_fd, name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
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
