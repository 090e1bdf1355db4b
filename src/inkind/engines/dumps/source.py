"""The base of sources that keep one dump per database, made by the
database's own tool (postgres, mysql).

The backup loop redoes every dump each run (a dump is the only consistent
read there is), scrubs a stored dump before its new dump repairs it
silently, lets the other databases go on when one fails, and on a full
pass removes the dumps of databases that are gone. With ``host`` the tools
run on that host, over one channel for the whole run
(:mod:`~inkind.engines.dumps.remote`); a connection that breaks stops the
run there, every dump not yet made keeping its previous one.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from inkind.engines.dumps.entries import stored_entries
from inkind.engines.dumps.failures import Failures
from inkind.engines.dumps.remote import open_tools
from inkind.engines.dumps.scrub import scrub_entry
from inkind.engines.dumps.tools import DumpTools
from inkind.errors import SourceError
from inkind.remote.errors import ProtocolError
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
    dumps, like PostgreSQL's globals), all redone on every run; on this
    machine, or with ``host`` by the tools of that host."""

    reads_remote_host = True

    @abstractmethod
    def plan(self, run: RunContext, tools: DumpTools) -> list[Dump]:
        """The dumps of this run, their tools found and run by ``tools``
        (this machine, or the source's host). Raise SourceError when the
        server cannot be reached at all: then nothing in the store is touched."""

    def backup(self, run: RunContext) -> None:
        failures = Failures()
        with open_tools(self.remote, run.stats) as tools:
            dumps = self.plan(run, tools)
            broken = False
            for dump in dumps:
                scrub_entry(run, dump.entry, failures)  # before the dump repairs it silently
                try:
                    dump.store(run, dump.entry)
                except SourceError as e:
                    log.debug("%s: %s: %s", run.name, dump.label, e)  # the run's one error line names it
                    failures.errors.append((dump.label, str(e)))
                    if isinstance(e, ProtocolError):  # the connection is gone: so is every other dump
                        broken = True
                        break
            if run.full and not broken:
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
