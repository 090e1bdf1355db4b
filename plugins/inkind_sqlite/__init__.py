"""The built-in ``sqlite`` source: consistent copies of SQLite database files,
taken through SQLite's online backup API.

Registered through the "inkind" entry-point group, exactly like a
third-party plugin; the source is imported only when a config uses it.
"""

import inkind


@inkind.hookimpl
def inkind_source_types() -> dict[str, str]:
    return {"sqlite": "inkind_sqlite.source:SqliteSource"}
