"""Sources that keep one dump per database, made by the database's own tool.

What the postgres and mysql sources share lives here, so neither copies the
other: the backup loop (every dump is redone each run, and compared with the
stored one as it streams in, so an unchanged database writes nothing), the
per-database failures that let the other databases go on, the full-pass
removal of dumps whose database is gone, and the scrub of stored files.

Two ways to store a dump:

* :func:`stream_to_file`: a tool's stdout goes straight into
  :class:`~inkind.store.UpdateFile`; nothing is kept in memory, and a failed
  tool leaves the previous file as it was.
* :func:`store_tree`: a directory the tool wrote (``pg_dump -Fd``) replaces
  ``STORE/NAME/<entry>/`` atomically (one ``renameat2(RENAME_EXCHANGE)``),
  built from hard links of the stored files that did not change, so that an
  unchanged file costs no write even when the tool renamed it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import signal
import stat
import subprocess
from abc import abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from inkind.errors import CorruptionError, SourceError
from inkind.hashing import hash_fd
from inkind.libc import libc
from inkind.source import RunContext, Source
from inkind.store import tree
from inkind.store.entries import entries_problem, record_entries
from inkind.store.files import UpdateFile, is_temp_name, sync_store, temp_name
from inkind.store.paths import DIR_FLAGS, fd_path, list_dir, open_at
from inkind.store.xattrs import XAttrs
from inkind.verify import check_file

log = logging.getLogger("inkind")

CHUNK = 1 << 20
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


# --- names ---------------------------------------------------------------


def entry_name(name: str, suffix: str = "") -> str:
    """The store name of a database: ``/`` and ``%`` and a leading dot are
    percent-encoded, so every name is one plain, visible directory entry."""
    encoded = "".join(f"%{ord(c):02X}" if c in "%/" or ord(c) < 0x20 or c == "\x7f" else c for c in name)
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    return encoded + suffix


def database_of(entry: str, suffix: str = "") -> str:
    """The database name a store entry holds (inverse of :func:`entry_name`)."""
    return unquote(entry.removesuffix(suffix) if suffix else entry)


def select_databases(listed: list[str], wanted: list[str], excluded: list[str]) -> list[str]:
    """``wanted`` (all ``listed`` when empty) minus ``excluded``, in order.

    A wanted name the server did not list is kept: its dump then fails with
    the tool's own message and its previous dump is kept.
    """
    names = wanted or listed
    return [n for n in dict.fromkeys(names) if n not in set(excluded)]


# --- failures ------------------------------------------------------------


@dataclass
class Failures:
    """What went wrong with single dumps; the others still ran."""

    errors: list[tuple[str, str]] = field(default_factory=list)  # (label, message)
    corrupt: list[CorruptionError] = field(default_factory=list)

    def raise_any(self) -> None:
        """One line naming every failed dump (exit status 2). Dumps that failed
        the same way (a server too new for the tools) share one message."""
        by_message: dict[str, list[str]] = {}
        for label, message in self.errors:
            by_message.setdefault(message, []).append(label)
        parts = [f"{', '.join(labels)}: {message}" for message, labels in by_message.items()]
        if self.corrupt:
            first = self.corrupt[0]
            rest = [f"{c.obj}: {c.detail}" for c in self.corrupt[1:]] + parts
            raise CorruptionError(first.obj, "; ".join([first.detail, *rest]))
        if parts:
            kept = "its previous dump is kept" if len(self.errors) == 1 else "their previous dumps are kept"
            raise SourceError(f"{'; '.join(parts)} ({kept})")


# --- running the tools ---------------------------------------------------


def find_tool(name: str, bin_dir: Path | None) -> str:
    """``bin_dir/name``, else ``name`` on PATH; SourceError if neither."""
    if bin_dir is not None:
        path = bin_dir / name
        if not os.access(path, os.X_OK):
            raise SourceError(f"{path}: not found or not executable (check bin_dir)")
        return str(path)
    found = shutil.which(name)
    if found is None:
        raise SourceError(f"{name}: not found on PATH (install the client tools or set bin_dir)")
    return found


def error_line(tool: str, stderr: str, returncode: int) -> str:
    """A tool's error output as one line, its ``tool: error:`` prefixes gone."""
    name = os.path.basename(tool)
    lines = []
    for raw in stderr.splitlines():
        line = " ".join(raw.split())
        for prefix in (f"{name}: error: ", f"{name}: detail: ", f"{name}: ", "error: ", "detail: "):
            line = line.removeprefix(prefix)
        if line and "warning:" not in line.lower():
            lines.append(line)
    return " ".join(lines[:4]) or f"{name} exited with status {returncode}"


PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    """In the forked tool, before exec: the kernel sends it SIGKILL when
    this process dies, however it dies (a SIGKILL gives no chance to kill
    the tool). Else a ``pg_dump -Fd``, which writes files and not into our
    pipe, went on into the store's temp directory, holding its transaction
    and locks on the server, while the next run removed that directory."""
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # died before the prctl
        os._exit(1)


