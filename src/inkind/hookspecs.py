"""Every hook inkind calls, one docstring each.

Plugins implement them with ``@inkind.hookimpl``. Hook names start with
``inkind_``; a hook that wants one answer is marked ``firstresult``.
docs/writing-a-source.md documents each one, and a test fails if a hook is
missing from the docs or from the tests.
"""

from __future__ import annotations

from pathlib import Path

import pluggy

from inkind.config import Config

hookspec = pluggy.HookspecMarker("inkind")


@hookspec
def inkind_source_types() -> list[type]:
    """Return the :class:`inkind.Source` subclasses this plugin provides.

    Each class names its config ``type`` in ``type_name`` and its options
    in the ``Options`` dataclass. Two plugins providing the same type name is
    an error that names both.
    """


@hookspec
def inkind_run_finished(report: dict, config: Config) -> None:
    """Called once after a ``backup`` or ``scrub`` run, with its report.

    ``report`` is the JSON-ready dict that ``inkind backup --json`` prints:
    command, start and end times, exit status, and per source its outcome,
    full pass flag, messages and stats; ``config`` is the loaded
    configuration. An implementation may take either argument or both. For
    metrics, notifications and the like; an exception here is logged with the
    plugin's name and does not change the run's exit status.
    """


@hookspec
def inkind_write_paths(config: Config) -> list[Path]:
    """Return the paths outside the store that this plugin writes during a
    run for ``config`` (a metrics textfile's directory, a notifier's spool).

    ``inkind systemd`` makes them writable in the units it prints, which
    otherwise let a run write the store and its snapshot folder only.
    """


@hookspec
def inkind_snapshot_providers() -> list[type]:
    """Return the :class:`inkind.SnapshotProvider` subclasses this
    plugin provides, each named by ``name`` (the value of ``[store]
    snapshots``: btrfs, reflink, hardlink, ...).

    A provider takes a read-only snapshot of the whole store after each
    backup, lists and deletes them; "auto" asks each one's ``detect()``.
    """
