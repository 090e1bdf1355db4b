"""Terminal output: rich progress bars for long loops on a terminal only,
plain log lines otherwise, and JSON log lines for ``--log-json``.

rich is imported only when stderr is a terminal: a run from cron or systemd
never pays for loading it (about 30 ms of every run's start-up).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress as RichProgress


class Progress(Protocol):
    def advance(self, n: int = 1) -> None: ...


class _NullProgress:
    def advance(self, n: int = 1) -> None:
        pass


null_progress = _NullProgress()


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        for key in ("source", "event", "stats"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        return json.dumps(entry)


def setup_logging(verbosity: int, log_json: str | None) -> Console | None:
    """Configure the ``inkind`` logger; return the console when on a terminal."""
    logger = logging.getLogger("inkind")
    logger.handlers.clear()
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    console = None
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        console = Console(stderr=True)
        handler: logging.Handler = RichHandler(console=console, show_path=False, markup=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("inkind: %(levelname)s: %(message)s"))
    handler.setLevel(level)
    logger.addHandler(handler)
    if log_json:
        jh = logging.FileHandler(log_json)
        jh.setFormatter(_JsonFormatter())
        jh.setLevel(logging.DEBUG)
        logger.addHandler(jh)
    return console if verbosity >= 0 else None


class _RichTask:
    def __init__(self, progress: RichProgress, task: int):
        self._p = progress
        self._t = task

    def advance(self, n: int = 1) -> None:
        self._p.advance(self._t, n)


def progress_factory(console: Console | None):
    """A factory for progress bars, or None when not on a terminal."""
    if console is None:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as RichProgress

    @contextmanager
    def make(description: str, total: int | None) -> Iterator[Progress]:
        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        ]
        with RichProgress(*columns, console=console, transient=True) as p:
            yield _RichTask(p, p.add_task(description, total=total))

    return make
