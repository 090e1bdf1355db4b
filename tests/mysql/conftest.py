"""Fixtures of the mysql tests around the session server ``maria``
(tests/conftest.py: mariadb-install-db + mariadbd, socket only, as the mysql
user when root)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dbservers import MariaServer

_names = itertools.count(1)

# The session server ``maria`` is in tests/conftest.py (the reliability
# harness uses it too).


@pytest.fixture
def fresh_maria() -> Iterator[MariaServer]:
    """An empty second server to restore into."""
    srv = MariaServer.create(prefix="inkind-maria-fresh-")
    try:
        yield srv
    finally:
        srv.destroy()


@pytest.fixture
def make_db(maria: MariaServer) -> Iterator:
    """``make_db(sql)``: a new database with a unique name, set up by
    ``sql``; dropped after the test."""
    made: list[str] = []

    def make(sql: str = "") -> str:
        name = f"shop{next(_names)}"
        maria.sql(f"CREATE DATABASE {name}")
        made.append(name)
        if sql:
            maria.sql(sql, name)
        return name

    yield make
    for name in made:
        maria.sql(f"DROP DATABASE IF EXISTS {name}")


@dataclass
class MySetup:
    store: Path
    config: Path

    @property
    def data(self) -> Path:
        return self.store / "my"


@pytest.fixture
def my_source(maria, inkind_config, inkind_store, tmp_path):
    """``my_source(databases, user=..., password=..., **keys)``: a mysql
    source ``my`` in a fresh store with a defaults file for the server."""

    def make(
        databases: list[str] | None = None, user: str = "root", password: str | None = None, **keys
    ) -> MySetup:
        defaults = maria.defaults_file(tmp_path / f"{user}.cnf", user, password)
        table = {"type": "mysql", "defaults_file": defaults, **keys}
        if databases is not None:
            table["databases"] = databases
        return MySetup(inkind_store, inkind_config({"my": table}))

    return make
