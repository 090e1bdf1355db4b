"""The ``mysql`` source type: mysqldump per database, streamed into the store."""

from __future__ import annotations

import functools
import os
import shlex
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
    run_tool,
    select_databases,
    stored_entries,
    stream_to_file,
)
from inkind_mysql.options import SYSTEM_SCHEMAS, MysqlOptions

SUFFIX = ".sql"
# Byte-stable output: no dump date; rows in primary-key order; timestamps
# in UTC (the default --tz-utc); binary columns as hex, so that no charset
# conversion can touch them on the way back.
DUMP_OPTIONS = [
    "--single-transaction",
    "--routines",
    "--events",
    "--triggers",
    "--skip-dump-date",
    "--order-by-primary",
    "--hex-blob",
]


def quote_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class MysqlSource(DumpSource):
    """MySQL/MariaDB databases as mysqldump SQL files (restore: mysql)."""

    type_name = "mysql"
    Options = MysqlOptions

    def client_args(self, tool: str, tools: DumpTools) -> list[str]:
        """The tool, then ``--defaults-file`` (which must come first)."""
        argv = [find_tool(tool, self.options.bin_dir, tools)]
        if self.options.defaults_file is not None:
            argv.append(f"--defaults-file={self.options.defaults_file}")
        return argv

    def list_databases(self, tools: DumpTools) -> list[str]:
        """Every database on the server but the virtual schemas. Fails
        (SourceError, one line) when the server cannot be reached."""
        argv = [*self.client_args("mysql", tools), "--batch", "--skip-column-names", "--raw"]
        out = run_tool([*argv, "-e", "SHOW DATABASES"], tools=tools).decode("utf-8", "surrogateescape")
        return [n for n in out.split("\n") if n and n not in SYSTEM_SCHEMAS]

    def plan(self, run: RunContext, tools: DumpTools) -> list[Dump]:
        o = self.options
        listed = self.list_databases(tools)
        dump = self.client_args("mysqldump", tools)
        return [
            Dump(
                entry_name(db, SUFFIX),
                f"database {db}",
                functools.partial(stream_to_file, argv=[*dump, *DUMP_OPTIONS, "--", db], tools=tools),
            )
            for db in select_databases(listed, o.databases, o.exclude_databases)
        ]

    def restore_commands(
        self, data_dir: Path, dest: str, path: str | None, state: dict[str, Any]
    ) -> list[list[str]]:
        """Per database: create it, then ``mysql DB < DB.sql``. ``dest`` is
        the MySQL option file of the target server (its connection and
        credentials), given to mysql as ``--defaults-file``."""
        fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            stored = {database_of(e, SUFFIX): e for e in stored_entries(fd) if e.endswith(SUFFIX)}
        finally:
            os.close(fd)
        if path is not None:
            if path not in stored:
                names = ", ".join(sorted(stored)) or "none"
                raise ConfigError(f"restore: database {path!r} is not stored (stored: {names})")
            stored = {path: stored[path]}
        mysql = ["mysql", f"--defaults-file={dest}"]
        commands = []
        for db, entry in sorted(stored.items()):
            commands.append([*mysql, "-e", f"CREATE DATABASE IF NOT EXISTS {quote_ident(db)}"])
            line = f"{shlex.join([*mysql, '--', db])} < {shlex.quote(str(data_dir / entry))}"
            commands.append(["sh", "-c", line])
        return commands
