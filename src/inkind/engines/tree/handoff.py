"""Storing a backup walk's new and changed small files on the other core.

A file stored whole costs the walk about 100 µs of interpreter time on top
of the kernel's work, and threads would share one interpreter lock, so
a backup walk forks one worker process at its start (none on a machine of
one core, and none in a dry run). Of each window's files that are stored
whole, the walk hands every other one to the worker, with the window's
directory fds (SCM_RIGHTS), stores the others itself meanwhile, and then
collects what the worker did: per file nothing or the warning to give, and
the counters its primitives counted, added into the run's Stats.

A walk that finds a stored tree to compare with (no change, or few) has
little to store and two lstats an entry to make: there the worker looks
at most of each window's entries for it (see :meth:`CopyWorker.ask`) and
answers one byte a name, whether that file needs nothing at all (a
regular file, kept by the selection, up to date with its owner, mode and
mtime); the walk looks at the others meanwhile, and again at any the
worker did not find settled, so what the walk does with an entry is
decided by the walk's own look.

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
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NoReturn

from inkind.engines.tree.copier import BIG_FILE, Copier
from inkind.engines.tree.entry import Entry, Key
from inkind.engines.tree.prefetch import Prefetcher, advise
from inkind.engines.tree.selection import TreeSelection
from inkind.errors import InkindError, SourceWarning
from inkind.libc import libc
from inkind.source import RunContext
from inkind.stats import Stats
from inkind.store.files import is_temp_name
from inkind.store.paths import lstat_at

PR_SET_PDEATHSIG = 1
UNREAD = 4  # answers the walk lets wait before it asks again (each well under the stream's buffer)
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


def walk_worker(
    run: RunContext, copier: Copier, selection: TreeSelection
) -> contextlib.AbstractContextManager[CopyWorker | None]:
    """The walk's worker: none in a dry run, or where the walk may use one
    core only (the machine has one, or its CPU affinity allows one)."""
    if run.dry_run or len(os.sched_getaffinity(0)) < 2:
        return contextlib.nullcontext()
    return CopyWorker(copier, selection)


class CopyWorker:
    """The worker process of one backup walk (a context manager)."""

    def __init__(self, copier: Copier, selection: TreeSelection):
        self.copier = copier
        self.selection = selection
        self.sock: socket.socket | None = None
        self.pid = 0
        self.batch: Reply | None = None  # the files handed out, not yet collected
        self.replies: deque[Reply] = deque()  # asked, in order, not yet read

    def __enter__(self) -> CopyWorker:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            ours.close()
            _serve(theirs, Serving(self.copier, self.selection), parent)
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

    @property
    def out(self) -> int:
        """Files of the batch handed out and not yet collected."""
        return self.batch.size if self.batch is not None else 0

    def send(self, src: int, dst: int, entries: list[Entry]) -> None:
        """Hand the worker ``entries`` of the directory ``src`` (stored into
        ``dst``); collect before the next batch."""
        assert not self.out
        batch = [(e.name, e.key, e.st, e.dst_st) for e in entries]
        self.batch = self._request(("store", batch), (src, dst), len(entries))

    def ask(self, src: int, dst: int, prefix: Key, names: list[str]) -> Reply:
        """Have the worker look at ``names`` of the directory ``src`` (below
        ``prefix``) and its stored copy ``dst``; :meth:`settled` answers.
        Asks and batches are answered in the order sent, so the worker
        can be asked about the next directory while this one is mirrored."""
        return self._request(("look", (prefix, names)), (src, dst), len(names))

    def settled(self, reply: Reply) -> bytes:
        """The answer to an :meth:`ask`: a byte a name, 1 where the file
        needs nothing at all, 0 where the walk is to look itself."""
        answer = self._answer(reply)
        if not isinstance(answer, bytes) or len(answer) != reply.size:
            raise self._died()
        return answer

    def collect(self) -> list[Outcome]:
        """Wait for the batch: its outcomes in order, its counters added
        into the run's Stats. What failed the worker (a store error) is
        raised here, as the walk would have raised it."""
        assert self.batch is not None
        counts, outcomes, failure = self._answer(self.batch)
        self.batch = None
        self.copier.stats.add(Stats.from_dict(counts))
        if failure is not None:
            raise failure
        return outcomes

    def _request(self, message: tuple[str, object], fds: tuple[int, int], size: int) -> Reply:
        """Send one request. Answers are read (and kept) before more than
        UNREAD are waiting: the worker blocks once its answers fill the
        stream, and then it reads no request either."""
        assert self.sock is not None
        while len(self.replies) >= UNREAD:
            self._answer(self.replies[0])
        reply = Reply(size)
        self.replies.append(reply)  # (a failed send breaks the stream: the walk stops)
        try:
            _send(self.sock, message, fds)
        except (BrokenPipeError, ConnectionResetError):
            raise self._died() from None
        return reply

    def _answer(self, reply: Reply) -> object:
        """Read the answers, in the order asked, up to ``reply``'s (those
        before it are kept for their askers, or dropped with them)."""
        assert self.sock is not None
        while reply.value is None:  # (an answer is never None: that is the stream's end)
            first = self.replies.popleft()
            first.value = _recv(self.sock)
            if first.value is None:
                raise self._died()
        return reply.value

    def _died(self) -> WorkerDied:
        return WorkerDied(f"the walk's worker process {self.pid} ended without an answer (killed?)")


@dataclass
class Reply:
    """One request sent to the worker: how many names or files it holds,
    and the answer once read."""

    size: int
    value: object = None


@dataclass
class Serving:
    """What the worker works with: the walk's copier and selection, as
    forked."""

    copier: Copier
    selection: TreeSelection

    def answer(self, kind: str, payload: list, src: int, dst: int) -> object:
        if kind == "store":
            return _store(self.copier, src, dst, payload)
        prefix, names = payload
        return bytes(self.settles(src, dst, (*prefix, os.fsencode(name)), name) for name in names)

    def settles(self, src: int, dst: int, key: Key, name: str) -> bool:
        """Whether the walk's own look would find the entry a regular
        file that needs nothing at all (see Copier.settled); any doubt
        is a no, and the walk looks."""
        if is_temp_name(name):
            return False
        try:
            st = os.stat(name, dir_fd=src, follow_symlinks=False)
            dst_st = lstat_at(dst, name)
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode) or not self.selection.keeps(self.copier.run, src, name, key, st):
            return False
        e = Entry(src, dst, name, key, st, dst_st)
        if self.copier.settled(e):
            return True
        if self.copier.will_read(e):
            advise(src, name, st)  # the walk will read it: the kernel starts now, a window ahead
        return False


def _serve(sock: socket.socket, serving: Serving, parent: int) -> NoReturn:
    """The worker: answer each request it is sent until the walk closes
    the stream; leave with ``os._exit`` (nothing of the walk's runs
    twice)."""
    status = 0
    try:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        if os.getppid() != parent:  # the walk died before the prctl
            os._exit(1)
        for (kind, payload), (src, dst) in _requests(sock):
            try:
                answer = serving.answer(kind, payload, src, dst)
            finally:
                os.close(src)
                os.close(dst)
            _send(sock, answer)
    except BaseException:
        status = 70
    finally:
        os._exit(status)


def _requests(sock: socket.socket) -> Iterator[tuple[tuple[str, list], tuple[int, int]]]:
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
    """One message, its length first (and the fds with its first bytes),
    in one piece where the stream takes it whole."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    message = memoryview(_LENGTH.pack(len(data)) + data)
    sent = socket.send_fds(sock, [message], list(fds)) if fds else sock.send(message)
    if sent < len(message):  # (never an empty send: one to a worker gone after reading it all is EPIPE)
        sock.sendall(message[sent:])


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
