"""Fixtures of the postgres tests around the session server ``pg``
(tests/conftest.py: initdb + pg_ctl, socket only, as the postgres user when root)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dbservers import PgServer

_names = itertools.count(1)

# The session server ``pg`` is in tests/conftest.py (the reliability harness
# uses it too).


@pytest.fixture
def fresh_pg() -> Iterator[PgServer]:
    """An empty second cluster to restore into."""
    srv = PgServer.create(prefix="inkind-pg-fresh-")
    try:
        yield srv
    finally:
        srv.destroy()


@pytest.fixture
def make_db(pg: PgServer) -> Iterator:
    """``make_db(sql)``: a new database with a unique name, set up by ``sql``;
    dropped after the test."""
    made: list[str] = []

    def make(sql: str = "") -> str:
        name = f"db{next(_names)}"
        pg.psql(f"CREATE DATABASE {name}")
        made.append(name)
        if sql:
            pg.psql(sql, name)
        return name

    yield make
    for name in made:
        pg.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@dataclass
class PgSetup:
    store: Path
    config: Path

    @property
    def data(self) -> Path:
        return self.store / "pg"


@pytest.fixture
def pg_source(pg, inkind_config, inkind_store):
    """``pg_source(databases, **keys)``: a postgres source ``pg`` in a fresh
    store, dumping the given databases of the session server."""

    def make(databases: list[str] | None = None, **keys) -> PgSetup:
        table = {"type": "postgres", "dsn": pg.dsn(), **keys}
        if databases is not None:
            table["databases"] = databases
        return PgSetup(inkind_store, inkind_config({"pg": table}))

    return make
