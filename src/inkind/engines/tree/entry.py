"""One entry of a tree walk: its key, both sides of it, and how it is named.

Keys are tuples of name components as bytes, so tuple order is the walk
order and every byte string the kernel allows round-trips; names are
``str`` with surrogate escapes, as ``os.listdir`` gives them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from inkind.errors import SourceWarning
from inkind.source import RunContext

if TYPE_CHECKING:  # a local walk's entries never hold one: no import at run time
    from inkind.remote.listing import RemoteStat

Key = tuple[bytes, ...]
REMOTE = -1  # an Entry's src when it comes from a remote listing (no fd)
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC

log = logging.getLogger("inkind")


@dataclass
class Entry:
    """One entry being mirrored: its directories on both sides, its name,
    its place in the walk, and what lstat said on each side."""

    src: int  # the source directory's fd (REMOTE: a host's listing, see xattrs)
    dst: int  # the store directory's fd
    name: str
    key: Key
    st: os.stat_result | RemoteStat
    dst_st: os.stat_result | None
    same: bool | None = None  # the copier's up-to-date verdict, once asked
    # An entry of a remote listing carries what a local one is asked for:
    # its xattrs (names as str) and a symlink's target.
    xattrs: dict[str, bytes] | None = None
    target: bytes | None = None

    def xattrs_from(self) -> dict[str, bytes] | tuple[int, str]:
        """Where the stored entry's xattrs come from (see Metadata.apply)."""
        return self.xattrs if self.xattrs is not None else (self.src, self.name)


class Changed(SourceWarning):
    """The source file changed while it was read; its old copy is kept."""


def key_text(key: Key) -> str:
    return os.fsdecode(b"/".join(key))


def text_key(text: str) -> Key:
    return tuple(p for p in os.fsencode(text).split(b"/") if p)


def report_change(run: RunContext, change: str, key: Key) -> None:
    """A dry run names each entry it would create, update or delete
    (the counts alone say how much)."""
    if run.dry_run:
        log.info("%s: would %s %s", run.name, change, key_text(key))
