"""A database of 64 MiB or more is kept as an image: a small change writes
only the blocks that hold changed pages."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

from inkind_sqlite.storing import BLOCK, LARGE
from sqlite_helpers import MiB, execute, query

from inkind.testing import dirtied_bytes


def make_large_db(path: Path, size: int) -> None:
    con = sqlite3.connect(path)
    try:
        con.execute("CREATE TABLE blob(id INTEGER PRIMARY KEY, label TEXT, data BLOB)")
        with con:
            con.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
                "INSERT INTO blob(label, data) SELECT 'row ' || i, randomblob(16000) FROM n",
                (size // 16384 + 1,),
            )
    finally:
        con.close()


def changed_block_bytes(old: Path, new: Path) -> int:
    """What writing only the changed blocks of ``new`` over ``old`` costs:
    blocks that became zeros are holes, the others are written whole."""
    total = 0
    with open(old, "rb") as a, open(new, "rb") as b:
        while True:
            x, y = a.read(BLOCK), b.read(BLOCK)
            if not y:
                return total
            if x != y and y.count(0) != len(y):
                total += len(y)


def test_a_small_update_writes_only_changed_blocks(setup, inkind_run, tmp_path):
    s = setup("big.db")
    db = s.src / "big.db"
    make_large_db(db, LARGE + 6 * MiB)
    before = dirtied_bytes()
    first = inkind_run(s.config).results[0].stats
    stored = s.data / "big.db"
    size = os.path.getsize(stored)
    manifest = s.store / ".inkind" / "manifests" / "app" / "big.db.manifest"
    assert size >= LARGE and first.bytes_written == size + os.path.getsize(manifest)
    # The checked copy becomes the stored image (adopted), not copied into it.
    assert size <= dirtied_bytes() - before < size * 3 // 2
    before = tmp_path / "before.db"
    shutil.copyfile(stored, before)

    execute(db, "UPDATE blob SET label = 'updated' WHERE id = 2000")
    second = inkind_run(s.config).results[0].stats
    expected = changed_block_bytes(before, stored) + os.path.getsize(manifest)
    assert second.objects_changed == 1
    assert second.bytes_written == expected
    assert 0 < second.bytes_written < size // 50
    assert query(stored, "SELECT label FROM blob WHERE id = 2000") == [("updated",)]
    assert query(stored, "PRAGMA integrity_check") == [("ok",)]
    assert inkind_run(s.config, "verify").exit_status == 0

    third = inkind_run(s.config).results[0].stats
    assert (third.bytes_written, third.xattrs_written, third.objects_changed) == (0, 0, 0)

    # Shrunk below LARGE: stored as a plain file again, its manifest dropped.
    execute(db, "DELETE FROM blob WHERE id > 100")
    execute(db, "VACUUM")
    assert inkind_run(s.config).results[0].stats.objects_changed == 1
    assert os.path.getsize(stored) < LARGE and not manifest.exists()
    assert query(stored, "SELECT count(*) FROM blob") == [(100,)]
    assert inkind_run(s.config, "verify").exit_status == 0
