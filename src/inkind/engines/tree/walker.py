"""The walk of a source tree: its directories a window of entries at a
time and in order (which are part of the backup: see selection), where an
interrupted walk resumes, and what a full pass sweeps from the store.

Both trees are worked on through directory fds opened with O_NOFOLLOW, so
neither a symlink in the source nor one planted in the store can lead a
write outside ``STORE/NAME`` or a read outside the source root. Each entry
goes to the copier (files, links, specials; every other small file to be
stored goes to the walk's worker, see handoff) or is walked (directories);
each stored directory records its entries (``user.inkind.entries``).
"""

from __future__ import annotations

import contextlib
import os
import stat
import time

from inkind.engines.tree.ahead import WINDOW, DirsAhead, Opened, listing, open_source
from inkind.engines.tree.bounds import ADDED, KEPT, LEFT_OUT, Bounds, Look, Settled, Window, place_window
from inkind.engines.tree.checkpoint import Checkpoints, previous_count
from inkind.engines.tree.copier import Copier
from inkind.engines.tree.dirnames import finish_directory, make_directory
from inkind.engines.tree.entry import Entry, Key, key_text, text_key
from inkind.engines.tree.handoff import CopyWorker, hands_off, walk_worker
from inkind.engines.tree.metadata import Metadata
from inkind.engines.tree.prefetch import Prefetcher
from inkind.engines.tree.scrubber import Scrubber
from inkind.engines.tree.selection import TreeSelection
from inkind.engines.tree.warm import warm_caches
from inkind.errors import SourceWarning
from inkind.source import RunContext
from inkind.store.files import is_temp_name
from inkind.store.paths import DIR_FLAGS, lstat_at, open_at
from inkind.ui import Progress, null_progress

SAVE_EVERY = 5.0  # seconds between saves of the resume pointer
HAND_OFF_FROM = 4  # files of a window from which some go to the worker
LOOK_FROM = 16  # entries of a window from which the worker looks at every other one


