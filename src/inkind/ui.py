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
from contextvars import ContextVar
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress as RichProgress

    from inkind.stats import Stats


class Progress(Protocol):
    def advance(self, n: int = 1) -> None: ...


class _NullProgress:
    def advance(self, n: int = 1) -> None:
        pass


null_progress = _NullProgress()

BYTE_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def human_bytes(n: float) -> str:
    """``n`` bytes in binary units (``512 B``, ``4.0 KiB``, ``1.5 GiB``): the
    units config sizes such as ``min_free = "20G"`` are read in."""
    if abs(n) < 1024:
        return f"{n:.0f} B"
    for unit in BYTE_UNITS:
        n /= 1024
        if abs(n) < 1024 or unit == BYTE_UNITS[-1]:
            break
    return f"{n:.1f} {unit}"


# What a terminal line says about a run's Stats, in this order; counters at
# zero are left out. Byte counters are shown in human units.
_STATS_TEXT = (
    ("objects_seen", "seen"),
    ("objects_changed", "changed"),
    ("objects_unchanged", "unchanged"),
    ("objects_skipped", "skipped"),
    ("objects_deleted", "deleted"),
    ("objects_scrubbed", "scrubbed"),
    ("objects_repaired", "repaired"),
    ("objects_corrupt", "corrupt"),
    ("bytes_read", "read"),
    ("bytes_written", "written"),
    ("bytes_journaled", "journaled"),
    ("bytes_received", "received"),
    ("xattrs_written", "xattrs set"),
    ("mtimes_set", "mtimes set"),
    ("modes_set", "modes set"),
    ("owners_set", "owners set"),
    ("warnings", "warning(s)"),
    ("errors", "error(s)"),
)


def stats_text(stats: Stats) -> str:
    """``1338 seen, 12 changed, 4.2 MiB written, 3.1s``: a run's non-zero
    counters for a person (``--json`` and ``--log-json`` keep the numbers)."""
    parts = []
    for key, label in _STATS_TEXT:
        value = getattr(stats, key)
        if value:
            parts.append(f"{human_bytes(value) if key.startswith('bytes_') else value} {label}")
    return ", ".join([*parts, f"{stats.duration_seconds:.1f}s"])


# --- structured log fields ---------------------------------------------------

_context: ContextVar[dict[str, Any] | None] = ContextVar("inkind_log_context", default=None)


@contextmanager
def log_context(**data: Any) -> Iterator[None]:
    """Every log line inside carries ``data`` as ``--log-json`` fields (the
    runner sets ``source`` while a source runs)."""
    token = _context.set({**(_context.get() or {}), **data})
    try:
        yield
    finally:
        _context.reset(token)


def fields(**data: Any) -> dict[str, Any]:
    """``extra=`` for a log call whose numbers a machine wants: they become
    fields of its ``--log-json`` line; the terminal shows the message only.
    ``log.info("%s: ok", name, extra=fields(stats=stats.as_dict()))``."""
    return {"inkind_fields": data}


_naming = [False]  # name_sources(): lines of several sources at once interleave


def name_sources(enabled: bool = True) -> None:
    """From now on (``backup --jobs``), a terminal line logged while a
    source runs that does not start with the source's name gets it in
    front: lines of sources running at once interleave. (``--log-json``
    lines carry the ``source`` field whatever this says.)"""
    _naming[0] = enabled


class _SourceName(logging.Filter):
    """Sets ``inkind_source`` ("NAME: " or "") for the terminal's format."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.inkind_source = ""
        source = (_context.get() or {}).get("source")
        if _naming[0] and source and not record.getMessage().startswith(f"{source}: "):
            record.inkind_source = f"{source}: "
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        entry.update(_context.get() or {})
        entry.update(getattr(record, "inkind_fields", {}))
        return json.dumps(entry, default=str)


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
        handler.setFormatter(logging.Formatter("%(inkind_source)s%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("inkind: %(levelname)s: %(inkind_source)s%(message)s"))
    handler.addFilter(_SourceName())
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
    """A factory for progress bars, or None when not on a terminal.

    ``make(description, total, unit="objects"|"bytes", estimated=False)``:
    a bar with what is done of ``total`` (``~`` before an ``estimated``
    total, such as the files source's count from its previous run), the
    rate, and the time left; without a total, the count and rate only.
    """
    if console is None:
        return None
    from rich.progress import BarColumn, ProgressColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as RichProgress
    from rich.text import Text

    def amount(n: float, unit: str) -> str:
        return human_bytes(n) if unit == "bytes" else f"{int(n)}"

    class Done(ProgressColumn):
        """``7424/~9000``, ``1.2 GiB/4.0 GiB``, or ``7424`` without a total."""

        def render(self, task) -> Text:
            unit = task.fields["unit"]
            text = amount(task.completed, unit)
            if task.total is not None:
                text += f"/{'~' if task.fields['estimated'] else ''}{amount(task.total, unit)}"
            return Text(text, style="progress.download")

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            text = "" if speed is None else f"{amount(speed, task.fields['unit'])}/s"
            return Text(text, style="progress.data.speed")

    class Left(ProgressColumn):
        """Time left at the current rate; none past an estimated total."""

        def render(self, task) -> Text:
            left = task.time_remaining
            if task.total is None or left is None or task.completed > task.total:
                return Text("")
            approx = "~" if task.fields["estimated"] else ""
            return Text(f"{approx}{timedelta(seconds=int(left))} left", style="progress.remaining")

    @contextmanager
    def make(
        description: str, total: int | None, *, unit: str = "objects", estimated: bool = False
    ) -> Iterator[Progress]:
        columns = [TextColumn("{task.description}"), BarColumn(), Done(), Rate(), Left(), TimeElapsedColumn()]
        with RichProgress(*columns, console=console, transient=True) as p:
            yield _RichTask(p, p.add_task(description, total=total, unit=unit, estimated=estimated))

    return make
