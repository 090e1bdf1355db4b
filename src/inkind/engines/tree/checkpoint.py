"""The resume pointer of a backup walk, recorded only once everything
before it is durable, without stopping the walk while the disk catches up.

Every few seconds the walk asks for a checkpoint: a syncfs starts on a
thread (the call releases the GIL), and the pointer it covers is recorded
when the walk next asks, if that syncfs has returned. So the recorded
pointer never runs ahead of durable data, as with a syncfs in line, and
lags it by one interval at most. Stopping or finishing waits for the disk.
"""

from __future__ import annotations

import contextvars
from concurrent.futures import Future, ThreadPoolExecutor

from inkind.engines.tree.entry import Key, key_text
from inkind.source import RunContext
from inkind.state import SourceState
from inkind.store.files import sync_store


class Checkpoints:
    """Durable resume pointers for one walk (a context manager)."""

    def __init__(self, run: RunContext):
        self.run = run
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="inkind-sync")
        self._pending: tuple[Future[None], Key] | None = None

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)

    def tick(self, last: Key | None) -> None:
        """Record the pointer the last finished syncfs covers; start the
        next syncfs for ``last`` (the last completed entry)."""
        if self._pending is not None and self._pending[0].done():
            done, key = self._pending
            self._pending = None
            done.result()  # a failed syncfs fails the walk, as in line
            self.run.state.set_resume(key_text(key), force=True)
        if self._pending is None and last is not None:
            context = contextvars.copy_context()  # a dry run's stays dry
            self._pending = (self._pool.submit(context.run, sync_store, self.run.data_fd), last)

    def now(self, last: Key | None) -> None:
        """Record ``last`` now (the walk stopped): wait for the disk."""
        if self._pending is not None:
            done, _ = self._pending
            self._pending = None
            done.result()
        if last is not None:
            sync_store(self.run.data_fd)
            self.run.state.set_resume(key_text(last), force=True)


def previous_count(state: SourceState) -> int | None:
    """The entries the last backup walked, if it walked the whole tree: the
    progress bar's estimate of this walk (None: no estimate)."""
    last = state.data.get("last_backup")
    if not isinstance(last, dict) or last.get("outcome") not in ("ok", "warnings"):
        return None
    return (last.get("stats") or {}).get("objects_seen") or None


def walk_unfinished(run: RunContext) -> bool:
    """Whether a backup walk was started and not completed (killed,
    interrupted or failed): stored directories it left mid-way may differ
    from their user.inkind.entries until the next backup completes."""
    return run.state.left_running or run.state.partial
