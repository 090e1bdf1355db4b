"""Which database files the ``path`` option names, and the name each one is
stored under.

A plain path is one database, stored under its base name. A glob is stored
by each match's path relative to the glob's fixed prefix (the leading
directories without wildcards), so two matches can never collide:
``/srv/*/app.db`` stores ``/srv/a/app.db`` as ``a/app.db``.
"""

from __future__ import annotations

import glob
import logging
from dataclasses import dataclass
from pathlib import Path

from inkind import RunContext, SourceError

log = logging.getLogger("inkind")

SIDE_SUFFIXES = ("-wal", "-shm", "-journal")


@dataclass(frozen=True)
class Database:
    path: Path  # the live database file
    name: str  # stored as STORE/NAME/<name>


def is_glob(path: Path) -> bool:
    return glob.has_magic(str(path))


def fixed_prefix(pattern: Path) -> Path:
    """The leading directories of ``pattern`` that hold no wildcard."""
    prefix = Path(pattern.anchor)
    for part in pattern.parts[1:-1]:
        if glob.has_magic(part):
            break
        prefix /= part
    return prefix


def find_databases(pattern: Path, run: RunContext) -> list[Database]:
    """The databases ``pattern`` names, sorted by stored name.

    Matches that are not regular files are skipped, and so are a matched
    database's own ``-wal``/``-shm``/``-journal`` files, and matches in the
    store or its snapshot folder (a glob over a tree that holds the store
    would store the store's copies again, one level deeper each run). A glob that matches
    nothing is an error, so that a missing mount never empties the store in a
    full pass. A plain path is returned as it is: reading it names any
    problem with it.
    """
    if not is_glob(pattern):
        return [Database(pattern, pattern.name)]
    prefix = fixed_prefix(pattern)
    matches = set(glob.glob(str(pattern), recursive=True))
    found = []
    for match in sorted(matches):
        if any(match.endswith(s) and match[: -len(s)] in matches for s in SIDE_SUFFIXES):
            continue
        path = Path(match)
        kept_out = run.keep_out.around(path)
        if kept_out is not None:
            log.info("%s: %s: left out: it is in %s", run.name, path, kept_out)
            run.stats.objects_kept_out += 1
        elif path.is_file():
            found.append(Database(path, path.relative_to(prefix).as_posix()))
    if not found:
        raise SourceError(f"source path {pattern}: no database file matches")
    return found
