"""Pruning the store's history: what the retention policy does not keep,
then the oldest until ``min_free`` is free; one snapshot or prune at a
time per store (``.inkind/snapshots.lock``)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from inkind.config import StoreConfig, free_target
from inkind.history.provider import Snapshot, SnapshotError, SnapshotProvider
from inkind.history.retention import keep_reasons
from inkind.ui import fields, human_bytes

log = logging.getLogger("inkind")

LOCK = ".inkind/snapshots.lock"


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
