"""A source tree that holds the store or its snapshot folder (``path = "/"``
with the store under /srv): both are left out, recognised by identity, so
a bind mount of either is left out too; a source that would read from
inside them is a config error before anything is written."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from files_trees import write

from inkind.testing import needs_root, toml_value, tree_diff

pytestmark = [pytest.mark.root, needs_root]

# What every stored object's metadata says about whether a run wrote it.
WRITE_STATS = ("bytes_written", "xattrs_written", "mtimes_set", "modes_set", "owners_set", "objects_changed")


@contextmanager
def bound(target: Path, at: Path) -> Iterator[Path]:
    """``target`` bind-mounted on a new directory ``at`` (a different path
    string, the same directory)."""
    at.mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(target), str(at)], check=True)
    try:
        yield at
    finally:
        if subprocess.run(["umount", str(at)]).returncode:
            subprocess.run(["umount", "-l", str(at)])


def with_history(config: Path, provider: str) -> Path:
    """Turn on snapshots in a config written by ``inkind_config``."""
    text = config.read_text()
    assert 'snapshots = "none"' in text
    config.write_text(text.replace('snapshots = "none"', f"snapshots = {toml_value(provider)}"))
    return config


def make_tree(src: Path) -> None:
    write(src / "etc" / "hosts", "127.0.0.1 localhost\n")
    write(src / "home" / "alice" / "notes.txt", "remember\n" * 100)
    write(src / "srv" / "www" / "index.html", "<p>hi</p>\n")
    os.symlink("../srv", src / "home" / "srv-link")


def backup(inkind_cli, config: Path) -> tuple[dict, str]:
    r = inkind_cli("-c", config, "backup", "--json")
    assert r.returncode == 0, r.stderr
    return r.json(), r.stderr


def stats_of(report: dict, name: str) -> dict:
    return next(s["stats"] for s in report["sources"] if s["name"] == name)


def wrote(stats: dict) -> dict:
    return {k: stats[k] for k in WRITE_STATS if stats[k]}


@pytest.mark.parametrize("one_file_system", [True, False])
def test_the_store_in_the_source_tree_is_left_out(
    tmp_path, inkind_store, inkind_config, inkind_cli, one_file_system
):
    src = tmp_path / "src"
    make_tree(src)
    cfg = inkind_config({"root": {"type": "files", "path": src, "one_file_system": one_file_system}})
    # The store appears in the tree under another name: only its identity tells.
    with bound(inkind_store, src / "srv" / "backup"):
        first, log = backup(inkind_cli, cfg)
        assert stats_of(first, "root")["objects_kept_out"] == 1
        assert f"root: srv/backup: not entered: it is the store {inkind_store}" in log
        second, _ = backup(inkind_cli, cfg)
        assert stats_of(second, "root")["objects_kept_out"] == 1
        assert wrote(stats_of(second, "root")) == {}
    # The stored tree is the source without the store (its mount point is
    # an empty directory again, which the store does not have).
    assert tree_diff(src, inkind_store / "root") == ["cd+++++++++ srv/backup/"]


def test_the_snapshot_folder_in_the_source_tree_is_left_out(
    tmp_path, inkind_store, inkind_config, inkind_cli
):
    src = tmp_path / "src"
    make_tree(src)
    cfg = with_history(inkind_config({"root": {"type": "files", "path": src}}), "auto")
    first, _ = backup(inkind_cli, cfg)
    assert first["history"]["error"] is None
    listed = json.loads(inkind_cli("-c", cfg, "snapshots", "list", "--json").stdout)
    folder = Path(listed["snapshots"][0]["handle"]).parent
    with bound(folder, src / "var" / "snaps"):
        second, log = backup(inkind_cli, cfg)
        assert stats_of(second, "root")["objects_kept_out"] == 1
        assert f"root: var/snaps: not entered: it is the store's snapshot folder {folder}" in log
        third, _ = backup(inkind_cli, cfg)
        assert wrote(stats_of(third, "root")) == {}
        assert third["history"]["error"] is None
    assert tree_diff(src, inkind_store / "root") == ["cd+++++++++ var/snaps/"]


def fingerprint(*roots: Path) -> list[tuple]:
    """Every entry below ``roots`` with what any write would change (ctime
    moves with every change of content, metadata or xattrs)."""
    out = []
    for root in roots:
        for dirpath, dirs, files in os.walk(root):
            for name in dirs + files:
                st = os.lstat(os.path.join(dirpath, name))
                rel = os.path.relpath(os.path.join(dirpath, name), root)
                out.append(
                    (str(root), rel, st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                )
    return sorted(out)


BAD_SOURCES = {
    # case: (type, path below the store "S", the snapshot folder "F", a symlink "L" or a bind mount "B")
    "image-in-store": ("image", "S/disk/disk.img"),
    "image-through-symlink": ("image", "L/disk/disk.img"),
    "image-through-bind-mount": ("image", "B/disk/disk.img"),
    "image-in-snapshot": ("image", "F/ID/disk/disk.img"),
    "sqlite-in-store": ("sqlite", "S/app/app.db"),
    "sqlite-glob-in-store": ("sqlite", "S/*/*.db"),
    "files-root-in-store": ("files", "S/home"),
    "files-root-is-store": ("files", "S"),
    "files-root-is-snapshot-folder": ("files", "F"),
}


@pytest.mark.parametrize("case", sorted(BAD_SOURCES))
def test_a_source_reading_the_store_is_a_config_error(
    tmp_path, inkind_store, inkind_config, inkind_cli, case
):
    src = tmp_path / "src"
    make_tree(src)
    disk = tmp_path / "disk.raw"
    disk.write_bytes(os.urandom(1 << 20))
    db = sqlite3.connect(tmp_path / "app.db")
    db.executescript("CREATE TABLE t (x); INSERT INTO t VALUES (1), (2);")
    db.close()
    good = {
        "home": {"type": "files", "path": src},
        "disk": {"type": "image", "path": disk},
        "app": {"type": "sqlite", "path": tmp_path / "app.db"},
    }
    cfg = with_history(inkind_config(good), "hardlink")
    backup(inkind_cli, cfg)
    snap = json.loads(inkind_cli("-c", cfg, "snapshots", "list", "--json").stdout)["snapshots"][0]
    folder = Path(snap["handle"]).parent
    kind, where = BAD_SOURCES[case]
    os.symlink(inkind_store, tmp_path / "link")
    places = {"S": inkind_store, "F": folder, "L": tmp_path / "link", "B": tmp_path / "bound"}
    bad = Path(str(places[where[0]]) + where[1:].replace("ID", snap["id"]))
    cfg = with_history(inkind_config({**good, "bad": {"type": kind, "path": bad}}), "hardlink")
    with bound(inkind_store, tmp_path / "bound"):
        before = fingerprint(inkind_store, folder)
        r = inkind_cli("-c", cfg, "backup")
        after = fingerprint(inkind_store, folder)
    assert r.returncode == 2, r.stderr
    what = "the store's snapshot folder" if where[0] == "F" else "the store"
    assert r.stderr.strip().splitlines() == [
        f"inkind: error: config: sources.bad.path: {bad} is in {what} {folder if where[0] == 'F' else inkind_store};"
        " a source must not read the store or its snapshots"
    ]
    assert after == before
    # The store itself still verifies (verify reads no source).
    assert inkind_cli("-c", cfg, "verify").returncode == 0


def test_a_sqlite_glob_over_the_store_leaves_its_copies_alone(
    tmp_path, inkind_store, inkind_config, inkind_cli
):
    dbs = tmp_path / "dbs"
    for name in ("a", "b"):
        (dbs / name).mkdir(parents=True)
        db = sqlite3.connect(dbs / name / "app.db")
        db.executescript(f"CREATE TABLE t (x); INSERT INTO t VALUES ('{name}');")
        db.close()
    cfg = inkind_config({"app": {"type": "sqlite", "path": dbs / "**" / "*.db"}})
    with bound(inkind_store, dbs / "backup"):
        for run in range(2):  # the second run's glob meets the first run's copies
            report, log = backup(inkind_cli, cfg)
            assert stats_of(report, "app")["objects_kept_out"] == 2 * run
        assert f"app: {dbs}/backup/app/a/app.db: left out: it is in the store {inkind_store}" in log
        assert wrote(stats_of(report, "app")) == {}
    stored = sorted(str(p.relative_to(inkind_store / "app")) for p in (inkind_store / "app").rglob("*.db"))
    assert stored == ["a/app.db", "b/app.db"]
