"""The built-in ``sqlite`` source: consistent copies of SQLite database files,
taken through SQLite's online backup API.

Registered through the "inkind" entry-point group, exactly like a
third-party plugin.
"""

import inkind
from inkind_sqlite.source import SqliteSource


@inkind.hookimpl
def inkind_source_types():
    return [SqliteSource]
