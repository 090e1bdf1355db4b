"""What `snapshots list` and `restore --snapshot` tell an operator: sizes
that are true (or "-"), candidates of an ambiguous id newest first, and a
path a snapshot does not hold named before any command runs."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from loopfs import sh
from snap_helpers import history_config

from inkind.testing import needs_root

KiB = 1 << 10


def listed(inkind_cli, cfg: Path) -> list[dict]:
    r = inkind_cli("-c", cfg, "snapshots", "list", "--json")
    assert r.returncode == 0, r.stderr
    return r.json()["snapshots"]


def hardlink_history(tmp_path: Path, store: Path, inkind_cli) -> tuple[Path, Path]:
    src = tmp_path / "home"
    (src / "docs").mkdir(parents=True)
    (src / "docs" / "letter.txt").write_text("dear sir\n")
    cfg = history_config(
        tmp_path / "inkind.toml", store, {"home": {"type": "files", "path": src}}, "hardlink"
    )
    return src, cfg


def test_hardlink_sizes_count_what_only_that_snapshot_holds(inkind_cli, inkind_store, tmp_path):
    """A file with two names in the source keeps two links in each copy:
    once the store has moved on, the old inode is only the first
    snapshot's, and deleting that snapshot frees it."""
    src, cfg = hardlink_history(tmp_path, inkind_store, inkind_cli)
    (src / "big.bin").write_bytes(os.urandom(256 * KiB))
    os.link(src / "big.bin", src / "docs" / "same.bin")
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    with open(src / "big.bin", "r+b") as f:  # both names see the change
        f.write(os.urandom(256 * KiB))
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    first, second = listed(inkind_cli, cfg)
    old = Path(first["path"]) / "home" / "big.bin"
    assert old.stat().st_nlink == 2 and old.stat().st_ino == (old.parent / "docs" / "same.bin").stat().st_ino
    assert first["exclusive_bytes"] >= 256 * KiB, first
    # The second holds what the store holds, apart from its own directories.
    assert second["exclusive_bytes"] < 256 * KiB, second
    text = inkind_cli("-c", cfg, "snapshots", "list").stdout
    assert re.search(rf"^{first['id']} +\d+\.\d KiB ", text, re.M), text


@pytest.mark.root
@needs_root
def test_btrfs_sizes_come_from_quota_groups_or_are_unknown(mounted, tmp_path, inkind_cli):
    """Small files live inside btrfs's metadata, which `btrfs filesystem du`
    does not count: without quotas the size is unknown ("-"), with them it
    is what btrfs says deleting the snapshot frees, never a made-up 0."""
    fs = mounted("btrfs")
    store = fs / "store"
    sh("btrfs", "subvolume", "create", store)
    src, cfg = hardlink_history(tmp_path, store, inkind_cli)
    cfg.write_text(cfg.read_text().replace('snapshots = "hardlink"', 'snapshots = "btrfs"'))
    assert inkind_cli("-c", cfg, "init").returncode == 0
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    (src / "docs" / "letter.txt").write_text("dear madam\n")
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    assert [s["exclusive_bytes"] for s in listed(inkind_cli, cfg)] == [None, None]
    text = inkind_cli("-c", cfg, "snapshots", "list").stdout
    assert all(re.search(r"Z +- +home=ok", line) for line in text.splitlines()[1:]), text
    sh("btrfs", "quota", "enable", fs)
    sh("btrfs", "quota", "rescan", "-w", fs)
    sizes = [s["exclusive_bytes"] for s in listed(inkind_cli, cfg)]
    assert all(isinstance(n, int) and n > 0 for n in sizes), sizes


def test_ambiguous_snapshot_names_candidates_newest_first(inkind_cli, inkind_store, tmp_path):
    _, cfg = hardlink_history(tmp_path, inkind_store, inkind_cli)
    for _ in range(3):
        assert inkind_cli("-c", cfg, "backup").returncode == 0
    ids = [s["id"] for s in listed(inkind_cli, cfg)]
    differ = next(i for i, chars in enumerate(zip(*ids, strict=True)) if len(set(chars)) > 1)
    prefix = ids[0][:differ]
    r = inkind_cli("-c", cfg, "restore", "home", "--snapshot", prefix, "--to", tmp_path / "out")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == (
        f"inkind: error: restore: --snapshot {prefix}: 3 snapshots match, newest first: "
        f"{', '.join(reversed(ids))}; give more of the id"
    )
    none = inkind_cli("-c", cfg, "restore", "home", "--snapshot", "1999", "--to", tmp_path / "out")
    assert none.returncode == 2
    assert f"no snapshot matches (newest first: {', '.join(reversed(ids))})" in none.stderr


@pytest.mark.parametrize("where", ["store", "snapshot"])
def test_restoring_a_path_not_stored_says_so_before_any_command(inkind_cli, inkind_store, tmp_path, where):
    src, cfg = hardlink_history(tmp_path, inkind_store, inkind_cli)
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    (snap,) = listed(inkind_cli, cfg)
    (src / "docs" / "later.txt").write_text("added after the snapshot\n")
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    dest = tmp_path / "out"
    extra = ["--snapshot", snap["id"]] if where == "snapshot" else []
    missing = "docs/later.txt" if where == "snapshot" else "docs/never.txt"
    r = inkind_cli("-c", cfg, "restore", "home", missing, "--to", dest, "--run", *extra)
    in_what = f"snapshot {snap['id']}" if where == "snapshot" else "the store"
    assert r.returncode == 2 and r.stdout == "", r.stdout
    assert (
        r.stderr
        == f"inkind: error: restore: 'docs/later.txt' is not in {in_what} (source 'home')\n".replace(
            "docs/later.txt", missing
        )
    )
    assert not dest.exists()
    ok = inkind_cli("-c", cfg, "restore", "home", "docs/letter.txt", "--to", dest, "--run", *extra)
    assert ok.returncode == 0, ok.stderr
    assert (dest / "docs" / "letter.txt").read_text() == "dear sir\n"
