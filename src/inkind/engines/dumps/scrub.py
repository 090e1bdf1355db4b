"""The scrub of stored dumps: a random sample of their files checked
against the ``user.inkind.xxh3`` each was stored with, and a dump
directory's record of its files (a file deleted later is found)."""

from __future__ import annotations

import logging
import os
import stat

from inkind.engines.dumps.entries import READ_FLAGS, regular_files
from inkind.engines.dumps.failures import Failures
from inkind.errors import CorruptionError
from inkind.source import RunContext
from inkind.store.entries import entries_problem
from inkind.store.paths import DIR_FLAGS, open_at
from inkind.verify import check_file

log = logging.getLogger("inkind")


def scrub_entry(run: RunContext, entry: str, failures: Failures) -> None:
    """Check a random sample of the files of one stored entry (a file, or a
    directory of files) against their ``user.inkind.xxh3``."""
    try:
        st = os.stat(entry, dir_fd=run.data_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        dfd = open_at(run.data_fd, entry, DIR_FLAGS)
        try:
            names = regular_files(dfd)
            # Whenever scrubbing (whatever the sample: it costs no read).
            problem = entries_problem(dfd, names) if run.scrub_fraction > 0 else None
            if problem:
                rel = f"{run.name}/{entry}"
                run.stats.objects_corrupt += 1
                log.error("%s: corruption: %s: %s", run.name, rel, problem)
                failures.corrupt.append(CorruptionError(rel, problem))
            for name in names:
                if run.should_scrub():
                    _check(run, dfd, name, f"{run.name}/{entry}/{name}", failures)
        finally:
            os.close(dfd)
    elif stat.S_ISREG(st.st_mode) and run.should_scrub():
        _check(run, run.data_fd, entry, f"{run.name}/{entry}", failures)


def _check(run: RunContext, dir_fd: int, name: str, rel: str, failures: Failures) -> None:
    fd = open_at(dir_fd, name, READ_FLAGS)
    try:
        size = os.fstat(fd).st_size
        run.stats.objects_scrubbed += 1
        run.stats.bytes_read += size
        found = check_file(fd, rel, size)
    finally:
        os.close(fd)
    if found is not None and not found.recoverable:
        run.stats.objects_corrupt += 1
        log.error("%s: corruption: %s: %s", run.name, rel, found.message)
        failures.corrupt.append(CorruptionError(rel, found.message))
