"""Which store snapshots to keep: borg's prune rules, as a pure function.

Each ``keep_<period>`` rule keeps the newest snapshot of each of the last N
periods that have a snapshot (counting back from the newest); ``keep_last``
keeps the N newest. A snapshot kept by several rules is kept once. The
newest snapshot is always kept. ``min_free`` is applied afterwards, by the
caller, which knows the filesystem (see :func:`inkind.config.free_target`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from inkind.config import Retention


class Dated(Protocol):
    @property
    def time(self) -> datetime: ...


PERIODS: dict[str, Callable[[datetime], tuple]] = {
    "keep_hourly": lambda t: (t.year, t.month, t.day, t.hour),
    "keep_daily": lambda t: (t.year, t.month, t.day),
    "keep_weekly": lambda t: t.isocalendar()[:2],
    "keep_monthly": lambda t: (t.year, t.month),
    "keep_yearly": lambda t: (t.year,),
}


def keep_reasons(snapshots: Sequence[Dated], policy: Retention) -> dict[int, list[str]]:
    """For each kept snapshot (by index in ``snapshots``), the rules that
    keep it, e.g. ``{0: ["keep_last", "keep_daily"]}``."""
    order = sorted(range(len(snapshots)), key=lambda i: snapshots[i].time, reverse=True)
    reasons: dict[int, list[str]] = {}
    for i in order[: policy.keep_last]:
        reasons.setdefault(i, []).append("keep_last")
    for rule, period in PERIODS.items():
        wanted = getattr(policy, rule)
        seen: set[tuple] = set()
        for i in order:
            if len(seen) >= wanted:
                break
            p = period(snapshots[i].time)
            if p not in seen:  # the newest snapshot of this period
                seen.add(p)
                reasons.setdefault(i, []).append(rule)
    if order:
        reasons.setdefault(order[0], []).append("newest")
    return reasons


def to_prune(snapshots: Sequence[Dated], policy: Retention) -> list[int]:
    """Indexes of the snapshots the policy does not keep, oldest first."""
    kept = keep_reasons(snapshots, policy)
    drop = [i for i in range(len(snapshots)) if i not in kept]
    return sorted(drop, key=lambda i: snapshots[i].time)
