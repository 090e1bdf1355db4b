"""Which entries of a source tree its backup walk takes: the config's
excludes, one filesystem, cache directories, and never the store itself.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from inkind.engines.tree.entry import Key, key_text, log
from inkind.remote.walk import cache_tagged
from inkind.source import RunContext


@dataclass
class TreeSelection:
    """Which entries of a source tree are part of its backup.

    ``excluded(path, is_dir)`` is asked for each entry by its path relative
    to the root (None: nothing is excluded, and no path is made per entry);
    ``one_file_system`` keeps the walk out of directories on
    other filesystems (they are stored empty); ``exclude_caches`` leaves
    out directories tagged with a CACHEDIR.TAG. ``patterns``: the
    gitignore patterns behind ``excluded``, which a walk on another host
    sends there.
    """

    excluded: Callable[[str, bool], bool] | None = None
    patterns: Sequence[str] = ()
    one_file_system: bool = True
    exclude_caches: bool = True

    def keeps(self, run: RunContext, src: int, name: str, key: Key, st: os.stat_result) -> bool:
        """Whether the entry (``name`` in the source directory ``src``) is
        part of the backup; the store and its snapshot folder never are."""
        is_dir = stat.S_ISDIR(st.st_mode)
        kept_out = run.keep_out.which(st) if is_dir else None
        if kept_out is not None:  # the store, or its snapshots, in the source tree
            log.info("%s: %s: not entered: it is %s", run.name, key_text(key), kept_out)
            run.stats.objects_kept_out += 1
            return False
        if self.excluded is not None and self.excluded(key_text(key), is_dir):
            return False
        return not (is_dir and self.exclude_caches and cache_tagged(name, src))
