"""inkind: backups kept in their native form.

This package is the whole plugin API: a plugin imports ``inkind`` and
nothing below it (``inkind.testing`` in its tests). Each block below names
what one layer offers; docs/writing-a-source.md says which names are
stable, and tests/meta fail when a plugin reaches past this list.
"""

import pluggy

hookimpl = pluggy.HookimplMarker("inkind")
"""Marker for hook implementations in plugins (``@inkind.hookimpl``)."""

# --- core: sources, runs, errors, counts -----------------------------------
from inkind.errors import ConfigError, CorruptionError, SourceError, SourceReadError, SourceWarning  # noqa: E402
from inkind.findings import Finding  # noqa: E402
from inkind.source import RunContext, Source  # noqa: E402
from inkind.stats import Stats  # noqa: E402

# --- store primitives ------------------------------------------------------
from inkind.store import (  # noqa: E402
    UpdateFile,
    UpdateImage,
    XAttrs,
    set_mtime,
    update_file,
    update_image,
)

# --- block-copy engine -----------------------------------------------------

# --- tree engine -----------------------------------------------------------
# isort: split
from inkind.engines.tree.mirror import TreeMirror, verify_mirror  # noqa: E402
from inkind.engines.tree.restore import rsync_restore_command  # noqa: E402
from inkind.engines.tree.walker import TreeSelection  # noqa: E402

# --- dump engine -----------------------------------------------------------

# --- history: snapshot providers -------------------------------------------

__version__ = "0.1.0"

__all__ = [  # noqa: RUF022 (grouped by layer, as the imports above)
    # core
    "ConfigError",
    "CorruptionError",
    "RunContext",
    "Source",
    "SourceError",
    "SourceReadError",
    "SourceWarning",
    "Stats",
    "hookimpl",
    "Finding",
    # store primitives
    "UpdateFile",
    "UpdateImage",
    "XAttrs",
    "set_mtime",
    "update_file",
    "update_image",
    # block-copy engine
    # tree engine
    "TreeMirror",
    "TreeSelection",
    "rsync_restore_command",
    "verify_mirror",
    # dump engine
    # history
]
