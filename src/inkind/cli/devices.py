"""``inkind devices``: block devices and LVM volumes, and which configured
source covers each."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from inkind import lvm
from inkind.cli.common import emit_json, json_option
from inkind.engines.image.blockdev import block_devices, udev_ids
from inkind.errors import InkindError
from inkind.runner import make_source
from inkind.source import Source


def _sources(env) -> list[tuple[str, Source]] | None:
    """The configured sources, or None without a usable config."""
    try:
        return [(cfg.name, make_source(cfg, env.plugins)) for cfg in env.config.sources.values()]
    except InkindError:
        return None


def _volumes(notes: list[str]) -> list[lvm.Volume]:
    try:
        return [v for v in lvm.list_volumes() if not v.hidden and not v.is_pool]
    except lvm.LvmError as e:
        notes.append(f"no LVM volumes listed: {e}")
        return []


def _rows(notes: list[str]) -> list[dict[str, Any]]:
    volumes = _volumes(notes)
    listed = {v.full_name for v in volumes}
    rows: list[dict[str, Any]] = []
    for d in block_devices():
        if d.volume in listed:
            continue  # shown with its lvs row
        if d.volume:
            notes.append(f"{d.path}: udev says {d.volume}, which lvs does not list")
        rows.append(
            {
                "path": d.path,
                "kind": d.kind,
                "size": d.size,
                "fstype": d.fstype,
                "uuid": d.uuid,
                "volume": d.volume or None,
            }
        )
    for v in volumes:
        ids = udev_ids(Path(v.device), ("ID_FS_TYPE", "ID_FS_UUID"))
        kind = "lvm thin" if v.is_thin else ("lvm snapshot" if v.origin else "lvm")
        rows.append(
            {
                "path": v.device,
                "kind": kind,
                "size": v.size,
                "fstype": ids.get("ID_FS_TYPE", ""),
                "uuid": ids.get("ID_FS_UUID", ""),
                "volume": v.full_name,
            }
        )
    return rows


def human(size: int) -> str:
    for unit in ("B", "K", "M", "G", "T"):
        if size < 1024 or unit == "T":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return ""


@click.command("devices")
@json_option
@click.pass_obj
def command(env, as_json):
    """List block devices and LVM volumes (size, filesystem, UUID) and the configured sources that back each up."""
    notes: list[str] = []
    rows = _rows(notes)
    sources = _sources(env)
    if sources is None:
        notes.append("no usable config: which source covers what is unknown")
    for r in rows:
        r["sources"] = (
            None if sources is None else [n for n, s in sources if s.covers(r["path"], r["volume"])]
        )
    if as_json:
        emit_json({"devices": rows, "notes": notes})
    else:
        for r in rows:
            covered = "?" if r["sources"] is None else (", ".join(r["sources"]) or "-")
            click.echo(
                f"{r['path']:<28} {r['kind']:<12} {human(r['size']):>8} {r['fstype'] or '-':<8} "
                f"{r['uuid'] or '-':<36} {r['volume'] or '-':<20} {covered}"
            )
    for note in notes:
        click.echo(f"inkind: note: {note}", err=True)
    sys.exit(0)
