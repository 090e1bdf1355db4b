"""The outcome of a source's run, kept in its state: the corruption a
check found (until a check of every object is clean; ``inkind status``
reads it) and ``last_<command>``."""

from __future__ import annotations

from typing import Any

from inkind.errors import StoreError
from inkind.runner.report import OK, WARNINGS, SourceResult
from inkind.state import SourceState

CORRUPTION = "corruption: "


def note_check(state: SourceState, command: str, end: str, result: SourceResult, *, everything: bool) -> bool:
    """Record what this check found; ``everything``: it checked every
    object, so a clean outcome clears an older finding. Returns whether
    the record changed."""
    message = next((m.removeprefix(CORRUPTION) for m in result.messages if m.startswith(CORRUPTION)), "")
    clean_everywhere = everything and result.outcome in (OK, WARNINGS)
    return state.note_check(command, end, result.stats.objects_corrupt, message, everything=clean_everywhere)


def record_last(state: SourceState, command: str, end: str, result: SourceResult) -> dict[str, Any]:
    """Replace the running marker by ``last_<command>``, and return it."""
    running = state.data.pop("running", None) or {}
    last = {
        "command": command,
        "start": running.get("start", ""),
        "end": end,
        "outcome": result.outcome,
        "full": result.full,
        "stats": result.stats.as_dict(),
        "messages": result.messages[-20:],
    }
    state.data[f"last_{command}"] = last
    return last


def save_state(state: SourceState, name: str) -> None:
    """Save the state; a failure is a store error naming the source."""
    try:
        state.save()
    except OSError as e:
        raise StoreError(f"store: cannot record state of {name}: {e.strerror}") from None
