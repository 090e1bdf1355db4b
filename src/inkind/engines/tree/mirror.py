"""The tree engine's front: one source tree mirrored into ``STORE/NAME``,
its backup, scrub and verify, for any source that has the tree at a path
(remote_mirror.py: a tree on another host).

It wires the parts (metadata, copier, scrubber, walker) for one run; a
source gives the root and a TreeSelection and calls backup() or scrub().
"""

from __future__ import annotations

import os
from pathlib import Path

from inkind.engines.tree.checkpoint import walk_unfinished
from inkind.engines.tree.copier import Copier
from inkind.engines.tree.metadata import Metadata
from inkind.engines.tree.scrubber import Scrubber
from inkind.engines.tree.selection import TreeSelection
from inkind.engines.tree.walker import Walker
from inkind.errors import SourceError
from inkind.findings import Finding
from inkind.source import RunContext
from inkind.verify import verify_tree


def note_fake_super(run: RunContext, meta: Metadata) -> None:
    """Tell a restore whether owners and modes are real or stand-ins."""
    if meta.as_root:
        run.state.plugin.pop("fake_super", None)
    else:
        run.state.plugin["fake_super"] = True


class TreeMirror:
    """Makes ``run.data_dir`` mirror the directory tree at ``root``: entry
    by entry, compared first, resumable, with owners, modes, xattrs and
    ACLs (as rsync's fake-super stand-ins when not run as root)."""

    def __init__(self, run: RunContext, root: str | Path, selection: TreeSelection | None = None):
        self.run = run
        self.root = str(root)
        self.meta = Metadata(run)
        self.copier = Copier(run, self.meta)
        self.scrubber = Scrubber(run, self.copier)
        self.walker = Walker(run, selection or TreeSelection(), self.meta, self.copier, self.scrubber)

    def _open_root(self) -> int:
        try:
            return os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            raise SourceError(f"source path {self.root}: {err.strerror}") from None

    def backup(self) -> None:
        """Bring the stored tree up to date (incremental unless
        ``run.full``, which also removes what the source no longer has),
        scrubbing the files ``run.should_scrub()`` picks."""
        if not os.path.isdir(self.root):
            raise SourceError(f"source path {self.root}: not a directory or missing")
        note_fake_super(self.run, self.meta)
        src = self._open_root()
        try:
            self.walker.backup(src)
        finally:
            os.close(src)
        self.scrubber.raise_corruption()

    def scrub(self) -> None:
        """Walk the store; check each sampled file against its checksum and
        against the source file at the same path, and each directory against
        its recorded entries (an entry gone from the store is named and
        brought back from the source)."""
        note_fake_super(self.run, self.meta)
        src = self._open_root()
        try:
            self.walker.root_dev = os.fstat(src).st_dev
            with self.run.progress("scrub") as progress:
                self.walker.progress = progress
                self.scrubber.walk(src, progress, self.walker.restore, not walk_unfinished(self.run))
        finally:
            os.close(src)
        self.scrubber.raise_corruption()


def verify_mirror(run: RunContext) -> list[Finding]:
    """Every stored file against its checksum, every directory against its
    recorded entries (differences are recoverable while a walk is
    unfinished: the next backup completes it)."""
    return verify_tree(run, unfinished=walk_unfinished(run))
