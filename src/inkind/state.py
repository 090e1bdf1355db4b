"""``STORE/.inkind/sources/NAME.json``: the small state of one source.

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
    """Write ``data`` as JSON atomically; return whether the file changed."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    return update_file(path, text.encode(), stats=stats)


@dataclass
class SourceState:
    """What the host remembers about one source between runs."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)
    set_aside: Path | None = None
    _last_save: float = 0.0

    @classmethod
    def load(cls, path: Path) -> SourceState:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return cls(path)
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except ValueError:
            aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
            os.rename(path, aside)
            return cls(path, set_aside=aside)
        return cls(path, data)

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

    @property
    def plugin(self) -> dict[str, Any]:
        """Free space for the source plugin's own small state."""
        return self.data.setdefault("plugin", {})
