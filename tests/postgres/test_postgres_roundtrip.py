"""Dump two databases, restore them into a fresh cluster with the printed
pg_restore / psql commands, and compare every table and large object."""

from __future__ import annotations

import os

import pytest
from inkind_postgres.toc import creation_time_span
from pg_helpers import SAMPLE, table_contents


@pytest.mark.parametrize("fmt", ["directory", "plain"])
def test_restore_into_fresh_cluster(
    fmt, pg, fresh_pg, make_db, pg_source, assert_second_run_writes_nothing, inkind_cli, inkind_store_fs
):
    role = f"reader_{fmt}_{inkind_store_fs}"  # roles are the cluster's: one per run of the test
    a = make_db(SAMPLE)
    b = make_db(
        "CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'x'), (2, 'y');"
    )
    pg.psql(f"CREATE ROLE {role}; GRANT SELECT ON notes TO {role};", b)
    s = pg_source([a, b], format=fmt)

    second = assert_second_run_writes_nothing(s.config)  # byte-stable dumps, 0 bytes written
    stats = second.results[0].stats
    assert stats.objects_unchanged == stats.objects_seen > 0

    names = sorted(os.listdir(s.data))
    if fmt == "directory":
        assert names == [a, b, "globals.sql"]
        files = sorted(os.listdir(s.data / a))
        # one .dat per table (4), the large objects and their toc, toc.dat
        assert len([f for f in files if f[0].isdigit()]) == 4
        assert "toc.dat" in files and "blobs.toc" in files
        assert len([f for f in files if f.startswith("blob_")]) == 2
    else:
        assert names == [f"{a}.sql", f"{b}.sql", "globals.sql"]
        assert b"\\restrict " in (s.data / f"{a}.sql").read_bytes()  # 15.14+: a fixed per-source key
    assert role.encode() in (s.data / "globals.sql").read_bytes()

    r = inkind_cli("-c", s.config, "restore", "pg", "--to", fresh_pg.dsn(), "--run")
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if line.startswith(("psql -X", "pg_restore"))]
    assert lines[0].startswith("psql ") and "globals.sql" in lines[0]  # globals first
    tool = "pg_restore --create" if fmt == "directory" else "psql"
    assert all(line.startswith(tool) for line in lines[1:]) and len(lines) == 3
    for db in (a, b):
        assert table_contents(fresh_pg, db) == table_contents(pg, db)
    assert fresh_pg.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{role}'") == "1\n"


def test_restore_one_database(pg, make_db, pg_source, inkind_run, inkind_cli):
    a, b = make_db(SAMPLE), make_db()
    s = pg_source([a, b])
    assert inkind_run(s.config).exit_status == 0
    r = inkind_cli("-c", s.config, "restore", "pg", "--database", b, "--to", "host=/run/x")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"pg_restore --create -d host=/run/x {s.data / b}"]
    r = inkind_cli("-c", s.config, "restore", "pg", "nosuchdb", "--to", "host=/run/x")
    assert r.returncode == 2
    assert "database 'nosuchdb' is not stored" in r.stderr


def test_toc_creation_time_is_kept(pg, make_db, pg_source, inkind_run):
    """pg_dump writes the dump's start time into toc.dat; a toc.dat that
    differs in nothing else is kept, so an unchanged database writes 0 bytes."""
    a = make_db(SAMPLE)
    s = pg_source([a])
    assert inkind_run(s.config, seed=1).exit_status == 0
    toc = s.data / a / "toc.dat"
    data = bytearray(toc.read_bytes())
    start, _ = creation_time_span(bytes(data))
    # Make the stored toc look as if it were dumped at another time (and
    # keep its checksum right, so this is an old dump, not corruption).
    data[start + 1] = (data[start + 1] + 30) % 60  # tm_sec
    data[start + 5 + 1] = (data[start + 5 + 1] + 30) % 60  # tm_min
    from inkind import update_file

    update_file(toc, bytes(data))
    old = toc.read_bytes()

    second = inkind_run(s.config, seed=2)
    assert second.exit_status == 0
    assert second.results[0].stats.bytes_written == 0
    assert toc.read_bytes() == old
