"""Scrub of a mirrored tree: stored files against their checksums and the
source, stored directories against their recorded entries.

A stored file that fails its own checksum, or a directory whose entries
differ from ``user.inkind.entries``, is corruption: named in the log and
in the error that ends the run (exit 2), and rebuilt from the source when
the source is at hand.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

from inkind.engines.tree.bounds import Look, Settled
from inkind.engines.tree.copier import Copier
from inkind.engines.tree.entry import READ_FLAGS, Entry, Key, key_text, log
from inkind.engines.tree.prefetch import AHEAD_FLAGS
from inkind.errors import CorruptionError, SourceWarning
from inkind.hashing import hash_fd
from inkind.source import RunContext
from inkind.store.entries import entries_problem, record_entries
from inkind.store.files import is_temp_name
from inkind.store.meta import set_mtime
from inkind.store.noatime import open_noatime
from inkind.store.paths import DIR_FLAGS, list_dir, open_at
from inkind.store.xattrs import XAttrs
from inkind.ui import Progress

# Brings back one entry the store lacks from the source (src, dst, name,
# key); says whether it was added.
Restore = Callable[[int, int, str, Key], bool]


class Scrubber:
    """Checks stored files and directories, repairs from the source, and
    keeps the list of what was found corrupt."""

    def __init__(self, run: RunContext, copier: Copier):
        self.run = run
        self.stats = run.stats
        self.copier = copier
        self.corrupt: list[str] = []
        self.unrepaired: list[Key] = []  # corrupt files with no local source to rebuild them from

    def file(self, src: int | None, dst: int, name: str, key: Key) -> None:
        """Check one stored file against its checksum, then the source.

        A stored file that fails its own checksum is corruption, rebuilt
        from the source when it is at hand. A file that only differs from a
        source with the same size and mtime is repaired and counted.
        """
        self.stats.objects_scrubbed += 1
        rel = f"{self.run.name}/{key_text(key)}"
        fd = open_at(dst, name, READ_FLAGS)
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
            why = "content does not match user.inkind.xxh3" if want else "no user.inkind.xxh3"
            log.error("%s: corruption: %s: %s", self.run.name, rel, why)
        if src is None:
            if corrupt:
                self.unrepaired.append(key)
            return
        try:
            st = os.stat(name, dir_fd=src, follow_symlinks=False)
        except FileNotFoundError:
            return
        same_meta = (st.st_size, st.st_mtime_ns) == (dst_st.st_size, dst_st.st_mtime_ns)
        if not stat.S_ISREG(st.st_mode) or not same_meta:
            return  # a pending change, not a scrub finding: the next backup copies it
        if not corrupt and self._same_as_source(src, name, st, got):
            return
        if not corrupt:
            log.info(
                "%s: %s: differed from the source with the same size and mtime; repaired", self.run.name, rel
            )
        self.copier.copy(Entry(src, dst, name, key, st, None))
        self.stats.objects_repaired += 1
        # The rename touched the stored directory: give it back its mtime.
        set_mtime(dst, os.fstat(src).st_mtime_ns, stats=self.stats)

    def draw(self, looks: list[Look]) -> None:
        """Draw which of a window's files that may be kept are scrubbed, once
        the walk has looked at the window and before it mirrors it, and
        have the kernel start reading both copies of each drawn: the scrub
        then hashes them from memory, its reads no longer waited for one
        by one."""
        for look in looks:
            found = look.found
            if isinstance(found, Settled) or (isinstance(found, Entry) and self.copier.may_keep(found)):
                look.scrub = self.run.should_scrub()
                if look.scrub:
                    self.read_ahead(found.src, found.dst, look.name)

    def read_ahead(self, src: int, dst: int, name: str) -> None:
        """Have the kernel start reading both copies of a file to be
        scrubbed; only a hint, so any failure is left to the scrub itself
        to meet and report."""
        _will_need(dst, name, store=True)
        _will_need(src, name, store=False)

    def _same_as_source(self, src: int, name: str, st: os.stat_result, stored_hash: str | None) -> bool:
        sfd = open_noatime(name, READ_FLAGS, dir_fd=src)
        try:
            src_hash, n = hash_fd(sfd, st.st_size)
        finally:
            os.close(sfd)
        self.stats.bytes_read += n
        return src_hash == stored_hash

    def walk(self, src_root: int | None, progress: Progress, restore: Restore, check_entries: bool) -> None:
        """Walk the store; check each sampled file against its checksum and
        against the source file at the same path, and (``check_entries``)
        each directory against its recorded entries (an entry gone from the
        store is named and brought back from the source with ``restore``).
        ``src_root`` None: no local source (a tree on another host)."""
        src = os.dup(src_root) if src_root is not None else None
        stack: list[tuple[int, int | None, Key]] = [(os.dup(self.run.data_fd), src, ())]
        while stack:
            dst, src, prefix = stack.pop()
            try:
                names = sorted(list_dir(dst), key=os.fsencode)
                if check_entries:
                    names = self._entries(src, dst, prefix, names, restore)
                for name in names:
                    if is_temp_name(name):
                        continue
                    key = (*prefix, os.fsencode(name))
                    st = os.stat(name, dir_fd=dst, follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        stack.append((open_at(dst, name, DIR_FLAGS), _open_dir(src, name), key))
                    elif stat.S_ISREG(st.st_mode) and self.run.should_scrub():
                        progress.advance()
                        try:
                            self.file(src, dst, name, key)
                        except SourceWarning as w:
                            self.run.skip(w)
            finally:
                os.close(dst)
                if src is not None:
                    os.close(src)

    def _entries(
        self, src: int | None, dst: int, prefix: Key, names: list[str], restore: Restore
    ) -> list[str]:
        """Compare one stored directory with its ``user.inkind.entries``.

        A difference is corruption: named (with each entry the source has and
        the store lacks, which is brought back from the source, as scrub
        rebuilds a corrupt file), and the directory's entries are recorded
        anew. Returns the directory's names afterwards.
        """
        problem = entries_problem(dst, names)
        if problem is None:
            return names
        run = self.run
        rel = "/".join([run.name, key_text(prefix)]) if prefix else run.name
        run.stats.objects_corrupt += 1
        log.error("%s: corruption: %s: %s: deleted or added outside inkind", run.name, rel, problem)
        if src is None:
            self.corrupt.append(rel)
            return names
        was_partial = run.state.partial
        run.state.mark_partial()  # a kill while entries come back leaves them to the next backup
        restored = self._bring_back(src, dst, prefix, set(names), restore)
        for r in restored:
            log.error("%s: corruption: %s: missing from the store; brought back from the source", run.name, r)
        run.stats.objects_repaired += len(restored)
        self.corrupt += restored or [rel]
        names = sorted(list_dir(dst), key=os.fsencode)
        record_entries(dst, names, run.stats)
        # The deletion and the repair touched the stored directory (as scrub's
        # file repair does, it gets the source directory's mtime back).
        set_mtime(dst, os.fstat(src).st_mtime_ns, stats=run.stats)
        if not was_partial:
            run.state.clear_partial()
        return names

    def _bring_back(self, src: int, dst: int, prefix: Key, have: set[str], restore: Restore) -> list[str]:
        """Restore each entry of the source directory the stored one lacks;
        the store-relative paths of those that came back."""
        restored = []
        for name in sorted(os.listdir(src), key=os.fsencode):
            if name in have or is_temp_name(name):
                continue
            key = (*prefix, os.fsencode(name))
            try:
                if restore(src, dst, name, key):
                    restored.append(f"{self.run.name}/{key_text(key)}")
            except SourceWarning as w:
                self.run.skip(w)
        return restored

    def raise_corruption(self) -> None:
        """End the run with exit 2 if scrub found corruption."""
        if self.corrupt:
            shown = ", ".join(self.corrupt[:10]) + (" ..." if len(self.corrupt) > 10 else "")
            raise CorruptionError(shown, f"{len(self.corrupt)} stored object(s) corrupt or missing")


def _will_need(dir_fd: int, name: str, store: bool) -> None:
    """Open one copy of a file (never blocking on a fifo swapped in), advise
    the kernel to read it, close it."""
    try:
        fd = open_at(dir_fd, name, AHEAD_FLAGS) if store else open_noatime(name, AHEAD_FLAGS, dir_fd=dir_fd)
    except OSError:
        return
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
    except OSError:
        pass
    finally:
        os.close(fd)


def _open_dir(parent: int | None, name: str) -> int | None:
    """The source directory matching a stored one, or None where the
    source has none (its files are then checked against their checksums
    alone)."""
    if parent is None:
        return None
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent)
    except OSError:
        return None
