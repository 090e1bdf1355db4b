"""inkind: backups kept in their native form.

Plugin authors import everything they need from here: the ``hookimpl``
marker, the :class:`Source` base class and the store primitives.
"""

import pluggy

hookimpl = pluggy.HookimplMarker("inkind")
"""Marker for hook implementations in plugins (``@inkind.hookimpl``)."""

from inkind.errors import ConfigError, CorruptionError, SourceError, SourceReadError, SourceWarning  # noqa: E402
from inkind.source import RunContext, Source  # noqa: E402
from inkind.stats import Stats  # noqa: E402
from inkind.store import (  # noqa: E402
    UpdateFile,
    UpdateImage,
    XAttrs,
    set_mtime,
    update_file,
    update_image,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "CorruptionError",
    "RunContext",
    "Source",
    "SourceError",
    "SourceReadError",
    "SourceWarning",
    "Stats",
    "UpdateFile",
    "UpdateImage",
    "XAttrs",
    "hookimpl",
    "set_mtime",
    "update_file",
    "update_image",
]
