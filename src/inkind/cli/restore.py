"""``inkind restore``: the standard-tool command that restores a source."""

import shlex
import subprocess
import sys

import click

from inkind.errors import ConfigError
from inkind.runner import make_source
from inkind.state import SourceState


@click.command("restore")
@click.argument("source")
@click.argument("path", required=False)
@click.option("--to", "dest", required=True, help="Where to restore: a directory, device, file or DSN.")
@click.option("--database", help="For a database source: the database to restore (same as PATH).")
@click.option("--run", "execute", is_flag=True, help="Execute the command instead of printing it.")
@click.pass_obj
def command(env, source, path, dest, database, execute):
    """Print (or with --run execute) the command that restores SOURCE.

    The command uses only standard tools (rsync, dd, cp, psql...), so the
    same line works at 3 a.m. without inkind.
    """
    if database is not None and path not in (None, database):
        raise ConfigError(f"restore: PATH {path!r} and --database {database!r} disagree")
    path = path if path is not None else database
    cfg = env.config.sources.get(source)
    if cfg is None:
        raise ConfigError(f"no source named '{source}' in {env.config.path}")
    src = make_source(cfg, env.plugins)
    data_dir = env.config.store.path / source
    if not data_dir.is_dir():
        raise ConfigError(f"restore: {data_dir}: nothing stored for '{source}' yet")
    state = SourceState.load(env.config.store.path / ".inkind" / "sources" / f"{source}.json")
    commands = src.restore_commands(data_dir, dest, path, state.plugin)
    for argv in commands:
        click.echo(shlex.join(argv))
        if execute:
            rc = subprocess.call(argv)
            if rc:
                click.echo(f"inkind: error: restore command exited {rc}", err=True)
                sys.exit(2)
