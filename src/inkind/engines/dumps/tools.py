"""Finding and running a database's dump tools, on this machine or (with
:class:`~inkind.engines.dumps.remote.RemoteTools`) on a source's host.

:class:`DumpTools` is where the dump engine starts every tool: ``find``
looks one up, ``process`` starts it and streams its stdout, ``output_dir``
says where a tool that writes files puts them. The functions below
(``find_tool``, ``run_tool``, :func:`tool_directory`) and
:func:`~inkind.engines.dumps.stream.stream_to_file` take a ``tools`` to say
where, this machine by default.

Here a tool runs with stdout as a pipe and stderr into memory; it is killed
when the caller stops early, and by the kernel when this process dies. A
failed tool is one :class:`~inkind.errors.SourceError` line made of its own
error output.
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
from typing import TYPE_CHECKING

from inkind.engines.dumps.entries import CHUNK
from inkind.errors import SourceError
from inkind.libc import libc

if TYPE_CHECKING:
    from inkind.source import RunContext

PR_SET_PDEATHSIG = 1


class ToolRun:
    """A started tool: iterate it for its stdout, in chunks, then call
    :meth:`finish`, which raises SourceError with its error line if it failed."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    def __iter__(self) -> Iterator[bytes | memoryview]:
        assert self.proc.stdout is not None
        while chunk := self.proc.stdout.read(CHUNK):
            yield chunk

    def finish(self) -> None:
        finish(self.proc)


class DumpTools:
    """Where a dump source's tools run: this machine (``host`` None).
    RemoteTools runs them on a source's host over its channel."""

    host: str | None = None

    def find(self, name: str, bin_dir: Path | None) -> str:
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

    @contextlib.contextmanager
    def process(self, argv: list[str], env: dict[str, str] | None = None) -> Iterator[ToolRun]:
        """Start a tool, ``env`` added to this process's environment."""
        with tool_process(argv, {**os.environ, **env} if env else None) as proc:
            yield ToolRun(proc)

    @contextlib.contextmanager
    def output_dir(self, local: Path) -> Iterator[str]:
        """The path to give a tool that writes a directory which is to be
        at ``local`` (on this machine: ``local`` itself) once the body ends."""
        yield str(local)


LOCAL = DumpTools()


def find_tool(name: str, bin_dir: Path | None, tools: DumpTools | None = None) -> str:
    """``bin_dir/name``, else ``name`` on PATH, where ``tools`` run (this
    machine by default); SourceError if neither."""
    return (tools or LOCAL).find(name, bin_dir)


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
    if lines:
        return " ".join(lines[:4])
    return (
        f"{name} killed by signal {-returncode}"
        if returncode < 0
        else f"{name} exited with status {returncode}"
    )


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


def run_tool(argv: list[str], env: dict[str, str] | None = None, tools: DumpTools | None = None) -> bytes:
    """Run a tool to completion and return its stdout (small outputs only);
    ``env`` is added to the environment it runs in."""
    with (tools or LOCAL).process(argv, env) as proc:
        out = b"".join(proc)
        proc.finish()
    return out


@contextlib.contextmanager
def tool_directory(
    run: RunContext, argv: list[str], env: dict[str, str] | None = None, tools: DumpTools | None = None
) -> Iterator[Path]:
    """Run a tool that writes a directory (``pg_dump -Fd``), the path of
    that directory appended to ``argv``; yield it on this machine, in a
    scratch directory on the store's filesystem, removed after the body."""
    tools = tools or LOCAL
    with run.scratch_dir() as scratch:
        out = scratch / "dump"
        with tools.output_dir(out) as target:
            run_tool([*argv, target], env, tools)
        yield out
