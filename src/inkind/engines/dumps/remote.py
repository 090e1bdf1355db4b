"""Dump tools run on a source's host (``host``), over the one channel of
the source's run: pg_dump or mysqldump started there by the remote side's
``run``, their stdout streamed back into the same store path a local run
takes (:func:`~inkind.engines.dumps.stream.stream_to_file`), so the stored
dumps are the same bytes either way.

A tool that writes files (``pg_dump -Fd``) writes them into a temp
directory the remote side makes on the host; its files are then read over
the channel (compressed where that pays) into the scratch directory here,
and the temp is removed on the host whatever happens (by the remote side
itself if the connection dies).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from inkind.engines.dumps.tools import LOCAL, DumpTools, error_line
from inkind.errors import SourceError
from inkind.remote.channel import Channel, RemoteOSError, open_channel
from inkind.remote.ssh import SshTarget
from inkind.remote.transfers import RemoteProcess
from inkind.remote.wire import to_text
from inkind.stats import Stats

WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class RemoteRun:
    """A tool started on the host: iterate it for its stdout, then
    :meth:`finish` (its exit status and stderr came with the end)."""

    def __init__(self, rp: RemoteProcess, host: str):
        self.rp, self.host = rp, host
        self.done = False

    def __iter__(self) -> Iterator[memoryview]:
        yield from self.rp
        self.done = True

    def finish(self) -> None:
        for _ in self:  # what the caller left unread: the status comes after it
            pass
        status = self.rp.status or 0
        if status:
            raise SourceError(f"host {self.host}: {error_line(self.rp.argv[0], self.rp.stderr, status)}")


class RemoteTools(DumpTools):
    """The dump tools of a source's host, run through its channel. Paths
    (``bin_dir``, the tool's own options) are paths on the host; the tool
    gets the remote side's environment and ``env``."""

    def __init__(self, channel: Channel):
        self.channel = channel
        self.host = channel.host

    def find(self, name: str, bin_dir: Path | None) -> str:
        """``bin_dir/name`` on the host, else ``name`` on the host's PATH
        (the remote side's, under sudo its secure_path); SourceError if neither."""
        found = self.channel.which(name, os.fsencode(bin_dir) if bin_dir is not None else None)
        if found is not None:
            return found
        if bin_dir is not None:
            raise SourceError(
                f"host {self.host}: {bin_dir / name}: not found or not executable there "
                "(check bin_dir: it names a directory on the host)"
            )
        raise SourceError(
            f"host {self.host}: {name}: not found on the host's PATH (install the client tools there "
            "or set bin_dir)"
        )

    @contextlib.contextmanager
    def process(self, argv: list[str], env: dict[str, str] | None = None) -> Iterator[RemoteRun]:
        try:
            rp = self.channel.run(argv, env)
        except RemoteOSError as e:
            if e.errno == errno.EPERM:  # refused by a restricted key: its line says what
                raise SourceError(str(e)) from None
            why = os.strerror(e.errno) if e.errno else str(e)
            raise SourceError(f"host {self.host}: {argv[0]}: cannot be run there: {why}") from None
        proc = RemoteRun(rp, self.host)
        try:
            yield proc
        except BaseException:
            if not proc.done:  # stopped early: the tool's output is not drained, the connection ends
                self.channel.fail(f"{os.path.basename(argv[0])} was stopped mid-output")
            raise

    @contextlib.contextmanager
    def output_dir(self, local: Path) -> Iterator[str]:
        """A temp directory on the host for the tool to create its output
        directory in; its files are fetched into ``local`` once the tool is
        done, and the temp is removed on the host."""
        temp = self.channel.temp_dir()
        remote = temp.path + b"/dump"
        try:
            yield to_text(remote)
            fetch_dir(self.channel, remote, local)
        except BaseException:
            with contextlib.suppress(Exception):  # a dead connection: the remote side removes it as it ends
                self.channel.remove(temp)
            raise
        self.channel.remove(temp)


def fetch_dir(channel: Channel, remote: bytes, local: Path) -> None:
    """The flat directory ``remote`` on the host, copied into the new
    directory ``local`` (regular files only; holes stay holes)."""
    names = []
    for entry in channel.scan(remote, exclude_caches=False):
        if not entry.key:
            continue
        st = entry.stat
        if len(entry.key) != 1 or st is None or not stat.S_ISREG(st.st_mode):
            what = to_text(b"/".join([remote, *entry.key]))[:300]
            raise SourceError(f"host {channel.host}: {what}: not a regular file in a dump directory")
        names.append(entry.name)
    os.mkdir(local, 0o700)
    dir_fd = os.open(local, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name, rf in zip(names, channel.read_files([remote + b"/" + n for n in names]), strict=True):
            if rf.error is not None and rf.before is None:
                raise RemoteOSError(channel.host, rf.path, rf.error, rf.errno)
            fd = os.open(name, WRITE_FLAGS, 0o600, dir_fd=dir_fd)
            try:
                for offset, data in rf.chunks():
                    os.pwrite(fd, data, offset)
                os.ftruncate(fd, rf.size)
            finally:
                os.close(fd)
            if rf.error is not None:
                raise RemoteOSError(channel.host, rf.path, rf.error, rf.errno)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def open_tools(target: SshTarget | None, stats: Stats) -> Iterator[DumpTools]:
    """Where a dump source's run starts its tools: this machine, or
    ``target`` through one channel for the whole run."""
    if target is None:
        yield LOCAL
        return
    with open_channel(target, stats) as channel:
        yield RemoteTools(channel)
