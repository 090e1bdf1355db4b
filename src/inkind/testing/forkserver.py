"""A fork server for the tests' ``inkind`` runs: one interpreter per test
worker imports inkind once, and each run is a fork of it.

A test suite runs the real command a few thousand times, and on a small
machine an interpreter's start with inkind's imports costs about 0.3 s of
CPU: half the suite's time. A fork starts in a few milliseconds and is
otherwise the same run: its own process with the test's argv, environment,
working directory and umask, stdin from /dev/null, stdout and stderr on
pipes the test reads, and its exit status (or the signal that killed it)
reported back. It runs ``main()`` of :mod:`inkind.cli` as ``python -m
inkind`` does, and the modules it imports were only imported, never used,
before the fork.

What a fork cannot copy, a real interpreter runs instead: a run whose
environment changes a ``PYTHON*`` variable (another ``sys.path``, say), or
any run when ``INKIND_TEST_FORK=0``. A run a test kills mid-way is a fork
too (``Client.start``), so a kill moment drawn from a measured run lands in
inkind's work, not in an interpreter's start.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

_STATUS = struct.Struct(">i")  # the run's status: exit code, or minus the signal


def usable(env: dict[str, str]) -> bool:
    """Whether a fork can stand in for a new interpreter with ``env``."""
    if os.environ.get("INKIND_TEST_FORK") == "0":
        return False
    keys = {k for k in set(env) | set(os.environ) if k.startswith("PYTHON")}
    return all(env.get(k) == os.environ.get(k) for k in keys)


@dataclass
class Client:
    """The test worker's end: starts its server on first use."""

    proc: subprocess.Popen | None = None
    path: Path | None = None
    _dir: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    def _start(self) -> Path:
        self._dir = tempfile.TemporaryDirectory(prefix="inkind-fork-")
        path = Path(self._dir.name) / "sock"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "inkind.testing.forkserver", str(path)],
            stdin=subprocess.PIPE,  # its end tells the server the worker is gone
            stdout=subprocess.PIPE,
            env=os.environ.copy(),
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline() != b"ready\n":
            raise RuntimeError(f"inkind fork server did not start (exit {self.proc.wait()})")
        atexit.register(self.close)
        self.path = path
        return path

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self._dir is not None:
            self._dir.cleanup()
        self.proc = self.path = self._dir = None

    def start(self, argv: list[str], env: dict[str, str], stdout: int, stderr: int) -> Running:
        """``inkind ARGV`` started in a fork, its output on the given fds."""
        path = self.path if self.proc is not None and self.proc.poll() is None else self._start()
        umask = os.umask(0)
        os.umask(umask)
        request = {"argv": argv, "env": env, "cwd": os.getcwd(), "umask": umask}
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(str(path))
            with open(os.devnull, "rb") as null:
                socket.send_fds(conn, [json.dumps(request).encode()], [null.fileno(), stdout, stderr])
            pid = _STATUS.unpack(_recv_exact(conn, _STATUS.size))[0]
        except BaseException:
            conn.close()
            raise
        return Running(pid, conn, argv)

    def run(self, argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
        """``inkind ARGV`` in a fork, its output captured: what
        ``subprocess.run`` gives, and its TimeoutExpired (the run killed)."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            running = self.start(argv, env, out_w, err_w)
        finally:
            os.close(out_w)
            os.close(err_w)
        with running:
            out, err = _drain(out_r, err_r, running, time.monotonic() + timeout)
            status = running.wait()
        return subprocess.CompletedProcess(
            running.args, status, out.decode(errors="replace"), err.decode(errors="replace")
        )


@dataclass
class Running:
    """A run in a fork, as much of ``subprocess.Popen`` as the tests use."""

    pid: int
    conn: socket.socket
    argv: list[str]
    returncode: int | None = None

    @property
    def args(self) -> list[str]:
        return ["inkind", *self.argv]

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.conn.settimeout(timeout)
            try:
                raw = _recv_exact(self.conn, _STATUS.size, allow_eof=True)
            except (TimeoutError, BlockingIOError):  # BlockingIOError: a timeout of 0
                raise subprocess.TimeoutExpired(self.args, timeout) from None
            self.returncode = _STATUS.unpack(raw)[0] if raw else -signal.SIGKILL
        return self.returncode

    def poll(self) -> int | None:
        try:
            return self.wait(0)
        except subprocess.TimeoutExpired:
            return None

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it ended first
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


def _drain(out_r: int, err_r: int, running: Running, deadline: float) -> tuple[bytes, bytes]:
    """Both pipes read to their end (the run's exit closes them), or the
    run killed at the deadline."""
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    with selectors.DefaultSelector() as sel:
        for fd in chunks:
            sel.register(fd, selectors.EVENT_READ)
        try:
            while sel.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    running.kill()
                    raise subprocess.TimeoutExpired(running.args, 0)
                for key, _ in sel.select(left):
                    data = os.read(key.fd, 1 << 16)
                    if data:
                        chunks[key.fd].append(data)
                    else:
                        sel.unregister(key.fd)
        finally:
            os.close(out_r)
            os.close(err_r)
    return b"".join(chunks[out_r]), b"".join(chunks[err_r])


def _recv_exact(conn: socket.socket, n: int, allow_eof: bool = False) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            if allow_eof and not data:
                return b""
            raise RuntimeError("inkind fork server: the connection ended mid-message")
        data += chunk
    return data


# --- the server ------------------------------------------------------------


def serve(path: str) -> None:
    """Import inkind, say ready, and fork a run for each connection, until
    stdin ends (the test worker is gone). Each run has a watcher, a fork
    between the server and it, that waits for its status."""
    import inkind.cli  # noqa: F401  (what every run needs, imported once here)

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the watchers
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener, selectors.DefaultSelector() as sel:
        listener.bind(path)
        listener.listen(16)
        sel.register(listener, selectors.EVENT_READ)
        sel.register(sys.stdin.fileno(), selectors.EVENT_READ)
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        while all(key.fileobj is listener for key, _ in sel.select()):
            conn, _ = listener.accept()
            message, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
            if os.fork() == 0:
                listener.close()
                _watch(conn, json.loads(message), fds)
            conn.close()
            for fd in fds:
                os.close(fd)


def _watch(conn: socket.socket, request: dict, fds: list[int]) -> None:
    """In the fork: start the run as a child of this watcher (so its status
    can be waited for), send its pid, then its status."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    pid = os.fork()
    if pid == 0:
        conn.close()
        _run(request, fds)
    for fd in fds:
        os.close(fd)
    conn.sendall(_STATUS.pack(pid))
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    try:
        conn.sendall(_STATUS.pack(code))
    finally:
        os._exit(0)


def _run(request: dict, fds: list[int]) -> None:
    """The run itself: the test's stdio, environment, directory and umask,
    then ``main()`` as ``python -m inkind`` calls it."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    sys.argv = ["inkind", *request["argv"]]
    code = 1
    try:
        from inkind.cli import main

        main(args=request["argv"], prog_name="inkind")
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int | None):
            print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    serve(sys.argv[1])
