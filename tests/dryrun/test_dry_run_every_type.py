"""backup --dry-run on a source of every built-in type: it exits 0 on a
store with nothing yet and after a backup with changes made, reports the
counts of the backup that follows it, and leaves every path, stat field,
xattr and byte of the store as it was."""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
from pathlib import Path

import pytest
from lvm_helpers import BLOCK, SIZE, random_bytes

from inkind.testing import needs_root

DB = "inkind_dryrun"


def listing(root: Path) -> dict[str, tuple]:
    """Everything a write to the store could change (atime aside: reads
    move it): each path's stat, xattrs and content."""
    out = {}
    paths = [root]
    for dirpath, dirnames, filenames in os.walk(root):
        paths += [Path(dirpath, n) for n in dirnames + filenames]
    for p in paths:
        st = os.lstat(p)
        xattrs = {k: os.getxattr(p, k, follow_symlinks=False) for k in os.listxattr(p, follow_symlinks=False)}
        if p.is_symlink():
            content = os.readlink(p)
        elif p.is_file():
            content = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            content = None
        fields = (st.st_mode, st.st_ino, st.st_nlink, st.st_uid, st.st_gid, st.st_size)
        times = (st.st_mtime_ns, st.st_ctime_ns, st.st_blocks)
        out[str(p.relative_to(root))] = (*fields, *times, xattrs, content)
    return out


def counts(report: dict) -> dict[str, dict]:
    """Each source's stats, the time taken aside."""
    return {
        s["name"]: {k: v for k, v in s["stats"].items() if k != "duration_seconds"} for s in report["sources"]
    }


