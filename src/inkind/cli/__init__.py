"""``inkind`` command line: the group and its global options.

One module per command (borg's layout), each holding a click ``command``.
A command's module is imported when that command runs (or help lists it),
click's lazy-loading pattern: ``inkind backup`` from cron does not load what
``devices`` or ``restore`` need.
"""

from __future__ import annotations

import importlib
import sys

import click

from inkind.cli.common import Env
from inkind.errors import InkindError

COMMANDS = (
    "init",
    "backup",
    "scrub",
    "verify",
    "list",
    "status",
    "restore",
    "snapshots",
    "devices",
    "plugins",
    "systemd",
    "authorized-key",
    "sudoers-rule",
)


class _Group(click.Group):
    """Loads each command from ``inkind.cli.<name>`` on demand; maps inkind's
    errors onto one line and exit status 2."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            return importlib.import_module(f"inkind.cli.{cmd_name.replace('-', '_')}").command
        return super().get_command(ctx, cmd_name)

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
