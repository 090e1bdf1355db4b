"""A failing database, a server that is down, a wrong password: one clear
line, exit status 2, the other databases still dumped, old dumps intact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from pg_helpers import BACKUP_PASSWORD, BACKUP_ROLE, SAMPLE


def snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("inkind: ERROR:")]


def test_failing_databases_leave_their_dumps_and_the_others_go_on(
    pg, make_db, pg_source, inkind_run, inkind_cli
):
    good, closed, dropped = make_db(SAMPLE), make_db(SAMPLE), make_db(SAMPLE)
    s = pg_source([good, closed, dropped])
    assert inkind_run(s.config, seed=1).exit_status == 0
    kept = {db: snapshot(s.data / db) for db in (closed, dropped)}
    pg.psql(f"ALTER DATABASE {closed} ALLOW_CONNECTIONS false")
    pg.psql(f"DROP DATABASE {dropped}")
    pg.psql("INSERT INTO events VALUES (now(), 'new')", good)
    try:
        r = inkind_cli("-c", s.config, "backup")
        assert r.returncode == 2, r.stderr
        (line,) = error_lines(r.stderr)
        assert f"database {closed}: " in line and "not currently accepting connections" in line
        assert f"database {dropped}: " in line and "does not exist" in line
        assert "their previous dumps are kept" in line
        for db in (closed, dropped):
            assert snapshot(s.data / db) == kept[db]
        state = inkind_run(s.config, "verify")
        assert state.exit_status == 0  # every stored file whole
        assert b"new" in b"".join(snapshot(s.data / good).values())  # the good one was dumped
    finally:
        pg.psql(f"ALTER DATABASE {closed} ALLOW_CONNECTIONS true")


def test_database_dropped_mid_run(pg, make_db, pg_source, inkind_run):
    """A database that disappears after the list was taken: pg_dump of the
    first database waits on a table lock while the second is dropped."""
    first, second = make_db(SAMPLE), make_db(SAMPLE)
    s = pg_source([first, second])
    assert inkind_run(s.config, seed=1).exit_status == 0
    kept = snapshot(s.data / second)
    locker = subprocess.Popen(
        ["psql", "-X", "-q", "-d", pg.dsn(dbname=first)], stdin=subprocess.PIPE, text=True
    )
    assert locker.stdin is not None
    locker.stdin.write("BEGIN; LOCK TABLE people IN ACCESS EXCLUSIVE MODE;\n")
    locker.stdin.flush()
    backup = subprocess.Popen(
        # verify-after: a database is dropped while this backup runs
        [sys.executable, "-m", "inkind", "-c", str(s.config), "backup", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while pg.psql("SELECT count(*) FROM pg_locks WHERE NOT granted").strip() == "0":
            assert backup.poll() is None and time.monotonic() < deadline, "pg_dump never waited on the lock"
            time.sleep(0.05)
        pg.psql(f"DROP DATABASE {second} WITH (FORCE)")
    finally:
        locker.stdin.write("COMMIT;\n")
        locker.stdin.close()
        locker.wait()
        out, err = backup.communicate(timeout=120)
    assert backup.returncode == 2, err
    (msg,) = json.loads(out)["sources"][0]["messages"]
    assert f"database {second}: " in msg and "does not exist" in msg and f"database {first}" not in msg
    assert snapshot(s.data / second) == kept


def test_full_pass_removes_dumps_of_dropped_databases(pg, make_db, pg_source, inkind_run):
    a, b = make_db(SAMPLE), make_db()
    s = pg_source(exclude_databases=["postgres"])  # every database
    r = inkind_run(s.config, seed=1)
    assert r.exit_status == 0, r.as_dict()
    assert {a, b, "globals.sql"} <= set(os.listdir(s.data))
    assert "postgres" not in os.listdir(s.data)
    pg.psql(f"DROP DATABASE {b}")
    assert inkind_run(s.config, seed=2).exit_status == 0
    assert b in os.listdir(s.data)  # an incremental run deletes nothing
    r = inkind_run(s.config, seed=3, full=True)
    assert r.exit_status == 0
    assert b not in os.listdir(s.data) and a in os.listdir(s.data)
    assert r.results[0].stats.objects_deleted == 1


def test_server_down(pg, inkind_config, inkind_store, inkind_cli, tmp_path):
    cfg = inkind_config({"pg": {"type": "postgres", "dsn": f"host={tmp_path} user=postgres"}})
    r = inkind_cli("-c", cfg, "backup")
    assert r.returncode == 2
    (line,) = error_lines(r.stderr)
    assert "connection to server on socket" in line and "failed" in line
    assert not (inkind_store / "pg").exists() or os.listdir(inkind_store / "pg") == []


def test_password_from_passfile_and_wrong_password(
    pg, make_db, inkind_config, inkind_store, inkind_cli, tmp_path
):
    db = make_db(SAMPLE)
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"*:*:*:{BACKUP_ROLE}:{BACKUP_PASSWORD}\n")
    passfile.chmod(0o600)
    table = {"type": "postgres", "dsn": pg.dsn(user=BACKUP_ROLE), "databases": [db], "passfile": passfile}
    cfg = inkind_config({"pg": table})
    r = inkind_cli("-c", cfg, "-v", "backup")
    assert r.returncode == 0, r.stderr
    assert (inkind_store / "pg" / db / "toc.dat").exists()

    kept = snapshot(inkind_store / "pg")
    passfile.write_text(f"*:*:*:{BACKUP_ROLE}:wrong\n")
    r = inkind_cli("-c", cfg, "-v", "backup")
    assert r.returncode == 2
    (line,) = error_lines(r.stderr)
    assert f'password authentication failed for user "{BACKUP_ROLE}"' in line
    assert snapshot(inkind_store / "pg") == kept
    for path in inkind_store.rglob("*"):  # not in the dumps, not in the state
        if path.is_file():
            assert BACKUP_PASSWORD.encode() not in path.read_bytes(), path
    assert BACKUP_PASSWORD not in r.stderr + r.stdout


def test_password_in_dsn_is_refused(inkind_config, inkind_cli):
    cfg = inkind_config({"pg": {"type": "postgres", "dsn": "host=/run/postgresql password=x"}})
    r = inkind_cli("-c", cfg, "backup")
    assert r.returncode == 2
    assert "sources.pg.dsn: must not contain a password" in r.stderr
    cfg = inkind_config({"pg": {"type": "postgres", "dsn": "postgresql://u:pw@localhost/db"}})
    assert "must not contain a password" in inkind_cli("-c", cfg, "backup").stderr
