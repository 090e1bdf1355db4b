"""``inkind restore``: the standard-tool command that restores a source."""

import subprocess
import sys
from pathlib import Path

import click

from inkind.errors import ConfigError, NotStored
from inkind.history.folders import provider_for
from inkind.remote.ssh import PIPELINE, shell_line
from inkind.runner import make_source
from inkind.storeroot import StoreLayout


def from_snapshot(env, sid: str) -> tuple[str, list[list[str]], Path]:
    """The id of snapshot ``sid`` ("latest" or any unique prefix), the
    commands that make it readable, and where its copy of the store is."""
    provider = provider_for(env.config.store, env.plugins.providers)
    newest_first = provider.list()[::-1]
    exact = [s for s in newest_first if s.id == sid]
    match = (
        newest_first[:1] if sid == "latest" else exact or [s for s in newest_first if s.id.startswith(sid)]
    )
    if not match:
        known = ", ".join(s.id for s in newest_first[:5]) or "none"
        raise ConfigError(f"restore: --snapshot {sid}: no snapshot matches (newest first: {known})")
    if len(match) > 1:
        more = f" and {len(match) - 5} older" if len(match) > 5 else ""
        candidates = ", ".join(s.id for s in match[:5]) + more
        raise ConfigError(
            f"restore: --snapshot {sid}: {len(match)} snapshots match, newest first: {candidates}; "
            "give more of the id"
        )
    return (match[0].id, *provider.mount_commands(match[0]))


# size: a click command, one parameter per option
@click.command("restore")
@click.argument("source")
@click.argument("path", required=False)
@click.option("--to", "dest", required=True, help="Where to restore: a directory, device, file or DSN.")
@click.option("--database", help="For a database source: the database to restore (same as PATH).")
@click.option("--snapshot", "sid", help="Restore from this store snapshot (an id, a prefix, or 'latest').")
@click.option("--run", "execute", is_flag=True, help="Execute the commands instead of printing them.")
@click.pass_obj
def command(env, source, path, dest, database, sid, execute):
    """Print (or with --run execute) the commands that restore SOURCE.

    The commands use only standard tools (rsync, dd, cp, psql...), so the
    same lines work at 3 a.m. without inkind.
    """
    if database is not None and path not in (None, database):
        raise ConfigError(f"restore: PATH {path!r} and --database {database!r} disagree")
    path = path if path is not None else database
    cfg = env.config.sources.get(source)
    if cfg is None:
        raise ConfigError(f"no source named '{source}' in {env.config.path}")
    src = make_source(cfg, env.plugins)
    live = env.config.store.path
    snap_id, prepare, store = from_snapshot(env, sid) if sid else ("", [], live)
    where = f"snapshot {snap_id}" if sid else "the store"
    stored = StoreLayout(store)
    data_dir = stored.data_dir(source)
    # A snapshot that must be mounted first cannot be checked yet.
    if not prepare and not data_dir.is_dir():
        raise ConfigError(f"restore: {data_dir}: nothing stored for '{source}' in {where}")
    if not stored.state_path(source).is_file():  # a snapshot still to be mounted: the live store's
        stored = StoreLayout(live)
    state = stored.load_state(source)
    try:
        commands = src.restore_commands(data_dir, dest, path, state.plugin)
    except NotStored as e:
        raise ConfigError(f"restore: {e.what} is not in {where} (source '{source}')") from None
    for argv in prepare + commands:
        click.echo(shell_line(argv))
        if execute:
            rc = subprocess.call(argv)
            if rc:
                what = "the pipeline" if argv[:1] == PIPELINE[:1] else argv[0]
                click.echo(f"inkind: error: {what} exited {rc}", err=True)
                sys.exit(2)
