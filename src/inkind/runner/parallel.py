"""``backup --jobs N``: up to N sources at once, each in a forked child.

Sources are CPU-bound Python: threads would share one interpreter lock
and one core. A child per running source is what a sysadmin already knows
from ``make -j`` and rsnapshot's parallel pulls: each child runs
:meth:`SourceRuns.one` exactly as the one-by-one path does (its own flock,
state, resume pointer and generator), sends its :class:`SourceResult` to
the parent as JSON over a pipe and leaves with ``os._exit`` (no atexit
handler, no ``finally`` of the parent's frames, no flush of the parent's
buffers runs twice). The parent merges the results in config order.

SIGTERM or SIGINT to the parent is passed to every running child (each
raises :class:`Interrupted` once, records its resume pointer and the
outcome ``interrupted``) and no further source starts. A child that dies
without a report (SIGKILL, the OOM killer) is a failed source with one
line; its ``running`` marker makes the next run recover what it left.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import selectors
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, NoReturn

from inkind.config import SourceConfig
from inkind.errors import InkindError
from inkind.runner.report import INTERRUPTED, RunReport, SourceResult
from inkind.runner.signals import SIGNALS, Interrupted, interrupts_once
from inkind.runner.source_run import SourceRuns, failed, not_loaded
from inkind.source import Source
from inkind.ui import log_context, name_sources

log = logging.getLogger("inkind")

Prepared = tuple[SourceConfig, Source | None, str | None]


@dataclass
class _Child:
    pid: int
    fd: int  # the read end of its pipe
    result: SourceResult  # in the report already; filled from what the child sends
    data: bytearray = field(default_factory=bytearray)
    signalled: bool = False


class AtOnce:
    """Runs prepared sources in forked children, ``jobs`` at a time.

    ``in_child`` makes what each child runs its source inside (a dry
    run's own overlay and scratch directory).
    """

    def __init__(self, runs: SourceRuns, jobs: int, in_child: Callable[[], AbstractContextManager[Any]]):
        # Progress bars of several processes would draw over each other.
        self.runs = dataclasses.replace(runs, progress_factory=None)
        self.jobs = jobs
        self.in_child = in_child
        self.children: dict[int, _Child] = {}  # by pipe fd
        self.stop: str | None = None  # the signal that stops the run
        self.selector = selectors.DefaultSelector()

    def run(self, prepared: Iterable[Prepared], report: RunReport) -> None:
        """Run every source (until a signal stops the run); each result
        goes into ``report`` in config order when its source starts."""
        queue = deque(prepared)
        name_sources()
        old = {s: signal.signal(s, self._signalled) for s in SIGNALS}
        try:
            while queue or self.children:
                while queue and len(self.children) < self.jobs and self.stop is None:
                    cfg, source, error = queue.popleft()
                    result = SourceResult(cfg.name, cfg.type)
                    report.results.append(result)
                    if source is None:
                        not_loaded(result, error)
                    else:
                        self._start(cfg, source, result)
                if not self.children and self.stop is not None:
                    break
                self._wait()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            self.selector.close()
            name_sources(False)

    def _signalled(self, signum: int, frame: Any) -> None:
        """Stop: pass the signal to every running child, start no other."""
        if self.stop is None:
            self.stop = signal.Signals(signum).name
            log.warning("%s: stopping the %d running source(s)", self.stop, len(self.children))
        for child in list(self.children.values()):
            if not child.signalled:
                child.signalled = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signum)

    def _start(self, cfg: SourceConfig, source: Source, result: SourceResult) -> None:
        """Fork the source's child. Signals wait until it is known, so a
        stop reaches it too."""
        _flush()
        read_fd, write_fd = os.pipe()
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            try:
                pid = os.fork()
            except OSError as e:
                os.close(read_fd)
                os.close(write_fd)
                failed(result, f"cannot start its run: {e.strerror}")
                return
            if pid == 0:
                os.close(read_fd)
                self._child(cfg, source, result, write_fd, mask)
            os.close(write_fd)
            self.children[read_fd] = _Child(pid, read_fd, result, signalled=self.stop is not None)
            self.selector.register(read_fd, selectors.EVENT_READ)
            if self.stop is not None:  # a stop whose handler ran only now (it was pending before the block)
                os.kill(pid, getattr(signal, self.stop))
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def _child(self, cfg: SourceConfig, source: Source, result: SourceResult, fd: int, mask: Any) -> NoReturn:
        """The forked child: run the source, send its result, leave."""
        status = 0
        try:
            for other in self.children:
                os.close(other)
            interrupts_once()
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            try:
                with log_context(source=cfg.name), self.in_child():
                    self.runs.one(cfg, source, result)
            except Interrupted as e:
                result.outcome = INTERRUPTED
                result.messages.append(f"interrupted by {e}")
            except BaseException as e:  # whatever one() lets through is this source's failure alone
                failed(result, _describe(e))
            for s in SIGNALS:  # the result is recorded: nothing may cut its sending short
                signal.signal(s, signal.SIG_IGN)
            _send(fd, json.dumps(result.as_dict()).encode())
        except BaseException:
            status = 70  # EX_SOFTWARE: the parent says the source failed
        finally:
            _flush()
            os._exit(status)

    def _wait(self) -> None:
        """Read what the children send; reap each whose pipe ends."""
        for key, _ in self.selector.select():
            child = self.children[key.fd]
            chunk = os.read(key.fd, 1 << 16)
            if chunk:
                child.data += chunk
            else:
                self._reap(child)

    def _reap(self, child: _Child) -> None:
        self.selector.unregister(child.fd)
        os.close(child.fd)
        del self.children[child.fd]  # before waitpid: a stop must not signal a reaped pid
        _, status = os.waitpid(child.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        sent = None
        if code == 0:
            with contextlib.suppress(ValueError):
                sent = json.loads(child.data)
        if sent is not None:
            vars(child.result).update(vars(SourceResult.from_dict(sent)))
            return
        with log_context(source=child.result.name):
            if code < 0:
                failed(
                    child.result, f"its run was killed by {signal.Signals(-code).name}; the next run recovers"
                )
            else:
                failed(child.result, f"its run ended with exit status {code} and no report")


def _describe(e: BaseException) -> str:
    if isinstance(e, InkindError):
        return str(e)
    if isinstance(e, OSError):
        return f"{e.strerror or e}: {e.filename or ''}".rstrip(": ")
    return f"{type(e).__name__}: {e}"


def _send(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.close(fd)


def _flush() -> None:
    """Nothing buffered before a fork is written twice, nothing logged by a
    child is lost at its ``os._exit``."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    for handler in log.handlers:
        handler.flush()
