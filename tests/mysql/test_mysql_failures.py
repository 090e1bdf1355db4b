"""A failing database, a server that is down, a wrong password, a corrupt
stored dump: one clear line, exit status 2, the other databases still
dumped, old dumps intact; a full pass removes dumps of dropped databases."""

from __future__ import annotations

import os

from my_helpers import BACKUP_PASSWORD, BACKUP_USER, SAMPLE

from inkind.testing import flip_byte


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("inkind: ERROR:")]


def test_failing_databases_leave_their_dumps_and_the_others_go_on(
    maria, make_db, my_source, inkind_run, inkind_cli
):
    good, denied, dropped = make_db(SAMPLE), make_db(SAMPLE), make_db(SAMPLE)
    s = my_source([good, denied, dropped], user=BACKUP_USER, password=BACKUP_PASSWORD)
    first = inkind_run(s.config, seed=1)
    assert first.exit_status == 0, first.as_dict()
    kept = {db: (s.data / f"{db}.sql").read_bytes() for db in (denied, dropped)}
    who = f"'{BACKUP_USER}'@'localhost'"
    maria.sql(f"REVOKE SELECT ON *.* FROM {who}; GRANT SELECT ON `{good}`.* TO {who}")
    maria.sql(f"DROP DATABASE {dropped}")
    maria.sql("INSERT INTO log (what) VALUES ('fresh row')", good)
    try:
        r = inkind_cli("-c", s.config, "backup")
        assert r.returncode == 2, r.stderr
        (line,) = error_lines(r.stderr)
        assert f"database {denied}: " in line and "SELECT command denied" in line
        assert f"database {dropped}: " in line and "Unknown database" in line
        assert "their previous dumps are kept" in line
        for db in (denied, dropped):
            assert (s.data / f"{db}.sql").read_bytes() == kept[db]
        assert b"fresh row" in (s.data / f"{good}.sql").read_bytes()
        assert inkind_run(s.config, "verify").exit_status == 0
        assert BACKUP_PASSWORD not in r.stderr + r.stdout
    finally:
        maria.sql(f"GRANT SELECT ON *.* TO '{BACKUP_USER}'@'localhost'")


def test_full_pass_removes_dumps_of_dropped_databases(maria, make_db, my_source, inkind_run):
    a, b = make_db(SAMPLE), make_db()
    s = my_source(exclude_databases=["mysql"])
    assert inkind_run(s.config, seed=1).exit_status == 0
    maria.sql(f"DROP DATABASE {b}")
    assert inkind_run(s.config, seed=2).exit_status == 0
    assert f"{b}.sql" in os.listdir(s.data)  # an incremental run deletes nothing
    r = inkind_run(s.config, seed=3, full=True)
    assert r.exit_status == 0
    assert f"{b}.sql" not in os.listdir(s.data) and f"{a}.sql" in os.listdir(s.data)
    assert r.results[0].stats.objects_deleted == 1


def test_server_down(inkind_config, inkind_store, inkind_cli, tmp_path):
    cnf = tmp_path / "down.cnf"
    cnf.write_text(f"[client]\nsocket={tmp_path}/nothing.sock\nuser=root\n")
    r = inkind_cli("-c", inkind_config({"my": {"type": "mysql", "defaults_file": cnf}}), "backup")
    assert r.returncode == 2
    (line,) = error_lines(r.stderr)
    assert "Can't connect to local server through socket" in line


def test_wrong_password(make_db, my_source, inkind_cli):
    make_db()
    s = my_source(user=BACKUP_USER, password="wrong")
    r = inkind_cli("-c", s.config, "backup")
    assert r.returncode == 2
    (line,) = error_lines(r.stderr)
    assert f"Access denied for user '{BACKUP_USER}'@'localhost'" in line


def test_scrub_finds_a_corrupt_dump(make_db, my_source, inkind_run, inkind_cli):
    db = make_db(SAMPLE)
    s = my_source([db])
    assert inkind_run(s.config, seed=1).exit_status == 0
    flip_byte(s.data / f"{db}.sql", 100)
    r = inkind_cli("-c", s.config, "scrub", "--fraction", "1")
    assert r.returncode == 2
    assert f"corruption: my/{db}.sql: content does not match user.inkind.xxh3" in r.stderr
    r = inkind_run(s.config, "backup", seed=2, scrub_fraction=1.0)  # reports it, and the dump repairs it
    assert r.exit_status == 2 and r.results[0].stats.objects_corrupt == 1
    assert inkind_run(s.config, "scrub", fraction=1.0).exit_status == 0
