"""The ``postgres`` source type: pg_dump per database, pg_dumpall for globals."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from inkind import (
    ConfigError,
    Dump,
    DumpSource,
    DumpTools,
    RunContext,
    database_of,
    entry_name,
    find_tool,
    open_beneath,
    run_tool,
    select_databases,
    store_tree,
    stored_entries,
    stream_to_file,
    tool_directory,
)
from inkind_postgres import conninfo
from inkind_postgres.options import PostgresOptions
from inkind_postgres.toc import keep_stored_time

GLOBALS = "globals.sql"
ALWAYS_THERE = "postgres"  # initdb makes it; pg_restore --create would fail on it
LIST_DATABASES = "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname"


def entry_for(db: str, plain: bool) -> str:
    """``<db>/`` or ``<db>.sql``; never the name of the globals dump."""
    entry = entry_name(db, ".sql" if plain else "")
    if entry == GLOBALS:
        entry = f"%{ord(entry[0]):02X}{entry[1:]}"
    return entry


class PostgresSource(DumpSource):
    """PostgreSQL databases as pg_dump archives (restore: pg_restore / psql)."""

    type_name = "postgres"
    Options = PostgresOptions

    @property
    def params(self) -> dict[str, str]:
        return conninfo.parse(self.options.dsn)

    def env(self) -> dict[str, str]:
        """What the tools get beside their environment (on a host: the
        remote side's; the passfile is then a file on the host)."""
        if self.options.passfile is not None:
            return {"PGPASSFILE": str(self.options.passfile)}
        return {}

    def first_database(self) -> str:
        """The database to connect to for the list and the globals."""
        return self.params.get("dbname") or "postgres"

    def list_databases(self, tools: DumpTools) -> list[str]:
        """Every database that accepts connections, templates left out.
        Fails (SourceError, one line) when the server cannot be reached."""
        conn = conninfo.with_dbname(self.params, self.first_database())
        psql = find_tool("psql", self.options.bin_dir, tools)
        argv = [psql, "-X", "-q", "-A", "-t", "-0", "-d", conn, "-c", LIST_DATABASES]
        out = run_tool(argv, self.env(), tools).decode("utf-8", "surrogateescape")
        return [n.strip("\n") for n in out.split("\0") if n.strip("\n")]

    def restrict_args(self, run: RunContext, tool: str, tools: DumpTools) -> list[str]:
        """A fixed ``--restrict-key`` for tools that have it (15.14 and later
        write a random one otherwise, so no two plain dumps would be equal).
        The key is random per source, kept in its state."""
        if b"--restrict-key" not in run_tool([tool, "--help"], tools=tools):
            return []
        key = run.state.plugin.setdefault("restrict_key", os.urandom(24).hex())
        return [f"--restrict-key={key}"]

    def plan(self, run: RunContext, tools: DumpTools) -> list[Dump]:
        o = self.options
        listed = self.list_databases(tools)
        pg_dump, pg_dumpall = (find_tool(n, o.bin_dir, tools) for n in ("pg_dump", "pg_dumpall"))
        plain = o.format == "plain"
        restrict = self.restrict_args(run, pg_dump, tools) if plain else []
        globals_argv = [pg_dumpall, "--globals-only", *self.restrict_args(run, pg_dumpall, tools)]
        globals_argv += ["-d", conninfo.render(self.params), "-l", self.first_database()]
        stream = functools.partial(stream_to_file, env=self.env(), tools=tools)
        dumps = [Dump(GLOBALS, "globals", functools.partial(stream, argv=globals_argv))]
        for db in select_databases(listed, o.databases, o.exclude_databases):
            conn = conninfo.with_dbname(self.params, db)
            if plain:
                argv = [pg_dump, "-Fp", "--create", *restrict, "-d", conn]
                store = functools.partial(stream, argv=argv)
            else:
                jobs = [f"--jobs={o.jobs}"] if o.jobs > 1 else []
                argv = [pg_dump, "-Fd", "-Z0", "--no-sync", *jobs, "-d", conn]
                store = functools.partial(self.dump_directory, argv=argv, tools=tools)
            dumps.append(Dump(entry_for(db, plain), f"database {db}", store))
        return dumps

    def dump_directory(self, run: RunContext, entry: str, argv: list[str], tools: DumpTools) -> None:
        """pg_dump -Fd into a scratch directory (made on the host and
        fetched from it, with ``host``), then into the store."""
        with tool_directory(run, [*argv, "-f"], self.env(), tools) as out:
            keep_toc_time(run, out, entry)
            store_tree(run, out, entry)

    def restore_commands(
        self, data_dir: Path, dest: str, path: str | None, state: dict[str, Any]
    ) -> list[list[str]]:
        """Globals first (all databases only), then per database
        ``pg_restore --create`` (directory) or ``psql`` (plain), both
        connecting to ``dest``, a DSN of the target cluster's maintenance
        database; the dump creates its database there."""
        fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            entries = stored_entries(fd)
        finally:
            os.close(fd)
        stored = {}
        for entry in entries:
            if entry == GLOBALS:
                continue
            plain = entry.endswith(".sql") and (data_dir / entry).is_file()
            stored[database_of(entry, ".sql" if plain else "")] = (entry, plain)
        if path is not None:
            if path not in stored:
                names = ", ".join(sorted(stored)) or "none"
                raise ConfigError(f"restore: database {path!r} is not stored (stored: {names})")
            stored = {path: stored[path]}
        commands = []
        if path is None and GLOBALS in entries:
            commands.append(["psql", "-X", "-d", dest, "-f", str(data_dir / GLOBALS)])
        for db, (entry, plain) in sorted(stored.items()):
            if plain:
                commands.append(["psql", "-X", "-d", dest, "-f", str(data_dir / entry)])
            elif db == ALWAYS_THERE:  # exists in every cluster: restore into it
                target = conninfo.with_dbname(conninfo.parse(dest), db)
                commands.append(["pg_restore", "-d", target, str(data_dir / entry)])
            else:
                commands.append(["pg_restore", "--create", "-d", dest, str(data_dir / entry)])
        return commands


def keep_toc_time(run: RunContext, out: Path, entry: str) -> None:
    """Give the new toc.dat the stored one's creation time when that is all
    that differs, so an unchanged database's dump is byte-identical."""
    new_path = out / "toc.dat"
    try:
        new = new_path.read_bytes()
    except FileNotFoundError:
        return
    try:
        fd = open_beneath(run.data_fd, f"{entry}/toc.dat", os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        stored = b"".join(iter(functools.partial(os.read, fd, 1 << 20), b""))
    finally:
        os.close(fd)
    kept = keep_stored_time(new, stored)
    if kept is not new:
        new_path.write_bytes(kept)
