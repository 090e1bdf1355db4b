"""The directories no source may enter or read: the store and its snapshot
folder. A source that did would copy the store into itself, one level
deeper each time it meets its own copy.

They are known by identity (``st_dev``, ``st_ino``), not by path string, so
that a bind mount of the store, a symlink to it, or ``path = "/"`` with the
store under ``/srv`` are all recognised.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class KeepOut:
    """Directory identities mapped to what they are ("the store /srv/backup")."""

    dirs: dict[tuple[int, int], str] = field(default_factory=dict)

    @classmethod
    def of(cls, named: list[tuple[str, Path]]) -> KeepOut:
        """The directories of ``named`` ((what, path) pairs) that exist now."""
        dirs: dict[tuple[int, int], str] = {}
        for what, path in named:
            try:
                st = os.stat(path)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                dirs.setdefault((st.st_dev, st.st_ino), f"{what} {path}")
        return cls(dirs)

    def which(self, st: os.stat_result) -> str | None:
        """What the directory ``st`` describes is, when it is kept out."""
        return self.dirs.get((st.st_dev, st.st_ino))

    def around(self, path: Path) -> str | None:
        """The kept-out directory that ``path`` is or lies in (symlinks
        resolved), else None. Components that do not exist, such as a
        glob's wildcards, are passed over."""
        real = Path(os.path.realpath(path))
        for p in (real, *real.parents):
            try:
                st = os.stat(p)
            except OSError:
                continue
            what = self.which(st)
            if what is not None:
                return what
        return None
