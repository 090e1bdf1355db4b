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
from inkind.hashing import hash_fd  # noqa: E402
from inkind.source import RunContext, Source  # noqa: E402
from inkind.stats import Stats  # noqa: E402

# isort: split
from inkind.config import Config  # noqa: E402
from inkind.runner import RunReport  # noqa: E402
from inkind.storeroot import StoreLayout  # noqa: E402

# --- store primitives ------------------------------------------------------
# isort: split
from inkind.store import (  # noqa: E402
    UpdateFile,
    UpdateImage,
    XAttrs,
    fd_path,
    is_temp_name,
    open_beneath,
    set_mode,
    set_mtime,
    set_owner,
    update_file,
    update_image,
)
from inkind.store.entries import record_entries  # noqa: E402
from inkind.store.paths import list_dir, lstat_at, open_at  # noqa: E402
from inkind.store.reflink import reflinks_work  # noqa: E402
from inkind.store.tree import (  # noqa: E402
    discard,
    exchange,
    link,
    make_dir,
    make_dirs,
    make_node,
    make_symlink,
    remove_dir,
    rename,
)
from inkind.verify import check_file, existing  # noqa: E402

# --- block-copy engine -----------------------------------------------------
# isort: split
from inkind import lvm  # noqa: E402  (every LVM command goes through it; tests fake its executables)
from inkind.engines.blockcopy.copy import CopyResult  # noqa: E402
from inkind.engines.blockcopy.engine import BlockCopy  # noqa: E402
from inkind.engines.blockcopy.ranges import merge_spans  # noqa: E402
from inkind.engines.image.blockdev import OpenSource, in_use, open_source, udev_ids  # noqa: E402
from inkind.engines.image.rawimage import DEFAULT_BLOCK, RawImageSource, check_block_size  # noqa: E402
from inkind.engines.image.remote import differing_on_host, pull_copy, pull_image  # noqa: E402
from inkind.remote.channel import Channel, open_channel  # noqa: E402
from inkind.remote.sqlitecopy import copy_database as copy_sqlite_database  # noqa: E402

# --- tree engine -----------------------------------------------------------
# isort: split
from inkind.engines.tree.mirror import RemoteTreeMirror, TreeMirror, verify_mirror  # noqa: E402
from inkind.engines.tree.restore import rsync_restore_command  # noqa: E402
from inkind.engines.tree.selection import TreeSelection  # noqa: E402

# --- dump engine -----------------------------------------------------------
# isort: split
from inkind.engines.dumps.entries import database_of, entry_name, select_databases, stored_entries  # noqa: E402
from inkind.engines.dumps.source import Dump, DumpSource  # noqa: E402
from inkind.engines.dumps.stream import stream_to_file  # noqa: E402
from inkind.engines.dumps.tools import DumpTools, find_tool, run_tool, tool_directory  # noqa: E402
from inkind.engines.dumps.trees import store_tree  # noqa: E402

# --- history: snapshot providers -------------------------------------------
# isort: split
from inkind.history.ids import half_made_name, is_half_made, is_id  # noqa: E402
from inkind.history.provider import Snapshot, SnapshotError, SnapshotProvider, run_storage_tool  # noqa: E402
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
    "Config",
    "RunReport",
    "StoreLayout",
    "hash_fd",
    "Finding",
    # store primitives
    "UpdateFile",
    "UpdateImage",
    "XAttrs",
    "set_mode",
    "set_mtime",
    "set_owner",
    "update_file",
    "update_image",
    "record_entries",
    "make_dir",
    "make_dirs",
    "make_node",
    "make_symlink",
    "link",
    "rename",
    "exchange",
    "discard",
    "remove_dir",
    "open_at",
    "open_beneath",
    "lstat_at",
    "list_dir",
    "fd_path",
    "is_temp_name",
    "check_file",
    "existing",
    "reflinks_work",
    # block-copy engine
    "BlockCopy",
    "CopyResult",
    "DEFAULT_BLOCK",
    "OpenSource",
    "RawImageSource",
    "check_block_size",
    "differing_on_host",
    "in_use",
    "lvm",
    "merge_spans",
    "open_channel",
    "Channel",
    "copy_sqlite_database",
    "open_source",
    "pull_copy",
    "pull_image",
    "udev_ids",
    # tree engine
    "RemoteTreeMirror",
    "TreeMirror",
    "TreeSelection",
    "rsync_restore_command",
    "verify_mirror",
    # dump engine
    "Dump",
    "DumpSource",
    "DumpTools",
    "database_of",
    "entry_name",
    "find_tool",
    "run_tool",
    "select_databases",
    "store_tree",
    "stored_entries",
    "stream_to_file",
    "tool_directory",
    # history
    "Filesystem",
    "Snapshot",
    "SnapshotError",
    "SnapshotProvider",
    "half_made_name",
    "is_half_made",
    "is_id",
    "run_storage_tool",
]
