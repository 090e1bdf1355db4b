"""``inkind verify``: check the store alone, without the sources."""

import sys

import click

from inkind.cli.common import emit_json, json_option


@click.command("verify")
@click.argument("sources", nargs=-1)
@json_option
@click.pass_obj
def command(env, sources, as_json):
    """Check every stored object against its recorded checksum.

    Exit 0: sound; 1: only recoverable leftovers (temps, pending journals,
    which the next run finishes); 2: corruption.
    """
    report, findings = env.runner(progress=not as_json).verify(sources)
    if as_json:
        data = report.as_dict()
        data["findings"] = [
            {"object": f.obj, "message": f.message, "recoverable": f.recoverable} for f in findings
        ]
        emit_json(data)
    else:
        for f in findings:
            click.echo(str(f))
        for r in report.results:
            click.echo(f"{r.name}: {r.outcome}: {r.stats.objects_seen} objects checked")
    sys.exit(report.exit_status)
