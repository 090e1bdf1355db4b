"""Which provider keeps the store's history, and where its snapshot
folder is: ``store.snapshots`` and ``store.snapshot_dir`` resolved and
checked before anything is written."""

from __future__ import annotations

from pathlib import Path

from inkind.config import StoreConfig
from inkind.errors import ConfigError
from inkind.history.provider import NoSnapshots, SnapshotProvider
from inkind.mountinfo import where, where_it_would_be

INNER = ".snapshots"  # the snapshot folder inside a store that is the root of its filesystem

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
        found = (providers.get(n) for n in AUTO_ORDER)  # one that fails to import is reported, and missing
        name = next((c.name for c in found if c is not None and c.detect(store.path)), "none")
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
