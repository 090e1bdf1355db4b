"""The run report each snapshot holds: ``.inkind/last-run.json``, written
into the store before a snapshot is taken, so a snapshot says itself which
sources ran, their outcome and stats."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from inkind.state import write_json
from inkind.store.files import sweep_tagged_temps

LAST_RUN = ".inkind/last-run.json"


def record_run(store: Path, report: dict[str, Any]) -> None:
    """Write the run's report into ``.inkind/`` so each snapshot says which
    sources ran, their outcome and stats. Two runs (of different sources)
    take turns on an flock of ``.inkind/``, and each removes the temp of a
    killed run's unfinished write first."""
    path = store / LAST_RUN
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        sweep_tagged_temps(fd, path.name)
        write_json(path, report)
    finally:
        os.close(fd)


def read_last_run(snap_store: Path | None) -> dict[str, Any] | None:
    """The run report a snapshot holds, or None (unmounted or unreadable)."""
    if snap_store is None:
        return None
    try:
        return json.loads((snap_store / LAST_RUN).read_text())
    except (OSError, ValueError):
        return None
