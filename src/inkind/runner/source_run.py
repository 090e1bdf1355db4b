"""One source's run, the same for every command: the full-pass draw, the
source's flock, recovery of a killed run, the state, the command's work
and its outcome, recorded and logged."""

from __future__ import annotations

import logging
import os
import random
import time
import traceback
from dataclasses import dataclass
from typing import Any

from inkind.config import SourceConfig
from inkind.errors import CorruptionError, InkindError
from inkind.keepout import KeepOut
from inkind.runner.commands import Command
from inkind.runner.recovery import recover
from inkind.runner.report import BUSY, FAILED, INTERRUPTED, OK, WARNINGS, SourceResult
from inkind.runner.signals import Interrupted, source_rng
from inkind.source import RunContext, Source
from inkind.state import SourceState, now_iso
from inkind.store.files import sync_store
from inkind.store.paths import DIR_FLAGS, open_at
from inkind.store.tree import make_dir
from inkind.storeroot import Store
from inkind.ui import fields, stats_text

log = logging.getLogger("inkind")


@dataclass
class SourceRuns:
    """Runs ``command`` on one source after another, with what they share."""

    store: Store
    command: Command
    seed: int  # the run's: each source draws from its own generator (source_rng)
    keep_out: KeepOut
    progress_factory: Any = None

    def one(self, cfg: SourceConfig, source: Source, result: SourceResult) -> None:
        """Run the command on ``source``; its outcome goes into ``result``."""
        command, store = self.command, self.store
        rng = source_rng(self.seed, cfg.name)
        full_draw = rng.random() < cfg.full_probability
        stored = store.data_dir(cfg.name).is_dir()
        if command.store_only and not stored:
            result.messages.append("nothing stored yet")
            log.info("%s: nothing stored yet", cfg.name)
            return
        lock = self._open_data_dir(cfg.name, stored)
        if lock is None:
            result.outcome = BUSY
            _warn(result, "another inkind run is working on this source; skipped")
            return
        started = time.monotonic()
        state = store.load_state(cfg.name)
        run: RunContext | None = None
        try:
            self._note_state(state, lock, result)
            full = command.full
            if command.writes:
                full = recover(store, cfg, source, state, result.stats) or full or full_draw
                self._mark_running(cfg, source, state, full)
            result.full = full
            run = self._context(cfg.name, lock, state, result, full, rng)
            log.info("%s: %s%s", cfg.name, command.name, " (full pass)" if full else "")
            _attempt(command, source, cfg, run, result)
            objects = command.objects_to_keep(source, run)
            if objects is not None:
                state.data["objects"] = sorted(objects)
            result.messages[:0] = run.warnings_seen
        except Interrupted as e:  # before or after the command's work (recovery, the state)
            result.outcome = INTERRUPTED
            result.messages.append(f"interrupted by {e}")
            log.error("%s: interrupted by %s; every stored object is whole", cfg.name, e)
        finally:
            result.stats.duration_seconds = round(time.monotonic() - started, 3)
            if command.writes:
                sync_store(lock)
            command.record(state, result, run)
            if lock >= 0:
                os.close(lock)
        _log_finished(command, result)

    def _open_data_dir(self, name: str, stored: bool) -> int | None:
        """The source's data directory, locked (shared when the command
        does not write); None when another run holds the lock."""
        writes = self.command.writes
        if writes or stored:
            return self.store.lock(name, shared=not writes)
        # A dry run, nothing stored yet: the directory a backup would make.
        make_dir(self.store.root_fd, name, 0o777)  # as Store.lock makes it
        return open_at(self.store.root_fd, name, DIR_FLAGS)

    def _note_state(self, state: SourceState, data_fd: int, result: SourceResult) -> None:
        """A state that did not parse, or that the command finds wanting, is a warning."""
        if state.set_aside:
            msg = f"state file did not parse; set aside as {state.set_aside.name} and rebuilt"
        else:
            msg = self.command.state_warning(state, data_fd)
        if msg:
            _warn(result, msg)
            result.stats.warnings += 1

    def _mark_running(self, cfg: SourceConfig, source: Source, state: SourceState, full: bool) -> None:
        """Say in the state that this run is working on the source (a killed
        run leaves it there for the next run's recovery)."""
        state.data.update(
            type=cfg.type,
            running={"pid": os.getpid(), "start": now_iso(), "command": self.command.name},
            **self.command.state_data(source, full),
        )
        state.save()

    # size: what the source's context is made of
    def _context(
        self,
        name: str,
        data_fd: int,
        state: SourceState,
        result: SourceResult,
        full: bool,
        rng: random.Random,
    ) -> RunContext:
        return RunContext(
            name=name,
            store_path=self.store.path,
            root_fd=self.store.root_fd,
            data_fd=data_fd,
            state=state,
            stats=result.stats,
            rng=rng,
            full=full,
            progress_factory=self.progress_factory,
            keep_out=self.keep_out,
        )


def _attempt(
    command: Command, source: Source, cfg: SourceConfig, run: RunContext, result: SourceResult
) -> None:
    """Run the command; whatever it raises becomes the source's outcome
    (one line), and the next source runs."""
    stats = run.stats
    try:
        command.run(source, cfg, run)
        result.outcome = FAILED if stats.errors else WARNINGS if stats.warnings else OK
    except Interrupted as e:
        result.outcome = INTERRUPTED
        result.messages.append(f"interrupted by {e}")
        log.error("%s: interrupted by %s; every stored object is whole", cfg.name, e)
    except InkindError as e:
        if isinstance(e, CorruptionError) and not stats.objects_corrupt:
            stats.objects_corrupt = 1
        failed(result, str(e))
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        failed(result, f"{e.strerror or e}:{where}".rstrip(":"))
    except Exception as e:
        log.debug("%s", traceback.format_exc())
        failed(result, f"{type(e).__name__}: {e}")


def failed(result: SourceResult, message: str) -> None:
    """The source failed: one error line, counted."""
    result.outcome = FAILED
    result.stats.errors += 1
    result.messages.append(message)
    log.error("%s: %s", result.name, message)


def not_loaded(result: SourceResult, error: str | None) -> None:
    """The source's plugin did not load: it fails, the others run."""
    result.outcome = FAILED
    result.messages.append(error or "")
    log.error("%s: %s", result.name, error, extra=fields(source=result.name))


def _warn(result: SourceResult, message: str) -> None:
    result.messages.append(message)
    log.warning("%s: %s", result.name, message)


def _log_finished(command: Command, result: SourceResult) -> None:
    dry = command.dry_run
    log.info(
        "%s: %s%s: %s",
        result.name,
        result.outcome,
        " (dry run: what the backup would do; nothing written)" if dry else "",
        stats_text(result.stats),
        extra=fields(
            event="finished",
            command=command.name,
            outcome=result.outcome,
            full=result.full,
            dry_run=dry,
            stats=result.stats.as_dict(),
        ),
    )
