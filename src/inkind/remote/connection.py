"""The server's end of one remote side, below its ops: start it (any argv:
the ssh code puts ``ssh ... host`` in front of ``[remote_python, "-c",
BOOT]``), send it its source, check its hello, read and write frames.

Every failure is one line naming the host: the remote side missing, too
old, killed, cut off or broken; a malformed or oversized frame. Once the
stream is broken the connection refuses further ops with the same error.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence

from inkind.remote.bootstrap import boot_input
from inkind.remote.errors import ProtocolError, RemoteError, RemoteOSError
from inkind.remote.wire import (
    BLOCK_HASHES,
    CHUNK,
    DATA,
    JSON,
    MAX_JSON,
    MIN_PYTHON,
    PROTOCOL,
    FrameError,
    TruncatedFrame,
    Writer,
    read_frame,
)
from inkind.stats import Stats

CLOSE_WAIT = 10.0


class Connection:
    """One remote side over a pipe: its process, its frames, its errors.

    ``host`` names the host in every error (``host web1: ...``, as
    ssh.py's lines); ``describe(status, stderr)`` says why the command
    ended before the remote side's hello (SshTarget.describe_failure: a
    refused connection, a host key); ``python`` is remote_python."""

    def __init__(  # size: the connection's argv, host, counters and how to word its failures
        self,
        argv: Sequence[str],
        host: str,
        stats: Stats | None = None,
        python: str = "python3",
        describe: Callable[[int, str], str] | None = None,
    ):
        self.argv, self.host, self.python, self.describe = list(argv), host, python, describe
        self.stats = stats if stats is not None else Stats()
        self.hello: dict = {}
        self._proc: subprocess.Popen | None = None
        self._broken: RemoteError | None = None
        self._pending: Iterator | None = None
        self._stderr = bytearray()
        self._stderr_thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------

    def open(self) -> Connection:
        try:
            self._proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError as e:
            raise RemoteError(f"host {self.host}: cannot run {self.argv[0]}: {e.strerror}") from None
        self._stderr_thread = threading.Thread(target=self._keep_stderr, daemon=True)
        self._stderr_thread.start()
        with contextlib.suppress(OSError):  # it exited already: the hello (or its absence) says why
            self._proc.stdin.write(boot_input())
            self._proc.stdin.flush()
        self.hello = self._handshake()
        return self

    def _handshake(self) -> dict:
        try:
            got = read_frame(self._read)
        except FrameError as e:
            raise self.fail(
                f"the remote side did not say hello ({e}); does a login script print to stdout?"
            ) from None
        if got is None:
            status = self._exit_status()
            if self.describe is not None and status is not None:
                raise self._refuse(self.describe(status, self._stderr_text()))
            if status == 127:
                raise self._refuse(
                    f"host {self.host}: {self.python} not found (exit status 127){self._tail()}"
                )
            raise self._refuse(
                f"host {self.host}: the remote side ended before its hello ({_how(status)}){self._tail()}"
            )
        kind, hello = got
        if kind != JSON or hello.get("agent") != "inkind":
            raise self.fail(
                "the remote side did not say inkind's hello; does a login script print to stdout?"
            )
        if "pinned" in hello:
            raise self._refuse(
                f"host {self.host}: its authorized_keys pins another remote side "
                f"(sha256 {str(hello['pinned'])[:64]}): replace the line with the one "
                "`inkind authorized-key` prints for this inkind"
            )
        version = hello.get("python")
        if not (isinstance(version, list) and len(version) == 3 and all(type(v) is int for v in version)):
            raise self.fail(f"a hello without a python version: {str(hello)[:200]}")
        if hello.get("too_old") or tuple(version[:2]) < MIN_PYTHON:
            need = ".".join(map(str, MIN_PYTHON))
            raise self._refuse(
                f"host {self.host}: {self.python} there is {version[0]}.{version[1]}: "
                f"inkind needs {need} or newer (remote_python names another)"
            )
        if hello.get("protocol") != PROTOCOL:
            raise self.fail(
                f"the remote side speaks protocol {hello.get('protocol')!r}, this inkind {PROTOCOL}"
            )
        if hello.get("hash") not in BLOCK_HASHES:
            raise self.fail(f"a hello naming an unknown block hash: {str(hello.get('hash'))[:40]!r}")
        return hello

    @property
    def block_hash(self) -> str:
        """The block hash the host makes fastest (wire.preferred_hash):
        what new block digests are made with."""
        return self.hello["hash"]

    def close(self) -> None:
        """End the remote side: stdin closed, it removes its temps and exits."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for pipe in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                pipe.close()
        try:
            proc.wait(timeout=CLOSE_WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if self._stderr_thread is not None:
            self._stderr_thread.join(timeout=CLOSE_WAIT)

    def __enter__(self) -> Connection:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- frames ---------------------------------------------------------------

    def _read(self, n: int) -> bytes:
        try:
            data = self._proc.stdout.read(n)
        except (OSError, ValueError):
            return b""
        self.stats.bytes_received += len(data)
        return data

    def recv(self) -> tuple[int, dict | bytes]:
        """The next frame; the stream's end or a bad frame breaks the connection."""
        if self._broken is not None:
            raise self._broken
        try:
            got = read_frame(self._read)
        except TruncatedFrame:
            got = None  # it ended inside a frame: as much an end as one between two
        except FrameError as e:
            raise self.fail(str(e)) from None
        if got is None:
            raise self.fail(f"the remote side ended mid-reply ({_how(self._exit_status())}){self._tail()}")
        return got

    def message(self) -> dict:
        kind, obj = self.recv()
        if kind != JSON:
            raise FrameError(f"a frame of kind {kind} where a message was due")
        return obj

    def check(self, msg: dict, path: bytes) -> None:
        """Raise the op's error a reply carries (a fatal one breaks the connection)."""
        if "error" not in msg:
            return
        if msg.get("fatal"):
            raise self.fail(f"the remote side says: {str(msg['error'])[:300]}")
        errno = msg.get("errno")
        raise RemoteOSError(self.host, path, str(msg["error"])[:500], errno if type(errno) is int else 0)

    @property
    def broken(self) -> bool:
        """Whether the connection is done (every further op raises its error)."""
        return self._broken is not None

    def fail(self, detail: str) -> RemoteError:
        """Break the connection (the remote side is killed); the error to raise."""
        return self._refuse(f"host {self.host}: {detail}", ProtocolError)

    def _refuse(self, message: str, kind: type[RemoteError] = RemoteError) -> RemoteError:
        if self._broken is None:
            self._broken = kind(message)
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()
        return self._broken

    def _send(self, trailer: bytes = b"", **request: object) -> None:
        """One request, and the DATA frames of ``trailer`` it announces."""
        payload = json.dumps(request, separators=(",", ":")).encode()
        if len(payload) > MAX_JSON:
            raise ValueError(f"a request of {len(payload)} bytes is over the limit")
        try:
            w = Writer(self._proc.stdin)
            w.send(JSON, payload)
            for at in range(0, len(trailer), CHUNK):
                w.send(DATA, trailer[at : at + CHUNK])
            self._proc.stdin.flush()
        except (OSError, ValueError):
            raise self.fail(f"the remote side is gone ({_how(self._exit_status())}){self._tail()}") from None

    def _begin(self, trailer: bytes = b"", **request: object) -> None:
        self._settle()
        self._send(trailer, **request)

    def _settle(self) -> None:
        """Finish the previous op's stream (what was left of it is read and
        dropped), so the next reply is the next op's."""
        pending, self._pending = self._pending, None
        if pending is not None:
            for _ in pending:
                pass
        if self._broken is not None:
            raise self._broken
        if self._proc is None:
            raise RemoteError(f"host {self.host}: the channel is not open")

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except FrameError as e:
            raise self.fail(str(e)) from None

    def _guarded(self, stream: Iterator) -> Iterator:
        """``stream`` with its protocol errors made this host's errors."""
        with self._guard():
            yield from stream

    def _pend(self, stream: Iterator) -> Iterator:
        """``stream``, guarded, as the op the next one must finish first."""
        self._pending = self._guarded(stream)
        return self._pending

    # --- diagnostics ----------------------------------------------------------

    def _keep_stderr(self) -> None:
        for line in self._proc.stderr:
            self._stderr.extend(line)
            del self._stderr[: max(0, len(self._stderr) - 8192)]

    def _stderr_text(self) -> str:
        """What the remote side (or ssh) wrote to stderr, its last 8 KiB."""
        if self._stderr_thread is not None:
            self._stderr_thread.join(timeout=1.0)
        return bytes(self._stderr).decode("utf-8", "replace")

    def _tail(self) -> str:
        """The last line of it, as ``: line`` for the end of a message."""
        lines = [x for x in self._stderr_text().splitlines() if x.strip()]
        return f": {lines[-1].strip()[:300]}" if lines else ""

    def _exit_status(self) -> int | None:
        try:
            return self._proc.wait(timeout=5.0) if self._proc is not None else None
        except subprocess.TimeoutExpired:
            return None


def _how(status: int | None) -> str:
    if status is None:
        return "still running"
    return f"killed by signal {-status}" if status < 0 else f"exit status {status}"
