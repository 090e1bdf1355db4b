"""A WAL database that nobody has open is backed up without anything made
beside it: a read-only connection would create its -wal and -shm (and
could not remove them), a write to what is backed up, and one that fails
where the directory cannot be written (a read-only snapshot mount). A
-wal left without its -shm (a crash) is read with its transactions; a
database opened and closed during each copy is one line, the stored copy
kept."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlite_helpers import make_db, query

import inkind
from inkind.remote import sqlitecopy

COUNT = "SELECT count(*) FROM item"


def beside(db: Path) -> list[str]:
    return sorted(os.listdir(db.parent))


@contextmanager
def unwritable(directory: Path) -> Iterator[None]:
    """Nobody may create a file in ``directory``, root included: as root it
    is bind-mounted read-only on itself (a read-only snapshot mount), else
    its mode is 0555."""
    root = os.geteuid() == 0
    if root:
        subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(directory)], check=True)
    else:
        directory.chmod(0o555)
    try:
        yield
    finally:
        if root:
            subprocess.run(["umount", str(directory)], check=True)
        else:
            directory.chmod(0o755)


def test_a_wal_database_nobody_has_open_gets_nothing_beside_it(setup, inkind_run):
    s = setup("app.db")
    db = make_db(s.src / "app.db", rows=300, wal=True)
    assert beside(db) == ["app.db"] and db.read_bytes()[18:20] == b"\x02\x02"
    report = inkind_run(s.config, seed=1)
    assert report.exit_status == 0, report.as_dict()
    assert beside(db) == ["app.db"]
    assert query(s.data / "app.db", COUNT) == [(300,)]


def test_a_wal_database_in_a_directory_nobody_can_write_is_backed_up(setup, inkind_run):
    s = setup("app.db")
    make_db(s.src / "app.db", rows=120, wal=True)
    with unwritable(s.src):
        report = inkind_run(s.config, seed=1)
    assert report.exit_status == 0, report.as_dict()
    assert query(s.data / "app.db", COUNT) == [(120,)]


def test_a_stale_shm_alone_is_not_read_and_no_wal_is_made(setup, inkind_run):
    s = setup("app.db")
    db = make_db(s.src / "app.db", rows=80, wal=True)
    (s.src / "app.db-shm").write_bytes(bytes(32768))  # left by a crash, nobody has it open
    report = inkind_run(s.config, seed=1)
    assert report.exit_status == 0, report.as_dict()
    assert beside(db) == ["app.db", "app.db-shm"] and (s.src / "app.db-shm").read_bytes() == bytes(32768)
    assert query(s.data / "app.db", COUNT) == [(80,)]


def wal_without_shm(src: Path) -> Path:
    """``app.db`` and its -wal as a crash leaves them: the last 50 rows in
    the -wal only, no -shm."""
    live = make_db(src.parent / "live" / "app.db", rows=250, wal=True)
    con = sqlite3.connect(live)
    try:
        con.execute("PRAGMA wal_autocheckpoint=0")
        with con:
            con.executemany("INSERT INTO item(name) VALUES (?)", [(f"late {i}",) for i in range(50)])
        shutil.copyfile(live, src / "app.db")
        shutil.copyfile(f"{live}-wal", src / "app.db-wal")
    finally:
        con.close()
    return src / "app.db"


def test_a_wal_left_without_its_shm_is_read_with_its_transactions(setup, inkind_run):
    s = setup("app.db")
    db = wal_without_shm(s.src)
    before = {p: (s.src / p).read_bytes() for p in beside(db)}
    report = inkind_run(s.config, seed=1)
    assert report.exit_status == 0, report.as_dict()
    assert query(s.data / "app.db", COUNT) == [(300,)]
    assert {p: (s.src / p).read_bytes() for p in beside(db)} == before  # nothing made, nothing replayed


def test_a_database_that_changes_during_each_copy_is_one_line_and_the_copy_kept(
    setup, inkind_run, monkeypatch
):
    s = setup("app.db")
    db = make_db(s.src / "app.db", rows=100, wal=True)
    assert inkind_run(s.config, seed=1).exit_status == 0
    kept = (s.data / "app.db").read_bytes()
    seen = iter(range(100))
    monkeypatch.setattr(
        sqlitecopy, "_identities", lambda path: ((next(seen),), None, False)
    )  # another each look
    report = inkind_run(s.config, full=True, seed=2)
    assert report.exit_status == 2
    assert report.results[0].messages == [
        f"{db}: changed during each of 3 copies (opened and closed again each time)"
        " (its stored copy is left as it was)"
    ]
    assert (s.data / "app.db").read_bytes() == kept and beside(db) == ["app.db"]


def test_a_database_open_elsewhere_is_read_through_its_own_shm(tmp_path):
    db = make_db(tmp_path / "app.db", rows=10, wal=True)
    con = sqlite3.connect(db)  # the application, running
    try:
        con.execute("INSERT INTO item(name) VALUES ('open')")
        con.commit()
        assert beside(db) == ["app.db", "app.db-shm", "app.db-wal"]
        inkind.copy_sqlite_database(str(db), str(tmp_path / "copy.db"), 5.0)
    finally:
        con.close()
    assert query(tmp_path / "copy.db", COUNT) == [(11,)]


def test_not_a_database_is_sqlite_error_and_a_lock_held_too_long_is_ebusy(tmp_path):
    (tmp_path / "text").write_bytes(b"not a database at all, " * 100)
    with pytest.raises(sqlite3.DatabaseError):
        inkind.copy_sqlite_database(str(tmp_path / "text"), str(tmp_path / "c1.db"), 1.0)
    db = make_db(tmp_path / "app.db", rows=10)
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(OSError) as e:
            inkind.copy_sqlite_database(str(db), str(tmp_path / "c2.db"), 0.2)
    finally:
        holder.close()
    assert e.value.errno == errno.EBUSY and "locked by a writer for more than 0.2 s" in str(e.value)
