"""What went wrong with single dumps, said once at the end of the run.

A dump that fails keeps its previous dump and lets the others go on; a
stored dump found corrupt is reported as corruption (exit status 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inkind.errors import CorruptionError, SourceError


@dataclass
class Failures:
    """What went wrong with single dumps; the others still ran."""

    errors: list[tuple[str, str]] = field(default_factory=list)  # (label, message)
    corrupt: list[CorruptionError] = field(default_factory=list)

    def raise_any(self) -> None:
        """One line naming every failed dump (exit status 2). Dumps that failed
        the same way (a server too new for the tools) share one message."""
        by_message: dict[str, list[str]] = {}
        for label, message in self.errors:
            by_message.setdefault(message, []).append(label)
        parts = [f"{', '.join(labels)}: {message}" for message, labels in by_message.items()]
        if self.corrupt:
            first = self.corrupt[0]
            rest = [f"{c.obj}: {c.detail}" for c in self.corrupt[1:]] + parts
            raise CorruptionError(first.obj, "; ".join([first.detail, *rest]))
        if parts:
            kept = "its previous dump is kept" if len(self.errors) == 1 else "their previous dumps are kept"
            raise SourceError(f"{'; '.join(parts)} ({kept})")
