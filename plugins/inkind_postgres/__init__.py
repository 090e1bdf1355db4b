"""The built-in ``postgres`` source: one pg_dump per database, plus the
cluster's roles and tablespaces from ``pg_dumpall --globals-only``.

Registered through the "inkind" entry-point group, exactly like a
third-party plugin; the source is imported only when a config uses it.
"""

import inkind


@inkind.hookimpl
def inkind_source_types() -> dict[str, str]:
    return {"postgres": "inkind_postgres.source:PostgresSource"}
