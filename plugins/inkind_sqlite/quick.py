"""The quick check: a database whose files have not changed since the copy
in the store was made is not read again.

A database changes only by writes to its file or its ``-wal``, and a write
sets the file's mtime. A state younger than ``RACY_NS`` is never trusted: a
second write in the same timestamp tick would leave the mtime as it was.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

RACY_NS = 2_000_000_000


def source_key(path: Path) -> list[int] | None:
    """What identifies the database's current state (its file and -wal);
    None when it changed too recently to be trusted."""
    now = time.time_ns()
    key: list[int] = []
    for p in (path, Path(f"{path}-wal")):
        try:
            st = os.stat(p)
        except FileNotFoundError:
            key.append(-1)
            continue
        if now - st.st_mtime_ns < RACY_NS:
            return None
        key += [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    return key


def stored_key(fd: int) -> list[int]:
    """What identifies one version of the stored copy."""
    st = os.fstat(fd)
    return [st.st_ino, st.st_size, st.st_mtime_ns]
