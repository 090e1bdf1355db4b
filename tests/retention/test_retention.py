"""The retention rules, against many generated histories."""

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inkind.config import Retention, free_target
from inkind.errors import ConfigError
from inkind.history.retention import PERIODS, keep_reasons, to_prune


@dataclass(frozen=True)
class Snap:
    time: datetime


START = datetime(2024, 1, 1)
histories = st.lists(
    st.integers(min_value=0, max_value=3 * 365 * 24 * 60), min_size=0, max_size=80, unique=True
).map(lambda minutes: [Snap(START + timedelta(minutes=m)) for m in minutes])
policies = st.builds(
    Retention,
    keep_last=st.integers(0, 5),
    keep_hourly=st.integers(0, 5),
    keep_daily=st.integers(0, 10),
    keep_weekly=st.integers(0, 6),
    keep_monthly=st.integers(0, 13),
    keep_yearly=st.integers(0, 3),
)


@settings(max_examples=400, deadline=None)
@given(histories, policies)
def test_retention_properties(snaps, policy):
    kept = keep_reasons(snaps, policy)
    pruned = to_prune(snaps, policy)
    assert set(kept) | set(pruned) == set(range(len(snaps))) and not set(kept) & set(pruned)
    if snaps:  # the newest is always kept
        newest = max(range(len(snaps)), key=lambda i: snaps[i].time)
        assert newest in kept
    # no rule keeps more than it is allowed
    for rule in ["keep_last", *PERIODS]:
        assert sum(rule in r for r in kept.values()) <= getattr(policy, rule)
    # each period rule keeps the newest snapshot of its period, one per period
    for rule, period in PERIODS.items():
        chosen = [i for i, r in kept.items() if rule in r]
        assert len({period(snaps[i].time) for i in chosen}) == len(chosen)
        for i in chosen:
            same = [s for s in snaps if period(s.time) == period(snaps[i].time)]
            assert snaps[i].time == max(s.time for s in same)
    # idempotent: pruning what remains deletes nothing more
    rest = [snaps[i] for i in sorted(kept)]
    assert to_prune(rest, policy) == []
    # pruned oldest first
    assert [snaps[i].time for i in pruned] == sorted(snaps[i].time for i in pruned)


def test_a_year_of_daily_snapshots():
    snaps = [Snap(START + timedelta(days=d, hours=3)) for d in range(365)]
    policy = Retention(keep_last=3, keep_daily=7, keep_weekly=4, keep_monthly=12, keep_yearly=0)
    kept = sorted(snaps[i].time for i in keep_reasons(snaps, policy))
    # 7 dailies (Dec 24-30, the last 3 among them). Weeklies: Dec 30 opens
    # ISO week 1 of 2025 and Dec 29 ends week 52 (both already dailies), then
    # Dec 22 and Dec 15. Monthlies: Dec 30 (a daily), then the last day of
    # each month from November back to January.
    assert kept[-7:] == [START + timedelta(days=d, hours=3) for d in range(358, 365)]
    assert len(kept) == 7 + 2 + 11


@pytest.mark.parametrize(
    ("text", "expected"), [("10%", 100), ("0%", 0), ("20G", 20 << 30), ("512M", 512 << 20), ("1000", 1000)]
)
def test_min_free(text, expected):
    assert free_target(text, 1000) == expected


@pytest.mark.parametrize("text", ["ten percent", "110%", "", "5X"])
def test_bad_min_free_names_the_key(text):
    with pytest.raises(ConfigError, match=r"store\.retention\.min_free"):
        free_target(text, 1000)
