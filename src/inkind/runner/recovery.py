"""Finishing what a killed run left before a source runs again: a state
write cut short, pending journals, temps in the data directory, and a
full pass that was due or that a changed configuration asks for."""

from __future__ import annotations

import logging
import os

from inkind.config import SourceConfig
from inkind.source import Source
from inkind.state import SourceState
from inkind.stats import Stats
from inkind.store.files import sweep_tagged_temps, sweep_temps
from inkind.store.journal import replay_journals
from inkind.store.paths import DIR_FLAGS
from inkind.storeroot import Store
from inkind.ui import fields

log = logging.getLogger("inkind")


def recover(store: Store, cfg: SourceConfig, source: Source, state: SourceState, stats: Stats) -> bool:
    """Finish what a killed run left; return whether a full pass is due.
    The caller holds the source's lock: no other writer."""
    state_path = store.state_path(cfg.name)
    fd = os.open(state_path.parent, DIR_FLAGS)
    try:  # a state write cut short
        sweep_tagged_temps(fd, state_path.name)
    finally:
        os.close(fd)
    replayed = replay_journals(store.root_fd, cfg.name, stats)
    if replayed:
        log.info("%s: replayed %d pending journal(s)", cfg.name, replayed, extra=fields(journals=replayed))
    if "running" in state.data:
        fd = os.open(store.data_dir(cfg.name), DIR_FLAGS)
        try:
            removed = sweep_temps(fd)
        finally:
            os.close(fd)
        log.info(
            "%s: previous run did not finish; removed %d temp(s)",
            cfg.name,
            removed,
            extra=fields(temps=removed),
        )
    if state.data.get("config") not in (None, source.fingerprint()):
        log.info("%s: configuration changed: full pass", cfg.name)
        state.set_resume(None, force=False)
        return True
    return bool(state.data.get("full_pending"))
