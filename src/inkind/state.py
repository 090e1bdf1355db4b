"""``STORE/.inkind/sources/NAME.json``: the small state of one source
(:class:`inkind.storeroot.StoreLayout` says where it is).

Written atomically (temp + rename) through update_file, so a reader never
sees half a file and an unchanged state costs no write. A state file that
does not parse is set aside as ``NAME.json.corrupt-<time>`` and rebuilt; it is
never silently trusted.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inkind.stats import Stats
from inkind.store.files import update_file

RESUME_SAVE_INTERVAL = 5.0


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def write_json(path: Path, data: Any, stats: Stats | None = None) -> bool:
    """Write ``data`` as JSON atomically; return whether the file changed.
    The temp is ``.inkind-tmp-<hex>.<file name>``: the next writer that
    holds the file's lock removes one a killed run left."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    return update_file(path, text.encode(), stats=stats, temp_tag=path.name)


@dataclass
class SourceState:
    """What the host remembers about one source between runs."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)
    set_aside: Path | None = None
    missing: bool = False
    left_running: bool = False
    _last_save: float = 0.0

    @classmethod
    def load(cls, path: Path) -> SourceState:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return cls(path, missing=True)
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except ValueError:
            aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
            os.rename(path, aside)
            return cls(path, set_aside=aside)
        return cls(path, data, left_running="running" in data)

    def save(self) -> None:
        write_json(self.path, self.data)
        self._last_save = time.monotonic()

    # The resume pointer: where an interrupted walk continues.
    @property
    def resume(self) -> str | None:
        return self.data.get("resume")

    def set_resume(self, pointer: str | None, *, force: bool = False) -> None:
        """Record the last completed object; saved at most every few seconds."""
        self.data["resume"] = pointer
        if force or time.monotonic() - self._last_save >= RESUME_SAVE_INTERVAL:
            self.save()

    # What a run left unfinished: verify reports what it finds then as
    # recoverable, since the next run completes it.
    @property
    def partial(self) -> bool:
        """A source flagged its work on the store as under way (the files
        source: a walk started and not completed)."""
        return bool(self.data.get("partial"))

    def mark_partial(self) -> None:
        """Flag the work as under way, durably, before the first store write.
        While the run's ``running`` marker is saved it says as much (a killed
        run leaves it, and the state is saved with the flag at the end of
        the run), so the flag waits for that save: one temp and fsync less."""
        if not self.partial:
            self.data["partial"] = True
            if "running" not in self.data:
                self.save()

    def clear_partial(self) -> None:
        """The work completed (saved with the state at the end of the run)."""
        self.data.pop("partial", None)

    @property
    def unfinished(self) -> bool:
        """Whether the store may be mid-change: the last run was killed (its
        ``running`` marker was left), a source flagged its work as partial,
        or the last backup was interrupted or failed."""
        last = self.data.get("last_backup")
        outcome = last.get("outcome") if isinstance(last, dict) else None
        return self.left_running or self.partial or outcome in ("interrupted", "failed")

    # Corruption the last check found: kept until a check of every object
    # is clean, so ``inkind status`` keeps failing until then.
    @property
    def corruption(self) -> dict[str, Any] | None:
        """``{command, end, objects, message}`` of the check that found
        corruption, or None."""
        found = self.data.get("corruption")
        return found if isinstance(found, dict) else None

    def note_check(self, command: str, end: str, corrupt: int, message: str, *, everything: bool) -> bool:
        """Record what a verify, scrub or backup (its sampled scrub) found;
        return whether the state changed. Corruption found is recorded; a
        clean check clears the record only when it looked at every object
        (verify, or a scrub fraction of 1): a sample that missed the bad
        object proves nothing."""
        before = self.corruption
        if corrupt:
            self.data["corruption"] = {"command": command, "end": end, "objects": corrupt, "message": message}
        elif everything:
            self.data.pop("corruption", None)
        return self.corruption != before

    @property
    def plugin(self) -> dict[str, Any]:
        """Free space for the source plugin's own small state."""
        return self.data.setdefault("plugin", {})
