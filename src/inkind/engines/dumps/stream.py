"""A dump tool's stdout streamed into one stored file.

Nothing is kept in memory: the output goes straight into
:class:`~inkind.store.files.UpdateFile`, compared with the stored dump as it
arrives, so an unchanged database writes nothing, and a failed tool leaves
the previous file as it was.
"""

from __future__ import annotations

from inkind.engines.dumps.entries import count
from inkind.engines.dumps.tools import LOCAL, DumpTools
from inkind.source import RunContext
from inkind.store.files import UpdateFile


def stream_to_file(  # size: the run, the entry, the tool, where it runs
    run: RunContext,
    entry: str,
    argv: list[str],
    env: dict[str, str] | None = None,
    tools: DumpTools | None = None,
) -> bool:
    """Stream a tool's stdout (run where ``tools`` run: this machine by
    default, or a source's host) into ``STORE/NAME/<entry>``; return
    whether it changed. A tool that fails, or a connection that breaks,
    leaves the stored file as it was."""
    with (
        (tools or LOCAL).process(argv, env) as proc,
        UpdateFile(entry, dir_fd=run.data_fd, stats=run.stats) as f,
    ):
        for chunk in proc:
            run.stats.bytes_read += len(chunk)
            f.write(chunk)
        proc.finish()
    count(run, f.changed)
    return f.changed
