"""A changed large file's pieces (engines/tree/blocks.changed_ranges):
exactly the 4 KiB granules that differ, adjacent ones merged."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from inkind.engines.tree.blocks import GRANULE, changed_ranges

SIZE = 40 * GRANULE + 123  # more than two coarse steps of 16 granules, and a short tail


@given(st.lists(st.tuples(st.integers(0, SIZE - 1), st.integers(1, 3 * GRANULE)), max_size=6))
def test_the_ranges_are_the_granules_that_differ(writes):
    old = bytearray(SIZE)
    new = bytearray(old)
    for at, length in writes:
        end = min(at + length, SIZE)
        new[at:end] = b"\x01" * (end - at)
    ranges = changed_ranges(memoryview(bytes(old)), memoryview(bytes(new)))
    differing = {i for i in range(0, SIZE, GRANULE) if old[i : i + GRANULE] != new[i : i + GRANULE]}
    covered = {i for start, end in ranges for i in range(start, end, GRANULE)}
    assert covered == differing
    assert all(start % GRANULE == 0 and (end % GRANULE == 0 or end == SIZE) for start, end in ranges)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(ranges)), "adjacent ranges are merged"
