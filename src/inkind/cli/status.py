"""``inkind status``: store health and the last run of each source."""

import calendar
import os
import shutil
import sys
import time

import click

from inkind.cli.common import emit_json, json_option
from inkind.errors import InkindError
from inkind.snapshots import provider_for, read_last_run
from inkind.state import SourceState
from inkind.store.image import JOURNAL_DIR
from inkind.storeroot import store_problem

NO_HISTORY = (
    "NONE: store.snapshots is 'none' (or 'auto' found no way to snapshot), so the store holds "
    "the latest state only: a deletion or an encrypted file reaches it on the next run"
)


def history(env, store_ok: bool) -> tuple[dict, str | None]:
    """The store's history for status, and a problem to report if any."""
    try:
        provider = provider_for(env.config.store, env.plugins.providers)
        if provider.name == "none":
            return {"provider": "none", "snapshots": 0, "newest": None, "summary": NO_HISTORY}, None
        snaps = provider.list() if store_ok else []
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
    warnings or never ran, 2 when one failed, its last success is older than
    its ``max_age``, or the store is unusable: a monitoring check.
    """
    cfg = env.config
    store = cfg.store.path
    problem = store_problem(store)
    problems = [problem] if problem else []
    usage = None if problem else shutil.disk_usage(store)  # never the empty mount point's filesystem
    worst = 2 if problems else 0
    sources = []
    for name, src in cfg.sources.items():
        state = (
            SourceState.load(store / ".inkind" / "sources" / f"{name}.json")
            if not problem
            else SourceState(store)
        )
        last = state.data.get("last_backup", {})
        running = state.data.get("running")
        journals = store / JOURNAL_DIR / name
        pending = sorted(p.name for p in journals.glob("*.journal")) if journals.is_dir() else []
        row = {
            "name": name,
            "type": src.type,
            "last_run": last.get("end"),
            "outcome": last.get("outcome"),
            "last_success": state.data.get("last_success"),
            "last_full_pass": state.data.get("last_full_pass"),
            "running": bool(running and _alive(running.get("pid", 0))),
            "interrupted": bool(running and not _alive(running.get("pid", 0))),
            "pending_journals": pending,
            "resume": state.resume,
        }
        stale = src.max_age is not None and (
            row["last_success"] is None or time.time() - _epoch(row["last_success"]) > src.max_age
        )
        row["stale"] = stale
        sources.append(row)
        outcome = row["outcome"]
        worst = max(worst, 0 if outcome == "ok" else 2 if outcome in ("failed", "interrupted") else 1)
        if stale:
            problems.append(
                f"source {name}: last success {row['last_success'] or 'never'} is older than max_age"
            )
            worst = 2
    hist, hist_problem = history(env, not problems)
    if hist_problem:
        problems.append(f"history: {hist_problem}")
        worst = 2
    data = {
        "store": str(store),
        "snapshots": cfg.store.snapshots,
        "history": hist,
        "free_bytes": usage.free if usage else None,
        "total_bytes": usage.total if usage else None,
        "problems": problems,
        "sources": sources,
        "exit_status": worst,
    }
    if as_json:
        emit_json(data)
    else:
        click.echo(f"store: {store}")
        if usage:
            click.echo(f"free: {usage.free // 2**20} MiB of {usage.total // 2**20} MiB")
        click.echo(f"history: {hist['summary']}")
        for p in problems:
            click.echo(f"problem: {p}")
        for r in sources:
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
    sys.exit(worst)
