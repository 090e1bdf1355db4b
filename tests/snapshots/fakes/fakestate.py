"""State shared by the fake storage commands: one JSON file named by
$FAKE_STORAGE holding mounts, volumes, datasets, the calls made, and which
commands should fail."""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def load() -> dict[str, Any]:
    with open(os.environ["FAKE_STORAGE"]) as f:
        return json.load(f)


def save(state: dict[str, Any]) -> None:
    with open(os.environ["FAKE_STORAGE"], "w") as f:
        json.dump(state, f, indent=1)


def called(name: str) -> dict[str, Any]:
    """Record the call; fail as the real tool would when asked to."""
    state = load()
    state.setdefault("calls", []).append([name, *sys.argv[1:]])
    save(state)
    if name in state.get("fail", []):
        print(f"  {name}: simulated failure (device busy)", file=sys.stderr)
        sys.exit(5)
    return state
