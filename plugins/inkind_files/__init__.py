"""The built-in ``files`` source: a directory tree mirrored as a directory tree.

Registered through the "inkind" entry-point group, exactly like a
third-party plugin.
"""

import inkind
from inkind_files.source import FilesSource


@inkind.hookimpl
def inkind_source_types():
    return [FilesSource]
