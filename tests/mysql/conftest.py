"""A real MariaDB server for the mysql tests, started once per session
(mariadb-install-db + mariadbd, socket only, as the mysql user when root)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dbservers import MariaServer

BACKUP_USER, BACKUP_PASSWORD = "backup", "my-s3cret-4711"

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


SAMPLE = """
CREATE TABLE items (id int AUTO_INCREMENT PRIMARY KEY, name varchar(40), photo blob,
                    attrs json, price decimal(10,2), added datetime(3));
INSERT INTO items (name, photo, attrs, price, added)
  SELECT CONCAT('item ', seq), UNHEX(CONCAT(MD5(seq), '00FF')), JSON_OBJECT('n', seq),
         seq / 3, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq MINUTE
  FROM seq_1_to_300;
CREATE TABLE orders (id int PRIMARY KEY, item int, qty int, note text,
                     FOREIGN KEY (item) REFERENCES items(id)) ENGINE=InnoDB;
INSERT INTO orders SELECT seq, seq % 300 + 1, seq % 7, REPEAT('n', seq % 50) FROM seq_1_to_500;
CREATE TABLE log (at timestamp NOT NULL DEFAULT '2024-01-01 00:00:00', what varchar(100)) ENGINE=MyISAM;
INSERT INTO log (what) VALUES ('one'), ('two');
CREATE VIEW cheap AS SELECT id, name FROM items WHERE price < 10;
CREATE TRIGGER upper_name BEFORE INSERT ON items FOR EACH ROW SET NEW.name = UPPER(NEW.name);
CREATE PROCEDURE add_log(w varchar(100)) INSERT INTO log (what) VALUES (w);
CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' DO DELETE FROM log WHERE 0;
"""


def table_contents(srv: MariaServer, db: str) -> dict[str, str]:
    """Every table's rows in a fixed order, and the routines, triggers and
    events by name."""
    tables = srv.sql(
        f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{db}' "
        "AND table_type = 'BASE TABLE' ORDER BY 1"
    ).split()
    out = {t: srv.sql(f"SELECT * FROM `{t}` ORDER BY 1, 2", db) for t in tables}
    out["routines"] = srv.sql(
        f"SELECT routine_name FROM information_schema.routines WHERE routine_schema = '{db}'"
    )
    out["triggers"] = srv.sql(
        f"SELECT trigger_name FROM information_schema.triggers WHERE trigger_schema = '{db}'"
    )
    out["events"] = srv.sql(f"SELECT event_name FROM information_schema.events WHERE event_schema = '{db}'")
    out["views"] = (
        srv.sql("SELECT * FROM cheap ORDER BY id", db) if "cheap" in srv.sql("SHOW TABLES", db) else ""
    )
    return out


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
