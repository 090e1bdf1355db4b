"""The history step of a backup: snapshot the store, then prune."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from inkind.config import StoreConfig
from inkind.errors import InkindError
from inkind.history.ids import new_id
from inkind.history.provider import NoSnapshots, SnapshotError, SnapshotProvider
from inkind.history.pruning import prune, snapshots_lock

log = logging.getLogger("inkind")


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
