"""What each command does to one source: backup, scrub and verify as
:class:`Command` subclasses. The runner calls the same steps for every
command (:mod:`inkind.runner.source_run`); a command says only how it
differs."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from inkind.config import SourceConfig, StoreConfig
from inkind.errors import CorruptionError
from inkind.findings import Finding
from inkind.history.last_run import record_run
from inkind.history.provider import SnapshotProvider
from inkind.history.taking import take_and_prune
from inkind.runner.recording import note_check, record_last, save_state
from inkind.runner.report import BUSY, OK, WARNINGS, RunReport, SourceResult
from inkind.source import RunContext, Source
from inkind.state import SourceState, now_iso
from inkind.store.files import holds_data
from inkind.ui import fields
from inkind.verify import missing_objects, state_findings

log = logging.getLogger("inkind")


@dataclass(kw_only=True)
class Command(ABC):
    """One command's part of a run. The defaults are those of a command
    that reads the sources and writes the store (backup, scrub)."""

    name: ClassVar[str]
    store_only: ClassVar[bool] = False
    """The command checks the store alone (verify): it reads no source,
    writes nothing but its check record, skips a source with nothing
    stored, and no ``inkind_run_finished`` reports it."""

    dry_run: bool = False
    full: bool = False  # a full pass asked for (backup --full)

    @property
    def writes(self) -> bool:
        return not self.store_only and not self.dry_run

    def state_warning(self, state: SourceState, data_fd: int) -> str | None:
        """A warning about the state as loaded, beyond one that did not parse."""
        return None

    def state_data(self, source: Source, full: bool) -> dict[str, Any]:
        """Before a run that writes: what the command keeps in the state."""
        return {}

    @abstractmethod
    def run(self, source: Source, cfg: SourceConfig, run: RunContext) -> None:
        """The command's work on one source; an exception is its outcome."""

    def objects_to_keep(self, source: Source, run: RunContext) -> list[str] | None:
        """After :meth:`run`, whatever its outcome: the stored objects to
        keep in the state (None: the state's list stays as it is)."""
        return None

    def record(self, state: SourceState, result: SourceResult, run: RunContext | None) -> None:
        """Keep the outcome in the source's state (a dry run keeps nothing)."""
        if not self.writes:
            return
        end = now_iso()
        everything = run is not None and run.scrub_fraction >= 1
        note_check(state, self.name, end, result, everything=everything)
        state.data.update(self.from_last(record_last(state, self.name, end, result)))
        save_state(state, result.name)

    def from_last(self, last: dict[str, Any]) -> dict[str, Any]:
        """What the command derives from ``last_<command>`` into the state."""
        return {}

    def after(self, report: RunReport) -> None:  # noqa: B027 (a hook: backup alone acts after the run)
        """Once every source has run."""


@dataclass(kw_only=True)
class Backup(Command):
    name = "backup"
    scrub_fraction: float | None = None  # --scrub-fraction: else each source's own
    store: StoreConfig
    provider: SnapshotProvider | None  # None: a dry run, which takes no snapshot

    def state_warning(self, state: SourceState, data_fd: int) -> str | None:
        if self.writes and state.missing and holds_data(data_fd):
            return "state file missing (deleted?) while the store holds data; rebuilt"
        return None

    def state_data(self, source: Source, full: bool) -> dict[str, Any]:
        return {"config": source.fingerprint(), "full_pending": full}

    def run(self, source: Source, cfg: SourceConfig, run: RunContext) -> None:
        run.dry_run = self.dry_run
        fraction = cfg.scrub_fraction if self.scrub_fraction is None else self.scrub_fraction
        run.scrub_fraction = 0.0 if self.dry_run else fraction
        source.backup(run)

    def objects_to_keep(self, source: Source, run: RunContext) -> list[str] | None:
        """What the source has stored after this backup (whatever its
        outcome), so verify finds an object deleted later."""
        if not self.writes:
            return None
        try:
            return source.stored_objects(run)
        except OSError as e:
            log.debug("%s: cannot list the stored objects: %s", run.name, e)
            return None

    def from_last(self, last: dict[str, Any]) -> dict[str, Any]:
        if last["outcome"] not in (OK, WARNINGS):
            return {}
        if not last["full"]:
            return {"last_success": last["end"]}
        return {"last_success": last["end"], "last_full_pass": last["end"], "full_pending": False}

    def after(self, report: RunReport) -> None:
        """History: every stored object is whole even after a partial run,
        so snapshot unless every source was busy elsewhere."""
        if self.provider is None or all(r.outcome == BUSY for r in report.results):
            return
        record_run(self.store.path, report.as_dict())
        report.history = take_and_prune(self.store, self.provider)
        # The store's copy also says how the snapshot went (status reads it).
        record_run(self.store.path, report.as_dict())


@dataclass(kw_only=True)
class Scrub(Command):
    name = "scrub"
    fraction: float | None = None  # --fraction: else each source's scrub_fraction

    def run(self, source: Source, cfg: SourceConfig, run: RunContext) -> None:
        run.scrub_fraction = cfg.scrub_fraction if self.fraction is None else self.fraction
        # What is gone is found whatever the fraction: it costs a stat each.
        gone = [f for f in state_findings(run) + missing_objects(run) if not f.recoverable]
        for f in gone:
            log.error("%s: corruption: %s", cfg.name, f, extra=fields(object=f.obj))
        run.stats.objects_corrupt += len(gone)
        source.scrub(run)
        if gone:
            raise corruption(gone)


@dataclass(kw_only=True)
class Verify(Command):
    name = "verify"
    store_only = True
    findings: list[Finding] = field(default_factory=list)  # of every source, for the caller

    def run(self, source: Source, cfg: SourceConfig, run: RunContext) -> None:
        found = state_findings(run) + source.verify(run) + missing_objects(run)
        errors = {f.obj for f in found if not f.recoverable}
        found = [f for f in found if not (f.recoverable and f.obj in errors)]
        self.findings.extend(found)
        for f in found:
            level = logging.WARNING if f.recoverable else logging.ERROR
            log.log(level, "%s", f, extra=fields(object=f.obj, recoverable=f.recoverable))
        bad = [f for f in found if not f.recoverable]
        if bad:
            run.stats.objects_corrupt += len(bad)
            raise corruption(bad)
        if found:
            run.stats.warnings += len(found)

    def record(self, state: SourceState, result: SourceResult, run: RunContext | None) -> None:
        """verify checks the store alone: it saves the state only when the
        check record changes and the state file is there (a state file
        deleted from the store is itself a finding that verify must not
        paper over), and a store it cannot write (a read-only disk being
        checked) costs it a warning line only."""
        changed = note_check(state, self.name, now_iso(), result, everything=True)
        if changed and not state.missing:
            try:
                state.save()
            except OSError as e:
                log.warning("%s: cannot record the verify outcome in the state: %s", result.name, e.strerror)


def corruption(bad: list[Finding]) -> CorruptionError:
    """The error for the first of ``bad``, saying how many more there are."""
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    return CorruptionError(bad[0].obj, f"{bad[0].message}{more}")
