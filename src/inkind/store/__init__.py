"""Store primitives: every write a source makes to the store goes through here.

Each primitive compares before it writes and counts what it did into a
:class:`~inkind.stats.Stats`, so that "an unchanged source writes nothing"
is something a test can assert.
"""

from inkind.store.files import TEMP_PREFIX, UpdateFile, is_temp_name, sweep_temps, sync_store, update_file
from inkind.store.image import UpdateImage, update_image
from inkind.store.journal import replay_journals
from inkind.store.meta import set_mode, set_mtime, set_owner
from inkind.store.paths import fd_path, open_beneath
from inkind.store.xattrs import XAttrs

__all__ = [
    "TEMP_PREFIX",
    "UpdateFile",
    "UpdateImage",
    "XAttrs",
    "fd_path",
    "is_temp_name",
    "open_beneath",
    "replay_journals",
    "set_mode",
    "set_mtime",
    "set_owner",
    "sweep_temps",
    "sync_store",
    "update_file",
    "update_image",
]
