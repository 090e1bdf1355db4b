"""Scrub: a stored dump file that no longer matches its user.inkind.xxh3 is
corruption, named, exit status 2; the next backup repairs it."""

from __future__ import annotations

import shutil

from pg_helpers import SAMPLE

from inkind.testing import flip_byte


def test_scrub_finds_a_corrupt_table_file(pg, make_db, pg_source, inkind_run, inkind_cli):
    db = make_db(SAMPLE)
    s = pg_source([db])
    assert inkind_run(s.config, seed=1).exit_status == 0
    victim = sorted(p for p in (s.data / db).iterdir() if p.name[0].isdigit())[0]
    flip_byte(victim, 3)

    r = inkind_cli("-c", s.config, "scrub", "--fraction", "1")
    assert r.returncode == 2
    assert f"corruption: pg/{db}/{victim.name}: content does not match user.inkind.xxh3" in r.stderr

    # A backup that scrubs reports it too, and its fresh dump repairs the file.
    r = inkind_run(s.config, "backup", seed=2, scrub_fraction=1.0)
    assert r.exit_status == 2
    assert r.results[0].stats.objects_corrupt == 1
    assert f"pg/{db}/{victim.name}" in r.results[0].messages[-1]
    assert inkind_run(s.config, "verify").exit_status == 0
    r = inkind_run(s.config, "scrub", fraction=1.0)
    assert r.exit_status == 0
    assert r.results[0].stats.objects_scrubbed == len(list(s.data.rglob("*.*")))


def test_deleted_dump_files_are_found_and_named(pg, make_db, pg_source, inkind_run, inkind_cli):
    """A file gone from a directory dump (its user.inkind.entries says what
    it held) and a whole dump gone (the state says what was stored)."""
    db, other = make_db(SAMPLE), make_db(SAMPLE)
    s = pg_source([db, other])
    assert inkind_run(s.config, seed=1).exit_status == 0
    victim = sorted(p for p in (s.data / db).iterdir() if p.name[0].isdigit())[0]
    victim.unlink()
    shutil.rmtree(s.data / other)
    v = inkind_cli("-c", s.config, "verify")
    assert v.returncode == 2
    assert f"pg/{db}: 1 entry missing" in v.stdout
    assert f"pg/{other}: missing" in v.stdout
    r = inkind_cli("-c", s.config, "scrub", "--fraction", "1")
    assert r.returncode == 2
    assert f"pg/{db}" in r.stderr and f"pg/{other}" in r.stderr
    # The next backup dumps both again.
    assert inkind_run(s.config, seed=2).exit_status == 0
    assert inkind_run(s.config, "verify").exit_status == 0
