"""Store history: the interface of snapshot providers, and taking and
pruning snapshots after a backup.

A provider (btrfs, lvm, zfs, reflink, hardlink, ...) comes from a plugin
through the ``inkind_snapshot_providers`` hook. A snapshot is a read-only
copy of the whole store, ``.inkind/`` included, so it says itself which
sources ran and how. Its id is the UTC time it was taken in ISO 8601's
basic format (``20261124T031700Z``): no colons, so the same id is a valid
directory, LV and ZFS snapshot name, and rsync never mistakes it for a
``host:path``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from inkind.config import StoreConfig
from inkind.errors import ConfigError, InkindError
from inkind.mountinfo import where, where_it_would_be
from inkind.retention import free_target, keep_reasons
from inkind.state import write_json
from inkind.store.files import is_temp_name, sweep_tagged_temps
from inkind.ui import fields, human_bytes

log = logging.getLogger("inkind")

ID_FORMAT = "%Y%m%dT%H%M%SZ"
ID_FORMAT_FINE = "%Y%m%dT%H%M%S.%fZ"  # two snapshots within one second
LAST_RUN = ".inkind/last-run.json"
LOCK = ".inkind/snapshots.lock"
INNER = ".snapshots"  # the snapshot folder inside a store that is the root of its filesystem


class SnapshotError(InkindError):
    """Taking, listing or deleting a snapshot failed; the backup's data are kept."""


@dataclass(frozen=True)
class Snapshot:
    """One snapshot. ``store`` is where the copy of the store can be read
    (None when it must be mounted first, see :meth:`SnapshotProvider.mount_commands`)."""

    id: str
    store: Path | None
    handle: str = ""  # the provider's own name for it (path, vg/lv, dataset@snap)

    @property
    def time(self) -> datetime:
        return parse_id(self.id)


def new_id(now: float | None = None, taken: Sequence[str] = ()) -> str:
    """The UTC time as a snapshot id; with microseconds only when a
    snapshot of the same second exists, so the new id sorts last."""
    t = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    sid = t.strftime(ID_FORMAT)
    if taken and max(map(parse_id, taken)) >= parse_id(sid):
        sid = t.strftime(ID_FORMAT_FINE)
    return sid


def parse_id(sid: str) -> datetime:
    fmt = ID_FORMAT_FINE if "." in sid else ID_FORMAT
    return datetime.strptime(sid, fmt).replace(tzinfo=UTC)


def is_id(text: str) -> bool:
    try:
        parse_id(text)
    except ValueError:
        return False
    return True


