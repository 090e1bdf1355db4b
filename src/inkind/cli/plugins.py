"""``inkind plugins``: what is loaded, from where, providing what."""

import sys

import click

from inkind.cli.common import emit_json, json_option


@click.command("plugins")
@json_option
@click.pass_obj
def command(env, as_json):
    """List plugins, where each came from and the source types, snapshot
    providers and config tables it provides."""
    plugins = env.plugins
    plugins.import_all()
    rows = [
        {
            "name": p.name,
            "origin": p.origin,
            "module": p.module,
            "source_types": p.source_types,
            "snapshot_providers": p.snapshot_providers,
            "config_tables": [f"plugins.{n}" for n in p.config_tables],
            "error": p.error,
        }
        for p in plugins.info.values()
    ]
    if as_json:
        emit_json(rows)
    else:
        for r in rows:
            provided = r["source_types"] + [f"snapshots:{n}" for n in r["snapshot_providers"]]
            types = ", ".join(provided + [f"[{t}]" for t in r["config_tables"]]) or "-"
            click.echo(
                f"{r['name']:<16} {r['origin']:<24} {types}"
                + (f"  ERROR: {r['error']}" if r["error"] else "")
            )
    sys.exit(2 if plugins.failed else 0)
