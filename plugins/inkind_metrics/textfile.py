"""Render the store's per-source state as Prometheus text and write it
atomically (temp + rename in the target directory, as node_exporter asks)."""

from __future__ import annotations

import calendar
import os
import tempfile
import time
from pathlib import Path

import inkind

OUTCOMES = ("ok", "warnings", "failed", "busy", "interrupted")

# metric name, help, and how to get the value from a source's state
GAUGES = [
    (
        "inkind_last_success_timestamp_seconds",
        "End of the last backup that succeeded (ok or warnings).",
        lambda st, last: _epoch(st.get("last_success")),
    ),
    (
        "inkind_last_run_timestamp_seconds",
        "End of the last backup run.",
        lambda st, last: _epoch(last.get("end")),
    ),
    (
        "inkind_last_full_pass_timestamp_seconds",
        "End of the last completed full pass.",
        lambda st, last: _epoch(st.get("last_full_pass")),
    ),
    (
        "inkind_last_run_duration_seconds",
        "Duration of the last backup run.",
        lambda st, last: last.get("stats", {}).get("duration_seconds"),
    ),
    (
        "inkind_last_run_bytes_read",
        "Bytes read from the source by the last backup run.",
        lambda st, last: last.get("stats", {}).get("bytes_read"),
    ),
    (
        "inkind_last_run_bytes_written",
        "Bytes written to the store by the last backup run.",
        lambda st, last: last.get("stats", {}).get("bytes_written"),
    ),
    (
        "inkind_last_run_bytes_received",
        "Bytes that came over the network from a remote host in the last backup run.",
        lambda st, last: last.get("stats", {}).get("bytes_received"),
    ),
    (
        "inkind_last_run_objects_changed",
        "Objects the last backup run changed in the store.",
        lambda st, last: last.get("stats", {}).get("objects_changed"),
    ),
    (
        "inkind_last_run_objects_repaired",
        "Objects scrub repaired in the last backup run.",
        lambda st, last: last.get("stats", {}).get("objects_repaired"),
    ),
    (
        "inkind_last_run_objects_corrupt",
        "Corrupt stored objects found by the last backup run.",
        lambda st, last: last.get("stats", {}).get("objects_corrupt"),
    ),
    (
        "inkind_last_run_warnings",
        "Warnings of the last backup run.",
        lambda st, last: last.get("stats", {}).get("warnings"),
    ),
]


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    return float(calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(store: inkind.StoreLayout, config: inkind.Config) -> str:
    """The textfile's content for every configured source."""
    states = {name: store.load_state(name).data for name in config.sources}
    lines: list[str] = []
    for metric, help_text, get in GAUGES:
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
        for name, src in config.sources.items():
            value = get(states[name], states[name].get("last_backup", {}))
            if value is not None:
                lines.append(f'{metric}{{source="{_label(name)}",type="{_label(src.type)}"}} {value}')
    lines += [
        "# HELP inkind_last_run_outcome Outcome of the last backup run (1 for the outcome it had).",
        "# TYPE inkind_last_run_outcome gauge",
    ]
    for name, src in config.sources.items():
        outcome = states[name].get("last_backup", {}).get("outcome")
        if outcome is None:
            continue
        for o in OUTCOMES:
            lines.append(
                f'inkind_last_run_outcome{{source="{_label(name)}",type="{_label(src.type)}",outcome="{o}"}} '
                f"{int(o == outcome)}"
            )
    return "\n".join(lines) + "\n"


def write_textfile(text: str, target: Path) -> None:
    """Replace ``target`` with ``text`` atomically, so node_exporter never reads half."""
    fd, tmp = tempfile.mkstemp(prefix=".inkind-", suffix=".prom.tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.rename(tmp, target)  # outside the store: the node_exporter textfile, replaced in its directory
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
