"""The header of a pg_dump archive's ``toc.dat``.

pg_dump writes the time the dump started into the header (seven integers
after the format and compression fields), so two dumps of an unchanged
database differ in those bytes only. A stored toc.dat that differs from the
new one in nothing else is kept as it is: it is the toc of an identical dump,
taken when that content was first stored.
"""

from __future__ import annotations

MAGIC = b"PGDMP"
TIME_FIELDS = 7  # tm_sec, tm_min, tm_hour, tm_mday, tm_mon, tm_year, tm_isdst


def creation_time_span(header: bytes) -> tuple[int, int] | None:
    """The byte range of the creation time in a toc.dat header, or None for
    a header this code does not know (then nothing is kept)."""
    if len(header) < 11 or not header.startswith(MAGIC):
        return None
    version = tuple(header[5:8])
    int_size = header[8]
    if version < (1, 4, 0) or not 1 <= int_size <= 8:
        return None
    start = 11 + (1 if version >= (1, 15, 0) else 1 + int_size)  # compression
    end = start + TIME_FIELDS * (1 + int_size)
    return (start, end) if end <= len(header) else None


def keep_stored_time(new: bytes, stored: bytes | None) -> bytes:
    """``stored`` if it differs from ``new`` only in the creation time,
    else ``new``."""
    span = creation_time_span(new)
    if stored is None or span is None or len(stored) != len(new) or creation_time_span(stored) != span:
        return new
    start, end = span
    if new[:start] == stored[:start] and new[end:] == stored[end:]:
        return stored
    return new
