"""The read-ahead thread: every stretch in order, errors handed over, and a
stop at any moment that leaves no thread behind."""

import os
import threading

import pytest

from inkind.engines.blockcopy.ranges import read_units
from inkind.engines.blockcopy.readahead import ReadAhead, ShortRead

MiB = 1 << 20


@pytest.fixture
def source(tmp_path):
    data = os.urandom(10 * MiB + 12345)
    path = tmp_path / "src"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    yield fd, data
    os.close(fd)


def test_read_units_are_whole_blocks_within_spans():
    bs = 1 * MiB
    assert list(read_units([(0, 10)], bs, 10 * MiB - 5)) == [
        (0, 4 * MiB),
        (4 * MiB, 4 * MiB),
        (8 * MiB, 2 * MiB - 5),
    ]
    assert list(read_units([(1, 2), (5, 7)], bs, 10 * MiB)) == [(MiB, MiB), (5 * MiB, 2 * MiB)]
    assert list(read_units([(0, 3)], 16 * MiB, 40 * MiB)) == [
        (0, 16 * MiB),
        (16 * MiB, 16 * MiB),
        (32 * MiB, 8 * MiB),
    ]
    assert list(read_units([], bs, 0)) == []


def test_every_stretch_arrives_in_order(source):
    fd, data = source
    plan = list(read_units([(0, 2), (4, 11)], MiB, len(data)))
    with ReadAhead(fd, plan, 4 * MiB) as reader:
        got = [(offset, bytes(reader.next())) for offset, _ in plan]
    assert got == [(offset, data[offset : offset + length]) for offset, length in plan]


def test_a_source_that_ends_early_is_a_short_read_at_its_end(source):
    fd, data = source
    plan = [(8 * MiB, 4 * MiB)]
    with ReadAhead(fd, plan, 4 * MiB) as reader, pytest.raises(ShortRead) as e:
        reader.next()
    assert e.value.offset == len(data)


def test_leaving_early_stops_the_thread(source):
    fd, data = source
    plan = read_units([(0, 11)], MiB, len(data))
    with ReadAhead(fd, plan, 4 * MiB, depth=2) as reader:
        assert bytes(reader.next()) == data[: 4 * MiB]
    assert not any(t.name == "inkind-readahead" for t in threading.enumerate())
