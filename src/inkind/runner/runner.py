"""The runner: one command over the selected sources of a config, one
after the other (or, for ``backup --jobs N``, up to N at once in forked
children: :mod:`inkind.runner.parallel`), each isolated.

Each source draws from its own generator, seeded by the run's seed and
its name (:func:`inkind.runner.signals.source_rng`). The runner keeps the
store and its snapshot folders out of what sources read, merges the
sources' results in config order and reports the run to the plugins.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from inkind.config import Config, SourceConfig, check_jobs
from inkind.errors import ConfigError
from inkind.findings import Finding
from inkind.history.folders import provider_for, snapshot_dirs
from inkind.keepout import KeepOut
from inkind.plugins import Plugins
from inkind.runner.commands import Backup, Command, Scrub, Verify
from inkind.runner.parallel import AtOnce, Prepared
from inkind.runner.report import INTERRUPTED, RunReport, SourceResult
from inkind.runner.signals import resolve_seed, sigterm_interrupts
from inkind.runner.source_run import SourceRuns, not_loaded
from inkind.runner.sources import check_paths, make_source
from inkind.state import now_iso
from inkind.store.dryrun import DryRun
from inkind.store.dryrun import dry_run as store_dry_run
from inkind.storeroot import Store, StoreLayout
from inkind.ui import fields, log_context

log = logging.getLogger("inkind")


class Runner:
    """Runs one command over the selected sources of a config."""

    def __init__(
        self,
        config: Config,
        plugins: Plugins,
        *,
        seed: int | None = None,
        progress_factory: Any = None,
    ):
        plugins.configure(config)  # the plugins' own tables: a wrong key stops the run before it starts
        self.config = config
        self.plugins = plugins
        self.seed = resolve_seed(seed)
        self.progress_factory = progress_factory
        folders = [("the store's snapshot folder", p) for p in snapshot_dirs(config.store)]
        self.keep_out = KeepOut.of([("the store", config.store.path), *folders])

    def select(self, names: tuple[str, ...] | list[str]) -> list[SourceConfig]:
        """The named sources (all when none are named), in config order."""
        for n in names:
            if n not in self.config.sources:
                known = ", ".join(self.config.sources) or "none"
                raise ConfigError(f"no source named '{n}' in {self.config.path} (known: {known})")
        wanted = set(names)
        return [s for s in self.config.sources.values() if not wanted or s.name in wanted]

    def prepare(self, names, *, reads_sources: bool = True) -> list[Prepared]:
        """Check every selected source's config before anything is written
        (for a command that reads the sources, also that none reads the
        store: :func:`check_paths`).

        A source whose type belongs to a plugin that failed to load is
        returned with its error, so the other sources still run.
        """
        prepared = []
        for cfg in self.select(names):
            try:
                source = make_source(cfg, self.plugins)
            except ConfigError as e:
                if cfg.type in self.plugins.types or not self.plugins.failed:
                    raise
                prepared.append((cfg, None, str(e)))
                continue
            if reads_sources:
                check_paths(cfg.name, source, self.keep_out)
            prepared.append((cfg, source, None))
        return prepared

    def backup(
        self,
        names=(),
        *,
        full: bool = False,
        scrub_fraction: float | None = None,
        dry_run: bool = False,
        jobs: int | None = None,
    ) -> RunReport:
        """Back up the sources, up to ``jobs`` at once (None: the config's
        ``jobs``; 1 runs them one by one in this process)."""
        jobs = check_jobs(self.config.jobs if jobs is None else jobs, "--jobs")
        # An unknown provider is a config error before anything is written.
        provider = None if dry_run else provider_for(self.config.store, self.plugins.providers)
        command = Backup(
            dry_run=dry_run,
            full=full,
            scrub_fraction=scrub_fraction,
            store=self.config.store,
            provider=provider,
        )
        return self._run(command, names, jobs)

    def scrub(self, names=(), *, fraction: float | None = None) -> RunReport:
        return self._run(Scrub(fraction=fraction), names)

    def verify(self, names=()) -> tuple[RunReport, list[Finding]]:
        command = Verify()
        return self._run(command, names), command.findings

    def _run(self, command: Command, names, jobs: int = 1) -> RunReport:
        prepared = self.prepare(names, reads_sources=not command.store_only)
        store = Store.open(self.config.store.path, writable=command.writes)
        report = RunReport(command.name, now_iso(), self.seed, dry_run=command.dry_run)
        log.info("%s: seed %d", command.name, self.seed, extra=fields(command=command.name, seed=self.seed))
        runs = SourceRuns(store, command, self.seed, self.keep_out, self.progress_factory)
        at_once = jobs > 1 and len(prepared) > 1
        try:
            # A dry run: every store primitive compares, counts and writes
            # nothing (with --jobs, each child has its own overlay).
            with sigterm_interrupts(), store_dry_run(command.dry_run and not at_once) as dry:
                if dry is not None:
                    self._keep_out_scratch(dry)
                if at_once:
                    AtOnce(runs, jobs, lambda: self._child_dry_run(command.dry_run)).run(prepared, report)
                else:
                    _one_by_one(runs, prepared, report)
        finally:
            store.close()
            report.end = now_iso()
        command.after(report)
        if not command.store_only:
            # The layout, not the store: its fd is closed by now.
            self.plugins.call(
                "inkind_run_finished", report=report, store=StoreLayout(store.path), config=self.config
            )
        return report

    @contextmanager
    def _child_dry_run(self, enabled: bool) -> Iterator[None]:
        """A ``--jobs`` child's dry run: its own overlay and stand-ins."""
        with store_dry_run(enabled) as dry:
            if dry is not None:
                self._keep_out_scratch(dry)
            yield

    def _keep_out_scratch(self, dry: DryRun) -> None:
        """A dry run's stand-ins are no source's data either."""
        st = os.stat(dry.scratch)
        self.keep_out.dirs[(st.st_dev, st.st_ino)] = f"the dry run's scratch directory {dry.scratch}"


def _one_by_one(runs: SourceRuns, prepared: list[Prepared], report: RunReport) -> None:
    """``--jobs 1``: each source in this process, in config order; an
    interruption stops the run."""
    for cfg, source, error in prepared:
        result = SourceResult(cfg.name, cfg.type)
        report.results.append(result)
        if source is None:
            not_loaded(result, error)
            continue
        with log_context(source=cfg.name):
            runs.one(cfg, source, result)
        if result.outcome == INTERRUPTED:
            break
