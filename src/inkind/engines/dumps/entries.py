"""The entries of ``STORE/NAME`` that hold dumps: their names, which
databases are dumped, what is stored, and how one stored file is counted.

An entry is one plain, visible directory entry per database (a file, or a
flat directory of files for a tool that writes several).
"""

from __future__ import annotations

import os
import stat
from urllib.parse import unquote

from inkind.errors import SourceError
from inkind.source import RunContext
from inkind.store.files import is_temp_name
from inkind.store.paths import list_dir

CHUNK = 1 << 20
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def entry_name(name: str, suffix: str = "") -> str:
    """The store name of a database: ``/`` and ``%`` and a leading dot are
    percent-encoded, so every name is one plain, visible directory entry."""
    encoded = "".join(f"%{ord(c):02X}" if c in "%/" or ord(c) < 0x20 or c == "\x7f" else c for c in name)
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    return encoded + suffix


def database_of(entry: str, suffix: str = "") -> str:
    """The database name a store entry holds (inverse of :func:`entry_name`)."""
    return unquote(entry.removesuffix(suffix) if suffix else entry)


def select_databases(listed: list[str], wanted: list[str], excluded: list[str]) -> list[str]:
    """``wanted`` (all ``listed`` when empty) minus ``excluded``, in order.

    A wanted name the server did not list is kept: its dump then fails with
    the tool's own message and its previous dump is kept.
    """
    names = wanted or listed
    return [n for n in dict.fromkeys(names) if n not in set(excluded)]


def stored_entries(data_fd: int) -> list[str]:
    """The entries of ``STORE/NAME`` (temps left out), sorted."""
    return sorted(n for n in list_dir(data_fd) if not is_temp_name(n))


def regular_files(dir_fd: int) -> list[str]:
    """The regular files of a flat directory (temps left out), sorted."""
    names = []
    for name in list_dir(dir_fd):
        if is_temp_name(name):
            continue
        if not stat.S_ISREG(os.lstat(name, dir_fd=dir_fd).st_mode):
            raise SourceError(f"{name}: unexpected non-regular file in a dump directory")
        names.append(name)
    return sorted(names)


def count(run: RunContext, changed: bool) -> None:
    """Count one stored dump file as seen, and as changed or unchanged."""
    run.stats.objects_seen += 1
    if changed:
        run.stats.objects_changed += 1
    else:
        run.stats.objects_unchanged += 1