@contextlib.contextmanager
def tool_process(argv: list[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """Start a tool with stdout as a pipe and stderr into an anonymous file
    (no deadlock on a chatty stderr); kill it if the caller stops early, and
    have the kernel kill it if this process dies."""
    # stderr into memory (memfd): no file anywhere, not even Python's probe
    # of the temp directory, that a killed run could leave behind.
    with open(os.memfd_create("inkind-tool-stderr", os.MFD_CLOEXEC), "w+b") as err:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            preexec_fn=functools.partial(_die_with, os.getpid()),
        )
        proc.stderr_file = err  # type: ignore[attr-defined]
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()


def finish(proc: subprocess.Popen) -> None:
    """Wait for the tool; SourceError with its error line if it failed."""
    rc = proc.wait()
    if rc:
        err = proc.stderr_file  # type: ignore[attr-defined]
        err.seek(0)
        text = err.read(64 << 10).decode("utf-8", "replace")
        raise SourceError(error_line(str(proc.args[0]), text, rc))


def run_tool(argv: list[str], env: dict[str, str] | None = None) -> bytes:
    """Run a tool to completion and return its stdout (small outputs only)."""
    with tool_process(argv, env) as proc:
        assert proc.stdout is not None
        out = proc.stdout.read()
        finish(proc)
    return out


# --- storing -------------------------------------------------------------


def stream_to_file(run: RunContext, entry: str, argv: list[str], env: dict[str, str] | None = None) -> bool:
    """Stream a tool's stdout into ``STORE/NAME/<entry>``; return whether it
    changed. A tool that fails leaves the stored file as it was."""
    with tool_process(argv, env) as proc, UpdateFile(entry, dir_fd=run.data_fd, stats=run.stats) as f:
        assert proc.stdout is not None
        while chunk := proc.stdout.read(CHUNK):
            run.stats.bytes_read += len(chunk)
            f.write(chunk)
        finish(proc)
    count(run, f.changed)
    return f.changed


def count(run: RunContext, changed: bool) -> None:
    run.stats.objects_seen += 1
    if changed:
        run.stats.objects_changed += 1
    else:
        run.stats.objects_unchanged += 1


def regular_files(dir_fd: int) -> list[str]:
    """The regular files of a flat directory (temps left out), sorted."""
    names = []
    for name in list_dir(dir_fd):
        if is_temp_name(name):
            continue
        if not stat.S_ISREG(os.lstat(name, dir_fd=dir_fd).st_mode):
            raise SourceError(f"{name}: unexpected non-regular file in a dump directory")
        names.append(name)
    return sorted(names)


def same_file(a_fd: int, b_fd: int) -> bool:
    if os.fstat(a_fd).st_size != os.fstat(b_fd).st_size:
        return False
    offset = 0
    while True:
        a = os.pread(a_fd, CHUNK, offset)
        if a != os.pread(b_fd, CHUNK, offset):
            return False
        if not a:
            return True
        offset += len(a)


def same_tree(new_fd: int, old_fd: int, names: list[str]) -> bool:
    """Whether the stored directory holds exactly ``names`` with the same
    bytes (read-only: the unchanged case touches nothing in the store)."""
    if regular_files(old_fd) != names:
        return False
    for name in names:
        a = os.open(name, READ_FLAGS, dir_fd=new_fd)
        try:
            b = os.open(name, READ_FLAGS, dir_fd=old_fd)
        except OSError:
            os.close(a)
            return False
        try:
            if not same_file(a, b):
                return False
        finally:
            os.close(a)
            os.close(b)
    return True


def store_tree(run: RunContext, src: Path, entry: str) -> bool:
    """Make ``STORE/NAME/<entry>/`` hold the flat directory ``src``; return
    whether it changed.

    Unchanged: nothing in the store is touched. Changed: a temp directory is
    filled with hard links of stored files whose content reappears (under the
    same name or, when the tool renumbered its files, another one), each
    checked byte by byte through UpdateFile, which writes only what differs;
    then it is swapped in at once, so the entry is always a whole dump.
    """
    new_fd = os.open(src, DIR_FLAGS)
    old_fd = -1
    try:
        names = regular_files(new_fd)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            old_fd = open_at(run.data_fd, entry, DIR_FLAGS)
        run.stats.bytes_read += sum(os.stat(n, dir_fd=new_fd).st_size for n in names)
        if old_fd >= 0 and same_tree(new_fd, old_fd, names):
            for _ in names:
                count(run, False)
            return False
        _build_and_swap(run, new_fd, old_fd, names, entry)
        return True
    finally:
        os.close(new_fd)
        if old_fd >= 0:
            os.close(old_fd)


def _stored_hashes(old_fd: int) -> dict[str, str]:
    if old_fd < 0:
        return {}
    return {n: XAttrs(fd_path(old_fd, n)).text("xxh3") or "" for n in regular_files(old_fd)}


def _build_and_swap(run: RunContext, new_fd: int, old_fd: int, names: list[str], entry: str) -> None:
    stored = _stored_hashes(old_fd)
    unused = dict(stored)  # each stored inode is linked at most once
    tmp = os.fsdecode(temp_name())
    tree.make_dir(run.data_fd, tmp)
    try:
        tmp_fd = open_at(run.data_fd, tmp, DIR_FLAGS)
        try:
            for name in names:
                fd = os.open(name, READ_FLAGS, dir_fd=new_fd)
                try:
                    digest, _ = hash_fd(fd)
                    base = _base_for(name, digest, unused)
                    if base is not None:
                        del unused[base]
                        tree.link(old_fd, base, tmp_fd, name)
                    with UpdateFile(name, dir_fd=tmp_fd, stats=run.stats, fsync=False) as f:
                        offset = 0
                        while chunk := os.pread(fd, CHUNK, offset):
                            f.write(chunk)
                            offset += len(chunk)
                finally:
                    os.close(fd)
                count(run, f.changed)
            run.stats.objects_deleted += len(unused)  # stored files no new file reused
            # The dump arrives with the record of its files, so that verify
            # finds one deleted later.
            record_entries(tmp_fd, names, run.stats)
            sync_store(tmp_fd)
        finally:
            os.close(tmp_fd)
        tree.exchange(run.data_fd, tmp, entry)
    finally:
        remove_entry(run.data_fd, tmp)


def _base_for(name: str, digest: str, unused: dict[str, str]) -> str | None:
    """The stored file to start ``name`` from: one with the same content
    (same name first), else the stored file of the same name."""
    if unused.get(name) == digest:
        return name
    for other, h in unused.items():
        if h == digest:
            return other
    return name if name in unused else None


def remove_entry(dir_fd: int, name: str) -> None:
    """Remove a file or a whole directory below ``dir_fd`` if there is one."""
    with contextlib.suppress(FileNotFoundError):
        tree.remove(dir_fd, name)


def stored_entries(data_fd: int) -> list[str]:
    """The entries of ``STORE/NAME`` (temps left out), sorted."""
    return sorted(n for n in list_dir(data_fd) if not is_temp_name(n))


# --- scrub ---------------------------------------------------------------


def scrub_entry(run: RunContext, entry: str, failures: Failures) -> None:
    """Check a random sample of the files of one stored entry (a file, or a
    directory of files) against their ``user.inkind.xxh3``."""
    try:
        st = os.stat(entry, dir_fd=run.data_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        dfd = os.open(entry, DIR_FLAGS, dir_fd=run.data_fd)
        try:
            names = regular_files(dfd)
            # Whenever scrubbing (whatever the sample: it costs no read).
            problem = entries_problem(dfd, names) if run.scrub_fraction > 0 else None
            if problem:
                rel = f"{run.name}/{entry}"
                run.stats.objects_corrupt += 1
                log.error("%s: corruption: %s: %s", run.name, rel, problem)
                failures.corrupt.append(CorruptionError(rel, problem))
            for name in names:
                if run.should_scrub():
                    _check(run, dfd, name, f"{run.name}/{entry}/{name}", failures)
        finally:
            os.close(dfd)
    elif stat.S_ISREG(st.st_mode) and run.should_scrub():
        _check(run, run.data_fd, entry, f"{run.name}/{entry}", failures)


def _check(run: RunContext, dir_fd: int, name: str, rel: str, failures: Failures) -> None:
    fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    try:
        size = os.fstat(fd).st_size
        run.stats.objects_scrubbed += 1
        run.stats.bytes_read += size
        found = check_file(fd, rel, size)
    finally:
        os.close(fd)
    if found is not None and not found.recoverable:
        run.stats.objects_corrupt += 1
        log.error("%s: corruption: %s: %s", run.name, rel, found.message)
        failures.corrupt.append(CorruptionError(rel, found.message))


# --- the source ----------------------------------------------------------


@dataclass(frozen=True)
class Dump:
    """One stored dump: its entry in ``STORE/NAME``, the label errors name it
    by, and the call that stores it (raising SourceError when it fails)."""

    entry: str
    label: str
    store: Callable[[RunContext, str], object]


class DumpSource(Source):
    """A source that stores one dump per database (and maybe a few extra
    dumps, like PostgreSQL's globals), all redone on every run."""

    @abstractmethod
    def plan(self, run: RunContext) -> list[Dump]:
        """The dumps of this run. Raise SourceError when the server cannot be
        reached at all: then nothing in the store is touched."""

    def backup(self, run: RunContext) -> None:
        dumps = self.plan(run)
        failures = Failures()
        for dump in dumps:
            scrub_entry(run, dump.entry, failures)  # before the dump repairs it silently
            try:
                dump.store(run, dump.entry)
            except SourceError as e:
                log.debug("%s: %s: %s", run.name, dump.label, e)  # the run's one error line names it
                failures.errors.append((dump.label, str(e)))
        if run.full:
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
                remove_entry(run.data_fd, entry)
                run.stats.objects_deleted += 1
