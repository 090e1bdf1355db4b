"""Connection strings and store names: the pure parts of the postgres source."""

from __future__ import annotations

import pytest
from inkind_postgres import conninfo
from inkind_postgres.source import entry_for
from inkind_postgres.toc import creation_time_span, keep_stored_time

from inkind import database_of, entry_name


@pytest.mark.parametrize(
    ("dsn", "params"),
    [
        ("host=/run/postgresql user=postgres", {"host": "/run/postgresql", "user": "postgres"}),
        ("host='/a b' dbname='it\\'s'", {"host": "/a b", "dbname": "it's"}),
        ("postgresql://u@db.example:5433/app?sslmode=require",
         {"user": "u", "host": "db.example", "port": "5433", "dbname": "app", "sslmode": "require"}),
    ],
)  # fmt: skip
def test_conninfo_roundtrip(dsn, params):
    assert conninfo.parse(dsn) == params
    assert conninfo.parse(conninfo.with_dbname(params, "other db")) == {**params, "dbname": "other db"}


def test_conninfo_rejects_garbage():
    with pytest.raises(ValueError):
        conninfo.parse("host")


@pytest.mark.parametrize("db", ["plain", "a/b", "50%", ".hidden", "globals", "globals.sql", "naïve"])
@pytest.mark.parametrize("plain", [False, True])
def test_entry_names_are_plain_unique_and_reversible(db, plain):
    entry = entry_for(db, plain)
    assert "/" not in entry and not entry.startswith(".") and entry != "globals.sql"
    assert database_of(entry, ".sql" if plain else "") == db
    assert entry_name("naïve") == "naïve"


def test_toc_time_span_and_keep():
    header = b"PGDMP\x01\x0e\x00\x04\x08\x03" + b"\x00" * 5 + bytes(range(35)) + b"rest"
    assert creation_time_span(header) == (16, 51)
    other_time = header[:16] + bytes(35) + header[51:]
    assert keep_stored_time(header, other_time) is other_time
    assert keep_stored_time(header, other_time[:-1] + b"X") is header
    assert keep_stored_time(header, None) is header
