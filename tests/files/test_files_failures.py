"""Vanished, changing and unreadable files; symlinks planted to escape."""

import os
import subprocess
import sys

from files_trees import make_awkward_tree, write

from inkind.engines.tree.copier import Copier
from inkind.testing import render_config, tree_diff


def test_file_vanishing_mid_run_keeps_its_previous_copy(setup, inkind_run, monkeypatch, no_read_ahead):
    write(setup.src / "a", "old a")
    write(setup.src / "b", "b")
    inkind_run(setup.config)
    write(setup.src / "a", "new a, longer")
    real_copy = Copier.copy

    def copy(self, e):
        if e.name == "a":
            os.unlink(e.name, dir_fd=e.src)  # deleted between stat and open
        return real_copy(self, e)

    monkeypatch.setattr(Copier, "copy", copy)
    report = inkind_run(setup.config)
    (r,) = report.results
    assert report.exit_status == 1 and r.outcome == "warnings"
    assert any("a: vanished" in m for m in r.messages)
    assert (setup.data / "a").read_text() == "old a"


def test_file_changing_while_read_keeps_its_previous_copy(setup, inkind_run, monkeypatch, no_read_ahead):
    f = write(setup.src / "grows", b"x" * 100_000)
    inkind_run(setup.config)
    write(f, b"y" * 200_000)
    real = Copier._read_blocks

    def read_blocks(self, fd, st, hasher, buf):
        for i, item in enumerate(real(self, fd, st, hasher, buf)):
            if i == 0:
                with open(f, "ab") as w:
                    w.write(b"appended while inkind reads")
            yield item

    monkeypatch.setattr(Copier, "_read_blocks", read_blocks)
    report = inkind_run(setup.config)
    assert report.exit_status == 1
    assert any("changed while it was read" in m for m in report.results[0].messages)
    assert (setup.data / "grows").read_bytes() == b"x" * 100_000
    assert [n for n in os.listdir(setup.data) if n.startswith(".inkind-tmp")] == []
    monkeypatch.undo()
    assert inkind_run(setup.config).exit_status == 0
    assert tree_diff(setup.src, setup.data) == []


def test_planted_symlink_in_store_is_never_followed(setup, inkind_run, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    # First backup stores "d" as a symlink pointing outside the store.
    os.symlink(outside, setup.src / "d")
    inkind_run(setup.config)
    assert os.readlink(setup.data / "d") == str(outside)
    # Now the source has a real directory "d" with files in it.
    (setup.src / "d").unlink()
    write(setup.src / "d" / "payload", "must land inside the store")
    inkind_run(setup.config)
    assert list(outside.iterdir()) == []
    assert (setup.data / "d").is_dir() and not (setup.data / "d").is_symlink()
    assert tree_diff(setup.src, setup.data) == []


def test_source_symlinks_are_never_followed(setup, inkind_run, tmp_path):
    secret = tmp_path / "secret"
    write(secret / "key", "private")
    os.symlink(secret, setup.src / "escape")
    os.symlink("loop", setup.src / "loop")
    inkind_run(setup.config)
    assert os.path.islink(setup.data / "escape")
    assert not (setup.data / "escape" / "key").exists() or os.path.islink(setup.data / "escape")
    assert os.readlink(setup.data / "loop") == "loop"


def test_missing_source_path_is_one_clear_error(tmp_path, inkind_config, inkind_cli):
    cfg = inkind_config({"home": {"type": "files", "path": tmp_path / "nope"}})
    r = inkind_cli("-c", cfg, "backup")
    assert r.returncode == 2
    assert f"{tmp_path / 'nope'}" in r.stderr


def test_bad_option_names_the_key(tmp_path, inkind_config, inkind_store, inkind_cli):
    cfg = inkind_config({"home": {"type": "files", "path": tmp_path, "excludes": ["x"]}})
    r = inkind_cli("-c", cfg, "backup")
    assert r.returncode == 2
    assert "sources.home: unknown key 'excludes'" in r.stderr
    assert os.listdir(inkind_store / ".inkind" / "sources") == [], "nothing may be written on bad config"
    assert sorted(os.listdir(inkind_store)) == [".inkind"]


def test_unreadable_file_as_non_root_is_a_warning(open_tmp, inkind_store, unprivileged):
    tmp_path = open_tmp
    src, store = tmp_path / "src", inkind_store
    write(src / "ok.txt", "fine")
    write(src / "locked.txt", "secret")
    subprocess.run(["chown", "-R", "65534:65534", src, store], check=True)
    os.chmod(tmp_path, 0o755)
    os.chmod(src / "locked.txt", 0)
    cfg = tmp_path / "c.toml"
    cfg.write_text(render_config(store, {"home": {"type": "files", "path": src}}))
    r = unprivileged.inkind(["-c", cfg, "backup"], tmp_path)
    assert r.returncode == 1, r.stderr
    assert "locked.txt: cannot read" in r.stderr
    assert (store / "home" / "ok.txt").read_text() == "fine"


def test_non_root_store_uses_fake_super_and_restores_with_rsync(open_tmp, inkind_store, unprivileged):
    """As a user, owners, modes and special files go into user.rsync.%stat;
    root restores them for real with the printed rsync command."""
    tmp_path = open_tmp
    src, store = tmp_path / "src", inkind_store
    make_awkward_tree(src)
    (src / "dir" / "nested" / "deep.bin").chmod(0o644)
    subprocess.run(["setfacl", "-b", src / "dir" / "nested" / "deep.bin", src / "dir" / "nested"], check=True)
    subprocess.run(["chown", "-R", "65534:65534", store], check=True)
    os.chmod(tmp_path, 0o755)
    subprocess.run(["chmod", "-R", "a+rX", src], check=True)
    (src / "dir").chmod(0o755)
    os.chmod(src / "plain.txt", 0o644)
    for p in ("trusted.secret",):
        subprocess.run(["setfattr", "-x", p, src / "owned"], check=False)
    cfg = tmp_path / "c.toml"
    cfg.write_text(render_config(store, {"home": {"type": "files", "path": src}}))
    r = unprivileged.inkind(["-c", cfg, "backup"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert os.getxattr(store / "home" / "owned", "user.rsync.%stat") == b"104755 0,0 1234:5678"
    dev_mode = os.lstat(src / "null-dev").st_mode
    assert os.getxattr(store / "home" / "null-dev", "user.rsync.%stat") == b"%o 1,3 0:0" % dev_mode
    again = unprivileged.inkind(["-c", cfg, "backup", "--json"], tmp_path)
    s = __import__("json").loads(again.stdout)["sources"][0]["stats"]
    assert (s["bytes_written"], s["xattrs_written"], s["mtimes_set"], s["modes_set"]) == (0, 0, 0, 0)
    restore = subprocess.run(
        # verify-after: a restore, not a backup
        [sys.executable, "-m", "inkind", "-c", cfg, "restore", "home", "--to", tmp_path / "back", "--run"],
        capture_output=True,
        text=True,
    )
    assert restore.returncode == 0, restore.stderr
    assert "--fake-super" in restore.stdout
    assert tree_diff(src, tmp_path / "back") == []


def test_a_killed_backup_leaves_a_sound_store(tmp_path, setup, inkind_kill_and_check):
    """The same fixture a third-party plugin's tests use."""
    for i in range(2000):
        write(setup.src / f"d{i % 20}" / f"f{i}", os.urandom(3000))
    for delay in (0.3, 0.6, 0.9):
        inkind_kill_and_check(setup.config, delay=delay)
        assert tree_diff(setup.src, setup.data) == []
        write(setup.src / f"later{delay}", "changed")
