"""Snapshot ids: the UTC time a snapshot was taken, in ISO 8601's basic
format (``20261124T031700Z``). No colons, so the same id is a valid
directory, LV and ZFS snapshot name, and rsync never mistakes it for a
``host:path``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

from inkind.store.files import TEMP_PREFIX, is_temp_name

ID_FORMAT = "%Y%m%dT%H%M%SZ"
ID_FORMAT_FINE = "%Y%m%dT%H%M%S.%fZ"  # two snapshots within one second


def new_id(now: float | None = None, taken: Sequence[str] = ()) -> str:
    """The UTC time as a snapshot id; with microseconds only when a
    snapshot of the same second exists, so the new id sorts last."""
    t = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    sid = t.strftime(ID_FORMAT)
    if taken and max(map(parse_id, taken)) >= parse_id(sid):
        sid = t.strftime(ID_FORMAT_FINE)
    return sid


def parse_id(sid: str) -> datetime:
    fmt = ID_FORMAT_FINE if "." in sid else ID_FORMAT
    return datetime.strptime(sid, fmt).replace(tzinfo=UTC)


def is_id(text: str) -> bool:
    try:
        parse_id(text)
    except ValueError:
        return False
    return True


def half_made_name(sid: str) -> str:
    """The name a snapshot directory is built under before it is renamed to
    ``sid``: a listing never takes it for a snapshot (:func:`is_half_made`)."""
    return f"{TEMP_PREFIX}{sid}"


def is_half_made(name: str) -> bool:
    """A snapshot directory left by an interrupted copy."""
    return is_temp_name(name.encode())
