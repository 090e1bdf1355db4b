"""inkind's remote side: the ops on commands, SQLite databases and temp
files, and the loop that answers the server's requests (the reading ops
are in blockops.py, the scan in walk.py).

bootstrap.py sends wire.py, walk.py, blockops.py, policy.py, sqlitecopy.py
and this module as one source text to ``python3 -c BOOT`` on the host and
runs :func:`main`, so all six use the standard library only and Python 3.9
syntax. Started by a restricted key's forced command, the remote side
checks what it runs and where it writes against policy.py.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading

from inkind.remote.blockops import op_blocks, op_hashes, op_read, open_source
from inkind.remote.policy import allowed_command, allowed_directory, temp_root
from inkind.remote.sqlitecopy import copy_sqlite_database
from inkind.remote.walk import op_scan, op_scan_more
from inkind.remote.wire import (
    CHUNK,
    DATA,
    JSON,
    OFFSET,
    PROTOCOL,
    FrameError,
    Writer,
    preferred_hash,
    read_frame,
    stat_fields,
    to_bytes,
    to_text,
)


class Session:
    """What lasts from one request to the next: the temp files this run made
    (removed when it ends) and a scan paused between two pages; and the
    request stream; whether a restricted key started it."""

    def __init__(self, read=None, restricted: bool = False) -> None:
        self.temps = set()
        self.scan = None
        self.read = read  # the request stream, for the DATA frames a request announces
        self.restricted = restricted

    def temp_dir(self, req: dict) -> str:
        """Where a temp of ``req`` goes (its ``dir``, else temp_root())."""
        if self.restricted:
            return allowed_directory(req.get("dir"), temp_root())
        return req.get("dir") or temp_root()


def op_run(w: Writer, req: dict, session: Session) -> None:
    """A command's stdout as data frames, then its exit status (negative: the
    signal) and the last lines of its stderr."""
    extra = {str(k): str(v) for k, v in (req.get("env") or {}).items()}
    argv = [str(a) for a in req["argv"]]
    program = allowed_command(argv, extra, session.temps) if session.restricted else argv[0]
    try:
        p = subprocess.Popen(
            argv,
            executable=program,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(os.environ, **extra),
        )
    except OSError as e:
        w.fail(OSError(e.errno, f"{argv[0]}: {e.strerror}"))
        return
    tail = bytearray()

    def keep_stderr() -> None:
        for line in p.stderr:
            tail.extend(line)
            del tail[: max(0, len(tail) - 16384)]

    reader = threading.Thread(target=keep_stderr, daemon=True)
    reader.start()
    done = threading.Event()
    threading.Thread(target=kill_when_server_goes, args=(p, done), daemon=True).start()
    try:
        w.json(pid=p.pid)
        compress, offset = bool(req.get("compress", True)), 0
        while True:
            data = p.stdout.read1(CHUNK)
            if not data:
                break
            w.send(DATA, data, OFFSET.pack(offset), compress)
            offset += len(data)
        status = p.wait()
        reader.join()
    finally:
        done.set()
        if p.poll() is None:
            p.kill()
            p.wait()
    lines = bytes(tail).decode("utf-8", "replace").splitlines()[-20:]
    w.json(end=True, status=status, stderr="\n".join(lines))


def kill_when_server_goes(p, done) -> None:
    """While a command runs, the server sends nothing: stdin hanging up
    means it is gone (killed, the connection cut). Kill the command then, as
    a local tool dies with inkind: a pg_dump -Fd, which never writes to us,
    would otherwise run on to its end, holding its transaction."""
    hangup = select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0)
    poller = select.poll()
    poller.register(sys.stdin.fileno(), select.POLLIN | hangup)
    while not done.is_set():
        events = poller.poll(200)
        if any(ev & hangup for _, ev in events):
            p.kill()
            return
        if events:  # data mid-op (not the server's way): leave it to the loop
            return


def op_sqlite_backup(w: Writer, req: dict, session: Session) -> None:
    """A consistent copy of a live SQLite database in a temp file on the
    host (sqlitecopy.py: nothing is created beside the database)."""
    import sqlite3

    path = to_bytes(req["path"])
    os.close(open_source(path)[0])  # missing, unreadable, not a file: its errno
    fd, tmp = tempfile.mkstemp(prefix=".inkind-sqlite-", suffix=".db", dir=session.temp_dir(req))
    os.close(fd)
    session.temps.add(tmp)
    try:
        copy_sqlite_database(to_text(path), tmp, float(req.get("busy_timeout", 60.0)))
    except sqlite3.Error as e:
        op_remove(None, {"path": tmp}, session)
        raise OSError(0, f"sqlite: {e}") from None
    except BaseException:
        op_remove(None, {"path": tmp}, session)
        raise
    w.json(end=True, path=tmp, size=os.stat(tmp).st_size)


def op_temp_dir(w: Writer, req: dict, session: Session) -> None:
    """An empty directory of this run (0700) for a tool that writes its
    output as files (pg_dump -Fd); removed with what is in it by
    ``remove``, or when the remote side ends."""
    tmp = tempfile.mkdtemp(prefix=".inkind-dump-", dir=session.temp_dir(req))
    session.temps.add(tmp)
    w.json(end=True, path=tmp, size=0)


def op_remove(w, req: dict, session: Session) -> None:
    """Remove a temp file or directory this agent made (and nothing else)."""
    path = req["path"]
    if path not in session.temps:
        raise OSError(errno.EPERM, "not a temp file of this run")
    session.temps.discard(path)
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)  # never follows a symlink inside
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    if w is not None:
        w.json(end=True)


def op_which(w: Writer, req: dict, session: Session) -> None:
    """Where a program is on this host: ``dir/name`` if executable there,
    else ``name`` on this process's PATH (null: not found)."""
    name = str(req["name"])
    if not name or "/" in name or "\0" in name:
        raise ValueError(f"not a program name: {name[:100]!r}")
    where = req.get("dir")
    if where is not None:
        path = os.path.join(str(where), name)
        found = path if os.access(path, os.X_OK) else None
    else:
        found = shutil.which(name)
    w.json(end=True, path=found)


