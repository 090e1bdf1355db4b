"""Atomic, compare-first replacement of whole files.

A new content is compared with the stored file as it streams in; a temp file
is started only at the first differing byte (the equal prefix is copied from
the old file), so rewriting an unchanged dump costs no write at all. The temp
is a sibling named ``.inkind-tmp-*``, fsynced and renamed over the old name,
so the final name always holds a whole file.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import shutil
import stat
from collections.abc import Callable
from types import TracebackType

import xxhash

from inkind.hashing import update_zeros
from inkind.libc import libc
from inkind.stats import Stats
from inkind.store import dryrun
from inkind.store.content import copy_range, is_zero, reads_as_zeros, same_bytes
from inkind.store.paths import DIR_FLAGS, PathLike, list_dir, open_at, reopen_dir, split_path
from inkind.store.unnamed import link_unnamed, unnamed_temp
from inkind.store.xattrs import XAttrs

TEMP_PREFIX = ".inkind-tmp-"
_TEMP_PREFIX_B = TEMP_PREFIX.encode()
HOLE_MIN = 4096
TEMP_MODE = 0o600  # the temp's mode until ``before_commit`` sets the final one


def is_temp_name(name: str | bytes) -> bool:
    """Whether ``name`` is a temp file a (possibly killed) run left behind."""
    if isinstance(name, str):  # the prefix is ASCII: no need to encode
        return name.startswith(TEMP_PREFIX)
    return name.startswith(_TEMP_PREFIX_B)


def holds_data(dir_fd: int) -> bool:
    """Whether a directory holds anything but temps."""
    return any(not is_temp_name(n) for n in list_dir(dir_fd))


# Temp names come from a generator seeded by the OS, reseeded in a forked
# child (os.urandom per name cost 5 us, a tenth of a small file's copy);
# O_EXCL keeps a name that is somehow taken from replacing anything.
_names = random.Random()
os.register_at_fork(after_in_child=_names.seed)


def temp_name(tag: str = "") -> bytes:
    """``.inkind-tmp-<16 hex digits>``, or with ``tag``
    ``.inkind-tmp-<16 hex digits>.<tag>``: a temp whose owner can be told
    from its name (see :func:`sweep_tagged_temps`)."""
    name = _TEMP_PREFIX_B + b"%016x" % _names.getrandbits(64)
    return name + b"." + os.fsencode(tag) if tag else name


def sweep_tagged_temps(dir_fd: int, tag: str) -> int:
    """Remove the temps of ``temp_name(tag)`` in one directory (not below);
    return the count. The caller must hold what keeps every other writer
    of such temps out (a source's lock for its state file)."""
    dry = dryrun.active() is not None  # a dry run only counts them
    suffix = b"." + os.fsencode(tag)
    width = len(_TEMP_PREFIX_B) + 16
    removed = 0
    for name in list_dir(dir_fd):
        name_b = os.fsencode(name)
        if name_b.startswith(_TEMP_PREFIX_B) and name_b[width:] == suffix:
            with contextlib.suppress(FileNotFoundError):
                if not dry:
                    os.unlink(name, dir_fd=dir_fd)
                removed += 1
    return removed


class UpdateFile:
    """Stream new content into ``path``; replace the file only if it differs.

    >>> with UpdateFile("dump.sql", stats=run.stats) as f:
    ...     for chunk in chunks:
    ...         f.write(chunk)
    >>> f.changed          # False: not one byte was written

    ``before_commit(fd)`` is called with the temp file's descriptor before the
    rename, so that mode, owner and mtime are right the moment the new file
    appears. On an exception the temp is removed and the old file stays.
    Zero runs of at least 4 KiB in new content are left as holes.

    ``fsync=False`` skips the per-file fsync for a source that writes many
    small files: it must then call :func:`sync_store` before it records
    progress, so that recorded progress never runs ahead of durable data.

    ``temp_tag`` ends the temp's name (:func:`temp_name`), so that a file
    outside ``STORE/NAME`` (a source's state) can have the temp a killed
    run left found and removed by the next one.

    ``new=True``: the caller has just found no entry at ``path`` (it
    lstat'ed it), so no old file is opened to compare with, and the temp is
    unnamed (O_TMPFILE, linked in at the end where the filesystem has
    them): no temp name is made and renamed, none is left by a crash, and
    as nothing can open it, it is made with ``mode`` (the final permission
    bits) rather than 0600, saving the chmod.

    ``size``: the content's length as the caller expects it (the source's
    lstat). Content that comes in one write of that length is compared by
    checksum first: where the old file's recorded ``user.inkind.xxh3``
    differs from the content's, or its length does, the old file is not
    read (a changed file costs no read of its stored copy); where they
    match, its bytes are still compared, so a stored copy that went bad
    under a good checksum is replaced. A wrong ``size`` costs only that
    shortcut.

    In a dry run the comparison is the same and the counts are too, but the
    temp is an empty stand-in outside the store that no byte is written to
    (``before_commit`` gets it), and the rename is recorded, not made.
    """

    def __init__(  # size: the target, how it is committed, and its counters
        self,
        path: PathLike,
        *,
        dir_fd: int | None = None,
        stats: Stats | None = None,
        before_commit: Callable[[int], None] | None = None,
        fsync: bool = True,
        temp_tag: str = "",
        new: bool = False,
        mode: int = TEMP_MODE,
        size: int | None = None,
    ):
        self.path = path
        self.size = size
        self.new = new
        self.mode = mode if new else TEMP_MODE
        self.fsync = fsync
        self.temp_tag = temp_tag
        self.dir_fd = dir_fd
        self.stats = stats if stats is not None else Stats()
        self.before_commit = before_commit
        self.changed = False
        self.xxh3 = ""
        self._pfd = -1
        self._owns_pfd = True
        self._name = b""
        self._old_fd = -1
        self._old_size = 0
        self._tmp_fd = -1
        self._tmp_name = b""
        self._stand_in = ""  # a dry run's temp
        self._pos = 0
        self._hasher = xxhash.xxh3_128()
        self._hole_at_end = False

    def __enter__(self) -> UpdateFile:
        raw = os.fsencode(self.path)
        if self.dir_fd is not None and raw and b"/" not in raw:
            self._pfd, self._name, self._owns_pfd = self.dir_fd, raw, False  # the caller's, kept open
        else:
            self._pfd, self._name = split_path(self.path, self.dir_fd)
        if self.new and dryrun.active() is None:  # (a dry run's overlay may hold the path)
            return self
        try:
            fd = open_at(self._pfd, self._name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            fd = -1  # missing, a symlink, or unreadable: write a new file
        if fd >= 0:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode):
                self._old_fd, self._old_size = fd, st.st_size
            else:
                os.close(fd)
        return self

    def write(self, data: bytes | memoryview) -> None:
        n = len(data)
        if not n:
            return
        self._hasher.update(data)
        if self._tmp_fd < 0 and self._old_fd >= 0 and self._pos + n <= self._old_size and self._may_hold(n):
            old = os.pread(self._old_fd, n, self._pos)
            if same_bytes(old, data):
                self._pos += n
                return
        if self._tmp_fd < 0:
            self._start_temp()
        self._put(data)

    def _may_hold(self, n: int) -> bool:
        """Whether the old file may hold the ``n`` bytes just hashed, so
        that reading them back pays: not when they are the whole content
        (see ``size``) and the old file's length or recorded checksum
        differs."""
        if self._pos or n != self.size:
            return True
        if n != self._old_size:
            return False
        recorded = XAttrs(self._old_fd).text("xxh3")
        return recorded is None or recorded == self._hasher.hexdigest()

    def write_zeros(self, n: int) -> None:
        """Append ``n`` zero bytes that the caller knows to be a hole (of a
        sparse source): hashed and compared without a buffer of zeros to
        look at, stored as a hole."""
        if n <= 0:
            return
        update_zeros(self._hasher, n)
        old_here = self._tmp_fd < 0 and self._old_fd >= 0 and self._pos + n <= self._old_size
        if old_here and reads_as_zeros(self._old_fd, self._pos, n):
            self._pos += n
            return
        if self._tmp_fd < 0:
            self._start_temp()
        os.lseek(self._tmp_fd, n, os.SEEK_CUR)
        self._hole_at_end = True
        self._pos += n

    def _start_temp(self) -> None:
        dry = dryrun.active()
        if dry is not None:
            self._tmp_fd, self._stand_in = dry.new_file(self.mode)
            self.stats.bytes_written += self._pos  # the equal prefix copy_range copies
        elif self.new and (fd := unnamed_temp(self._pfd, self.mode)) >= 0:
            self._tmp_fd = fd
            return  # (new: nothing equal came before, the temp is at 0)
        else:
            self._tmp_name = temp_name(self.temp_tag)
            self._tmp_fd = os.open(
                self._tmp_name,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                TEMP_MODE,
                dir_fd=self._pfd,
            )
            if self._pos:
                self.stats.bytes_written += copy_range(self._old_fd, self._tmp_fd, self._pos)
        if self._pos:
            os.lseek(self._tmp_fd, self._pos, os.SEEK_SET)

    def _put(self, data: bytes | memoryview) -> None:
        n = len(data)
        if n >= HOLE_MIN and is_zero(data):
            os.lseek(self._tmp_fd, n, os.SEEK_CUR)
            self._hole_at_end = True
        else:
            if not self._stand_in:
                view = memoryview(data)
                done = 0
                while done < n:
                    done += os.write(self._tmp_fd, view[done:])
            self.stats.bytes_written += n
            self._hole_at_end = False
        self._pos += n

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self._finish()
        finally:
            self._cleanup()

    def _finish(self) -> None:
        self.xxh3 = self._hasher.hexdigest()
        if self._tmp_fd < 0 and self._old_fd >= 0 and self._pos == self._old_size:
            XAttrs(self._old_fd, stats=self.stats)["xxh3"] = self.xxh3
            return
        if self._tmp_fd < 0:
            self._start_temp()
        if self._hole_at_end or self._stand_in:
            os.ftruncate(self._tmp_fd, self._pos)
        XAttrs(self._tmp_fd, stats=self.stats).put("xxh3", self.xxh3)  # a fresh temp has none
        if self.before_commit is not None:
            self.before_commit(self._tmp_fd)
        dry = dryrun.active()
        if dry is not None:
            dry.put(self._pfd, self._name, self._stand_in)
        else:
            if self.fsync:
                os.fsync(self._tmp_fd)
            if self._tmp_name:
                os.rename(self._tmp_name, self._name, src_dir_fd=self._pfd, dst_dir_fd=self._pfd)
            else:
                self._link_unnamed()
        self._tmp_name = b""
        self.changed = True

    def _link_unnamed(self) -> None:
        """Give the unnamed temp its final name; should something have
        appeared there since the caller looked, it is replaced atomically
        (linked under a temp name, renamed over), as a named temp would."""
        if link_unnamed(self._tmp_fd, self._pfd, self._name):
            return
        self._tmp_name = temp_name(self.temp_tag)
        link_unnamed(self._tmp_fd, self._pfd, self._tmp_name)
        os.rename(self._tmp_name, self._name, src_dir_fd=self._pfd, dst_dir_fd=self._pfd)

    def _cleanup(self) -> None:
        for fd in (self._tmp_fd, self._old_fd):
            if fd >= 0:
                os.close(fd)
        self._tmp_fd = self._old_fd = -1
        if self._tmp_name:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp_name, dir_fd=self._pfd)
            self._tmp_name = b""
        if self._pfd >= 0 and self._owns_pfd:
            os.close(self._pfd)
        self._pfd = -1


