"""Where the ``lvm`` source's volumes are, and how a snapshot of one is
read: on this machine (the device opened, its blocks hashed here), or on
the source's host (its LVM commands run there through the remote channel,
its blocks hashed there and only those whose digest changed fetched, as
the image source does). The source's logic is the same for both: it asks
a :class:`Machine` for its LVM commands and to open a snapshot.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inkind import (
    BlockCopy,
    Channel,
    CopyResult,
    RunContext,
    differing_on_host,
    lvm,
    open_channel,
    open_source,
    pull_image,
)
from inkind_lvm.volumes import cross_check

Ranges = list[tuple[int, int]]


class LocalSnapshot:
    """A snapshot's device on this machine, open to read."""

    def __init__(self, snap: lvm.Volume):
        cross_check(snap)
        self.src = open_source(Path(snap.device))
        self.size = self.src.size

    def copy(  # size: the run, the engine, what to read, the check before commit
        self,
        run: RunContext,
        engine: BlockCopy,
        label: str,
        ranges: Ranges | None = None,
        check: Callable[[], None] | None = None,
    ) -> CopyResult:
        with run.progress(f"read {label}", total=self.size, unit="bytes") as progress:
            return engine.copy(
                self.src.fd, self.size, full=run.full, ranges=ranges, check=check, progress=progress
            )

    def differing(self, engine: BlockCopy, ranges: Ranges) -> Ranges:
        return engine.differing(self.src.fd, ranges)

    @property
    def scrub_fd(self) -> int | None:
        """What scrub compares the stored blocks with: the device."""
        return self.src.fd

    def close(self) -> None:
        self.src.close()


class RemoteSnapshot:
    """A snapshot's device on the source's host: blocks hashed there, only
    the changed ones cross (a new device every run: no quick check)."""

    def __init__(self, channel: Channel, snap: lvm.Volume):
        self.channel, self.path, self.size = channel, os.fsencode(snap.device), snap.size

    def copy(  # size: the run, the engine, what to read, the check before commit
        self,
        run: RunContext,
        engine: BlockCopy,
        label: str,
        ranges: Ranges | None = None,
        check: Callable[[], None] | None = None,
    ) -> CopyResult:
        with run.progress(f"read {label}", total=self.size, unit="bytes") as progress:
            result = pull_image(
                self.channel, self.path, engine, run, progress, changed=ranges, check=check, quick_check=False
            )
        self.size = result.size
        return result

    def differing(self, engine: BlockCopy, ranges: Ranges) -> Ranges:
        return differing_on_host(self.channel, self.path, engine, ranges)

    @property
    def scrub_fd(self) -> int | None:
        """None: the device is on the host, scrub checks the manifest only."""
        return None

    def close(self) -> None:
        pass


Snapshot = LocalSnapshot | RemoteSnapshot


@dataclass
class Machine:
    """The machine the volumes are on: its LVM commands, and its channel
    (None: this machine)."""

    lvm: lvm.Commands
    channel: Channel | None = None

    def open(self, snap: lvm.Volume) -> Snapshot:
        if self.channel is None:
            return LocalSnapshot(snap)
        return RemoteSnapshot(self.channel, snap)


@contextlib.contextmanager
def machine(remote: Any, run: RunContext) -> Iterator[Machine]:
    """This machine, or the source's host (``remote``, an SshTarget) over
    one channel for the run."""
    if remote is None:
        yield Machine(lvm.LOCAL)
        return
    with open_channel(remote, run.stats) as channel:
        yield Machine(lvm.Commands(lvm.channel_runner(channel)), channel)
