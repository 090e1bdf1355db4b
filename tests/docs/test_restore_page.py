"""Every command block of docs/restore.md, run against a store made by a
real backup of each source type, the restored data compared with what was
backed up. The page's example paths are mapped onto the test's own."""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from dbservers import MARIA_BACKUP_PASSWORD, MARIA_BACKUP_USER
from restore_page import Page, blocks

from inkind.testing import needs_root, run_inkind, tree_diff

TESTED = {"config", "store", "files", "files-part", "image", "image-file", "lvm", "postgres", "mysql"}
TESTED |= {"sqlite", "snapshot"}
MiB = 1 << 20


def test_every_block_of_the_page_is_run_here():
    assert set(blocks()) == TESTED


@pytest.fixture
def page(tmp_path, inkind_store) -> Page:
    """The page's store ``/srv/backup``: an empty directory beside the
    fixture's store (on the same filesystem), made a store by the page's
    own steps."""
    store = inkind_store.parent / "srv-backup"
    store.mkdir()
    return Page(tmp_path, {"/srv/backup": str(store)})


@contextmanager
def loop_device(backing: Path, size: int, fill: bytes) -> Iterator[str]:
    backing.write_bytes(fill * size)
    dev = subprocess.run(["losetup", "-f", "--show", backing], capture_output=True, text=True, check=True)
    try:
        yield dev.stdout.strip()
    finally:
        subprocess.run(["losetup", "-d", dev.stdout.strip()], check=True)


def home_tree(home: Path) -> None:
    (home / "alice" / "projects" / "sub").mkdir(parents=True)
    (home / "alice" / "notes.txt").write_text("call the vendor\n")
    (home / "alice" / "projects" / "plan.md").write_text("# plan\n")
    (home / "alice" / "projects" / "sub" / "data.bin").write_bytes(os.urandom(200_000))
    os.link(home / "alice" / "projects" / "plan.md", home / "alice" / "plan-link.md")
    os.symlink("projects/plan.md", home / "alice" / "latest")
    os.setxattr(home / "alice" / "notes.txt", "user.comment", b"important")
    os.chmod(home / "alice" / "notes.txt", 0o640)
    if os.geteuid() == 0:
        os.chown(home / "alice", 1234, 1234)
        os.chown(home / "alice" / "notes.txt", 1234, 1234, follow_symlinks=False)


def files_page(page: Page) -> Path:
    home = page.tmp / "home"
    page.paths["/home"] = str(home)
    home_tree(home)
    page.config("home")
    page.run("store")
    saved = page.tmp / "saved"
    subprocess.run(["rsync", "-aHAXS", "--numeric-ids", f"{home}/", f"{saved}/"], check=True)
    return saved


@needs_root
def test_files_whole_tree(page):
    saved = files_page(page)
    home = Path(page.paths["/home"])
    shutil.rmtree(home)
    assert page.run("files") == "", "the page says the check prints nothing"
    assert tree_diff(saved, home) == []


@needs_root
def test_files_one_directory_and_one_file(page):
    saved = files_page(page)
    home = Path(page.paths["/home"])
    shutil.rmtree(home / "alice" / "projects")
    page.run("files-part")
    assert tree_diff(saved / "alice" / "projects", home / "alice" / "projects") == []
    copy, original = home / "alice" / "notes.txt.restored", saved / "alice" / "notes.txt"
    assert copy.read_bytes() == original.read_bytes()
    assert (copy.stat().st_mode, copy.stat().st_uid) == (original.stat().st_mode, original.stat().st_uid)
    assert not [x for x in os.listxattr(copy) if x.startswith("user.inkind.")]


def disk_bytes() -> bytes:
    """12 MiB with 4 MiB of zeros in the middle, one whole block of dd's
    bs=4M: stored sparse, and skipped by conv=sparse."""
    rng = random.Random(7)
    return rng.randbytes(4 * MiB) + bytes(4 * MiB) + rng.randbytes(4 * MiB)


def image_page(page: Page) -> bytes:
    data = disk_bytes()
    (page.tmp / "sdb.img").write_bytes(data)
    page.paths["/dev/sdb"] = str(page.tmp / "sdb.img")
    page.config("disk")
    page.run("store")
    return data


@needs_root
def test_image_onto_a_used_disk(page):
    data = image_page(page)
    # A used disk: old bytes everywhere, which conv=sparse alone would keep.
    with loop_device(page.tmp / "target", 16 * MiB, b"\xa5") as dev:
        page.paths["/dev/sdX"] = dev
        page.run("image")
        with open(dev, "rb") as f:
            assert f.read(len(data)) == data


def test_image_to_a_file(page):
    data = image_page(page)
    images = page.tmp / "images"
    images.mkdir()
    page.paths["/var/lib/libvirt/images"] = str(images)
    page.run("image-file")
    assert (images / "sdb.img").read_bytes() == data


