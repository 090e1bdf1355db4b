"""A real PostgreSQL 15 server for the postgres tests, started once per
session (initdb + pg_ctl, socket only, as the postgres user when root)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dbservers import PgServer

BACKUP_ROLE, BACKUP_PASSWORD = "backup", "s3cret-Pw-4711"
# The backup role must give a password; everybody else is trusted.
HBA = [f"local all {BACKUP_ROLE} scram-sha-256"]

_names = itertools.count(1)


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    srv = PgServer.create(hba_extra=HBA)
    try:
        srv.psql(f"CREATE ROLE {BACKUP_ROLE} LOGIN SUPERUSER PASSWORD '{BACKUP_PASSWORD}'")
        yield srv
    finally:
        srv.destroy()


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


SAMPLE = """
CREATE TABLE blobs (id int PRIMARY KEY, data bytea, meta json, doc jsonb);
INSERT INTO blobs SELECT g, decode(md5(g::text) || '00ff', 'hex'),
    json_build_object('n', g), jsonb_build_object('tags', jsonb_build_array('a', g))
  FROM generate_series(1, 200) g;
CREATE TABLE people (id serial PRIMARY KEY, name text NOT NULL, born date, score numeric(8,3));
INSERT INTO people (name, born, score) SELECT 'person ' || g, date '2000-01-01' + g, g / 7.0
  FROM generate_series(1, 300) g;
CREATE TABLE events (at timestamptz, what text);
INSERT INTO events SELECT timestamptz '2024-01-01 00:00+00' + g * interval '1 hour', 'event ' || g
  FROM generate_series(1, 100) g;
CREATE TABLE docs (id int PRIMARY KEY, body oid);
INSERT INTO docs VALUES (1, lo_from_bytea(0, 'first large object')),
                        (2, lo_from_bytea(0, decode(repeat('ab', 5000), 'hex')));
CREATE VIEW adults AS SELECT name FROM people WHERE born < date '2000-06-01';
"""


def table_contents(srv: PgServer, db: str) -> dict[str, str]:
    """Every table's rows (in a fixed order) and every large object."""
    tables = srv.psql(
        "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
        db,
    ).split()
    out = {t: srv.psql(f"SELECT * FROM {t} AS r ORDER BY r::text", db) for t in tables}
    out["large objects"] = srv.psql(
        "SELECT oid, md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY 1", db
    )
    return out


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
