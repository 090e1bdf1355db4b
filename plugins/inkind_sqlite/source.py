"""The ``sqlite`` source type: backup, scrub and restore."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inkind import (
    Channel,
    ConfigError,
    CorruptionError,
    RunContext,
    Source,
    SourceError,
    check_file,
    existing,
    fd_path,
    open_beneath,
    open_channel,
)
from inkind_sqlite.discover import Database, find_databases, is_glob
from inkind_sqlite.options import SqliteOptions
from inkind_sqlite.quick import source_key, stored_key
from inkind_sqlite.remote import Copier, fetch_copy, remote_databases
from inkind_sqlite.snapshot import integrity_problems, take_copy
from inkind_sqlite.storing import engine, remove_stored, store_copy, stored_names

log = logging.getLogger("inkind")

STATE_SAVE_INTERVAL = 5.0


@dataclass
class Failures:
    """What went wrong with single databases; the others still ran."""

    errors: list[str] = field(default_factory=list)
    corrupt: list[CorruptionError] = field(default_factory=list)

    def raise_any(self) -> None:
        """One line naming every failed database: exit status 2."""
        if self.corrupt:
            first = self.corrupt[0]
            rest = [f"{c.obj}: {c.detail}" for c in self.corrupt[1:]] + self.errors
            raise CorruptionError(first.obj, "; ".join([first.detail, *rest]))
        if self.errors:
            kept = (
                "its stored copy is left as it was"
                if len(self.errors) == 1
                else "their stored copies are left as they were"
            )
            raise SourceError(f"{'; '.join(self.errors)} ({kept})")


def check_stored(run: RunContext, name: str) -> None:
    """Check a stored copy (if any) against its ``user.inkind.xxh3`` and with
    ``PRAGMA integrity_check``; raise CorruptionError naming it."""
    rel = f"{run.name}/{name}"
    try:
        fd = open_beneath(run.root_fd, rel, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        size = os.fstat(fd).st_size
        run.stats.objects_scrubbed += 1
        run.stats.bytes_read += size
        found = check_file(fd, rel, size)
        if found is not None:
            if found.recoverable:  # a journaled update the next run replays
                return
            raise CorruptionError(rel, found.message)
        problems = integrity_problems(fd_path(fd))
        if problems:
            raise CorruptionError(rel, f"PRAGMA integrity_check: {'; '.join(problems)}")
    finally:
        os.close(fd)


class SqliteSource(Source):
    """SQLite databases, each kept as a consistent copy of its file (restore: cp)."""

    type_name = "sqlite"
    Options = SqliteOptions
    reads_remote_host = True

    def backup(self, run: RunContext) -> None:
        if self.remote is None:
            self._backup(run, find_databases(self.options.path, run), None)
            return
        databases = remote_databases(self.options.path, self.remote.host)
        with open_channel(self.remote, run.stats) as channel:
            self._backup(run, databases, channel)

    def _backup(self, run: RunContext, databases: list[Database], channel: Channel | None) -> None:
        failures = Failures()
        last_save = time.monotonic()
        for db in databases:
            run.stats.objects_seen += 1
            self._one(run, db, failures, check=run.should_scrub(), channel=channel)
            if time.monotonic() - last_save >= STATE_SAVE_INTERVAL:
                run.state.save()  # what is done stays done if the run is killed
                last_save = time.monotonic()
        if run.full:
            self._remove_strays(run, {db.name for db in databases})
        failures.raise_any()

    def scrub(self, run: RunContext) -> None:
        """Check a sample of stored copies; bring each one whose database
        still exists up to date with it (counted as repaired if it changed).
        A database on another host: the stored copies only."""
        try:
            found = find_databases(self.options.path, run) if self.remote is None else []
            live = {db.name: db for db in found}
        except SourceError as e:
            run.warn(f"{e}; checking the store only")
            live = {}
        failures = Failures()
        for name in stored_names(run.data_fd):
            if not run.should_scrub():
                continue
            if name in live:
                self._one(run, live[name], failures, check=True, repair=True)
                continue
            try:
                check_stored(run, name)
            except CorruptionError as e:
                failures.corrupt.append(e)
        failures.raise_any()

    def stored_objects(self, run: RunContext) -> list[str]:
        """Each stored copy, and the block manifest of a large one."""
        out = []
        for name in stored_names(run.data_fd):
            eng = engine(run, name)
            out += existing(run.root_fd, [eng.image_rel, eng.manifest_rel])
        return out

    def _one(  # size: the run, the database, where failures go, and how to read it
        self,
        run: RunContext,
        db: Database,
        failures: Failures,
        *,
        check: bool,
        repair: bool = False,
        channel: Channel | None = None,
    ) -> None:
        """Back up one database; record what went wrong in ``failures``.

        A copy found corrupt is replaced from the database (compared in full)
        and still reported.
        """
        corrupt = None
        if check:
            try:
                check_stored(run, db.name)
            except CorruptionError as e:
                corrupt = e
                failures.corrupt.append(e)
        try:
            full = run.full or corrupt is not None
            changed = self._copy(run, db, force=check or run.full, full=full, channel=channel)
        except SourceError as e:
            failures.errors.append(str(e))
            return
        except OSError as e:
            failures.errors.append(f"{db.path}: {e.strerror or e}")
            return
        if changed:
            run.stats.objects_changed += 1
            run.stats.objects_repaired += repair
        else:
            run.stats.objects_unchanged += 1

    def _copy(  # size: the run, the database, and how to read and store it
        self, run: RunContext, db: Database, *, force: bool, full: bool, channel: Channel | None
    ) -> bool:
        """Copy, check and store one database; return whether the stored copy
        changed (not when the quick check skips it). On another host there is
        no quick check: the copy is made there and only its changed blocks cross."""
        seen: dict[str, Any] = run.state.plugin.setdefault("seen", {})
        key = source_key(db.path) if channel is None else None
        where = str(db.path) if self.remote is None else f"{self.remote.host}:{db.path}"
        if (
            not force
            and key is not None
            and seen.get(db.name) == {"source": key, "stored": self._stored_key(run, db)}
        ):
            return False
        seen.pop(db.name, None)
        with run.scratch_dir() as scratch:
            copy = scratch / "copy.db"
            try:
                if channel is None:
                    take_copy(db.path, copy, self.options.busy_timeout)
                else:
                    fetch_copy(channel, run, db, copy, self.options.busy_timeout)
            except sqlite3.Error as e:
                raise SourceError(f"{db.path}: {e}") from None
            problems = integrity_problems(copy)
            if problems:
                raise SourceError(f"{where}: fails PRAGMA integrity_check: {'; '.join(problems)}")
            changed = store_copy(run, copy, db.name, source=where, full=full)
        if key is not None:
            seen[db.name] = {"source": key, "stored": self._stored_key(run, db)}
        return changed

    @staticmethod
    def _stored_key(run: RunContext, db: Database) -> list[int] | None:
        try:
            fd = open_beneath(run.data_fd, db.name, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            return stored_key(fd)
        finally:
            os.close(fd)

    def _remove_strays(self, run: RunContext, wanted: set[str]) -> None:
        """A full pass removes copies of databases the path no longer matches."""
        seen = run.state.plugin.get("seen", {})
        for name in stored_names(run.data_fd):
            if name not in wanted:
                log.info("%s: removing %s (its database no longer exists)", run.name, name)
                remove_stored(run, name)
                seen.pop(name, None)

    def restore_commands(
        self, data_dir: Path, dest: str, path: str | None, state: dict[str, Any]
    ) -> list[list[str]]:
        """``cp`` of each stored copy (``rsync -S`` over ssh to
        ``host:/path``), after removing stale ``-wal``/``-shm``/``-journal``
        files at the target, which SQLite would otherwise apply to the
        restored file."""
        fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            names = stored_names(fd)
        finally:
            os.close(fd)
        if path:
            wanted = path.strip("/")
            if wanted not in names:
                raise ConfigError(f"restore: {wanted}: not stored (stored: {', '.join(names) or 'none'})")
            names = [wanted]
        if not names:
            raise ConfigError(f"restore: {data_dir}: no database stored yet")
        via, dest = self.restore_target(dest)
        copier = Copier(via)
        if len(names) == 1 and (path or not is_glob(self.options.path)):
            into = dest.endswith("/") if via is not None else os.path.isdir(dest)
            target = Path(dest) / Path(names[0]).name if into else Path(dest)
            return copier.commands(data_dir / names[0], target)
        commands: list[list[str]] = []
        made: set[Path] = set()
        for name in names:
            target = Path(dest) / name
            if target.parent not in made:
                commands.append(copier.mkdir(target.parent))
                made.add(target.parent)
            commands += copier.commands(data_dir / name, target)
        return commands