@pytest.fixture
def every_type(tmp_path, inkind_config, pg, maria, fake_lvm):
    """A config with a source of every built-in type, and ``change()``,
    which changes each of them a little."""
    files = tmp_path / "tree"
    (files / "dir" / "sub").mkdir(parents=True)
    (files / "empty").mkdir()
    for name, text in {"keep": "k", "edit": "e", "gone": "g", "dir/sub/file": "f" * 5000}.items():
        (files / name).write_text(text)
    (files / "link").symlink_to("keep")
    os.setxattr(files / "keep", "user.note", b"kept")
    with open(files / "sparse", "wb") as f:
        f.write(b"head")
        f.truncate(1 << 20)

    disk = tmp_path / "disk.raw"
    with open(disk, "wb") as f:
        f.write(random.Random(1).randbytes(3 << 20))
        f.truncate(8 << 20)  # the rest is a hole

    app = tmp_path / "app.db"
    with sqlite3.connect(app) as db:
        db.execute("CREATE TABLE t (x TEXT)")
        db.executemany("INSERT INTO t VALUES (?)", [(str(i) * 20,) for i in range(500)])
    db.close()

    pg.psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    pg.psql(f"CREATE DATABASE {DB}")
    pg.psql("CREATE TABLE t (x text); INSERT INTO t SELECT repeat('p', 50) FROM generate_series(1, 300)", DB)
    maria.sql(f"DROP DATABASE IF EXISTS {DB}; CREATE DATABASE {DB}; CREATE TABLE {DB}.t (x TEXT);")
    maria.sql(f"INSERT INTO {DB}.t VALUES ('m'), ('n');")

    fake_lvm.pool("vg0", "pool")
    fake_lvm.thin("vg0", "pool", "data", SIZE)
    fake_lvm.write("vg0", "data", 0, random_bytes(SIZE // 2, 1))
    fake_lvm.linear("vg0", "root", SIZE)
    fake_lvm.write("vg0", "root", 0, random_bytes(SIZE, 7))

    config = inkind_config(
        {
            "files": {"type": "files", "path": files},
            "disk": {"type": "image", "path": disk, "block_size": "64k"},
            "app": {"type": "sqlite", "path": app},
            "pg": {"type": "postgres", "dsn": pg.dsn(), "databases": [DB]},
            "pgplain": {"type": "postgres", "dsn": pg.dsn(), "databases": [DB], "format": "plain"},
            "my": {
                "type": "mysql",
                "defaults_file": maria.defaults_file(tmp_path / "root.cnf"),
                "databases": [DB],
            },
            "thin": {"type": "lvm", "volume": "vg0/data", "block_size": BLOCK},
            "classic": {"type": "lvm", "volume": "vg0/root", "block_size": BLOCK, "snapshot_size": "2G"},
        }
    )

    def change() -> None:
        (files / "edit").write_text("edited")
        (files / "gone").unlink()
        (files / "new" / "deeper").mkdir(parents=True)
        (files / "new" / "deeper" / "file").write_text("n" * 10000)
        os.chmod(files / "dir" / "sub" / "file", 0o640)
        os.setxattr(files / "keep", "user.note", b"changed")
        with open(disk, "r+b") as f:
            f.seek(1 << 20)
            f.write(b"\xff" * 70000)
            f.seek(6 << 20)
            f.write(b"tail")
        with sqlite3.connect(app) as db:
            db.execute("INSERT INTO t VALUES ('added')")
        db.close()
        pg.psql("INSERT INTO t VALUES ('more'); CREATE TABLE u (y int)", DB)
        maria.sql(f"INSERT INTO {DB}.t VALUES ('o');")
        fake_lvm.write("vg0", "data", BLOCK * 3, b"thin change")
        fake_lvm.write("vg0", "root", BLOCK * 5, b"classic change")

    yield config, change
    pg.psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    maria.sql(f"DROP DATABASE IF EXISTS {DB};")


def dry_then_real(inkind_cli, config: Path, store: Path, *flags: str) -> None:
    """A dry run changes nothing in the store and counts what the backup
    with the same flags then does."""
    before = listing(store)
    dry = inkind_cli("-c", config, "backup", "--dry-run", "--json", "--seed", "7", *flags)
    assert dry.returncode == 0, dry.stderr
    assert listing(store) == before
    assert dry.json()["dry_run"] is True
    assert "dry run" in dry.stderr
    real = inkind_cli("-c", config, "backup", "--json", "--seed", "7", *flags)
    assert real.returncode == 0, real.stderr
    would, did = counts(dry.json()), counts(real.json())
    differ = {
        (name, k): (v, did[name][k]) for name, c in would.items() for k, v in c.items() if did[name][k] != v
    }
    assert not differ, f"(source, counter): (dry run, backup): {differ}"


@needs_root
def test_dry_run_counts_what_the_backup_does_and_writes_nothing(every_type, inkind_store, inkind_cli):
    config, change = every_type
    dry_then_real(inkind_cli, config, inkind_store)  # nothing stored yet
    change()
    dry_then_real(inkind_cli, config, inkind_store)
    dry_then_real(inkind_cli, config, inkind_store, "--full")  # a full pass: deletions too


def snapshot_ids(inkind_cli, config: Path) -> list[str]:
    r = inkind_cli("-c", config, "snapshots", "list", "--json", "--no-sizes")
    assert r.returncode == 0, r.stderr
    return [row["id"] for row in r.json()["snapshots"]]


def test_dry_run_over_hardlink_history_and_leftovers_writes_nothing(tmp_path, inkind_config, inkind_cli):
    """With a hard-link history (stored files share inodes with a snapshot,
    so the backup copies before it changes one) and temps a killed run
    left, the dry run leaves the store as it is (the snapshot's files are
    the store's inodes), takes no snapshot, and counts what the backup does."""
    tree = tmp_path / "tree"
    (tree / "d").mkdir(parents=True)
    (tree / "d" / "f").write_text("one")
    (tree / "g").write_text("two")
    disk = tmp_path / "disk.raw"
    disk.write_bytes(random.Random(2).randbytes(1 << 20))
    config = inkind_config(
        {
            "files": {"type": "files", "path": tree},
            "disk": {"type": "image", "path": disk, "block_size": "64k"},
        }
    )
    config.write_text(config.read_text().replace('snapshots = "none"', 'snapshots = "hardlink"'))
    store = Path(config.read_text().split('path = "', 1)[1].split('"', 1)[0])
    r = inkind_cli("-c", config, "backup", "--json")
    assert r.returncode == 0, r.stderr
    assert os.stat(store / "disk" / "disk.img").st_nlink > 1  # shared with the snapshot
    (tree / "d" / "f").write_text("changed")
    os.chmod(tree / "g", 0o600)
    with open(disk, "r+b") as f:
        f.write(b"\0" * 70000 + b"x")
    # What a run killed mid-way leaves: temps, and its marker in the state.
    (store / "files" / ".inkind-tmp-0123456789abcdef").write_text("left by a killed run")
    (store / ".inkind" / "manifests" / "disk" / ".inkind-tmp-fedcba9876543210").write_text("left")
    state = store / ".inkind" / "sources" / "files.json"
    data = json.loads(state.read_text())
    state.write_text(json.dumps({**data, "running": {"pid": 1, "start": "", "command": "backup"}}))
    taken = snapshot_ids(inkind_cli, config)
    before = listing(store)
    dry = inkind_cli("-c", config, "backup", "--dry-run", "--json", "--seed", "3")
    assert dry.returncode == 0, dry.stderr
    assert listing(store) == before
    assert snapshot_ids(inkind_cli, config) == taken
    real = inkind_cli("-c", config, "backup", "--json", "--seed", "3")
    assert real.returncode == 0, real.stderr
    assert counts(dry.json()) == counts(real.json())
    assert len(snapshot_ids(inkind_cli, config)) == len(taken) + 1
