"""``[sources.NAME]`` keys of a postgres source, checked when the config loads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from inkind import ConfigError
from inkind_postgres import conninfo

FORMATS = ("directory", "plain")


@dataclass
class PostgresOptions:
    """``dsn``: libpq connection string (keywords or URI) without a password;
    ``databases``: the databases to dump (default: every database that
    accepts connections, templates left out); ``exclude_databases``;
    ``format``: "directory" (pg_dump -Fd, one file per table) or "plain"
    (one SQL file); ``jobs``: parallel pg_dump workers (directory format);
    ``bin_dir``: where pg_dump, pg_dumpall and psql are (default: PATH);
    ``passfile``: a libpq password file (PGPASSFILE)."""

    dsn: str = ""
    databases: list[str] = field(default_factory=list)
    exclude_databases: list[str] = field(default_factory=list)
    format: str = "directory"
    jobs: int = 1
    bin_dir: Path | None = None
    passfile: Path | None = None

    def check(self, where: str) -> None:
        try:
            params = conninfo.parse(self.dsn)
        except ValueError as e:
            raise ConfigError(f"config: {where}.dsn: not a libpq connection string: {e}") from None
        if "password" in params:
            raise ConfigError(
                f"config: {where}.dsn: must not contain a password (it would show in process lists, "
                "logs and the store); put it in a passfile (key 'passfile') or PGPASSFILE"
            )
        if self.format not in FORMATS:
            raise ConfigError(
                f"config: {where}.format: must be one of {', '.join(FORMATS)}, got {self.format!r}"
            )
        if self.jobs < 1:
            raise ConfigError(f"config: {where}.jobs: must be at least 1, got {self.jobs}")
        if self.jobs > 1 and self.format != "directory":
            raise ConfigError(f'config: {where}.jobs: parallel dumps need format = "directory"')
