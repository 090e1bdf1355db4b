"""``inkind`` command line: the group and its global options.

One module per command (borg's layout); each registers itself on ``main``.
"""

from __future__ import annotations

import sys

import click

from inkind.cli.common import Env
from inkind.errors import InkindError


class _Group(click.Group):
    """Maps inkind's errors onto one line and exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except InkindError as e:
            click.echo(f"inkind: error: {e}", err=True)
            sys.exit(e.exit_status)

    def main(self, *args, **kwargs):
        kwargs.setdefault("standalone_mode", True)
        try:
            return super().main(*args, **kwargs)
        except click.UsageError as e:  # pragma: no cover - click handles it first
            click.echo(f"inkind: usage: {e}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    "config_path",
    metavar="CONFIG",
    help="Config file (default: $INKIND_CONFIG, /etc/inkind/inkind.toml).",
)
@click.option("-v", "--verbose", count=True, help="More log lines (debug).")
@click.option("-q", "--quiet", is_flag=True, help="Warnings and errors only; no progress bars.")
@click.option(
    "--log-json",
    type=click.Path(dir_okay=False),
    help="Also write structured JSON log lines to FILE.",
)
@click.version_option(package_name="inkind")
@click.pass_context
def main(
    ctx: click.Context, config_path: str | None, verbose: int, quiet: bool, log_json: str | None
) -> None:
    """Backups of servers and VMs kept in their native form."""
    ctx.obj = Env(config_path, -1 if quiet else verbose, log_json)


from inkind.cli import backup, devices, list, plugins, restore, scrub, snapshots, status, verify  # noqa: E402

for _module in (backup, scrub, verify, list, status, restore, snapshots, devices, plugins):
    main.add_command(_module.command)
