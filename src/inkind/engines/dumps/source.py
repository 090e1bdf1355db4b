"""The base of sources that keep one dump per database, made by the
database's own tool (postgres, mysql).

The backup loop redoes every dump each run (a dump is the only consistent
read there is), scrubs a stored dump before its new dump repairs it
silently, lets the other databases go on when one fails, and on a full
pass removes the dumps of databases that are gone.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from inkind.engines.dumps.entries import stored_entries
from inkind.engines.dumps.failures import Failures
from inkind.engines.dumps.scrub import scrub_entry
from inkind.errors import SourceError
from inkind.source import RunContext, Source
from inkind.store.tree import discard

log = logging.getLogger("inkind")


@dataclass(frozen=True)
class Dump:
    """One stored dump: its entry in ``STORE/NAME``, the label errors name it
    by, and the call that stores it (raising SourceError when it fails)."""

    entry: str
    label: str
    store: Callable[[RunContext, str], object]


class DumpSource(Source):
    """A source that stores one dump per database (and maybe a few extra
    dumps, like PostgreSQL's globals), all redone on every run."""

    @abstractmethod
    def plan(self, run: RunContext) -> list[Dump]:
        """The dumps of this run. Raise SourceError when the server cannot be
        reached at all: then nothing in the store is touched."""

    def backup(self, run: RunContext) -> None:
        dumps = self.plan(run)
        failures = Failures()
        for dump in dumps:
            scrub_entry(run, dump.entry, failures)  # before the dump repairs it silently
            try:
                dump.store(run, dump.entry)
            except SourceError as e:
                log.debug("%s: %s: %s", run.name, dump.label, e)  # the run's one error line names it
                failures.errors.append((dump.label, str(e)))
        if run.full:
            self.remove_strays(run, {d.entry for d in dumps})
        failures.raise_any()

    def scrub(self, run: RunContext) -> None:
        """Check a sample of stored dump files against their checksum. (Each
        backup already compares every dump with the database in full.)"""
        failures = Failures()
        for entry in stored_entries(run.data_fd):
            scrub_entry(run, entry, failures)
        failures.raise_any()

    def stored_objects(self, run: RunContext) -> list[str]:
        """Each stored dump (a file, or a directory of files)."""
        return [f"{run.name}/{entry}" for entry in stored_entries(run.data_fd)]

    def remove_strays(self, run: RunContext, wanted: set[str]) -> None:
        """A full pass removes the dumps of databases that are gone (or no
        longer selected, or stored in a format no longer configured)."""
        for entry in stored_entries(run.data_fd):
            if entry not in wanted:
                log.info("%s: removing %s (its database is no longer backed up)", run.name, entry)
                discard(run.data_fd, entry, run.stats)
