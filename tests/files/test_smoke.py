import os

from inkind.testing import tree_diff


def test_backup_restore_roundtrip(tmp_path, inkind_config, inkind_run, inkind_store, inkind_cli):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f.txt").write_text("hello")
    os.symlink("d/f.txt", src / "link")
    cfg = inkind_config({"home": {"type": "files", "path": src}})
    report = inkind_run(cfg, "backup")
    assert report.exit_status == 0
    dest = tmp_path / "restore"
    r = inkind_cli("-c", cfg, "restore", "home", "--to", dest, "--run")
    assert r.returncode == 0, r.stderr
    assert tree_diff(src, dest) == []
