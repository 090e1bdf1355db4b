"""A glob of databases: names, restore of all, the full-pass sweep, and
bad input that fails one database while the others are stored."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from sqlite_helpers import dump, execute, make_db, query

from inkind import XAttrs


def test_glob_stores_each_database_by_its_path_below_the_fixed_prefix(
    setup, inkind_run, inkind_cli, tmp_path
):
    s = setup("*/app.db")
    x, y = make_db(s.src / "x" / "app.db"), make_db(s.src / "y" / "app.db", rows=30)
    report = inkind_run(s.config)
    assert report.exit_status == 0, report.as_dict()
    assert report.results[0].stats.objects_changed == 2
    assert dump(s.data / "x" / "app.db") == dump(x)
    assert dump(s.data / "y" / "app.db") == dump(y)
    dest = tmp_path / "restored"
    r = inkind_cli("-c", s.config, "restore", "app", "--to", dest, "--run")
    assert r.returncode == 0, r.stderr
    assert dump(dest / "x" / "app.db") == dump(x) and dump(dest / "y" / "app.db") == dump(y)
    one = tmp_path / "one.db"
    assert inkind_cli("-c", s.config, "restore", "app", "y/app.db", "--to", one, "--run").returncode == 0
    assert dump(one) == dump(y)


def test_a_glob_skips_the_side_files_of_a_live_wal_database(setup, inkind_run):
    s = setup("*")
    db = make_db(s.src / "live.db", wal=True)
    keep_open = sqlite3.connect(db)  # its -wal and -shm stay while it is open
    try:
        keep_open.execute("INSERT INTO audit(what) VALUES ('in the wal')")
        keep_open.commit()
        assert Path(f"{db}-wal").exists() and Path(f"{db}-shm").exists()
        report = inkind_run(s.config)
    finally:
        keep_open.close()
    assert report.exit_status == 0, report.as_dict()
    assert sorted(p.name for p in s.data.iterdir()) == ["live.db"]
    assert query(s.data / "live.db", "SELECT what FROM audit WHERE what = 'in the wal'") == [("in the wal",)]


def test_full_pass_removes_copies_of_databases_that_are_gone(setup, inkind_run):
    s = setup("*/app.db")
    make_db(s.src / "x" / "app.db")
    make_db(s.src / "y" / "app.db")
    inkind_run(s.config)
    (s.src / "x" / "app.db").unlink()
    incremental = inkind_run(s.config).results[0]
    assert incremental.outcome == "ok" and (s.data / "x" / "app.db").exists()
    full = inkind_run(s.config, full=True).results[0]
    assert full.outcome == "ok" and full.stats.objects_deleted == 1
    assert sorted(p.name for p in s.data.iterdir()) == ["y"]


def test_a_glob_that_matches_nothing_fails_and_removes_nothing(setup, inkind_run):
    s = setup("*.db")
    make_db(s.src / "a.db")
    inkind_run(s.config)
    (s.src / "a.db").unlink()
    (r,) = inkind_run(s.config, full=True).results
    assert r.outcome == "failed" and r.messages == [f"source path {s.src / '*.db'}: no database file matches"]
    assert (s.data / "a.db").is_file()


def test_not_a_database_fails_that_one_and_keeps_its_copy(setup, inkind_run, inkind_cli):
    s = setup("*.db")
    good = make_db(s.src / "good.db")
    bad = make_db(s.src / "bad.db")
    inkind_run(s.config)
    before = (s.data / "bad.db").read_bytes(), XAttrs(s.data / "bad.db").text("xxh3")
    bad.write_bytes(b"this is not a database\n" * 400)
    execute(good, "INSERT INTO audit(what) VALUES ('new')")
    r = inkind_cli("-c", s.config, "backup", "--json")
    assert r.returncode == 2
    errors = [line for line in r.stderr.splitlines() if "ERROR" in line]
    assert errors == [
        f"inkind: ERROR: app: {bad}: file is not a database (its stored copy is left as it was)"
    ]
    stats = r.json()["sources"][0]["stats"]
    assert (stats["objects_changed"], stats["errors"]) == (1, 1)
    assert dump(s.data / "good.db") == dump(good)
    assert ((s.data / "bad.db").read_bytes(), XAttrs(s.data / "bad.db").text("xxh3")) == before


def test_a_directory_as_path_fails_with_one_line(setup, inkind_run):
    s = setup("dir.db")
    (s.src / "dir.db").mkdir()
    (r,) = inkind_run(s.config).results
    assert r.messages == [f"{s.src / 'dir.db'}: not a regular file (its stored copy is left as it was)"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_database_fails_with_one_line(setup, inkind_run):
    s = setup("app.db")
    db = make_db(s.src / "app.db")
    db.chmod(0)
    (r,) = inkind_run(s.config).results
    assert r.messages == [f"{db}: Permission denied (its stored copy is left as it was)"]
