"""Running the configured sources: one after the other, each isolated.

The runner decides, with the run's one RNG, whether a source gets a full
pass; it takes the source's flock, replays pending journals, sweeps temps a
killed run left, and keeps ``.inkind/sources/NAME.json`` current.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inkind.config import Config, SourceConfig, build
from inkind.errors import ConfigError, CorruptionError, InkindError, StoreError
from inkind.history.folders import provider_for, snapshot_dirs
from inkind.history.last_run import record_run
from inkind.history.taking import HistoryResult, take_and_prune
from inkind.keepout import KeepOut
from inkind.plugins import Plugins
from inkind.source import Finding, RunContext, Source
from inkind.state import SourceState, now_iso
from inkind.stats import Stats
from inkind.store.dryrun import dry_run as store_dry_run
from inkind.store.files import holds_data, sweep_tagged_temps, sweep_temps, sync_store
from inkind.store.image import replay_journals
from inkind.store.paths import DIR_FLAGS, open_at
from inkind.store.tree import make_dir
from inkind.storeroot import Store
from inkind.ui import fields, log_context, stats_text
from inkind.verify import missing_objects, state_findings

log = logging.getLogger("inkind")

OK, WARNINGS, FAILED, BUSY, INTERRUPTED = "ok", "warnings", "failed", "busy", "interrupted"
EXIT_FOR = {OK: 0, WARNINGS: 1, BUSY: 1, FAILED: 2, INTERRUPTED: 2}


class Interrupted(BaseException):
    """SIGTERM (or SIGINT) arrived: stop at once, every object whole."""


@dataclass
class SourceResult:
    name: str
    type: str
    outcome: str = OK
    full: bool = False
    messages: list[str] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "outcome": self.outcome,
            "full": self.full,
            "messages": self.messages,
            "stats": self.stats.as_dict(),
        }


@dataclass
class RunReport:
    command: str
    start: str
    seed: int
    dry_run: bool = False
    results: list[SourceResult] = field(default_factory=list)
    end: str = ""
    history: HistoryResult | None = None  # backup only: the snapshot taken after it

    @property
    def exit_status(self) -> int:
        worst = max((EXIT_FOR[r.outcome] for r in self.results), default=0)
        return 2 if self.history and self.history.error else worst

    def as_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "start": self.start,
            "end": self.end,
            "seed": self.seed,
            "dry_run": self.dry_run,
            "exit_status": self.exit_status,
            "sources": [r.as_dict() for r in self.results],
            "history": self.history.as_dict() if self.history else None,
        }


def make_source(cfg: SourceConfig, plugins: Plugins) -> Source:
    """Instantiate a configured source, checking its options."""
    cls = plugins.types.get(cfg.type)
    if cls is None:
        failed = ", ".join(p.name for p in plugins.failed)
        hint = f" (plugins that failed to load: {failed})" if failed else ""
        known = ", ".join(sorted(plugins.types)) or "none"
        raise ConfigError(
            f"config: sources.{cfg.name}.type: unknown source type '{cfg.type}' (known: {known}){hint}"
        )
    return cls(cfg.name, build(cls.Options, cfg.options, f"sources.{cfg.name}", base=cfg.base))


def check_paths(name: str, source: Source, keep_out: KeepOut) -> None:
    """No path a source reads may be, or lie in, the store or its snapshot
    folder: it would back the store up into itself."""
    for f in dataclasses.fields(source.options):
        value = getattr(source.options, f.name)
        what = keep_out.around(value) if isinstance(value, Path) else None
        if what is not None:
            raise ConfigError(
                f"config: sources.{name}.{f.name}: {value} is in {what};"
                " a source must not read the store or its snapshots"
            )


def resolve_seed(seed: int | None) -> int:
    """``--seed``, else ``INKIND_SEED``, else a fresh random seed (logged)."""
    if seed is not None:
        return seed
    env = os.environ.get("INKIND_SEED")
    if env:
        try:
            return int(env)
        except ValueError:
            raise ConfigError(f"INKIND_SEED: expected an integer, got {env!r}") from None
    return random.SystemRandom().getrandbits(32)


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into :class:`Interrupted` for the run."""

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


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
        self.config = config
        self.plugins = plugins
        self.seed = resolve_seed(seed)
        self.rng = random.Random(self.seed)
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

    def prepare(
        self, names, *, reads_sources: bool = True
    ) -> list[tuple[SourceConfig, Source | None, str | None]]:
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
    ) -> RunReport:
        def op(source: Source, cfg: SourceConfig, run: RunContext) -> None:
            run.dry_run = dry_run
            run.scrub_fraction = (
                0.0 if dry_run else cfg.scrub_fraction if scrub_fraction is None else scrub_fraction
            )
            source.backup(run)

        # An unknown provider is a config error before anything is written.
        provider = None if dry_run else provider_for(self.config.store, self.plugins.providers)

        def snapshot(report: RunReport) -> None:
            """History: every stored object is whole even after a partial
            run, so snapshot unless every source was busy elsewhere."""
            if provider is None or all(r.outcome == BUSY for r in report.results):
                return
            record_run(self.config.store.path, report.as_dict())
            report.history = take_and_prune(self.config.store, provider)
            # The store's copy also says how the snapshot went (status reads it).
            record_run(self.config.store.path, report.as_dict())

        return self._run("backup", names, op, full=full, dry_run=dry_run, after=snapshot)

    def scrub(self, names=(), *, fraction: float | None = None) -> RunReport:
        def op(source: Source, cfg: SourceConfig, run: RunContext) -> None:
            run.scrub_fraction = cfg.scrub_fraction if fraction is None else fraction
            # What is gone is found whatever the fraction: it costs a stat each.
            gone = [f for f in state_findings(run) + missing_objects(run) if not f.recoverable]
            for f in gone:
                log.error("%s: corruption: %s", cfg.name, f, extra=fields(object=f.obj))
            run.stats.objects_corrupt += len(gone)
            source.scrub(run)
            if gone:
                more = f" (and {len(gone) - 1} more)" if len(gone) > 1 else ""
                raise CorruptionError(gone[0].obj, f"{gone[0].message}{more}")

        return self._run("scrub", names, op)

    def verify(self, names=()) -> tuple[RunReport, list[Finding]]:
        findings: list[Finding] = []

        def op(source: Source, cfg: SourceConfig, run: RunContext) -> None:
            found = state_findings(run) + source.verify(run) + missing_objects(run)
            errors = {f.obj for f in found if not f.recoverable}
            found = [f for f in found if not (f.recoverable and f.obj in errors)]
            findings.extend(found)
            for f in found:
                level = logging.WARNING if f.recoverable else logging.ERROR
                log.log(level, "%s", f, extra=fields(object=f.obj, recoverable=f.recoverable))
            bad = [f for f in found if not f.recoverable]
            if bad:
                run.stats.objects_corrupt += len(bad)
                more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
                raise CorruptionError(bad[0].obj, f"{bad[0].message}{more}")
            if found:
                run.stats.warnings += len(found)

        return self._run("verify", names, op), findings

    def _run(
        self,
        command: str,
        names,
        op: Callable,
        *,
        full: bool = False,
        dry_run: bool = False,
        after: Callable[[RunReport], None] | None = None,
    ) -> RunReport:
        prepared = self.prepare(names, reads_sources=command != "verify")
        writes = command != "verify" and not dry_run
        store = Store.open(self.config.store.path, writable=writes)
        report = RunReport(command, now_iso(), self.seed, dry_run=dry_run)
        log.info("%s: seed %d", command, self.seed, extra=fields(command=command, seed=self.seed))
        try:
            # A dry run: every store primitive compares, counts and writes nothing.
            with sigterm_interrupts(), store_dry_run(dry_run) as dry:
                if dry is not None:  # its stand-ins are no source's data either
                    st = os.stat(dry.scratch)
                    self.keep_out.dirs[(st.st_dev, st.st_ino)] = (
                        f"the dry run's scratch directory {dry.scratch}"
                    )
                for cfg, source, error in prepared:
                    result = SourceResult(cfg.name, cfg.type)
                    report.results.append(result)
                    if source is None:
                        result.outcome = FAILED
                        result.messages.append(error or "")
                        log.error("%s: %s", cfg.name, error, extra=fields(source=cfg.name))
                        continue
                    with log_context(source=cfg.name):
                        self._one(store, cfg, source, result, op, command, full, writes)
                    if result.outcome == INTERRUPTED:
                        break
        finally:
            store.close()
            report.end = now_iso()
        if after is not None:
            after(report)
        if command != "verify":
            self.plugins.call("inkind_run_finished", report=report.as_dict(), config=self.config)
        return report

    def _one(
        self,
        store: Store,
        cfg: SourceConfig,
        source: Source,
        result: SourceResult,
        op: Callable,
        command: str,
        full: bool,
        writes: bool,
    ) -> None:
        full_draw = self.rng.random() < cfg.full_probability
        stored = store.data_dir(cfg.name).is_dir()
        if command == "verify" and not stored:
            result.messages.append("nothing stored yet")
            log.info("%s: nothing stored yet", cfg.name)
            return
        if writes or stored:
            lock = store.lock(cfg.name, shared=not writes)
        else:  # a dry run, nothing stored yet: the directory a backup would make
            make_dir(store.root_fd, cfg.name, 0o777)  # as Store.lock makes it
            lock = open_at(store.root_fd, cfg.name, DIR_FLAGS)
        if lock is None:
            result.outcome = BUSY
            msg = "another inkind run is working on this source; skipped"
            result.messages.append(msg)
            log.warning("%s: %s", cfg.name, msg)
            return
        started = time.monotonic()
        stats = result.stats
        state = store.load_state(cfg.name)
        run: RunContext | None = None
        try:
            if state.set_aside:
                msg = f"state file did not parse; set aside as {state.set_aside.name} and rebuilt"
                result.messages.append(msg)
                log.warning("%s: %s", cfg.name, msg)
                stats.warnings += 1
            elif state.missing and command == "backup" and writes and holds_data(lock):
                msg = "state file missing (deleted?) while the store holds data; rebuilt"
                result.messages.append(msg)
                log.warning("%s: %s", cfg.name, msg)
                stats.warnings += 1
            if writes:
                full = self._recover(store, cfg, source, state, stats) or full or full_draw
                state.data.update(
                    type=cfg.type,
                    running={"pid": os.getpid(), "start": now_iso(), "command": command},
                )
                if command == "backup":
                    state.data["config"] = source.fingerprint()
                    state.data["full_pending"] = full
                state.save()
            result.full = full
            run = RunContext(
                name=cfg.name,
                store_path=store.path,
                root_fd=store.root_fd,
                data_fd=lock,
                state=state,
                stats=stats,
                rng=self.rng,
                full=full,
                progress_factory=self.progress_factory,
                keep_out=self.keep_out,
            )
            log.info("%s: %s%s", cfg.name, command, " (full pass)" if full else "")
            try:
                op(source, cfg, run)
                result.outcome = FAILED if stats.errors else WARNINGS if stats.warnings else OK
            except Interrupted as e:
                result.outcome = INTERRUPTED
                result.messages.append(f"interrupted by {e}")
                log.error("%s: interrupted by %s; every stored object is whole", cfg.name, e)
            except InkindError as e:
                if isinstance(e, CorruptionError) and not stats.objects_corrupt:
                    stats.objects_corrupt = 1
                self._failed(result, str(e))
            except OSError as e:
                where = f" {e.filename}" if e.filename else ""
                self._failed(result, f"{e.strerror or e}:{where}".rstrip(":"))
            except Exception as e:
                log.debug("%s", traceback.format_exc())
                self._failed(result, f"{type(e).__name__}: {e}")
            if command == "backup" and writes:
                self._record_objects(source, run)
            result.messages[:0] = run.warnings_seen
        finally:
            stats.duration_seconds = round(time.monotonic() - started, 3)
            if writes:
                sync_store(lock)
            if writes or command == "verify":
                self._record(state, cfg, command, result, run)
            if lock >= 0:
                os.close(lock)
        dry = command == "backup" and not writes
        log.info(
            "%s: %s%s: %s",
            cfg.name,
            result.outcome,
            " (dry run: what the backup would do; nothing written)" if dry else "",
            stats_text(stats),
            extra=fields(
                event="finished",
                command=command,
                outcome=result.outcome,
                full=result.full,
                dry_run=dry,
                stats=stats.as_dict(),
            ),
        )

    def _record_objects(self, source: Source, run: RunContext) -> None:
        """Keep in the state what the source has stored after this backup
        (whatever its outcome), so verify finds an object deleted later."""
        try:
            objects = source.stored_objects(run)
        except OSError as e:
            log.debug("%s: cannot list the stored objects: %s", run.name, e)
            return
        if objects is not None:
            run.state.data["objects"] = sorted(objects)

    def _failed(self, result: SourceResult, message: str) -> None:
        result.outcome = FAILED
        result.stats.errors += 1
        result.messages.append(message)
        log.error("%s: %s", result.name, message)

    def _recover(
        self, store: Store, cfg: SourceConfig, source: Source, state: SourceState, stats: Stats
    ) -> bool:
        """Finish what a killed run left; return whether a full pass is due."""
        state_path = store.state_path(cfg.name)
        fd = os.open(state_path.parent, DIR_FLAGS)
        try:  # a state write cut short (we hold the source's lock: no other writer)
            sweep_tagged_temps(fd, state_path.name)
        finally:
            os.close(fd)
        replayed = replay_journals(store.root_fd, cfg.name, stats)
        if replayed:
            log.info(
                "%s: replayed %d pending journal(s)", cfg.name, replayed, extra=fields(journals=replayed)
            )
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

    def _record(
        self,
        state: SourceState,
        cfg: SourceConfig,
        command: str,
        result: SourceResult,
        run: RunContext | None,
    ) -> None:
        """Keep the outcome in the source's state, and the corruption a check
        found until a check of every object is clean (``inkind status``
        reads it). verify, which checks the store alone, saves the state
        only when that record changes and the state file is there (a state
        file deleted from the store is itself a finding that verify must
        not paper over), and a store it cannot write (a read-only disk
        being checked) costs it a warning line only."""
        end = now_iso()
        prefix = "corruption: "
        message = next((m.removeprefix(prefix) for m in result.messages if m.startswith(prefix)), "")
        everything = result.outcome in (OK, WARNINGS) and (
            command == "verify" or (run is not None and run.scrub_fraction >= 1)
        )
        changed = state.note_check(command, end, result.stats.objects_corrupt, message, everything=everything)
        if command == "verify":
            if changed and not state.missing:
                try:
                    state.save()
                except OSError as e:
                    log.warning("%s: cannot record the verify outcome in the state: %s", cfg.name, e.strerror)
            return
        running = state.data.pop("running", None) or {}
        last = {
            "command": command,
            "start": running.get("start", ""),
            "end": end,
            "outcome": result.outcome,
            "full": result.full,
            "stats": result.stats.as_dict(),
            "messages": result.messages[-20:],
        }
        state.data[f"last_{command}"] = last
        if command == "backup" and result.outcome in (OK, WARNINGS):
            state.data["last_success"] = last["end"]
            if result.full:
                state.data["last_full_pass"] = last["end"]
                state.data["full_pending"] = False
        try:
            state.save()
        except OSError as e:
            raise StoreError(f"store: cannot record state of {cfg.name}: {e.strerror}") from None