class Walker:
    """Makes ``run.data_dir`` mirror a source tree, directory by directory."""

    def __init__(
        self, run: RunContext, selection: TreeSelection, meta: Metadata, copier: Copier, scrubber: Scrubber
    ):
        self.run = run
        self.stats = run.stats
        self.selection = selection
        self.meta = meta
        self.copier = copier
        self.scrubber = scrubber
        self.root_dev = 0
        self.progress: Progress = null_progress
        self.last: Key | None = None  # the last completed entry
        self.checkpoints: Checkpoints | None = None  # only a backup walk keeps a resume pointer
        self.worker: CopyWorker | None = None  # only a backup walk hands files off
        self.dirs_ahead: DirsAhead | None = None  # only a walk with a worker opens ahead
        self._tick = 0
        self._next_save = 0.0
        # Re-list every stored directory to record its entries: the last
        # walk did not finish, so directories it left mid-way are not what
        # their user.inkind.entries says.
        self.recount = False

    def backup(self, src: int) -> None:
        """Walk the whole tree below ``src``, starting after the resume
        pointer and wrapping around to it, so repeated interruptions still
        advance."""
        st = os.fstat(src)
        self.root_dev = st.st_dev
        state = self.run.state
        resume = state.resume
        start = text_key(resume) if resume else None
        self.recount = state.partial or state.left_running or resume is not None
        state.mark_partial()  # durable before the walk's first write
        phases = [Bounds(lo=start), Bounds(hi=start)] if start else [Bounds()]
        total = previous_count(state)
        with (
            walk_worker(
                self.run, self.copier, self.selection
            ) as self.worker,  # (forked first: no thread of ours yet)
            self.run.progress("files", total=total, estimated=True) as progress,
            warm_caches(src, self.run.data_fd, total),
            Prefetcher() as self.copier.prefetch,
            Checkpoints(self.run) as self.checkpoints,
            self._dirs_ahead() as self.dirs_ahead,
        ):
            self.progress = progress
            try:
                for bounds in phases:
                    self.walk(src, self.run.data_fd, (), bounds)
            except BaseException:
                # Stopped (Ctrl-C, SIGTERM, an error): the next run
                # starts right after the last completed entry.
                self.save_pointer()
                raise
            finally:
                self.copier.prefetch = self.checkpoints = self.worker = self.dirs_ahead = None
        self.meta.apply(self.run.data_fd, None, st, xattrs_from=src, new=True)
        state.clear_partial()
        state.set_resume(None, force=True)

    def _dirs_ahead(self) -> contextlib.AbstractContextManager[DirsAhead | None]:
        """Directories opened ahead, where the worker looks (see ahead)."""
        if self.worker is None or self.run.full:
            return contextlib.nullcontext()
        only_dev = self.root_dev if self.selection.one_file_system else None
        return DirsAhead(
            lambda src, dst, key, names: self._place(src, dst, key, Bounds(), names, True), only_dev
        )

    def walk(  # size: the directory on both sides, where it is, and what was opened ahead
        self,
        src: int,
        dst: int,
        prefix: Key,
        bounds: Bounds,
        fresh: bool = False,
        opened: Opened | None = None,
    ) -> None:
        """Mirror the entries of one directory that fall within ``bounds``,
        a window at a time: each window's entries are looked at (lstat on
        both sides) before any is mirrored, so the files it will copy can be
        read ahead by the kernel meanwhile (see prefetch), and the worker
        looks at the next window's while this one is mirrored, unless this
        one holds a directory (whose walk talks to the worker itself).
        ``fresh``: the stored directory was made empty by this walk, so the
        store side has nothing to lstat; ``opened``: what was listed and
        asked ahead (see ahead)."""
        entries = opened.names if opened is not None else listing(src, prefix)
        chunks = [entries[start : start + WINDOW] for start in range(0, len(entries), WINDOW)]
        present: set[str] = set()
        added = self.recount  # whether the stored directory's names may have changed
        # The worker looks where a stored tree is compared with (not in a
        # full pass, which compares xattrs too).
        asking = self.worker is not None and not (fresh or self.run.full)
        ahead = opened.first if opened is not None else None  # the next window, placed and asked about
        for n, chunk in enumerate(chunks):
            window = ahead or self._place(src, dst, prefix, bounds, chunk, asking)
            self._look_ahead(src, dst, window, fresh)
            self._hand_off(src, dst, window.looks)
            ahead = None
            if (
                asking
                and n + 1 < len(chunks)
                and not window.stopped
                and not any(map(Look.is_dir, window.looks))
            ):
                ahead = self._place(src, dst, prefix, bounds, chunks[n + 1], asking)
            self.scrubber.draw(window.looks)
            prefetched = self._prefetch(src, window.looks)
            try:
                added = self._mirror_window(window.looks, bounds, present) or added
            finally:
                if prefetched is not None:
                    self.copier.prefetch.discard(prefetched)
            if window.stopped:
                break
        finish_directory(self.run, dst, prefix, present, bounds, added)

    def _place(  # size: the directory on both sides, where it is, and what is asked of it
        self, src: int, dst: int, prefix: Key, bounds: Bounds, names: list[tuple[bytes, str]], asking: bool
    ) -> Window:
        """A window's entries, placed in ``bounds``; when ``asking``, the
        walk's worker is asked to look at every other one (see handoff)
        while the walk goes on."""
        window = place_window(bounds, prefix, names)
        if asking and len(window.looks) >= LOOK_FROM:
            window.theirs = [look for look in window.looks[1::2] if look.where != "skip"]
            if window.theirs:
                window.reply = self.worker.ask(src, dst, prefix, [look.name for look in window.theirs])
        return window

    def _look_ahead(self, src: int, dst: int, window: Window, fresh: bool) -> None:
        """Look at a window's entries: those the worker was not asked about,
        then any it did not find settled (it looked at the others)."""
        theirs = window.theirs
        for look in window.looks[::2] if theirs else window.looks:
            self._look(src, dst, look, fresh)
        if theirs:
            settled = Settled(src, dst)
            for look, yes in zip(theirs, self.worker.settled(window.reply), strict=True):
                if yes:
                    look.found = settled
                    self.stats.objects_seen += 1
                else:
                    self._look(src, dst, look, fresh)

    def _look(self, src: int, dst: int, look: Look, fresh: bool) -> None:
        if look.where != "skip":
            try:
                look.found = self.look(src, dst, look.name, look.key, fresh)
            except SourceWarning as w:
                look.found = w

    def _prefetch(self, src: int, looks: list[Look]) -> object | None:
        """Hand the window's files that the walk will copy to the read-ahead."""
        if self.copier.prefetch is None:
            return None
        files = [
            (f.name, f.st)
            for f in (look.found for look in looks if not look.handed)
            if isinstance(f, Entry) and self.copier.will_read(f)
        ]
        return self.copier.prefetch.queue(src, files)

    def _hand_off(self, src: int, dst: int, looks: list[Look]) -> None:
        """Hand every other file of the window that is stored whole to the
        worker (see handoff), when there are enough to pay for the trip."""
        if self.worker is None:
            return
        files = [
            look
            for look in looks
            if isinstance(look.found, Entry) and self.copier.will_read(look.found) and hands_off(look.found)
        ][1::2]
        if len(files) >= HAND_OFF_FROM:
            for look in files:
                look.handed = True
            self.worker.send(src, dst, [look.found for look in files])

    def _mirror_window(self, looks: list[Look], bounds: Bounds, present: set[str]) -> bool:
        """Mirror a window's entries in order (the worker stores those handed
        to it meanwhile); whether the stored directory's names may have
        changed. The resume pointer passes an entry only once everything
        before it is stored: while the worker's batch is out, every entry
        waits, and a directory is walked only once the batch is in (its
        own windows hand off theirs)."""
        added = False
        waiting: list[Look] = []  # in order, from the batch's first entry on
        for i, look in enumerate(looks):
            out = self.worker is not None and self.worker.out
            if out and look.is_dir():
                added = self._settle(looks, waiting, bounds, present) or added
                waiting, out = [], False
            if out and (waiting or look.handed):  # (before the first handed entry, none waits)
                if not look.handed:
                    added = self._mirror(look, bounds, present) or added
                waiting.append(look)
                continue
            if self.dirs_ahead is not None and look.is_dir():
                self.dirs_ahead.entering(looks, i)
            added = self._mirror(look, bounds, present) or added  # (a handed one: its outcome)
            if look.where == "do":
                self._done(look.key)
        if waiting:
            added = self._settle(looks, waiting, bounds, present) or added
        return added

    def _settle(self, looks: list[Look], waiting: list[Look], bounds: Bounds, present: set[str]) -> bool:
        """The worker's batch is in: each handed entry of the window holds
        its outcome, those waiting are counted and reported as the walk's
        own, and the pointer passes them in order."""
        assert self.worker is not None
        outcomes = iter(self.worker.collect())
        for look in looks:
            if look.handed:
                outcome = next(outcomes)
                had = isinstance(look.found, Entry) and look.found.dst_st is not None
                look.found = outcome if outcome is not None else KEPT if had else ADDED
        added = False
        for look in waiting:
            if look.handed:
                added = self._mirror(look, bounds, present) or added
            if look.where == "do":
                self._done(look.key)
        return added

    def _mirror(self, look: Look, bounds: Bounds, present: set[str]) -> bool:
        """Mirror one looked-at entry (or, for one the worker stored, take
        its outcome); whether the stored directory's names may have
        changed."""
        if look.where == "skip":
            present.add(look.name)
            return False
        added = False
        try:
            found = look.found
            if isinstance(found, SourceWarning):
                raise found
            if isinstance(found, Settled):
                kept = self._settled(found, look)
            else:
                kept = (
                    found  # LEFT_OUT, or what the worker did
                    if isinstance(found, int)
                    else self.mirror(found, bounds if look.where == "enter" else Bounds(), look.scrub)
                )
        except SourceWarning as w:
            self.run.skip(w)
            self.stats.objects_skipped += 1
            kept = KEPT  # its previous copy stays (or none, if it had none)
            added = True  # it may have gone part of the way
        if kept:
            present.add(look.name)
            added = added or kept == ADDED
        return added

    def _settled(self, found: Settled, look: Look) -> int:
        """A file found to need nothing (see _look_ahead): counted, and
        scrubbed if drawn, as Copier.regular and mirror would."""
        self.stats.objects_unchanged += 1
        if look.scrub:
            self.scrubber.file(found.src, found.dst, look.name, look.key)
        return KEPT

    def _done(self, key: Key) -> None:
        """Advance the resume pointer; save it every few seconds."""
        if self.last is None or self.last[: len(key)] != key:
            self.last = key
        self._tick += 1
        if self._tick & 255 == 0:
            self.progress.advance(256)
            now = time.monotonic()
            if self.checkpoints is not None and now >= self._next_save:
                self.checkpoints.tick(self.last)
                self._next_save = now + SAVE_EVERY

    def save_pointer(self) -> None:
        """Record the resume pointer once what precedes it is durable."""
        if self.checkpoints is not None:
            self.checkpoints.now(self.last)

    def entry(self, src: int, dst: int, name: str, key: Key, bounds: Bounds) -> int:
        """Mirror one entry (and, for a directory, what is below it).

        Returns LEFT_OUT when the entry is not part of the backup (excluded,
        a cache directory, the store or its snapshot folder), so that a full
        pass removes its stored copy;
        else ADDED when its name was not in the store before, KEPT when it was.
        """
        found = self.look(src, dst, name, key)
        return found if found == LEFT_OUT else self.mirror(found, bounds)

    def look(self, src: int, dst: int, name: str, key: Key, fresh: bool = False) -> Entry | int:
        """One entry as both sides have it (lstat; none in a ``fresh``
        stored directory), or LEFT_OUT."""
        if is_temp_name(name):
            raise SourceWarning(f"{key_text(key)}: name is reserved for inkind temp files; skipped")
        try:
            st = os.stat(name, dir_fd=src, follow_symlinks=False)
        except FileNotFoundError:
            raise SourceWarning(f"{key_text(key)}: vanished during the backup") from None
        if not self.selection.keeps(self.run, src, name, key, st):
            return LEFT_OUT
        self.stats.objects_seen += 1
        if fresh:
            return Entry(src, dst, name, key, st, None)
        try:
            dst_st = lstat_at(dst, name)
        except FileNotFoundError:
            dst_st = None
        return Entry(src, dst, name, key, st, dst_st)

    def mirror(self, e: Entry, bounds: Bounds, scrub: bool = False) -> int:
        """Bring the stored copy of one looked-at entry up to date: ADDED
        or KEPT (see :meth:`entry`). A regular file found kept is scrubbed
        if ``scrub`` (drawn with its window; an entry restored on its own
        is one the store lacked, so nothing of it is kept)."""
        st, had = e.st, e.dst_st is not None
        if stat.S_ISREG(st.st_mode):
            if self.copier.regular(e) and scrub:
                self.scrubber.file(e.src, e.dst, e.name, e.key)
        elif stat.S_ISDIR(st.st_mode):
            self.directory(e, bounds)
        elif stat.S_ISLNK(st.st_mode):
            self.copier.symlink(e)
        else:
            self.copier.special(e)
        return KEPT if had else ADDED

    def restore(self, src: int, dst: int, name: str, key: Key) -> bool:
        """Bring one entry the store lacks back from the source (scrub's
        repair); whether it was added."""
        return self.entry(src, dst, name, key, Bounds()) == ADDED

    def directory(self, e: Entry, bounds: Bounds) -> None:
        new = make_directory(self.run, e)
        opened = self.dirs_ahead.take(e) if self.dirs_ahead is not None else None
        sfd = opened.src if opened is not None else open_source(e)
        try:
            if not self.selection.one_file_system or e.st.st_dev == self.root_dev:
                dfd = opened.dst if opened is not None else open_at(e.dst, e.name, DIR_FLAGS)
                try:
                    self.walk(sfd, dfd, e.key, bounds.inner(e.key), fresh=new, opened=opened)
                    self.meta.apply(dfd, None, os.fstat(sfd), xattrs_from=sfd, new=new)
                finally:
                    os.close(dfd)
            else:
                self.meta.apply(e.dst, e.name, e.st, xattrs_from=sfd, new=new)
        finally:
            os.close(sfd)
