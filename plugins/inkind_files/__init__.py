"""The built-in ``files`` source: a directory tree mirrored as a directory tree.

Registered through the "inkind" entry-point group, exactly like a
third-party plugin; the source is imported only when a config uses it.
"""

import inkind


@inkind.hookimpl
def inkind_source_types() -> dict[str, str]:
    return {"files": "inkind_files.source:FilesSource"}
