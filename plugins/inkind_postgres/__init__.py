"""The built-in ``postgres`` source: one pg_dump per database, plus the
cluster's roles and tablespaces from ``pg_dumpall --globals-only``.

Registered through the "inkind" entry-point group, exactly like a
third-party plugin.
"""

import inkind
from inkind_postgres.source import PostgresSource


@inkind.hookimpl
def inkind_source_types():
    return [PostgresSource]
