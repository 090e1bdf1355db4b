"""``[sources.NAME]`` keys of a sqlite source, checked when the config loads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inkind import ConfigError


@dataclass
class SqliteOptions:
    """``path``: a database file, or a glob of database files (``*``, ``?``,
    ``[...]``, and ``**`` for any depth; relative to the config file's
    directory unless absolute); ``busy_timeout``: seconds to wait for a
    writer's lock before the database is reported as busy."""

    path: Path
    busy_timeout: float = 60.0

    def check(self, where: str) -> None:
        if self.busy_timeout <= 0:
            raise ConfigError(f"config: {where}.busy_timeout: must be positive, got {self.busy_timeout}")
