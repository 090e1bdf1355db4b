"""Storing the source entries that are neither directories nor regular
files with content: symlinks, fifos, sockets and device nodes (as rsync's
fake-super stand-ins when not run as root).

Each is made under a temp name, given its metadata and renamed into place
through the store primitives, so it is compared first, counted, and dry in
a dry run.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable

from inkind.engines.tree.entry import Entry, key_text, report_change
from inkind.engines.tree.metadata import Metadata
from inkind.errors import SourceWarning
from inkind.source import RunContext
from inkind.store.files import UpdateFile, temp_name
from inkind.store.tree import make_node, make_symlink, remove, rename


class NodeCopier:
    """Brings the stored copy of a symlink or special file up to date (the
    tree engine's Copier adds regular files)."""

    def __init__(self, run: RunContext, meta: Metadata):
        self.run = run
        self.stats = run.stats
        self.meta = meta

    def _changed(self, e: Entry) -> None:
        report_change(self.run, "create" if e.dst_st is None else "update", e.key)
        self.stats.objects_changed += 1

    def symlink(self, e: Entry) -> None:
        """A symlink's quick check is a regular file's: same length and mtime
        is unchanged, without reading either link (a readlink rewrites the
        stored link's atime under relatime; a full pass reads both)."""
        if self.meta.as_root and not self.run.full and _same_link(e):
            self.unchanged(e)
            return
        try:
            target = os.fsdecode(e.target) if e.target is not None else os.readlink(e.name, dir_fd=e.src)
        except FileNotFoundError:
            raise SourceWarning(f"{key_text(e.key)}: vanished during the backup") from None
        if not self.meta.as_root:
            self._fake_file(e, os.fsencode(target))
            return
        if (
            e.dst_st is not None
            and stat.S_ISLNK(e.dst_st.st_mode)
            and os.readlink(e.name, dir_fd=e.dst) == target
        ):
            self.unchanged(e)
            return
        self._replace(e, lambda tmp: make_symlink(target, e.dst, tmp))

    def special(self, e: Entry) -> None:
        """Fifos, sockets and device nodes: never opened, only recreated."""
        if not self.meta.as_root:
            self._fake_file(e, b"")
            return
        kind = stat.S_IFMT(e.st.st_mode)
        if (
            e.dst_st is not None
            and stat.S_IFMT(e.dst_st.st_mode) == kind
            and e.dst_st.st_rdev == e.st.st_rdev
        ):
            self.unchanged(e)
            return
        self._replace(e, lambda tmp: make_node(e.dst, tmp, kind | 0o600, e.st.st_rdev))

    def unchanged(self, e: Entry) -> None:
        self.stats.objects_unchanged += 1
        self.meta.apply(e.dst, e.name, e.st, xattrs_from=e.xattrs_from(), new=False, dst_st=e.dst_st)

    def _replace(self, e: Entry, make: Callable[[bytes], None]) -> None:
        """Create a non-regular entry under a temp name, set its metadata,
        and rename it into place."""
        if e.dst_st is not None and stat.S_ISDIR(e.dst_st.st_mode):
            remove(e.dst, e.name)
        tmp = temp_name()
        make(tmp)
        try:
            self.meta.apply(e.dst, os.fsdecode(tmp), e.st, xattrs_from=e.xattrs_from(), new=True)
            rename(e.dst, tmp, e.name)
        except BaseException:
            with contextlib.suppress(OSError):
                remove(e.dst, tmp)
            raise
        self._changed(e)

    def _fake_file(self, e: Entry, content: bytes) -> None:
        """Non-root: a symlink or special file stored as rsync's stand-in."""
        if e.dst_st is not None and stat.S_ISDIR(e.dst_st.st_mode):
            remove(e.dst, e.name)

        def before_commit(tfd: int) -> None:
            self.meta.apply(tfd, None, e.st, xattrs_from=None, new=True)

        with UpdateFile(
            e.name, dir_fd=e.dst, stats=self.stats, before_commit=before_commit, fsync=False
        ) as f:
            f.write(content)
        if f.changed:
            self._changed(e)
        else:
            self.stats.objects_unchanged += 1
            self.meta.apply(e.dst, e.name, e.st, xattrs_from=None, new=False)


def _same_link(e: Entry) -> bool:
    """The stored entry is a symlink as long as the source's, of its mtime."""
    d = e.dst_st
    return (
        d is not None
        and stat.S_ISLNK(d.st_mode)
        and (d.st_size, d.st_mtime_ns) == (e.st.st_size, e.st.st_mtime_ns)
    )
