"""A dump tool's stdout streamed into one stored file.

Nothing is kept in memory: the output goes straight into
:class:`~inkind.store.files.UpdateFile`, compared with the stored dump as it
arrives, so an unchanged database writes nothing, and a failed tool leaves
the previous file as it was.
"""

from __future__ import annotations

from inkind.engines.dumps.entries import CHUNK, count
from inkind.engines.dumps.tools import finish, tool_process
from inkind.source import RunContext
from inkind.store.files import UpdateFile


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
