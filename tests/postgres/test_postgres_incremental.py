"""Directory-format dumps rewrite only the files of tables that changed."""

from __future__ import annotations

import os

from pg_helpers import SAMPLE

from inkind import reflinks_work
from inkind.testing import dirtied_bytes


def inodes(path) -> dict[str, int]:
    return {n: os.stat(path / n).st_ino for n in os.listdir(path)}


def data_file_of(pg, db: str, data, table: str) -> str:
    """The .dat file holding ``table``: the one whose rows mention a value
    only that table has."""
    marker = pg.psql(f"SELECT name FROM {table} ORDER BY id LIMIT 1", db).strip().encode()
    (hit,) = [n for n in os.listdir(data) if n[0].isdigit() and marker in (data / n).read_bytes()]
    return hit


def test_changing_one_table_rewrites_only_its_file(pg, make_db, pg_source, inkind_run):
    db = make_db(SAMPLE)
    other = make_db(SAMPLE)
    s = pg_source([db, other])
    assert inkind_run(s.config, seed=1).exit_status == 0
    before = inodes(s.data / db)
    before_other = inodes(s.data / other)
    pg.psql("UPDATE people SET score = score + 1 WHERE id = 5", db)

    r = inkind_run(s.config, seed=2)
    assert r.exit_status == 0, r.as_dict()
    st = r.results[0].stats
    changed = data_file_of(pg, db, s.data / db, "people")
    assert st.objects_changed == 1
    assert st.bytes_written == (s.data / db / changed).stat().st_size
    # the changed file's xxh3, and the new dump directory's user.inkind.entries
    assert st.xattrs_written == 2
    after = inodes(s.data / db)
    assert sorted(after) == sorted(before)
    assert {n for n in after if after[n] != before[n]} == {changed}
    assert inodes(s.data / other) == before_other


def test_new_table_renumbers_files_without_rewriting_them(pg, make_db, pg_source, inkind_run):
    """A new table shifts pg_dump's numbering of every data file; the stored
    files are reused under their new names (hard links), not rewritten."""
    db = make_db(SAMPLE)
    s = pg_source([db])
    assert inkind_run(s.config, seed=1).exit_status == 0
    before = {(s.data / db / n).read_bytes(): n for n in os.listdir(s.data / db) if n[0].isdigit()}
    pg.psql("CREATE TABLE aardvark (id int, name text); INSERT INTO aardvark VALUES (1, 'aardvark row');", db)

    r = inkind_run(s.config, seed=2)
    assert r.exit_status == 0, r.as_dict()
    st = r.results[0].stats
    new_file = data_file_of(pg, db, s.data / db, "aardvark")
    assert new_file not in before.values()  # the numbering did shift
    toc = (s.data / db / "toc.dat").stat().st_size
    assert st.bytes_written == toc + (s.data / db / new_file).stat().st_size
    assert st.objects_changed == 2  # toc.dat and the new table's file
    after = {(s.data / db / n).read_bytes(): n for n in os.listdir(s.data / db) if n[0].isdigit()}
    assert set(before) <= set(after)
    for path in (s.data / db).iterdir():
        assert path.stat().st_nlink == 1  # no stored file is shared by two names

    third = inkind_run(s.config, seed=3)
    assert third.results[0].stats.bytes_written == 0


def test_parallel_jobs_give_the_same_dump(pg, make_db, pg_source, inkind_run):
    db = make_db(SAMPLE)
    s = pg_source([db])
    assert inkind_run(s.config, seed=1).exit_status == 0
    parallel = pg_source([db], jobs=2)
    r = inkind_run(parallel.config, seed=2, full=True)  # config changed: full pass anyway
    assert r.exit_status == 0, r.as_dict()
    assert r.results[0].stats.bytes_written == 0


def test_a_first_dump_keeps_the_tools_own_files_instead_of_copying_them(pg, make_db, pg_source, inkind_run):
    """pg_dump writes its files into a scratch directory in the store; a
    file with no stored version becomes the stored file (adopted): the
    dump's bytes are written once (by pg_dump, whose writes the kernel adds
    to this process's when it is reaped), not copied again, and still
    count as written."""
    db = make_db(SAMPLE)
    pg.psql(
        "CREATE TABLE filler AS SELECT g AS id, repeat(md5(g::text), 30) AS pad FROM generate_series(1, 4000) g",
        db,
    )
    s = pg_source([db])
    before = dirtied_bytes()
    r = inkind_run(s.config, seed=1)
    assert r.exit_status == 0, r.as_dict()
    dumped = sum(p.stat().st_size for p in (s.data / db).iterdir())
    assert dumped > 3 << 20 and r.results[0].stats.bytes_written >= dumped
    assert dumped <= dirtied_bytes() - before < dumped * 3 // 2
    for path in (s.data / db).iterdir():
        assert path.stat().st_mode & 0o777 == 0o600 and path.stat().st_nlink == 1


def test_a_changed_table_is_written_once_where_no_copy_could_share_its_extents(
    pg, make_db, pg_source, inkind_run, inkind_store
):
    """ext4: the changed file is pg_dump's output, adopted; btrfs and XFS:
    written through UpdateFile, its unchanged start shared with the stored
    version (a snapshot keeps only what changed)."""
    db = make_db(SAMPLE)
    pg.psql(
        "CREATE TABLE filler AS SELECT g AS id, repeat(md5(g::text), 30) AS pad FROM generate_series(1, 4000) g",
        db,
    )
    s = pg_source([db])
    assert inkind_run(s.config, seed=1).exit_status == 0
    pg.psql("UPDATE filler SET pad = 'changed' WHERE id = 3000", db)
    before = dirtied_bytes()
    r = inkind_run(s.config, seed=2)
    assert r.exit_status == 0, r.as_dict()
    dumped = sum(p.stat().st_size for p in (s.data / db).iterdir())
    size = max(p.stat().st_size for p in (s.data / db).iterdir())  # filler's file
    st = r.results[0].stats
    assert (st.objects_changed, st.bytes_written) == (1, size)
    dirtied = dirtied_bytes() - before  # pg_dump's writes (the whole dump) and ours
    if reflinks_work(inkind_store):
        assert dirtied >= dumped + size // 4  # the changed part written by UpdateFile
    else:
        assert dumped <= dirtied < dumped + size // 4