def run_tool(argv: list[str], what: str) -> str:
    """Run a storage command; its failure is one SnapshotError line naming
    the command and what it printed."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise SnapshotError(f"snapshots: {what}: command not found: {argv[0]}") from None
    if done.returncode:
        detail = (done.stderr or done.stdout).strip().splitlines()
        tail = f": {detail[-1]}" if detail else ""
        raise SnapshotError(f"snapshots: {what}: {argv[0]} exited {done.returncode}{tail}")
    return done.stdout


class SnapshotProvider(ABC):
    """One way to keep history of the store at ``store``.

    ``snapshot_dir`` is where providers that make directories put them
    (beside the store, or its ``.snapshots`` folder: :func:`default_snapshot_dir`);
    providers that snapshot a volume or dataset ignore it.
    """

    name: ClassVar[str]
    snapshot_dir_on: ClassVar[str | None] = None
    """Where ``snapshot_dir`` must be for this provider to work: "mount"
    (the store's own mount: hard links cross no mount), "filesystem" (the
    store's filesystem, any mount of it: btrfs snapshots, reflinks), or
    None when the provider keeps its snapshots elsewhere."""

    def __init__(self, store: Path, snapshot_dir: Path):
        self.store = store
        self.snapshot_dir = snapshot_dir

    @classmethod
    def detect(cls, store: Path) -> bool:
        """Whether this provider works for ``store`` (asked by "auto")."""
        return False

    @abstractmethod
    def create(self, sid: str) -> Snapshot:
        """Take a snapshot with id ``sid``. A half-made one must never be
        listed: be atomic, or build under a temp name and rename."""

    @abstractmethod
    def list(self) -> list[Snapshot]:
        """The snapshots, oldest first. Providers that can leave half-made
        snapshots remove them here (the caller holds the snapshots lock)."""

    @abstractmethod
    def delete(self, snap: Snapshot) -> None:
        """Delete one snapshot, freeing its space before returning where
        the storage allows it (``min_free`` measures right after)."""

    @property
    def inner_entry(self) -> str | None:
        """The name of the store's top-level entry that holds the snapshot
        folder, when the folder is inside the store (a copy of the store
        leaves it out); None when it is outside."""
        try:
            return self.snapshot_dir.resolve().relative_to(self.store.resolve()).parts[0]
        except (ValueError, IndexError):
            return None

    def space(self) -> tuple[int, int]:
        """(total, free) bytes of the storage that snapshots consume."""
        usage = shutil.disk_usage(self.store)
        return usage.total, usage.free

    def exclusive_bytes(self, snap: Snapshot) -> int | None:
        """Bytes only this snapshot holds (what deleting it frees), when the
        provider can tell cheaply enough for ``snapshots list``."""
        return None

    def mount_commands(self, snap: Snapshot) -> tuple[list[list[str]], Path]:
        """Commands that make a snapshot readable, and where its copy of the
        store then is. Directory snapshots need none."""
        assert snap.store is not None
        return [], snap.store

    def write_paths(self) -> list[Path]:
        """Where taking and pruning snapshots writes, outside the store (the
        units ``inkind systemd`` prints may write there and nowhere else)."""
        return [self.snapshot_dir]


class NoSnapshots(SnapshotProvider):
    """``snapshots = "none"``: the store keeps only the latest state."""

    name = "none"

    def write_paths(self) -> list[Path]:
        return []

    def create(self, sid: str) -> Snapshot:
        raise SnapshotError("snapshots: store.snapshots is 'none': no history is kept")

    def list(self) -> list[Snapshot]:
        return []

    def delete(self, snap: Snapshot) -> None:
        raise SnapshotError("snapshots: store.snapshots is 'none'")


AUTO_ORDER = ("btrfs", "reflink", "hardlink")


def default_snapshot_dir(store: Path) -> Path:
    """``<store>.snapshots`` beside the store when the store's parent is on
    the store's filesystem; else (the store is the root of a filesystem of
    its own) ``<store>/.snapshots``, which sources and copies leave alone.
    Filesystems, not mounts, are compared: inside a systemd unit each
    ``ReadWritePaths`` entry is a mount of its own, and the unit must find
    the folder a shell finds."""
    sibling = _sibling(store)
    try:
        beside = where(store).filesystem == where(store.parent).filesystem
    except OSError:  # no store (yet): nothing will be snapshotted
        return sibling
    return sibling if beside else store / INNER


def snapshot_dirs(store: StoreConfig) -> list[Path]:
    """Every folder this store's snapshots may be in: ``store.snapshot_dir``,
    else both defaults (the one in use follows the mounts of the moment)."""
    if store.snapshot_dir is not None:
        return [store.snapshot_dir]
    return [_sibling(store.path), store.path / INNER]


def _sibling(store: Path) -> Path:
    return store.with_name(store.name + ".snapshots") if store.name else store / INNER


def check_snapshot_dir(store: Path, snapshot_dir: Path, cls: type[SnapshotProvider]) -> None:
    """An explicit ``store.snapshot_dir`` the provider cannot use is a config
    error before anything is written: inside the store anywhere but ``.snapshots`` (a
    source or a copy would take it in), or off the filesystem (or mount)
    the provider's snapshots must share with the store."""
    if cls.snapshot_dir_on is None:
        return
    inside = snapshot_dir.resolve().is_relative_to(store.resolve())
    if inside and snapshot_dir.resolve() != (store / INNER).resolve():
        raise ConfigError(
            f"config: store.snapshot_dir: {snapshot_dir} lies inside the store; the one place"
            f" there that sources and snapshots leave alone is {store / INNER}"
        )
    try:
        here, there = where(store), where_it_would_be(snapshot_dir)
    except OSError:  # no store: opening it reports that
        return
    if cls.snapshot_dir_on == "mount" and here.mount != there.mount:
        raise ConfigError(
            f"config: store.snapshot_dir: {snapshot_dir} is not on the store's mount ({store}):"
            f" {cls.name} snapshots link to the store's files, and links cannot cross mounts"
        )
    if here.filesystem != there.filesystem:
        raise ConfigError(
            f"config: store.snapshot_dir: {snapshot_dir} is not on the store's filesystem ({store}):"
            f" {cls.name} snapshots can only be made there"
        )


def provider_for(store: StoreConfig, providers: dict[str, type[SnapshotProvider]]) -> SnapshotProvider:
    """The configured provider; "auto" picks the first of btrfs, reflink,
    hardlink whose detect() holds for the store."""
    name = store.snapshots
    if name == "auto":
        name = next((n for n in AUTO_ORDER if n in providers and providers[n].detect(store.path)), "none")
    cls = NoSnapshots if name == "none" else providers.get(name)
    if cls is None:
        known = ", ".join(["auto", "none", *sorted(providers)])
        raise ConfigError(
            f"config: store.snapshots: no snapshot provider '{name}' is loaded (known: {known})"
        )
    if store.snapshot_dir is None:
        return cls(store.path, default_snapshot_dir(store.path))
    check_snapshot_dir(store.path, store.snapshot_dir, cls)
    return cls(store.path, store.snapshot_dir)