def op_stat(w: Writer, req: dict, session: Session) -> None:
    """The stat of a path, symlinks followed as an open follows them (the
    server's quick check of an image file)."""
    w.json(end=True, stat=stat_fields(os.stat(to_bytes(req["path"]))))


OPS = {
    "stat": op_stat,
    "scan": op_scan,
    "scan_more": op_scan_more,
    "read": op_read,
    "hashes": op_hashes,
    "blocks": op_blocks,
    "run": op_run,
    "sqlite_backup": op_sqlite_backup,
    "temp_dir": op_temp_dir,
    "remove": op_remove,
    "which": op_which,
}


def serve(inp, out, restricted: bool = False) -> None:
    """Say hello, then answer requests until the server closes stdin."""
    w = Writer(out)
    hello = {"protocol": PROTOCOL, "python": list(sys.version_info[:3]), "pid": os.getpid()}
    w.json(agent="inkind", hash=preferred_hash(), restricted=restricted, **hello)
    out.flush()
    session = Session(inp.read, restricted)
    try:
        while True:
            try:
                got = read_frame(inp.read)
            except FrameError as e:
                w.json(error=f"protocol error: {e}", fatal=True)
                return
            if got is None:
                return
            kind, req = got
            name = req.get("op") if kind == JSON else None
            op = OPS.get(name) if isinstance(name, str) else None
            if op is None:
                w.json(error=f"protocol error: not a request: {str(name)[:100]!r}", fatal=True)
                return
            try:
                op(w, req, session)
            except BrokenPipeError:
                raise
            except FrameError as e:  # the request's own frames are wrong: the stream is lost
                w.json(error=f"protocol error: {e}", fatal=True)
                return
            except OSError as e:
                w.fail(e)
            except Exception as e:  # a bad request (a bad regex, a missing key): say so, go on
                w.json(error=f"{req.get('op')}: {type(e).__name__}: {e}"[:4000])
            out.flush()
    finally:
        for path in list(session.temps):
            op_remove(None, {"path": path}, session)


def main(restricted: bool = False) -> None:
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the protocol
    try:
        serve(sys.stdin.buffer, out, restricted)
        out.flush()
    except BrokenPipeError:  # the server went away; temps are removed already
        os._exit(0)


if __name__ == "__main__":
    main()
