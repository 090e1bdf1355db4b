"""``[sources.NAME]`` keys of a mysql source, checked when the config loads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SYSTEM_SCHEMAS = ["information_schema", "performance_schema", "sys"]


@dataclass
class MysqlOptions:
    """``defaults_file``: the MySQL option file with the connection and
    credentials (passed as ``--defaults-file``; default: the client's
    standard option files); ``databases``: the databases to dump (default:
    all but the virtual schemas information_schema, performance_schema and
    sys); ``exclude_databases``; ``bin_dir``: where mysql and mysqldump are
    (default: PATH)."""

    defaults_file: Path | None = None
    databases: list[str] = field(default_factory=list)
    exclude_databases: list[str] = field(default_factory=list)
    bin_dir: Path | None = None
