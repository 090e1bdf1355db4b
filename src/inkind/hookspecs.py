"""Every hook inkind calls, one docstring each.

Plugins implement them with ``@inkind.hookimpl`` (``tryfirst``,
``trylast``, ``wrapper`` and ``hookwrapper`` work as pluggy documents: every
call goes through pluggy's caller). Hook names start with ``inkind_``; a
plugin implementing an ``inkind_`` name that is not below is not loaded, in
one line naming it. An implementation that raises is one line naming its
plugin, and the other plugins' implementations still run.
docs/writing-a-source.md documents each one, and a test fails if a hook is
missing from the docs or from the tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

from inkind.config import Config

if TYPE_CHECKING:  # the runner and the store call the hooks: no import at run time
    from inkind.runner import RunReport
    from inkind.storeroot import StoreLayout

hookspec = pluggy.HookspecMarker("inkind")


@hookspec
def inkind_source_types() -> dict[str, str | type] | list[type]:
    """Return the :class:`inkind.Source` subclasses this plugin provides:
    ``{TYPE: "module:Class"}``, or the classes themselves.

    Each class names its config ``type`` in ``type_name`` and its options
    in the ``Options`` dataclass. A class named by its path is imported the
    first time a config names its type (``inkind plugins`` imports them
    all): a plugin whose package imports no source costs a run nothing. A
    path that fails to import, or a class that is not a Source or has
    another ``type_name``, is one line naming the plugin, as a plugin that
    fails to load. Two plugins providing the same type name is an error
    that names both.
    """


@hookspec
def inkind_run_finished(report: RunReport, store: StoreLayout, config: Config) -> None:
    """Called once after a ``backup`` or ``scrub`` run (and the snapshot
    after a backup), with its report.

    ``report`` is the :class:`inkind.RunReport`: command, start and end
    times, ``exit_status``, ``history`` (the snapshot taken), and in
    ``results`` per source its outcome, full pass flag, messages and
    :class:`inkind.Stats`; ``report.as_dict()`` is what ``--json`` prints.
    ``store`` is the :class:`inkind.StoreLayout`, which says where each
    source's state is (``store.load_state(name)``); ``config`` is the loaded
    configuration, with the plugin's own table in ``config.plugins``. An
    implementation takes any of the three. For metrics, notifications and
    the like; an exception here is logged with the plugin's name and does not
    change the run's exit status.
    """


@hookspec
def inkind_config_tables() -> dict[str, type]:
    """Return the config tables this plugin owns: ``{NAME: options
    dataclass}`` for ``[plugins.NAME]``.

    When a run loads the config, each table is checked against its
    dataclass as a source's options are (an unknown key, a wrong type or a
    missing required key is one line naming ``plugins.NAME.KEY``), and the
    hooks that get ``config`` find the options in ``config.plugins[NAME]``;
    a config without the table has no entry. A ``[plugins.NAME]`` table no
    plugin declares is an error; two plugins declaring one name is an error
    naming both.
    """


@hookspec
def inkind_write_paths(config: Config) -> list[Path]:
    """Return the paths outside the store that this plugin writes during a
    run for ``config`` (a metrics textfile's directory, a notifier's spool),
    whose ``config.plugins`` holds the plugin's own table.

    ``inkind systemd`` makes them writable in the units it prints, which
    otherwise let a run write the store and its snapshot folder only.
    """


@hookspec
def inkind_snapshot_providers() -> dict[str, str | type] | list[type]:
    """Return the :class:`inkind.SnapshotProvider` subclasses this
    plugin provides, each named by ``name`` (the value of ``[store]
    snapshots``: btrfs, reflink, hardlink, ...): ``{NAME: "module:Class"}``,
    imported when a store names it or "auto" asks it, or the classes
    themselves, as for :func:`inkind_source_types`.

    A provider takes a read-only snapshot of the whole store after each
    backup, lists and deletes them; "auto" asks each one's ``detect()``.
    """
