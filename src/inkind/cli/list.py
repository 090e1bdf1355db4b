"""``inkind list``: the configured sources and what is stored of each."""

import os
import sys

import click

from inkind.cli.common import emit_json, json_option
from inkind.storeroot import StoreLayout
from inkind.ui import human_bytes


def tree_size(path) -> tuple[int, int]:
    """(apparent bytes, allocated bytes) below ``path``, never following links."""
    apparent = allocated = 0
    stack = [os.fspath(path)]
    while stack:
        try:
            it = os.scandir(stack.pop())
        except OSError:
            continue
        with it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                apparent += st.st_size
                allocated += st.st_blocks * 512
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
    return apparent, allocated


@click.command("list")
@json_option
@click.pass_obj
def command(env, as_json):
    """Sources, their type, last run, outcome and stored size."""
    cfg = env.config
    layout = StoreLayout(cfg.store.path)
    rows = []
    for name, src in cfg.sources.items():
        last = layout.load_state(name).data.get("last_backup", {})
        data = layout.data_dir(name)
        apparent, allocated = tree_size(data) if data.is_dir() else (0, 0)
        rows.append(
            {
                "name": name,
                "type": src.type,
                "last_run": last.get("end"),
                "outcome": last.get("outcome"),
                "bytes": apparent,
                "bytes_allocated": allocated,
            }
        )
    if as_json:
        emit_json(rows)
    else:
        for r in rows:
            click.echo(
                f"{r['name']:<16} {r['type']:<10} {r['last_run'] or 'never':<22} "
                f"{r['outcome'] or '-':<12} {human_bytes(r['bytes']):>10}"
            )
    sys.exit(0)
