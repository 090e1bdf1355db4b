"""``inkind status``: store health and the last run of each source."""

import calendar
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click

from inkind.cli.common import emit_json, json_option
from inkind.config import DURATION_UNITS, SourceConfig
from inkind.errors import InkindError
from inkind.history.folders import provider_for
from inkind.history.last_run import read_last_run
from inkind.state import SourceState
from inkind.store.journal import JOURNAL_DIR
from inkind.storeroot import StoreLayout, unusable_store
from inkind.ui import human_bytes

NO_HISTORY = (
    "NONE: store.snapshots is 'none' (or 'auto' found no way to snapshot), so the store holds "
    "the latest state only: a deletion or an encrypted file reaches it on the next run"
)


@dataclass
class Problem:
    """One reason for exit 2: what is wrong, naming it, and what to do."""

    what: str
    todo: str

    def __str__(self) -> str:
        return f"{self.what} -> {self.todo}"


def store_problem(store: Path, not_a_store: str | None) -> Problem | None:
    """Why the store cannot take a backup: missing, never made by init, on
    another filesystem than init recorded (an unmounted disk: ``not_a_store``,
    as :func:`unusable_store` says it), or not writable (a backup could not
    even record that it failed)."""
    if not_a_store:
        return Problem(not_a_store, "mount the backup disk (a new store: inkind init)")
    if os.statvfs(store).f_flag & os.ST_RDONLY:
        return Problem(
            f"store {store} is on a read-only filesystem: every backup fails",
            "find why (dmesg: the kernel remounts a failing disk read-only), then mount -o remount,rw",
        )
    state_dir = StoreLayout(store).state_dir
    for path in (store, state_dir.parent, state_dir):
        if path.is_dir() and not os.access(path, os.W_OK):
            return Problem(
                f"store {store}: {path} is not writable for uid {os.geteuid()}: every backup fails",
                "run inkind as the user that owns the store (root), or fix the directory's owner and mode",
            )
    return None


def source_problems(name: str, src: SourceConfig, row: dict, corruption: dict | None) -> list[Problem]:
    """What is wrong with one source: corruption found and not yet checked
    clean, a last backup that failed, a last success older than max_age."""
    found = []
    if corruption:
        found.append(
            Problem(
                f"source {name}: {corruption['command']} at {corruption['end']} found "
                f"{corruption['objects']} corrupt object(s): {corruption['message'] or 'see its log'}",
                f"check the store's disk (SMART, btrfs scrub), then inkind scrub --fraction 1 {name}"
                f" (rebuilds it from the source) and inkind verify {name} (clean: clears this)",
            )
        )
    if row["outcome"] == "failed":
        found.append(
            Problem(
                f"source {name}: last backup failed at {row['last_run']}: {row['message'] or 'see its log'}",
                f"fix what the message names, then inkind backup {name}",
            )
        )
    elif row["outcome"] == "interrupted":
        found.append(
            Problem(
                f"source {name}: last backup was interrupted at {row['last_run']}",
                "nothing, if it was stopped on purpose: the next backup continues where it stopped",
            )
        )
    if row["stale"]:
        found.append(
            Problem(
                f"source {name}: last success {row['last_success'] or 'never'} is older than max_age "
                f"{duration(src.max_age or 0)}",
                f"see why its backups do not run or fail (journalctl -u inkind), then inkind backup {name}",
            )
        )
    return found


def duration(seconds: int) -> str:
    """Seconds in the largest unit of a max_age that divides them: 93600 is 26h."""
    for unit, size in sorted(DURATION_UNITS.items(), key=lambda u: -u[1]):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def history(env, store_ok: bool) -> tuple[dict, str | None]:
    """The store's history for status, and a problem to report if any.
    Not looked for in a store that is not usable: "auto" would probe the
    empty mount point's filesystem and name its provider."""
    if not store_ok:
        unknown = "UNKNOWN: the store is not usable (above)"
        return {"provider": env.config.store.snapshots, "snapshots": None, "summary": unknown}, None
    try:
        provider = provider_for(env.config.store, env.plugins.providers)
        if provider.name == "none":
            return {"provider": "none", "snapshots": 0, "newest": None, "summary": NO_HISTORY}, None
        snaps = provider.list()
    except InkindError as e:
        return {"provider": env.config.store.snapshots, "error": str(e), "summary": f"UNKNOWN: {e}"}, str(e)
    last = read_last_run(env.config.store.path) or {}
    error = (last.get("history") or {}).get("error")
    newest = snaps[-1].id if snaps else None
    summary = f"{provider.name}, {len(snaps)} snapshot(s), newest {newest or 'none yet'}"
    return {"provider": provider.name, "snapshots": len(snaps), "newest": newest, "summary": summary}, error


