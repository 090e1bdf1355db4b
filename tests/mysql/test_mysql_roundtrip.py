"""Dump two databases with mysqldump, restore them into a fresh server with
the printed mysql commands, and compare every table, routine and event."""

from __future__ import annotations

import os

from my_helpers import SAMPLE, table_contents


def test_restore_into_fresh_server(
    maria, fresh_maria, make_db, my_source, assert_second_run_writes_nothing, inkind_cli, tmp_path
):
    a = make_db(SAMPLE)
    b = make_db(
        "CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'x'), (2, 'y');"
    )
    s = my_source([a, b])

    second = assert_second_run_writes_nothing(s.config)  # byte-stable: 0 bytes written
    assert second.results[0].stats.objects_unchanged == 2
    assert sorted(os.listdir(s.data)) == sorted([f"{a}.sql", f"{b}.sql"])
    first = min(a, b)  # restores go in name order

    target = fresh_maria.defaults_file(tmp_path / "target.cnf")
    r = inkind_cli("-c", s.config, "restore", "my", "--to", target, "--run")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:2] == [
        f"mysql --defaults-file={target} -e 'CREATE DATABASE IF NOT EXISTS `{first}`'",
        f"sh -c 'mysql --defaults-file={target} -- {first} < {s.data / first}.sql'",
    ]
    for db in (a, b):
        assert table_contents(fresh_maria, db) == table_contents(maria, db)


def test_changing_one_database_rewrites_only_its_dump(maria, make_db, my_source, inkind_run):
    a, b = make_db(SAMPLE), make_db(SAMPLE)
    s = my_source([a, b])
    assert inkind_run(s.config, seed=1).exit_status == 0
    untouched = os.stat(s.data / f"{b}.sql").st_ino
    maria.sql("UPDATE orders SET qty = qty + 1 WHERE id = 250", a)
    r = inkind_run(s.config, seed=2)
    assert r.exit_status == 0, r.as_dict()
    st = r.results[0].stats
    assert (st.objects_changed, st.objects_unchanged) == (1, 1)
    assert 0 < st.bytes_written <= (s.data / f"{a}.sql").stat().st_size
    assert os.stat(s.data / f"{b}.sql").st_ino == untouched


def test_default_databases_leave_out_virtual_schemas(make_db, my_source, inkind_run):
    a = make_db()
    s = my_source(exclude_databases=["mysql"])
    assert inkind_run(s.config).exit_status == 0
    names = os.listdir(s.data)
    assert f"{a}.sql" in names and "mysql.sql" not in names
    assert not {"information_schema.sql", "performance_schema.sql", "sys.sql"} & set(names)