@needs_root
def test_lvm_volume(page, monkeypatch):
    fakes = Path(__file__).parents[1] / "lvm" / "fakes"
    monkeypatch.syspath_prepend(str(fakes))
    import fakelvm

    monkeypatch.setenv("FAKE_LVM", str(page.tmp / "fake-lvm.json"))
    monkeypatch.setenv(
        "PATH", os.pathsep.join([str(fakes), str(Path(sys.executable).parent), os.environ["PATH"]])
    )
    state = fakelvm.new_state(page.tmp)
    data = disk_bytes()
    volume = Path(fakelvm.new_linear(state, "vg0", "vm-1", len(data)))
    volume.write_bytes(data)
    fakelvm.save(state)
    page.config("vms")
    page.run("store")
    with loop_device(page.tmp / "target", 12 * MiB, b"\0") as dev:  # a new thin volume reads as zeros
        page.paths["/dev/vg0/vm-1-restored"] = dev
        page.run("lvm")
        with open(dev, "rb") as f:
            assert f.read() == data


def test_postgres(page, pg):
    page.paths["host=/run/postgresql"] = f"host={pg.sockdir} port=5432"
    pg.psql("DROP DATABASE IF EXISTS app WITH (FORCE)")
    pg.psql("CREATE DATABASE app")
    try:
        pg.psql(
            "CREATE TABLE orders (id serial PRIMARY KEY, item text, placed timestamptz DEFAULT now());"
            "INSERT INTO orders (item) SELECT 'item ' || i FROM generate_series(1, 500) i;"
            "CREATE VIEW big AS SELECT * FROM orders WHERE id > 400;",
            dbname="app",
        )
        query = "SELECT id, item, placed FROM orders ORDER BY id; SELECT count(*) FROM big; SELECT last_value FROM orders_id_seq"
        before = pg.psql(query, dbname="app")
        page.config("pg")
        page.run("store")
        pg.psql("DROP DATABASE app WITH (FORCE)")
        page.run("postgres")
        assert pg.psql(query, dbname="app") == before
    finally:
        pg.psql("DROP DATABASE IF EXISTS app WITH (FORCE)")


def test_mysql(page, maria):
    backup_cnf = maria.defaults_file(page.tmp / "my.cnf", MARIA_BACKUP_USER, MARIA_BACKUP_PASSWORD)
    target_cnf = maria.defaults_file(page.tmp / "target.cnf")
    page.paths |= {"/etc/inkind/my.cnf": str(backup_cnf), "/root/target.cnf": str(target_cnf)}
    maria.sql("DROP DATABASE IF EXISTS shop; CREATE DATABASE shop")
    try:
        maria.sql(
            "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40), price DECIMAL(8,2));"
            "INSERT INTO items VALUES (1, 'bolt', 0.25), (2, 'nut', 0.10), (3, 'gear ü', 12.50);"
            "CREATE VIEW dear AS SELECT name FROM items WHERE price > 1;",
            db="shop",
        )
        query = "SELECT * FROM items ORDER BY id; SELECT * FROM dear"
        before = maria.sql(query, db="shop")
        page.config("db")
        page.run("store")
        maria.sql("DROP DATABASE shop")
        page.run("mysql")
        assert maria.sql(query, db="shop") == before
    finally:
        maria.sql("DROP DATABASE IF EXISTS shop")


@needs_root
def test_sqlite(page):
    app = page.tmp / "app"
    app.mkdir()
    page.paths["/var/lib/app"] = str(app)
    db = app / "app.db"
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        c.executemany("INSERT INTO notes (body) VALUES (?)", [(f"note {i}",) for i in range(300)])
    c.close()
    rows = sqlite3.connect(db).execute("SELECT * FROM notes ORDER BY id").fetchall()
    page.config("app")
    page.run("store")
    # The loss: the database gone, a WAL of it left behind that holds a
    # commit made after the backup (which SQLite would apply to the copy).
    live = sqlite3.connect(db)
    live.execute("PRAGMA wal_autocheckpoint=0")
    with live:
        live.execute("INSERT INTO notes (body) VALUES ('after the backup')")
    stale = (app / "app.db-wal").read_bytes()
    live.close()
    db.unlink()
    (app / "app.db-wal").write_bytes(stale)
    assert page.run("sqlite").strip() == "ok"
    assert (
        sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute("SELECT * FROM notes ORDER BY id").fetchall()
        == rows
    )
    st = db.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (33, 0o640)  # www-data on Debian


@needs_root
def test_from_a_snapshot(page):
    files_page(page)
    notes = Path(page.paths["/home"]) / "alice" / "notes.txt"
    old = notes.read_text()
    notes.write_text("overwritten by mistake\n")
    env = page.env
    assert run_inkind("backup", env=env).returncode == 0
    listed = run_inkind("snapshots", "list", "--json", env=env)
    first = json.loads(listed.stdout)["snapshots"][0]
    page.paths |= {"/srv/backup.snapshots/20250301T031700Z": first["path"], "20250301T031700Z": first["id"]}
    page.run("snapshot")
    assert notes.read_text() == old
