"""Storing a backup walk's new and changed small files on the other core.

A file stored whole costs the walk about 100 µs of interpreter time on top
of the kernel's work, and threads would share one interpreter lock, so
a backup walk forks one worker process at its start (none on a machine of
one core, and none in a dry run). Of each window's files that are stored
whole, the walk hands every other one to the worker, with the window's
directory fds (SCM_RIGHTS), stores the others itself meanwhile, and then
collects what the worker did: per file nothing or the warning to give, and
the counters its primitives counted, added into the run's Stats.

The worker runs the same :meth:`Copier.copy` through the same primitives,
so each file is compared first, atomic and counted as in the walk; it
writes nothing else (no state, no resume pointer, no log line). It ignores
SIGINT and SIGTERM (the walk stops it, killing it if the walk fails) and
dies with the walk (PR_SET_PDEATHSIG), so nothing of a killed run goes on
writing.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import socket
import stat
import struct
from collections.abc import Iterator
from typing import NoReturn

from inkind.engines.tree.copier import BIG_FILE, Copier
from inkind.engines.tree.entry import Entry
from inkind.engines.tree.prefetch import Prefetcher
from inkind.errors import InkindError, SourceWarning
from inkind.libc import libc
from inkind.stats import Stats

PR_SET_PDEATHSIG = 1
_LENGTH = struct.Struct("!I")
Outcome = SourceWarning | None  # one handed file: stored (or found the same), or why not


class WorkerDied(InkindError):
    """The worker ended without an answer (killed from outside): the
    source's run fails with one line, and the next run stores what it
    did not."""


def hands_off(e: Entry) -> bool:
    """Whether the worker may store this entry: a regular file the walk
    would store whole (not a hard link, which the walk must see in order,
    nor a large file updated block by block)."""
    return stat.S_ISREG(e.st.st_mode) and e.st.st_nlink == 1 and e.st.st_size < BIG_FILE and e.same is False


class CopyWorker:
    """The worker process of one backup walk (a context manager)."""

    def __init__(self, copier: Copier):
        self.copier = copier
        self.sock: socket.socket | None = None
        self.pid = 0
        self.out = 0  # files of the batch handed out and not yet collected

    def __enter__(self) -> CopyWorker:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            ours.close()
            _serve(theirs, self.copier, parent)
        theirs.close()
        self.sock, self.pid = ours, pid
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self.sock is None:
            return
        if exc_type is not None:  # the walk failed or was stopped: so is the worker
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self.sock.close()  # (the worker's end of the stream: it leaves)
        self.sock = None
        os.waitpid(self.pid, 0)

    def send(self, src: int, dst: int, entries: list[Entry]) -> None:
        """Hand the worker ``entries`` of the directory ``src`` (stored into
        ``dst``); collect before the next batch."""
        assert self.sock is not None and not self.out
        batch = [(e.name, e.key, e.st, e.dst_st) for e in entries]
        _send(self.sock, batch, (src, dst))
        self.out = len(entries)

    def collect(self) -> list[Outcome]:
        """Wait for the batch: its outcomes in order, its counters added
        into the run's Stats. What failed the worker (a store error) is
        raised here, as the walk would have raised it."""
        assert self.sock is not None and self.out
        answer = _recv(self.sock)
        if answer is None:
            raise WorkerDied(f"the walk's worker process {self.pid} ended without an answer (killed?)")
        counts, outcomes, failure = answer
        self.out = 0
        self.copier.stats.add(Stats.from_dict(counts))
        if failure is not None:
            raise failure
        return outcomes


def _serve(sock: socket.socket, copier: Copier, parent: int) -> NoReturn:
    """The worker: store each batch it is sent until the walk closes the
    stream; leave with ``os._exit`` (nothing of the walk's runs twice)."""
    status = 0
    try:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        if os.getppid() != parent:  # the walk died before the prctl
            os._exit(1)
        for batch, (src, dst) in _batches(sock):
            try:
                answer = _store(copier, src, dst, batch)
            finally:
                os.close(src)
                os.close(dst)
            _send(sock, answer)
    except BaseException:
        status = 70
    finally:
        os._exit(status)


def _batches(sock: socket.socket) -> Iterator[tuple[list, tuple[int, int]]]:
    while (got := _recv(sock, fds=2)) is not None:
        yield got


def _store(copier: Copier, src: int, dst: int, batch: list) -> tuple[dict, list[Outcome], Exception | None]:
    """Store one batch (the kernel reads it ahead meanwhile): the counters
    it counted, the outcome of each file, and what stopped it if anything."""
    stats = copier.stats
    for name in stats.nonzero():  # (the walk has its own count of what came before)
        setattr(stats, name, 0)
    entries = [Entry(src, dst, name, key, st, dst_st, same=False) for name, key, st, dst_st in batch]
    outcomes: list[Outcome] = []
    failure: Exception | None = None
    with Prefetcher() as copier.prefetch:
        copier.prefetch.queue(src, [(e.name, e.st) for e in entries])
        for e in entries:
            try:
                copier.copy(e)
                outcomes.append(None)
            except SourceWarning as w:
                outcomes.append(w)
            except Exception as err:  # (the walk raises it)
                failure = _picklable(err)
                break
    return stats.nonzero(), outcomes, failure


def _picklable(err: Exception) -> Exception:
    try:
        pickle.loads(pickle.dumps(err))
    except Exception:
        return RuntimeError(f"{type(err).__name__}: {err}")
    return err


def _send(sock: socket.socket, obj: object, fds: tuple[int, ...] = ()) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    header = _LENGTH.pack(len(data))
    if fds:
        socket.send_fds(sock, [header], list(fds))
    else:
        sock.sendall(header)
    sock.sendall(data)


def _recv(sock: socket.socket, fds: int = 0) -> object | None:
    """One message (None at the end of the stream); with ``fds``, as
    ``(message, fds)``."""
    if fds:
        header, got, _, _ = socket.recv_fds(sock, _LENGTH.size, fds)
    else:
        header, got = sock.recv(_LENGTH.size), []
    if not header:
        return None
    header += _exactly(sock, _LENGTH.size - len(header))
    (length,) = _LENGTH.unpack(header)
    obj = pickle.loads(_exactly(sock, length))
    return (obj, tuple(got)) if fds else obj


def _exactly(sock: socket.socket, n: int) -> bytes:
    parts = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise WorkerDied("the stream to the walk's worker ended mid-message")
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)