def update_file(
    path: PathLike,
    data: bytes,
    *,
    dir_fd: int | None = None,
    stats: Stats | None = None,
    before_commit: Callable[[int], None] | None = None,
    temp_tag: str = "",
) -> bool:
    """Make ``path`` hold ``data``; return whether the file was replaced.

    >>> update_file(run.data_dir / "globals.sql", text.encode(), stats=run.stats)
    """
    with UpdateFile(path, dir_fd=dir_fd, stats=stats, before_commit=before_commit, temp_tag=temp_tag) as f:
        f.write(data)
    return f.changed


def sync_store(fd: int) -> None:
    """syncfs(2): make everything written to the store's filesystem durable.

    One call replaces thousands of per-file fsyncs; a crash (power loss)
    after it cannot take back anything written before it. (A dry run has
    written nothing.)
    """
    if dryrun.active() is not None:
        return
    if libc.syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def sweep_temps(root_fd: int) -> int:
    """Remove every ``.inkind-tmp-*`` entry below ``root_fd``; return the count.

    Runs when the previous run did not end cleanly. Symlinks are never
    followed; a temp directory (an unfinished tree) is removed whole. A dry
    run only counts them.
    """
    dry = dryrun.active() is not None
    removed = 0
    stack = [reopen_dir(root_fd)]
    while stack:
        fd = stack.pop()
        try:
            with os.scandir(fd) as it:
                entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
            for name, is_dir in entries:
                if is_temp_name(name):
                    if not dry:
                        (shutil.rmtree if is_dir else os.unlink)(name, dir_fd=fd)
                    removed += 1
                elif is_dir:
                    with contextlib.suppress(OSError):
                        stack.append(os.open(name, DIR_FLAGS, dir_fd=fd))
        finally:
            os.close(fd)
    return removed
