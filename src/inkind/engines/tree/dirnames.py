"""The stored copy of a source directory: made before its walk where it is
missing, and once the walk is done, what it holds: in a full pass the names
the source no longer has are swept, and the directory's entries are
recorded (``user.inkind.entries``) where they may have changed."""

from __future__ import annotations

import os
import stat

from inkind.engines.tree.bounds import Bounds
from inkind.engines.tree.entry import Entry, Key, report_change
from inkind.source import RunContext
from inkind.store.entries import has_entries, record_entries
from inkind.store.files import is_temp_name
from inkind.store.paths import list_dir
from inkind.store.tree import make_dir, remove


def make_directory(run: RunContext, e: Entry) -> bool:
    """The stored directory of a source directory, made if missing (in
    place of what else is there), and counted; whether it is new."""
    new = e.dst_st is None or not stat.S_ISDIR(e.dst_st.st_mode)
    if new:
        if e.dst_st is not None:
            remove(e.dst, e.name)
        make_dir(e.dst, e.name)
        report_change(run, "create", e.key)
        run.stats.objects_changed += 1
    else:
        run.stats.objects_unchanged += 1
    return new


def finish_directory(  # size: the stored directory, where it is, and what its walk found
    run: RunContext, dst: int, prefix: Key, present: set[str], bounds: Bounds, changed: bool
) -> None:
    """Sweep (full pass) and record the stored directory ``dst``;
    ``present``: the names the walk kept, ``changed``: whether its names
    may have changed in this run."""
    listed = sweep(run, dst, prefix, present, bounds) if run.full else None
    record(run, dst, listed, changed)


def sweep(run: RunContext, dst: int, prefix: Key, present: set[str], bounds: Bounds) -> list[str]:
    """Full pass: remove what the source no longer has (within bounds).
    Returns the names the stored directory holds afterwards."""
    left = []
    for name in list_dir(dst):
        if name in present:
            left.append(name)
            continue
        key = (*prefix, os.fsencode(name))
        if not is_temp_name(name) and bounds.place(key) != "do":
            left.append(name)
            continue
        remove(dst, name)
        if not is_temp_name(name):
            report_change(run, "delete", key)
            run.stats.objects_deleted += 1
    return left


def record(run: RunContext, dst: int, listed: list[str] | None, changed: bool) -> None:
    """Record the stored directory's entries (``user.inkind.entries``).

    Only a directory whose names may have changed in this run is listed
    again (the sweep's listing serves in a full pass), so an unchanged
    tree costs one getxattr per directory and no write.
    """
    if listed is None:
        if not changed and has_entries(dst):
            return
        listed = list_dir(dst)
    record_entries(dst, listed, run.stats)
