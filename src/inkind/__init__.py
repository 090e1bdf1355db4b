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

# --- block-copy engine -----------------------------------------------------
# isort: split
from inkind import lvm  # noqa: E402  (every LVM command goes through it; tests fake its executables)
from inkind.engines.blockcopy.copy import CopyResult  # noqa: E402
from inkind.engines.blockcopy.engine import BlockCopy  # noqa: E402
from inkind.engines.blockcopy.ranges import merge_spans  # noqa: E402
from inkind.engines.image.blockdev import OpenSource, in_use, open_source, udev_ids  # noqa: E402
from inkind.engines.image.rawimage import DEFAULT_BLOCK, RawImageSource, check_block_size  # noqa: E402
from inkind.hashing import hash_fd  # noqa: E402

# --- tree engine -----------------------------------------------------------

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
    # store primitives
    "UpdateFile",
    "UpdateImage",
    "XAttrs",
    "set_mtime",
    "update_file",
    "update_image",
    # block-copy engine
    "BlockCopy",
    "CopyResult",
    "DEFAULT_BLOCK",
    "OpenSource",
    "RawImageSource",
    "check_block_size",
    "hash_fd",
    "in_use",
    "lvm",
    "merge_spans",
    "open_source",
    "udev_ids",
    # tree engine
    # dump engine
    # history
]
