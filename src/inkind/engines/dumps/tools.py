"""Finding and running a database's dump tools.

A tool runs with stdout as a pipe and stderr into memory; it is killed when
the caller stops early, and by the kernel when this process dies. A failed
tool is one :class:`~inkind.errors.SourceError` line made of its own error
output.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from inkind.errors import SourceError
from inkind.libc import libc

PR_SET_PDEATHSIG = 1


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