def _epoch(iso: str) -> float:
    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@click.command("status")
@json_option
@click.pass_obj
def command(env, as_json):
    """Store health and the last run of each source.

    Exit 0 when every source's last backup succeeded, 1 when one has
    warnings or never ran, 2 when there is a problem: the store is missing
    or not writable, a check found corruption that no later check of every
    object cleared, a last backup failed, or a last success is older than its
    ``max_age``. Each problem is one line that says what to do: a monitoring
    check.
    """
    cfg = env.config
    store = cfg.store.path
    not_a_store = unusable_store(store)  # reads store.json and asks blkid once
    problem = store_problem(store, not_a_store)
    problems = [problem] if problem else []
    usable = not_a_store is None
    usage = shutil.disk_usage(store) if usable else None  # never the empty mount point's filesystem
    worst = 2 if problems else 0
    sources = []
    for name, src in cfg.sources.items():
        row = source_row(StoreLayout(store), name, src, usable)
        sources.append(row)
        found = source_problems(name, src, row, row["corruption"])
        problems += found
        worst = max(worst, 2 if found else 0 if row["outcome"] == "ok" else 1)
    hist, hist_problem = history(env, usable)
    if hist_problem:
        problems.append(
            Problem(f"history: {hist_problem}", "the data are stored; fix this and the next backup snapshots")
        )
        worst = 2
    data = {
        "store": str(store),
        "writable": problem is None,
        "snapshots": cfg.store.snapshots,
        "history": hist,
        "free_bytes": usage.free if usage else None,
        "total_bytes": usage.total if usage else None,
        "problems": [str(p) for p in problems],
        "sources": sources,
        "exit_status": worst,
    }
    if as_json:
        emit_json(data)
    else:
        echo_report(data)
    sys.exit(worst)


def source_row(layout: StoreLayout, name: str, src: SourceConfig, usable: bool) -> dict:
    """One source's line of the report, from its state (none read from a
    store that is not usable)."""
    state = layout.load_state(name) if usable else SourceState(layout.state_path(name))
    last = state.data.get("last_backup", {})
    running = state.data.get("running")
    journals = layout.path / JOURNAL_DIR / name
    pending = sorted(p.name for p in journals.glob("*.journal")) if journals.is_dir() else []
    row = {
        "name": name,
        "type": src.type,
        "last_run": last.get("end"),
        "outcome": last.get("outcome"),
        "message": (last.get("messages") or [None])[-1],
        "last_success": state.data.get("last_success"),
        "last_full_pass": state.data.get("last_full_pass"),
        "corruption": state.corruption,
        "running": bool(running and _alive(running.get("pid", 0))),
        "interrupted": bool(running and not _alive(running.get("pid", 0))),
        "pending_journals": pending,
        "resume": state.resume,
    }
    row["stale"] = src.max_age is not None and (
        row["last_success"] is None or time.time() - _epoch(row["last_success"]) > src.max_age
    )
    return row


def echo_report(data: dict) -> None:
    """The report as lines for a person."""
    click.echo(f"store: {data['store']}")
    if data["free_bytes"] is not None:
        click.echo(f"free: {human_bytes(data['free_bytes'])} of {human_bytes(data['total_bytes'])}")
    click.echo(f"history: {data['history']['summary']}")
    for p in data["problems"]:
        click.echo(f"problem: {p}")
    for r in data["sources"]:
        flags = (
            " (running)"
            if r["running"]
            else " (previous run was killed; next run finishes it)"
            if r["interrupted"]
            else ""
        )
        click.echo(
            f"{r['name']:<16} {r['type']:<10} last run {r['last_run'] or 'never'}: {r['outcome'] or '-'}"
            f", last success {r['last_success'] or 'never'}{flags}"
        )
