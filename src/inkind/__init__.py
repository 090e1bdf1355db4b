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
from inkind.store.image import reflinks_work  # noqa: E402

# --- block-copy engine -----------------------------------------------------

# --- tree engine -----------------------------------------------------------

# --- dump engine -----------------------------------------------------------

# --- history: snapshot providers -------------------------------------------
# isort: split
from inkind import lvm  # noqa: E402
from inkind.history.ids import half_made_name, is_half_made, is_id  # noqa: E402
from inkind.history.provider import Snapshot, SnapshotError, SnapshotProvider, run_tool  # noqa: E402
from inkind.storefs import Filesystem  # noqa: E402

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
    # store primitives
    "UpdateFile",
    "UpdateImage",
    "XAttrs",
    "set_mtime",
    "update_file",
    "update_image",
    "reflinks_work",
    # block-copy engine
    # tree engine
    # dump engine
    # history
    "Filesystem",
    "Snapshot",
    "SnapshotError",
    "SnapshotProvider",
    "half_made_name",
    "is_half_made",
    "is_id",
    "lvm",
    "run_tool",
]
