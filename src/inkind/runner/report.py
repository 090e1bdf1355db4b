"""What a run reports: each source's outcome and counts, and the run's
exit status."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from inkind.history.taking import HistoryResult
from inkind.stats import Stats

OK, WARNINGS, FAILED, BUSY, INTERRUPTED = "ok", "warnings", "failed", "busy", "interrupted"
EXIT_FOR = {OK: 0, WARNINGS: 1, BUSY: 1, FAILED: 2, INTERRUPTED: 2}


@dataclass
class SourceResult:
    name: str
    type: str
    outcome: str = OK
    full: bool = False
    messages: list[str] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "outcome": self.outcome,
            "full": self.full,
            "messages": self.messages,
            "stats": self.stats.as_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceResult:
        """The result :meth:`as_dict` gave (a ``--jobs`` child sends it so)."""
        return cls(
            name=data["name"],
            type=data["type"],
            outcome=data["outcome"],
            full=data["full"],
            messages=list(data["messages"]),
            stats=Stats.from_dict(data["stats"]),
        )


@dataclass
class RunReport:
    command: str
    start: str
    seed: int
    dry_run: bool = False
    results: list[SourceResult] = field(default_factory=list)
    end: str = ""
    history: HistoryResult | None = None  # backup only: the snapshot taken after it

    @property
    def exit_status(self) -> int:
        worst = max((EXIT_FOR[r.outcome] for r in self.results), default=0)
        return 2 if self.history and self.history.error else worst

    def as_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "start": self.start,
            "end": self.end,
            "seed": self.seed,
            "dry_run": self.dry_run,
            "exit_status": self.exit_status,
            "sources": [r.as_dict() for r in self.results],
            "history": self.history.as_dict() if self.history else None,
        }
