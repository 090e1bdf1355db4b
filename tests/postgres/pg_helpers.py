"""Data and checks shared by the postgres tests (a uniquely named module: every
test folder has its own conftest)."""

from __future__ import annotations

from dbservers import PG_BACKUP_PASSWORD as BACKUP_PASSWORD
from dbservers import PG_BACKUP_ROLE as BACKUP_ROLE
from dbservers import PG_HBA as HBA
from dbservers import PgServer

__all__ = ["BACKUP_PASSWORD", "BACKUP_ROLE", "HBA", "SAMPLE", "table_contents"]

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
