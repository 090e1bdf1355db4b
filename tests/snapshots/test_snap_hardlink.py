"""History with hard-link trees (any filesystem: each test runs on the
session's ext4, btrfs and XFS), and what every provider shares: the
backup's snapshot step, list, prune, restore --snapshot, failures."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from snap_helpers import history_config


@pytest.fixture
def home(tmp_path: Path) -> Path:
    src = tmp_path / "home"
    (src / "docs").mkdir(parents=True)
    (src / "docs" / "letter.txt").write_text("dear sir\n")
    (src / "docs" / "doomed.txt").write_text("soon gone\n")
    (src / "notes.txt").write_text("first notes\n")
    (src / "script.sh").write_text("echo hi\n")
    os.utime(src / "notes.txt", ns=(1_600_000_000_000_000_000,) * 2)
    return src


@pytest.fixture
def cfg(tmp_path: Path, inkind_store: Path, home: Path) -> Path:
    return history_config(
        tmp_path / "inkind.toml", inkind_store, {"home": {"type": "files", "path": home}}, "hardlink"
    )


def snapshots(inkind_cli, cfg: Path) -> list[dict]:
    r = inkind_cli("-c", cfg, "snapshots", "list", "--json")
    assert r.returncode == 0, r.stderr
    return r.json()["snapshots"]


def test_each_backup_leaves_a_self_describing_snapshot(inkind_cli, cfg, inkind_store):
    r = inkind_cli("-c", cfg, "backup", "--json")
    assert r.returncode == 0, r.stderr
    history = r.json()["history"]
    assert history["provider"] == "hardlink" and history["error"] is None
    (snap,) = snapshots(inkind_cli, cfg)
    assert snap["id"] == history["snapshot"] and snap["sources"] == {"home": "ok"}
    assert Path(snap["path"]) == inkind_store.with_name("store.snapshots") / snap["id"]  # beside the store
    assert (Path(snap["path"]) / "home" / "docs" / "letter.txt").read_text() == "dear sir\n"
    run = json.loads((Path(snap["path"]) / ".inkind" / "last-run.json").read_text())
    assert run["sources"][0]["stats"]["objects_changed"] >= 4
    # Every file of an unchanged tree is the store's own inode: no copy.
    st = (inkind_store / "home" / "notes.txt").stat()
    assert st.st_nlink == 2 and st.st_ino == (Path(snap["path"]) / "home" / "notes.txt").stat().st_ino


def test_changes_never_reach_older_snapshots(inkind_cli, cfg, home):
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    (home / "docs" / "letter.txt").write_text("dear madam\n")
    (home / "docs" / "doomed.txt").unlink()
    os.utime(home / "notes.txt")  # same content, new mtime
    os.chmod(home / "script.sh", 0o755)  # metadata only
    r = inkind_cli("-c", cfg, "backup", "--json")
    assert r.returncode == 0, r.stderr
    assert r.json()["sources"][0]["stats"]["objects_changed"] >= 1
    old, new = (Path(s["path"]) / "home" for s in snapshots(inkind_cli, cfg))
    assert (old / "docs" / "letter.txt").read_text() == "dear sir\n"
    assert (old / "docs" / "doomed.txt").read_text() == "soon gone\n"
    assert (old / "notes.txt").stat().st_mtime_ns == 1_600_000_000_000_000_000
    assert stat.S_IMODE((old / "script.sh").stat().st_mode) & 0o111 == 0
    assert (new / "docs" / "letter.txt").read_text() == "dear madam\n"
    assert (new / "notes.txt").stat().st_mtime_ns == (home / "notes.txt").stat().st_mtime_ns
    assert stat.S_IMODE((new / "script.sh").stat().st_mode) & 0o100


def test_unchanged_run_copies_nothing(inkind_cli, inkind_run, cfg, inkind_store):
    inkind_run(cfg)
    report = inkind_run(cfg)
    s = report.results[0].stats
    assert (s.bytes_written, s.xattrs_written, s.mtimes_set) == (0, 0, 0)
    assert report.history is not None and report.history.snapshot is not None
    assert (inkind_store / "home" / "notes.txt").stat().st_nlink == 3  # store + two snapshots


def test_image_shared_with_history_is_copied_before_update(tmp_path, inkind_store, inkind_cli, inkind_run):
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"A" * (1 << 20))
    cfg = history_config(
        tmp_path / "img.toml",
        inkind_store,
        {"disk": {"type": "image", "path": disk, "block_size": 65536}},
        "hardlink",
    )
    inkind_run(cfg)
    with open(disk, "r+b") as f:
        f.seek(65536)
        f.write(b"B" * 65536)
    report = inkind_run(cfg)
    assert report.exit_status == 0
    old, new = (Path(s["path"]) / "disk" / "disk.img" for s in snapshots(inkind_cli, cfg))
    assert old.read_bytes() == b"A" * (1 << 20)
    assert new.read_bytes() == disk.read_bytes()


def test_retention_and_prune(inkind_cli, inkind_store, home, tmp_path):
    cfg = history_config(
        tmp_path / "keep2.toml",
        inkind_store,
        {"home": {"type": "files", "path": home}},
        "hardlink",
        keep_last=2,
        keep_daily=0,
        keep_weekly=0,
        keep_monthly=0,
        min_free="0",
    )
    for _ in range(4):
        assert inkind_cli("-c", cfg, "backup").returncode == 0
    assert len(snapshots(inkind_cli, cfg)) == 2
    # A stricter policy: the dry run names, prune deletes, never the newest.
    cfg.write_text(cfg.read_text().replace("keep_last = 2", "keep_last = 0"))
    newest = snapshots(inkind_cli, cfg)[-1]["id"]
    dry = inkind_cli("-c", cfg, "snapshots", "prune", "--dry-run", "--json").json()
    assert dry["dry_run"] and len(dry["pruned"]) == 1 and newest not in dry["pruned"]
    assert len(snapshots(inkind_cli, cfg)) == 2
    assert inkind_cli("-c", cfg, "snapshots", "prune").returncode == 0
    assert [s["id"] for s in snapshots(inkind_cli, cfg)] == [newest]


def test_min_free_prunes_the_oldest_but_never_the_newest(inkind_cli, inkind_store, home, tmp_path):
    cfg = history_config(
        tmp_path / "full.toml",
        inkind_store,
        {"home": {"type": "files", "path": home}},
        "hardlink",
        min_free="100%",
    )
    for _ in range(3):
        r = inkind_cli("-c", cfg, "backup", "--json")
        assert r.returncode == 0, r.stderr
    assert len(r.json()["history"]["pruned"]) == 1
    assert [s["id"] for s in snapshots(inkind_cli, cfg)] == [r.json()["history"]["snapshot"]]


def test_restore_from_a_snapshot_with_rsync(inkind_cli, cfg, home, tmp_path):
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    first = snapshots(inkind_cli, cfg)[0]["id"]
    (home / "docs" / "letter.txt").write_text("ransomware was here\n")
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    dest = tmp_path / "restored"
    r = inkind_cli("-c", cfg, "restore", "home", "--snapshot", first, "--to", dest, "--run")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("rsync ") and f"store.snapshots/{first}/home/" in r.stdout
    assert (dest / "docs" / "letter.txt").read_text() == "dear sir\n"
    latest = inkind_cli("-c", cfg, "restore", "home", "--snapshot", "latest", "--to", dest)
    assert first not in latest.stdout
    bad = inkind_cli("-c", cfg, "restore", "home", "--snapshot", "1999", "--to", dest)
    assert bad.returncode == 2 and "--snapshot 1999: no snapshot match" in bad.stderr


def test_half_made_snapshot_is_never_listed_and_is_cleaned(inkind_cli, cfg, inkind_store):
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    leftover = inkind_store.with_name("store.snapshots") / ".inkind-tmp-20261124T000000Z"
    (leftover / "home").mkdir(parents=True)
    os.chmod(leftover / "home", 0o500)
    assert len(snapshots(inkind_cli, cfg)) == 1
    assert not leftover.exists()


def test_snapshot_failure_keeps_the_data_and_exits_2(inkind_cli, cfg, inkind_store):
    inkind_store.with_name("store.snapshots").write_text("not a directory")
    r = inkind_cli("-c", cfg, "backup", "--json")
    assert r.returncode == 2
    assert r.json()["sources"][0]["outcome"] == "ok"
    assert "snapshots:" in r.json()["history"]["error"]
    errors = [line for line in r.stderr.splitlines() if "ERROR" in line or "error" in line]
    assert len(errors) == 1, r.stderr
    assert (inkind_store / "home" / "docs" / "letter.txt").read_text() == "dear sir\n"
    assert inkind_cli("-c", cfg, "verify").returncode == 0
    status = inkind_cli("-c", cfg, "status", "--json")
    assert status.returncode == 2 and any(p.startswith("history:") for p in status.json()["problems"])


def test_unknown_provider_is_a_config_error_before_any_write(inkind_cli, cfg, inkind_store):
    cfg.write_text(cfg.read_text().replace('snapshots = "hardlink"', 'snapshots = "tape"'))
    r = inkind_cli("-c", cfg, "backup")
    assert r.returncode == 2
    assert "store.snapshots: no snapshot provider 'tape'" in r.stderr and "hardlink" in r.stderr
    assert not (inkind_store / "home").exists()


def test_status_says_how_history_is_kept(inkind_cli, cfg):
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    out = inkind_cli("-c", cfg, "status").stdout
    assert "history: hardlink, 1 snapshot(s), newest 20" in out
    cfg.write_text(cfg.read_text().replace('snapshots = "hardlink"', 'snapshots = "none"'))
    out = inkind_cli("-c", cfg, "status").stdout
    assert "history: NONE" in out


def test_auto_falls_back_to_hardlinks_and_plugins_lists_providers(inkind_cli, cfg, inkind_run):
    from inkind.history.folders import provider_for
    from inkind.plugins import load_plugins

    plugins = load_plugins()
    assert {"btrfs", "reflink", "hardlink", "lvm", "zfs"} <= set(plugins.providers)
    assert plugins.info["snapshots"].snapshot_providers  # via inkind_snapshot_providers
    from inkind import config as config_mod

    store = config_mod.load(str(cfg)).store
    store.snapshots = "auto"
    assert provider_for(store, plugins.providers).name in ("btrfs", "reflink", "hardlink")
