"""The interface a backup source implements, and what a run hands it."""

from __future__ import annotations

import logging
import random
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from inkind.errors import SourceReadError, SourceWarning
from inkind.findings import Finding
from inkind.keepout import KeepOut
from inkind.remote.ssh import SshSettings, SshTarget, restore_target
from inkind.state import SourceState
from inkind.stats import Stats
from inkind.store.tree import scratch_dir
from inkind.ui import Progress, null_progress
from inkind.verify import verify_tree

log = logging.getLogger("inkind")


@dataclass
class RunContext:
    """Everything one source needs for one run.

    ``data_dir`` is ``STORE/NAME``; ``root_fd``/``data_fd`` are open
    descriptors of the store root and of ``data_dir`` for fd-relative work.
    ``rng`` is the source's own random generator, seeded by ``--seed`` and the
    source's name (the same draws whatever else runs, and with ``--jobs``).

    ``dry_run``: ``backup --dry-run``. The store primitives then write
    nothing by themselves (see :mod:`inkind.store.dryrun`), so a source
    runs its backup as always; it reads this only to spare what lies outside
    the store (an LVM snapshot it would keep as the next run's base).

    ``keep_out`` names the directories no source may enter or read (the
    store and its snapshot folder), by identity: a source that walks a
    tree leaves them out, counting each in ``stats.objects_kept_out``.
    """

    name: str
    store_path: Path
    root_fd: int
    data_fd: int
    state: SourceState
    stats: Stats
    rng: random.Random
    full: bool = False
    scrub_fraction: float = 0.0
    dry_run: bool = False
    progress_factory: Any = None
    warnings_seen: list[str] = field(default_factory=list)
    keep_out: KeepOut = field(default_factory=KeepOut)

    @property
    def data_dir(self) -> Path:
        return self.store_path / self.name

    def scratch_dir(self) -> AbstractContextManager[Path]:
        """A temp directory for a tool's output or a copy to compare, on the
        store's filesystem (outside the store in a dry run), removed after."""
        return scratch_dir(self.data_fd, self.data_dir)

    def should_scrub(self) -> bool:
        """One draw: whether the object at hand is scrubbed in this run."""
        return self.scrub_fraction > 0 and self.rng.random() < self.scrub_fraction

    def pick_block(self, _index: int) -> bool:
        """:meth:`should_scrub` for the block engine's ``pick(index)``."""
        return self.should_scrub()

    def warn(self, message: str) -> None:
        """An object was skipped and its previous copy kept: exit status 1."""
        self.stats.warnings += 1
        self.warnings_seen.append(message)
        log.warning("%s: %s", self.name, message)

    def skip(self, reason: SourceWarning) -> None:
        """An object was skipped for ``reason``: a warning (exit status 1), or
        an error for a failed read (SourceReadError: exit status 2)."""
        if isinstance(reason, SourceReadError):
            self.stats.errors += 1
            self.warnings_seen.append(str(reason))
            log.error("%s: %s", self.name, reason)
        else:
            self.warn(str(reason))

    @contextmanager
    def progress(
        self, description: str, total: int | None = None, *, unit: str = "objects", estimated: bool = False
    ) -> Iterator[Progress]:
        """A progress bar on a terminal for a long loop; nothing otherwise.

        ``unit`` is "objects" or "bytes" (shown in KiB, MiB...); give a
        ``total`` where it is known, so the bar shows a rate and the time
        left, and mark it ``estimated`` when it is a guess (the previous
        run's count)."""
        if self.progress_factory is None:
            yield null_progress
            return
        with self.progress_factory(f"{self.name}: {description}", total, unit=unit, estimated=estimated) as p:
            yield p


class Source(ABC):
    """One configured backup source of a given type.

    Subclasses set ``type_name`` and ``Options`` (a dataclass whose fields are
    the source's config keys) and implement the operations below.
    """

    type_name: ClassVar[str]
    Options: ClassVar[type]
    # Whether this type reads a source on another machine (``host`` in its
    # table); a type that does not is refused a ``host`` in the config.
    reads_remote_host: ClassVar[bool] = False
    # Set from the config when the source is made: the host it reads (None:
    # this machine) and how to reach a host (for a restore to host:/path).
    remote: SshTarget | None = None
    ssh: SshSettings = SshSettings()

    def __init__(self, name: str, options: Any):
        self.name = name
        self.options = options

    @abstractmethod
    def backup(self, run: RunContext) -> None:
        """Bring ``run.data_dir`` up to date with the source.

        Incremental unless ``run.full``; scrub the objects for which
        ``run.should_scrub()`` says so; keep ``run.state`` resumable.
        """

    @abstractmethod
    def scrub(self, run: RunContext) -> None:
        """Check a sample of stored objects against their checksum and source.

        Raise CorruptionError for a stored object that fails its own
        checksum; repair (and count) one that only differs from the source.
        """

    def verify(self, run: RunContext) -> list[Finding]:
        """Check the store alone; return the problems found (empty: sound).

        The default checks every regular file's ``user.inkind.xxh3``.
        """
        return verify_tree(run)

    def stored_objects(self, run: RunContext) -> list[str] | None:
        """The objects this source has stored, as paths relative to the store
        (``NAME/disk.img``, and derived data such as its block manifest),
        read from the store after each backup and kept in the state as
        ``objects``, so that ``verify`` and ``scrub`` find one deleted
        outside inkind. None (the default): not tracked this way (the files
        source records each directory's entries in the directory itself)."""
        return None

    @abstractmethod
    def restore_commands(
        self, data_dir: Path, dest: str, path: str | None, state: dict[str, Any]
    ) -> list[list[str]]:
        """The standard-tool commands that restore ``data_dir`` (or ``path``
        below it) to ``dest``, as argument lists. ``state`` is the plugin's
        own saved state (``run.state.plugin`` of the last run)."""

    def restore_target(self, dest: str) -> tuple[SshTarget | None, str]:
        """``--to`` as (the host to reach, or None for this machine; the
        path there): ``[user@]host:/path`` is on a host, reached with this
        source's ``ssh_command``; anything else is a local path."""
        return restore_target(dest, self.ssh, self.remote.host if self.remote else None)

    def covers(self, device: str, volume: str | None) -> bool:
        """Whether this source backs up the block device ``device`` (or the
        logical volume ``volume``, "vg/lv"), for ``inkind devices``."""
        return False

    def fingerprint(self) -> dict[str, Any]:
        """The configuration that, when it changes, forces a full pass: the
        options, and the host read (only when there is one, so a local
        source's fingerprint is what it was before hosts existed)."""
        import dataclasses

        printed = {k: str(v) for k, v in dataclasses.asdict(self.options).items()}
        if self.remote is not None:
            printed["host"] = self.remote.host
        return printed