@contextlib.contextmanager
def snapshots_lock(store: Path):
    """One snapshot or prune at a time per store; None when another holds it."""
    path = store / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


@dataclass
class HistoryResult:
    """What the history step of a backup did, for the report."""

    provider: str
    snapshot: str | None = None
    pruned: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "snapshot": self.snapshot,
            "pruned": self.pruned,
            "error": self.error,
        }


def record_run(store: Path, report: dict[str, Any]) -> None:
    """Write the run's report into ``.inkind/`` so each snapshot says which
    sources ran, their outcome and stats. Two runs (of different sources)
    take turns on an flock of ``.inkind/``, and each removes the temp of a
    killed run's unfinished write first."""
    path = store / LAST_RUN
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        sweep_tagged_temps(fd, path.name)
        write_json(path, report)
    finally:
        os.close(fd)


def take_and_prune(store: StoreConfig, provider: SnapshotProvider) -> HistoryResult:
    """After a backup: snapshot the store, then prune. A failure is kept in
    the result (and logged as one line); the backup's data stay."""
    result = HistoryResult(provider.name)
    if isinstance(provider, NoSnapshots):
        return result
    try:
        with snapshots_lock(store.path) as locked:
            if not locked:
                raise SnapshotError(
                    "snapshots: another inkind run is taking or pruning snapshots; none taken"
                )
            existing = provider.list()
            snap = provider.create(new_id(taken=[s.id for s in existing]))
            result.snapshot = snap.id
            log.info("snapshot %s taken (%s)", snap.id, provider.name)
            result.pruned = [s.id for s in prune(store, provider, locked=True)]
    except InkindError as e:
        result.error = str(e)
        log.error("%s", e)
    except OSError as e:
        result.error = f"snapshots: {e.strerror}: {e.filename or ''}".rstrip(": ")
        log.error("%s", result.error)
    return result


@dataclass
class PrunePlan:
    """Which snapshots the policy drops, and why the others are kept."""

    snapshots: list[Snapshot]
    reasons: dict[str, list[str]]  # id -> rules that keep it

    @property
    def doomed(self) -> list[Snapshot]:
        return [s for s in self.snapshots if s.id not in self.reasons]


def plan(store: StoreConfig, provider: SnapshotProvider) -> PrunePlan:
    snaps = provider.list()
    reasons = keep_reasons(snaps, store.retention)
    return PrunePlan(snaps, {snaps[i].id: why for i, why in reasons.items()})


def prune(
    store: StoreConfig, provider: SnapshotProvider, *, dry_run: bool = False, locked: bool = False
) -> list[Snapshot]:
    """Delete what the retention policy does not keep, then the oldest
    until ``min_free`` is free; the newest is never deleted. A dry run
    deletes nothing and cannot tell what deleting frees, so it names the
    policy's victims and, when space is short, the oldest kept one."""
    if not locked:
        with snapshots_lock(store.path) as ok:
            if not ok:
                raise SnapshotError("snapshots: another inkind run is taking or pruning snapshots")
            return prune(store, provider, dry_run=dry_run, locked=True)
    p = plan(store, provider)
    doomed = p.doomed
    kept = [s for s in p.snapshots if s not in doomed]
    for s in doomed:
        if not dry_run:
            provider.delete(s)
        log.info("snapshot %s %s (retention policy)", s.id, "would be pruned" if dry_run else "pruned")
    total, free = provider.space()
    want = free_target(store.retention.min_free, total)
    while free < want and len(kept) > 1:
        s = kept.pop(0)
        doomed.append(s)
        log.info(
            "snapshot %s %s (min_free %s: %s free)",
            s.id,
            "would be pruned" if dry_run else "pruned",
            store.retention.min_free,
            human_bytes(free),
            extra=fields(snapshot=s.id, free_bytes=free, min_free_bytes=want),
        )
        if dry_run:
            break
        provider.delete(s)
        free = provider.space()[1]
    if free < want and not dry_run:
        log.warning(
            "snapshots: only %s free after pruning; min_free asks %s",
            human_bytes(free),
            human_bytes(want),
            extra=fields(free_bytes=free, min_free_bytes=want),
        )
    return doomed


def read_last_run(snap_store: Path | None) -> dict[str, Any] | None:
    """The run report a snapshot holds, or None (unmounted or unreadable)."""
    if snap_store is None:
        return None
    try:
        return json.loads((snap_store / LAST_RUN).read_text())
    except (OSError, ValueError):
        return None


def is_half_made(name: str) -> bool:
    """A snapshot directory left by an interrupted copy."""
    return is_temp_name(name.encode())
