"""Counters of the work a run did, so tests can prove what was (not) written.

Every store primitive counts into the :class:`Stats` it is given; the runner
keeps one per source and sums them for the run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields


@dataclass
class Stats:
    """Work done by one source in one run (or by a whole run, summed).

    Field names start with what they count; counts of operations on the store
    count only operations that changed something. ``bytes_written`` counts
    bytes written into stored objects (temps that become objects included);
    ``bytes_journaled`` the extra copy that the journal path of
    update_image writes first on filesystems without reflinks;
    ``objects_kept_out`` the directories (and sqlite glob matches) a source
    left alone because they are, or lie in, the store or its snapshot
    folder (a source containing the store, such as ``path = "/"``);
    ``bytes_received`` the bytes that came over the network from a remote
    side (frames as they crossed, before decompression).
    """

    objects_seen: int = 0
    objects_changed: int = 0
    objects_unchanged: int = 0
    objects_skipped: int = 0
    objects_deleted: int = 0
    objects_scrubbed: int = 0
    objects_repaired: int = 0
    objects_corrupt: int = 0
    objects_kept_out: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    bytes_journaled: int = 0
    bytes_received: int = 0
    xattrs_written: int = 0
    mtimes_set: int = 0
    modes_set: int = 0
    owners_set: int = 0
    warnings: int = 0
    errors: int = 0
    duration_seconds: float = 0.0

    def add(self, other: Stats) -> None:
        """Add every counter of ``other`` into this one."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int | float]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Stats:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def nonzero(self) -> dict[str, int | float]:
        """The counters that are not zero: what a log line shows."""
        return {k: v for k, v in self.as_dict().items() if v}
