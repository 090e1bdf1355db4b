"""Scrub: a stored copy that fails its checksum or PRAGMA integrity_check is
corruption, named, exit status 2; a copy whose database still exists is then
rebuilt from it."""

from __future__ import annotations

import os

from sqlite_helpers import dump, make_db, query

from inkind import XAttrs
from inkind.hashing import hash_fd
from inkind.testing import flip_byte


def test_scrub_finds_a_flipped_byte_and_names_the_copy(setup, inkind_run, inkind_cli):
    s = setup("*.db")
    a, b = make_db(s.src / "a.db"), make_db(s.src / "b.db")
    inkind_run(s.config)
    flip_byte(s.data / "a.db", 5000)
    assert inkind_cli("-c", s.config, "verify").returncode == 2
    r = inkind_cli("-c", s.config, "scrub", "--fraction", "1", "--json")
    assert r.returncode == 2
    assert "corruption: app/a.db: content does not match user.inkind.xxh3" in r.stderr
    assert "app/b.db" not in r.stderr
    stats = r.json()["sources"][0]["stats"]
    assert (stats["objects_scrubbed"], stats["objects_repaired"]) == (2, 1)
    # Rebuilt from the database: whole again.
    assert inkind_cli("-c", s.config, "verify").returncode == 0
    assert dump(s.data / "a.db") == dump(a) and dump(s.data / "b.db") == dump(b)


def test_scrub_runs_integrity_check_on_the_stored_copy(setup, inkind_run, inkind_cli):
    """A copy that matches its checksum but is no sound database (damaged
    before it was hashed) is found by PRAGMA integrity_check, which opens it
    without making any -wal/-shm file in the store."""
    s = setup("app.db")
    make_db(s.src / "app.db", rows=2000, wal=True)
    inkind_run(s.config)
    stored = s.data / "app.db"
    fd = os.open(stored, os.O_RDWR)
    try:
        os.pwrite(fd, b"\x07" * 3000, 4096 + 100)  # inside the second page
        XAttrs(fd)["xxh3"] = hash_fd(fd)[0]
    finally:
        os.close(fd)
    r = inkind_cli("-c", s.config, "scrub", "--fraction", "1")
    assert r.returncode == 2
    assert "corruption: app/app.db: PRAGMA integrity_check:" in r.stderr
    assert sorted(p.name for p in s.data.iterdir()) == ["app.db"]
    assert query(stored, "PRAGMA integrity_check") == [("ok",)]


def test_backup_scrubs_its_sample_and_fails_on_corruption(setup, inkind_run):
    s = setup("app.db")
    make_db(s.src / "app.db")
    inkind_run(s.config)
    flip_byte(s.data / "app.db", 3000)
    report = inkind_run(s.config, scrub_fraction=1.0)
    (r,) = report.results
    assert report.exit_status == 2 and r.outcome == "failed"
    assert r.stats.objects_scrubbed == 1
    assert any("app/app.db" in m and "user.inkind.xxh3" in m for m in r.messages)
    assert inkind_run(s.config, "verify").exit_status == 0


def test_scrub_checks_a_copy_whose_database_is_gone(setup, inkind_run):
    s = setup("*.db")
    make_db(s.src / "a.db")
    gone = make_db(s.src / "gone.db")
    inkind_run(s.config)
    gone.unlink()
    flip_byte(s.data / "gone.db", 3000)
    report = inkind_run(s.config, "scrub", fraction=1.0)
    assert report.exit_status == 2
    assert "corruption: app/gone.db" in report.results[0].messages[0]
