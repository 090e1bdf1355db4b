"""The tree changes under the walk: an entry changes type between lstat
and open; a directory of 100,000 entries (20,000 without --soak)."""

import json
import os
import shutil

from harness import inkind

from inkind.engines.tree.copier import Copier
from inkind.engines.tree.walker import Walker
from inkind.testing import render_config, tree_diff


def setup_tree(tmp_path, inkind_store):
    src = tmp_path / "src"
    (src / "dir").mkdir(parents=True)
    (src / "dir" / "inside").write_text("in")
    (src / "file").write_text("old content")
    cfg = tmp_path / "c.toml"
    cfg.write_text(render_config(inkind_store, {"h": {"type": "files", "path": src}}))
    return src, cfg


def test_file_turning_into_a_directory_mid_walk(
    tmp_path, inkind_store, inkind_run, monkeypatch, no_read_ahead
):
    src, cfg = setup_tree(tmp_path, inkind_store)
    inkind_run(cfg)
    (src / "file").write_text("new, longer content")
    real = Copier.copy

    def copy(self, e):
        if e.name == "file":  # lstat saw a file; now it is a directory
            os.unlink(e.name, dir_fd=e.src)
            os.mkdir(e.name, dir_fd=e.src)
        return real(self, e)

    monkeypatch.setattr(Copier, "copy", copy)
    report = inkind_run(cfg)
    assert report.exit_status == 1
    assert any("file: replaced during the backup" in m for m in report.results[0].messages)
    assert (inkind_store / "h" / "file").read_text() == "old content"
    monkeypatch.undo()
    assert inkind_run(cfg).exit_status == 0
    assert tree_diff(src, inkind_store / "h") == []


def test_symlink_swapped_in_for_a_directory_mid_walk(tmp_path, inkind_store, inkind_run, monkeypatch):
    src, cfg = setup_tree(tmp_path, inkind_store)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key").write_text("must not be read")
    real = Walker.directory

    def directory(self, e, bounds):
        if e.name == "dir":  # lstat saw a directory; now it is a symlink out
            shutil.rmtree(src / "dir")
            os.symlink(secret, src / "dir")
        return real(self, e, bounds)

    monkeypatch.setattr(Walker, "directory", directory)
    report = inkind_run(cfg)
    assert report.exit_status == 1
    assert any("dir: changed type or vanished" in m for m in report.results[0].messages)
    assert not (inkind_store / "h" / "dir" / "key").exists()
    monkeypatch.undo()
    assert inkind_run(cfg).exit_status == 0
    assert os.path.islink(inkind_store / "h" / "dir")
    assert tree_diff(src, inkind_store / "h") == []


def test_a_directory_of_many_entries(tmp_path, inkind_store, request):
    """100,000 entries with --soak, 20,000 in the normal suite: far more
    than a walk window (128) or a listing page holds either way."""
    entries = 100_000 if request.config.getoption("--soak") else 20_000
    src = tmp_path / "src"
    big = src / "big"
    big.mkdir(parents=True)
    fd = os.open(big, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(entries):
            os.close(os.open(f"e{i:06}", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)
    cfg = tmp_path / "c.toml"
    cfg.write_text(render_config(inkind_store, {"h": {"type": "files", "path": src}}))
    r = inkind("-c", cfg, "backup", "--json")
    assert r.returncode == 0, r.stderr
    assert len(os.listdir(inkind_store / "h" / "big")) == entries
    r = inkind("-c", cfg, "backup", "--json")
    assert r.returncode == 0
    stats = json.loads(r.stdout)["sources"][0]["stats"]
    # 1 directory and the files; the source root itself is not counted
    assert (stats["objects_unchanged"], stats["bytes_written"], stats["mtimes_set"]) == (entries + 1, 0, 0)
