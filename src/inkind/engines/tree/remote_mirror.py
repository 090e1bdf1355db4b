"""The tree engine's front for a tree on another host: the same store,
backup, scrub and verify as mirror.TreeMirror, with the walk's source side
a listing pulled over one connection a run (see pull). Its own module, so
a local tree's run imports none of the remote machinery.
"""

from __future__ import annotations

import os
from pathlib import Path

from inkind.engines.tree.checkpoint import walk_unfinished
from inkind.engines.tree.copier import Copier
from inkind.engines.tree.entry import Key
from inkind.engines.tree.metadata import Metadata
from inkind.engines.tree.mirror import note_fake_super
from inkind.engines.tree.pull import PullWalker
from inkind.engines.tree.scrubber import Scrubber
from inkind.engines.tree.selection import TreeSelection
from inkind.engines.tree.walker import Walker
from inkind.remote.channel import Channel, open_channel
from inkind.remote.ssh import SshTarget
from inkind.source import RunContext


class RemoteTreeMirror:
    """TreeMirror for a tree on another host (``target``: a source's
    ``remote``): the same store, backup, scrub and verify; only what is new
    or changed crosses the network (see pull), over one connection a run."""

    def __init__(
        self, run: RunContext, target: SshTarget, root: str | Path, selection: TreeSelection | None = None
    ):
        self.run, self.target, self.root = run, target, os.fsencode(root)
        self.meta = Metadata(run)
        self.scrubber = Scrubber(run, Copier(run, self.meta))
        self.walker = Walker(
            run, selection or TreeSelection(), self.meta, self.scrubber.copier, self.scrubber
        )

    def _pull(self, channel: Channel) -> PullWalker:
        return PullWalker(self.run, channel, self.root, self.walker.selection, self.walker)

    def backup(self) -> None:
        """As TreeMirror.backup; a file scrub finds corrupt is fetched again."""
        note_fake_super(self.run, self.meta)
        with open_channel(self.target, self.run.stats) as channel:
            self._pull(channel).backup()
        self.scrubber.raise_corruption()

    def scrub(self) -> None:
        """Walk the store; check each sampled file against its checksum and
        each directory against its recorded entries. A corrupt file is
        fetched from the host again (the host is reached only then); a
        directory's difference is named, and the next backup records it."""
        note_fake_super(self.run, self.meta)
        with self.run.progress("scrub") as progress:
            self.scrubber.walk(None, progress, _no_source, not walk_unfinished(self.run))
        if self.scrubber.unrepaired:
            with open_channel(self.target, self.run.stats) as channel:
                self._pull(channel).repair(self.scrubber.unrepaired)
        self.scrubber.raise_corruption()


def _no_source(src: int, dst: int, name: str, key: Key) -> bool:
    raise AssertionError("a scrub without a local source restores nothing")
