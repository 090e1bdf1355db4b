"""Block and span arithmetic: which blocks a byte range touches, which hold
data, and the reads that cover them.

A span is a ``[first, stop)`` run of block indexes; spans are kept sorted
and disjoint, so their size is what changed, not what the source holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from inkind.store.sparse import data_segments

READ_UNIT = 4 << 20  # what the read-ahead thread reads at a time (whole blocks)


def blocks_of(size: int, block_size: int) -> int:
    return -(-size // block_size)


def merge_spans(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, disjoint [first, stop) spans; empty ones dropped."""
    out: list[tuple[int, int]] = []
    for first, stop in sorted(spans):
        if first >= stop:
            continue
        if out and first <= out[-1][1]:
            out[-1] = (out[-1][0], max(stop, out[-1][1]))
        else:
            out.append((first, stop))
    return out


def block_spans(ranges: Iterable[tuple[int, int]], block_size: int, blocks: int) -> list[tuple[int, int]]:
    """Byte (offset, length) ranges as sorted, disjoint [first, stop) block spans."""
    return merge_spans(
        (offset // block_size, min(blocks, blocks_of(offset + length, block_size)))
        for offset, length in ranges
        if length > 0
    )


def data_block_spans(fd: int, size: int, block_size: int) -> list[tuple[int, int]]:
    """The blocks of ``fd`` that hold data (SEEK_DATA/SEEK_HOLE), as sorted,
    disjoint [first, stop) spans; the others read as zeros.

    It seeks on from the end of each block that holds data, so a hole
    smaller than a block is stepped over: at most two lseeks per data block
    however fragmented the file, and memory for the spans only.
    """
    spans: list[tuple[int, int]] = []
    pos = 0
    while pos < size:
        segment = next(data_segments(fd, size, pos), None)
        if segment is None:
            break
        start, length = segment
        first, stop = start // block_size, blocks_of(start + length, block_size)
        if spans and first <= spans[-1][1]:
            spans[-1] = (spans[-1][0], stop)
        else:
            spans.append((first, stop))
        pos = stop * block_size
    return spans


def read_units(spans: Iterable[tuple[int, int]], block_size: int, size: int) -> Iterator[tuple[int, int]]:
    """The reads that cover the blocks of ``spans`` (made as they are needed,
    so memory does not grow with the source): runs of whole blocks of about
    READ_UNIT bytes each (one read a block for larger blocks), never across a
    span's end, the last one cut at ``size``."""
    per = read_unit_blocks(block_size)
    for start, end in spans:
        for i in range(start, end, per):
            offset = i * block_size
            yield offset, min(min(end, i + per) * block_size, size) - offset


def read_unit_blocks(block_size: int) -> int:
    return max(1, READ_UNIT // block_size)


def image_blocks(size: int, block_size: int) -> Iterator[tuple[int, int]]:
    """(offset, length) of each block of an image of ``size`` bytes."""
    for offset in range(0, size, block_size):
        yield offset, min(block_size, size - offset)
