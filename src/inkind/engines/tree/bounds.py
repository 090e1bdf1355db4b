"""Where an entry falls in a walk: the bounds of a resumed walk's phases,
and the entries of a look-ahead window with what looking at each found.

Keys are tuples of name components, so tuple order is the walk order
(a directory sorts before its contents).
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from inkind.engines.tree.entry import Entry, Key
from inkind.errors import SourceWarning

if TYPE_CHECKING:
    from inkind.engines.tree.handoff import Reply

# What Walker.entry says about one source entry.
LEFT_OUT = 0  # not part of the backup (excluded, a cache directory)
KEPT = 1  # part of the backup, and its name was in the store already
ADDED = 2  # part of the backup, and its name was not in the store before


@dataclass(frozen=True)
class Settled:
    """What a look found of a regular file that needs nothing at all (the
    walk's worker looked: see handoff): where it is, for a scrub."""

    src: int
    dst: int


@dataclass
class Look:
    """One entry of a window: where it falls in the walk's bounds, and what
    looking at it found (an Entry, Settled, LEFT_OUT, or the warning to
    give when its turn comes); ``handed``: the walk's worker stores it, and ``found``
    becomes what it did (KEPT, ADDED or the warning); ``scrub``: drawn to be
    scrubbed if its stored copy is found up to date."""

    name: str
    key: Key
    where: str
    found: Entry | Settled | int | SourceWarning = LEFT_OUT
    handed: bool = False
    scrub: bool = False

    def is_dir(self) -> bool:
        """Whether it was found a directory (mirroring it walks below it)."""
        return isinstance(self.found, Entry) and stat.S_ISDIR(self.found.st.st_mode)


@dataclass
class Bounds:
    """Which part of the tree a walk phase covers: keys in (lo, hi].

    Keys are tuples of name components, so tuple order is the walk order
    (a directory sorts before its contents). A directory that is an ancestor
    of a bound is entered but only partly walked.
    """

    lo: Key | None = None
    hi: Key | None = None

    def place(self, key: Key) -> str:
        """ "skip", "stop", "enter" (ancestor of a bound) or "do"."""
        n = len(key)
        if self.lo is not None and key <= self.lo:
            return "enter" if self.lo[:n] == key and key != self.lo else "skip"
        if self.hi is not None:
            if self.hi[:n] == key and key != self.hi:
                return "enter"
            if key == self.hi:
                return "skip"
            if key > self.hi:
                return "stop"
        return "do"

    def inner(self, key: Key) -> Bounds:
        """The bounds that still apply below ``key``."""
        n = len(key)
        lo = self.lo if self.lo is not None and self.lo[:n] == key else None
        hi = self.hi if self.hi is not None and self.hi[:n] == key else None
        return Bounds(lo, hi)


@dataclass
class Window:
    """Up to WINDOW entries of one directory, placed in the walk's bounds:
    those before where the walk stops, whether it stops within them, and
    those the walk's worker was asked to look at (see Walker._place), and
    its answer to come."""

    looks: list[Look]
    stopped: bool
    theirs: list[Look] = field(default_factory=list)
    reply: Reply | None = None


def place_window(bounds: Bounds, prefix: Key, names: list[tuple[bytes, str]]) -> Window:
    """The window of ``names`` (raw and decoded) below ``prefix``, placed
    in ``bounds`` (nothing is looked at yet)."""
    if bounds.lo is None and bounds.hi is None:  # (the whole directory: most walks)
        return Window([Look(name, (*prefix, raw), "do") for raw, name in names], stopped=False)
    looks = []
    for raw, name in names:
        key = (*prefix, raw)
        where = bounds.place(key)
        if where == "stop":
            return Window(looks, stopped=True)
        looks.append(Look(name, key, where))
    return Window(looks, stopped=False)
