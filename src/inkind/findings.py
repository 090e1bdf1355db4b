"""What ``verify`` reports: one problem found in the store.

Its own module so that the checks (inkind.verify) and the source interface
(inkind.source, whose default verify runs them) need not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """One problem ``verify`` found. ``recoverable`` ones (a leftover temp, a
    pending journal) are fixed by the next run; the others are corruption."""

    obj: str
    message: str
    recoverable: bool = False

    def __str__(self) -> str:
        kind = "recoverable" if self.recoverable else "error"
        return f"{self.obj}: {self.message} ({kind})"
