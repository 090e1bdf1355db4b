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
