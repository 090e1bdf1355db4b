"""inkind: backups kept in their native form.

This package is the whole plugin API: a plugin imports ``inkind`` and
nothing below it (``inkind.testing`` in its tests). Each block below names
what one layer offers; docs/writing-a-source.md says which names are
stable, and tests/meta fail when a plugin reaches past this list.

A name is imported on first use (PEP 562), so that a plugin's ``import
inkind`` costs nothing and a run imports only the engines its sources use:
a files backup needs neither the block-copy nor the dump engine.
"""

from importlib import import_module

import pluggy

hookimpl = pluggy.HookimplMarker("inkind")
"""Marker for hook implementations in plugins (``@inkind.hookimpl``)."""

__version__ = "0.1.0"

_EXPORTS: dict[str, tuple[str, ...]] = {  # module -> the names it gives the API
    # --- core: sources, runs, errors, counts ---
    "inkind.errors": ("ConfigError", "CorruptionError", "SourceError", "SourceReadError", "SourceWarning"),
    "inkind.findings": ("Finding",),
    "inkind.hashing": ("hash_fd",),
    "inkind.source": ("RunContext", "Source"),
    "inkind.stats": ("Stats",),
    "inkind.config": ("Config",),
    "inkind.runner": ("RunReport",),
    "inkind.storeroot": ("StoreLayout",),
    # --- store primitives ---
    "inkind.store.files": ("UpdateFile", "is_temp_name", "update_file"),
    "inkind.store.image": ("UpdateImage", "update_image"),
    "inkind.store.meta": ("set_mode", "set_mtime", "set_owner"),
    "inkind.store.xattrs": ("XAttrs",),
    "inkind.store.entries": ("record_entries",),
    "inkind.store.paths": ("fd_path", "list_dir", "lstat_at", "open_at", "open_beneath"),
    "inkind.store.reflink": ("reflinks_work",),
    "inkind.store.tree": (
        "discard",
        "exchange",
        "link",
        "make_dir",
        "make_dirs",
        "make_node",
        "make_symlink",
        "remove_dir",
        "rename",
    ),
    "inkind.verify": ("check_file", "existing"),
    # --- block-copy engine ---
    "inkind.engines.blockcopy.copy": ("CopyResult",),
    "inkind.engines.blockcopy.engine": ("BlockCopy",),
    "inkind.engines.blockcopy.ranges": ("merge_spans",),
    "inkind.engines.image.blockdev": ("OpenSource", "in_use", "open_source", "udev_ids"),
    "inkind.engines.image.rawimage": ("DEFAULT_BLOCK", "RawImageSource", "check_block_size"),
    "inkind.engines.image.remote": ("differing_on_host", "pull_copy", "pull_image"),
    "inkind.remote.channel": ("Channel", "open_channel"),
    "inkind.remote.sqlitecopy": ("copy_sqlite_database",),
    # --- tree engine ---
    "inkind.engines.tree.mirror": ("TreeMirror", "verify_mirror"),
    "inkind.engines.tree.remote_mirror": ("RemoteTreeMirror",),
    "inkind.engines.tree.restore": ("rsync_restore_command",),
    "inkind.engines.tree.selection": ("TreeSelection",),
    # --- dump engine ---
    "inkind.engines.dumps.entries": ("database_of", "entry_name", "select_databases", "stored_entries"),
    "inkind.engines.dumps.source": ("Dump", "DumpSource"),
    "inkind.engines.dumps.stream": ("stream_to_file",),
    "inkind.engines.dumps.tools": ("DumpTools", "find_tool", "run_tool", "tool_directory"),
    "inkind.engines.dumps.trees": ("store_tree",),
    # --- history: snapshot providers ---
    "inkind.history.ids": ("half_made_name", "is_half_made", "is_id"),
    "inkind.history.provider": ("Snapshot", "SnapshotError", "SnapshotProvider", "run_storage_tool"),
    "inkind.storefs": ("Filesystem",),
}
_SUBMODULES = ("lvm",)  # inkind.lvm: every LVM command goes through it; tests fake its executables
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["hookimpl", *_HOME, *_SUBMODULES]  # each name is written once, above


def __getattr__(name: str) -> object:
    """Import the module that holds ``name`` and keep the value here, so the
    next use is an ordinary attribute."""
    if name in _SUBMODULES:
        value = import_module(f"inkind.{name}")
    elif name in _HOME:
        value = getattr(import_module(_HOME[name]), name)
    else:
        raise AttributeError(f"module 'inkind' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
