"""A real MariaDB server for the mysql tests, started once per session
(mariadb-install-db + mariadbd, socket only, as the mysql user when root)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dbservers import MariaServer
from my_helpers import BACKUP_PASSWORD, BACKUP_USER

_names = itertools.count(1)


@pytest.fixture(scope="session")
def maria() -> Iterator[MariaServer]:
    srv = MariaServer.create()
    try:
        srv.sql(
            f"CREATE USER '{BACKUP_USER}'@'localhost' IDENTIFIED BY '{BACKUP_PASSWORD}';"
            f"GRANT SELECT, SHOW VIEW, TRIGGER, LOCK TABLES, EVENT, PROCESS ON *.* TO '{BACKUP_USER}'@'localhost';"
        )
        yield srv
    finally:
        srv.destroy()


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
