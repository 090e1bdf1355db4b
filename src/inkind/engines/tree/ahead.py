"""Opening the next directory of a window before the walk enters it, so the
walk's worker looks at its first window while the walk is busy with this one.

Most directories of a real tree fit in one window, and in a no-change run
the worker looks at half of each window's entries. Asked only once the walk
enters a directory, it looks while the walk waits for its answer, and sits
idle while the walk mirrors the window, closes the directory and enters the
next (measured on 101,000 files in 1,000 directories: the walk waited 0.33 s
of a 1.0 s run, the worker was busy 0.36 s of it). So when the walk enters a
directory of a window it also opens the next one (both sides), lists it,
places its first window and asks the worker about it; entering that one, it
works with what it opened, listed and asked, so nothing is opened, listed or
looked at twice, and the walk decides as it would have at the moment the
directory was opened (see below).

Only a directory the walk will walk into a stored copy it compares with
(stored already, on the walk's filesystem where it keeps to one, within the
whole of the walk's bounds); at most OPEN_MAX wait opened (two fds each, one
set per level of depth). Anything that fails here is left to the walk, which
opens the directory itself and reports.

What the worker found is what the directory held when it looked, as the
walk's own look of a window is what the window held before it is mirrored.
The walk uses it only while it is recent and still names that directory: one
opened more than FRESH_FOR seconds before its turn (the walk was in a large
tree below the one before), or whose name holds another directory by now,
or nothing, is closed unused, and the walk opens what is there, lists it and
looks at it again, and reports as it does without a worker. A change made
to a directory within FRESH_FOR of the walk's arrival may so be stored by
the next run instead, as a change made while the walk is past it is.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass

from inkind.engines.tree.bounds import Look, Window
from inkind.engines.tree.entry import Entry, Key, key_text
from inkind.errors import SourceWarning
from inkind.store.paths import DIR_FLAGS, open_at

OPEN_MAX = 32  # directories opened ahead and not yet walked
FRESH_FOR = 0.1  # seconds an opened directory's listing and answer are used for
WINDOW = 128  # entries of a directory looked at before they are mirrored

Names = list[tuple[bytes, str]]  # a directory's entries, raw and decoded, sorted


@dataclass
class Opened:
    """A directory opened ahead: its fds on both sides, its sorted names,
    its first window (placed, the worker asked), and when."""

    src: int
    dst: int
    names: Names
    first: Window
    at: float


class DirsAhead:
    """The directories one walk opened ahead (a context manager: those not
    walked when it ends are closed)."""

    def __init__(self, place: Callable[[int, int, Key, Names], Window], only_dev: int | None):
        self.place = place  # a directory's first window (of WINDOW names at most), placed and asked about
        self.only_dev = only_dev  # the walk's filesystem, where it keeps to one
        self.opened: dict[Key, Opened] = {}

    def __enter__(self) -> DirsAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        for opened in self.opened.values():
            _close(opened.src, opened.dst)
        self.opened.clear()

    def entering(self, looks: list[Look], i: int) -> None:
        """The walk is about to enter ``looks[i]``: open it, unless it is
        open already, and the next directory of the window."""
        self._open(looks[i])
        nxt = next((look for look in looks[i + 1 :] if look.is_dir()), None)
        if nxt is not None:
            self._open(nxt)

    def take(self, e: Entry) -> Opened | None:
        """What was opened ahead for the directory entry ``e``, now the
        walk's to close. None if nothing was, if it was too long ago, or if
        its name holds another directory by now, or none: the walk then
        opens what is there, and reports, as it does without a worker."""
        opened = self.opened.pop(e.key, None)
        if opened is None:
            return None
        if time.monotonic() - opened.at <= FRESH_FOR and _still_named(e, opened.src):
            return opened
        _close(opened.src, opened.dst)
        return None

    def _open(self, look: Look) -> None:
        e = look.found
        if (
            look.key in self.opened
            or look.where != "do"
            or len(self.opened) >= OPEN_MAX
            or not isinstance(e, Entry)
            or e.dst_st is None
            or not stat.S_ISDIR(e.dst_st.st_mode)
            or self.only_dev not in (None, e.st.st_dev)
        ):
            return
        with contextlib.ExitStack() as fds:
            try:
                src = open_source(e)
                fds.callback(os.close, src)
                dst = open_at(e.dst, e.name, DIR_FLAGS)
                fds.callback(os.close, dst)
                names = listing(src, look.key)
            except (OSError, SourceWarning):
                return  # (the walk opens and lists it itself, and reports)
            first = self.place(src, dst, look.key, names[:WINDOW])  # (a worker gone: the walk stops)
            fds.pop_all()  # (the fds are the Opened's now)
        self.opened[look.key] = Opened(src, dst, names, first, time.monotonic())


def _still_named(e: Entry, fd: int) -> bool:
    """Whether ``e``'s name in its source directory is the directory ``fd``."""
    try:
        now = os.stat(e.name, dir_fd=e.src, follow_symlinks=False)
    except OSError:
        return False
    st = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


def _close(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


def open_source(e: Entry) -> int:
    """The source directory of a directory entry, opened to be walked."""
    try:
        return os.open(e.name, DIR_FLAGS, dir_fd=e.src)
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
            raise SourceWarning(f"{key_text(e.key)}: changed type or vanished during the backup") from None
        raise SourceWarning(f"{key_text(e.key)}: cannot open: {err.strerror}") from None


def listing(src: int, prefix: Key) -> Names:
    """A source directory's entries, sorted as the walk takes them."""
    try:
        names = os.listdir(src)
    except OSError as err:
        raise SourceWarning(f"{key_text(prefix) or '.'}: cannot list: {err.strerror}") from None
    return sorted((os.fsencode(n), n) for n in names)
