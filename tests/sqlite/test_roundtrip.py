"""Backup, restore with the real ``cp``, and what each later run writes."""

from __future__ import annotations

import os

from sqlite_helpers import backdate, dump, execute, make_db

from inkind import XAttrs


def test_backup_and_restore_with_cp(setup, inkind_cli, tmp_path):
    s = setup("app.db")
    db = make_db(s.src / "app.db", rows=500)
    r = inkind_cli("-c", s.config, "backup")
    assert r.returncode == 0, r.stderr
    stored = s.data / "app.db"
    assert XAttrs(stored).text("source") == str(db)
    dest = tmp_path / "restored.db"
    dest.with_name("restored.db-wal").write_bytes(b"stale wal of another database")
    r = inkind_cli("-c", s.config, "restore", "app", "--to", dest, "--run")
    assert r.returncode == 0, r.stderr
    assert f"cp --sparse=always {stored} {dest}" in r.stdout.splitlines()
    assert not dest.with_name("restored.db-wal").exists()
    assert dump(dest) == dump(db)
    assert "CREATE TRIGGER item_added" in dump(dest)


def test_an_unchanged_database_costs_no_write(setup, inkind_run, assert_second_run_writes_nothing):
    """The database was just written, so the quick check does not trust it:
    the second run copies it again, and the byte-stable copy writes nothing."""
    s = setup("app.db")
    make_db(s.src / "app.db", rows=2000, wal=True)
    second = assert_second_run_writes_nothing(s.config)
    st = second.results[0].stats
    assert st.bytes_read == os.path.getsize(s.data / "app.db") > 0
    assert st.objects_unchanged == 1
    full = inkind_run(s.config, full=True).results[0].stats
    assert (full.bytes_written, full.xattrs_written, full.objects_changed) == (0, 0, 0)


def test_a_changed_database_is_replaced_whole_and_restores(setup, inkind_run, inkind_cli, tmp_path):
    s = setup("app.db")
    db = make_db(s.src / "app.db")
    inkind_run(s.config)
    execute(db, "UPDATE item SET name = 'changed' WHERE id = 3")
    (r,) = inkind_run(s.config).results
    size = os.path.getsize(s.data / "app.db")
    assert (r.stats.objects_changed, r.stats.bytes_written, r.stats.xattrs_written) == (1, size, 2)
    dest = tmp_path / "out.db"
    assert inkind_cli("-c", s.config, "restore", "app", "--to", dest, "--run").returncode == 0
    assert dump(dest) == dump(db)
    assert "'changed'" in dump(dest)


def test_quick_check_skips_a_database_whose_files_did_not_change(setup, inkind_run):
    s = setup("app.db")
    db = make_db(s.src / "app.db")
    backdate(db)
    inkind_run(s.config)
    st = inkind_run(s.config).results[0].stats
    assert (st.objects_unchanged, st.bytes_read, st.bytes_written) == (1, 0, 0)
    execute(db, "DELETE FROM item WHERE id < 50")  # a write sets the mtime to now
    st = inkind_run(s.config).results[0].stats
    assert st.objects_changed == 1 and st.bytes_read > 0
    assert dump(s.data / "app.db") == dump(db)


def test_a_missing_database_fails_with_one_line(setup, inkind_cli):
    s = setup("gone.db")
    r = inkind_cli("-c", s.config, "backup")
    assert r.returncode == 2
    errors = [line for line in r.stderr.splitlines() if "ERROR" in line]
    assert errors == [
        f"inkind: ERROR: app: {s.src / 'gone.db'}: No such file or directory "
        "(its stored copy is left as it was)"
    ]
