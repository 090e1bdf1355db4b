"""``user.inkind.entries``: what a stored directory should hold.

A directory that a source maintains entry by entry (the files source's
mirror) carries ``user.inkind.entries = "<count>:<xxh3-64 hex>"``: how many
entries it holds and the xxh3-64 of their names sorted as bytes and joined
by NUL (temps left out). It is set when the source finishes the directory,
only when it differs, so ``verify`` (the store alone) can tell when an entry
was deleted, or added, outside inkind: a checksum of each file says whether
what is there is whole, this says whether everything is there.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import xxhash

from inkind.stats import Stats
from inkind.store.files import is_temp_name
from inkind.store.xattrs import XAttrs

ENTRIES_KEY = "entries"


def entries_value(names: Iterable[str | bytes]) -> str:
    """``"<count>:<xxh3-64 hex>"`` of a directory holding ``names``."""
    raw = sorted(os.fsencode(n) for n in names if not is_temp_name(n))
    digest = xxhash.xxh3_64_hexdigest(b"\0".join(raw))
    return f"{len(raw)}:{digest}"


def record_entries(dir_fd: int, names: Iterable[str | bytes], stats: Stats | None = None) -> bool:
    """Record that ``dir_fd`` holds ``names``; write only if it changed."""
    x = XAttrs(dir_fd, stats=stats)
    value = entries_value(names).encode()
    if x.get(ENTRIES_KEY) == value:
        return False
    x[ENTRIES_KEY] = value
    return True


def has_entries(dir_fd: int) -> bool:
    return XAttrs(dir_fd).get(ENTRIES_KEY) is not None


def entries_problem(dir_fd: int, names: Iterable[str | bytes]) -> str | None:
    """How the directory's ``names`` differ from its recorded entries, or
    None when they match or nothing is recorded."""
    recorded = XAttrs(dir_fd).text(ENTRIES_KEY)
    if recorded is None:
        return None
    value = entries_value(names)
    if value == recorded:
        return None
    have = int(value.partition(":")[0])
    count, _, _ = recorded.partition(":")
    if not count.isdigit():
        return f"user.inkind.entries is malformed ({recorded!r})"
    want = int(count)
    if have < want:
        n = want - have
        return (
            f"{n} entr{'y' if n == 1 else 'ies'} missing (holds {have}, user.inkind.entries records {want})"
        )
    if have > want:
        n = have - want
        return (
            f"{n} entr{'y' if n == 1 else 'ies'} too many (holds {have}, user.inkind.entries records {want})"
        )
    return f"entries differ from user.inkind.entries (both {have}: some were replaced or renamed)"
