"""``inkind snapshots list|prune``: the store's history."""

from __future__ import annotations

import sys

import click

from inkind.cli.common import emit_json, json_option
from inkind.history.folders import provider_for
from inkind.history.last_run import read_last_run
from inkind.history.provider import Snapshot, SnapshotProvider
from inkind.history.pruning import plan, prune
from inkind.ui import human_bytes


@click.group("snapshots")
def command() -> None:
    """The store's history: snapshots taken after each backup."""


def _provider(env) -> SnapshotProvider:
    return provider_for(env.config.store, env.plugins.providers)


def describe(provider: SnapshotProvider, snap: Snapshot, kept_by: list[str], sizes: bool) -> dict:
    """One row of ``snapshots list``: what the snapshot's own
    ``.inkind/last-run.json`` says about the run that preceded it."""
    run = read_last_run(snap.store) or {}
    return {
        "id": snap.id,
        "time": snap.time.isoformat().replace("+00:00", "Z"),
        "path": str(snap.store) if snap.store else None,
        "handle": snap.handle,
        "sources": {s["name"]: s["outcome"] for s in run.get("sources", [])} if run else None,
        "exclusive_bytes": provider.exclusive_bytes(snap) if sizes else None,
        "kept_by": kept_by,
    }


@command.command("list")
@click.option("--no-sizes", is_flag=True, help="Skip measuring each snapshot's exclusive size.")
@json_option
@click.pass_obj
def list_(env, no_sizes: bool, as_json: bool) -> None:
    """Each snapshot: id (UTC time), the sources of its run and their
    outcome, its exclusive size where the storage tells, and the retention
    rules that keep it (none: the next prune deletes it)."""
    provider = _provider(env)
    p = plan(env.config.store, provider)
    rows = [describe(provider, s, p.reasons.get(s.id, []), not no_sizes) for s in p.snapshots]
    if as_json:
        emit_json({"provider": provider.name, "snapshots": rows})
        return
    click.echo(f"provider: {provider.name}, {len(rows)} snapshot(s)")
    for r in rows:
        sources = ", ".join(f"{k}={v}" for k, v in (r["sources"] or {}).items()) or "-"
        size = "-" if r["exclusive_bytes"] is None else human_bytes(r["exclusive_bytes"])
        click.echo(f"{r['id']:<22} {size:>12}  {sources}  [{', '.join(r['kept_by']) or 'prune'}]")


@command.command("prune")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@json_option
@click.pass_obj
def prune_(env, dry_run: bool, as_json: bool) -> None:
    """Apply [store.retention]: delete what no rule keeps, then the oldest
    until min_free is free (never the newest)."""
    provider = _provider(env)
    doomed = prune(env.config.store, provider, dry_run=dry_run)
    ids = [s.id for s in doomed]
    if as_json:
        emit_json({"provider": provider.name, "dry_run": dry_run, "pruned": ids})
    else:
        verb = "would prune" if dry_run else "pruned"
        click.echo(f"{verb} {len(ids)} snapshot(s){': ' if ids else ''}{', '.join(ids)}")
    sys.exit(0)
