"""Directory listings for user.inkind.entries are the same on every store
filesystem: btrfs (Linux 6.5 and later) does not show, through a directory
descriptor opened before, the entries created after it was first read."""

from inkind.testing import render_config


def test_new_entries_verify_clean_on_every_store_filesystem(tmp_path, inkind_store, inkind_cli):
    src = tmp_path / "t"
    src.mkdir()
    (src / "a").write_text("a")
    (src / "b").write_text("b")
    cfg = tmp_path / "c.toml"
    cfg.write_text(render_config(inkind_store, {"t": {"type": "files", "path": src}}))
    assert inkind_cli("-c", cfg, "backup", verify_after=False).returncode == 0
    r = inkind_cli("-c", cfg, "verify")
    assert r.returncode == 0, r.stdout + r.stderr
    (src / "sub").mkdir()
    (src / "sub" / "c").write_text("c")
    (src / "d").write_text("d")
    assert inkind_cli("-c", cfg, "backup", verify_after=False).returncode == 0
    r = inkind_cli("-c", cfg, "verify")
    assert r.returncode == 0, r.stdout + r.stderr
    r = inkind_cli("-c", cfg, "scrub", "--fraction", "1", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.json()["sources"][0]["stats"]["objects_repaired"] == 0
