"""History on a real btrfs (a loop device made by the test, so that it can
turn quotas on and count every subvolume): read-only subvolume snapshots
that cost only what changed; and reflink copies on the session's XFS and
btrfs (a store that is no subvolume)."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from loopfs import sh
from snap_helpers import history_config, make_sources, new_bytes

from inkind.storeroot import init_store
from inkind.testing import needs_root

pytestmark = [pytest.mark.root, needs_root]
KiB, MiB = 1 << 10, 1 << 20
BLOCK = 64 * KiB


def change_one_percent(tree: Path, disk: Path, rng: random.Random) -> int:
    """Rewrite 2 of the 200 files and 3 of the 256 image blocks; returns
    the bytes changed."""
    changed = 0
    for i in (7, 133):
        f = tree / f"d{i % 10}" / f"f{i}.bin"
        f.write_bytes(rng.randbytes(f.stat().st_size))
        changed += f.stat().st_size
    with open(disk, "r+b") as fh:
        for block in (3, 100, 200):
            fh.seek(block * BLOCK)
            fh.write(rng.randbytes(BLOCK))
            changed += BLOCK
    return changed


def backup(inkind_cli, cfg: Path) -> dict:
    r = inkind_cli("-c", cfg, "backup", "--json")
    assert r.returncode == 0, r.stderr
    return r.json()


def test_btrfs_snapshots_cost_only_what_changed(mounted, tmp_path, inkind_cli):
    fs = mounted("btrfs")  # its own: the test turns quotas on
    store = fs / "store"
    sh("btrfs", "subvolume", "create", store)
    init_store(store)
    tree, disk = make_sources(tmp_path, random.Random(6))
    cfg = history_config(
        tmp_path / "inkind.toml",
        store,
        {
            "tree": {"type": "files", "path": tree},
            "disk": {"type": "image", "path": disk, "block_size": BLOCK},
        },
        "auto",  # detects btrfs: the store is a subvolume
    )
    first = backup(inkind_cli, cfg)["history"]
    assert first["provider"] == "btrfs" and first["error"] is None
    second = backup(inkind_cli, cfg)["history"]
    snaps = fs / "store.snapshots"
    s1, s2 = snaps / first["snapshot"], snaps / second["snapshot"]
    with pytest.raises(OSError):  # read-only subvolume
        (s2 / "tree" / "new").write_text("x")
    # An unchanged run: its snapshot holds no data the previous one lacks.
    for name in ("tree", "disk"):
        assert new_bytes(s2 / name, s1 / name) == 0
    bookkeeping = new_bytes(s2 / ".inkind", s1 / ".inkind")
    assert bookkeeping <= 64 * KiB  # the run's state and report files

    changed = change_one_percent(tree, disk, random.Random(7))
    third = backup(inkind_cli, cfg)["history"]
    s3 = snaps / third["snapshot"]
    data = new_bytes(s3 / "tree", s2 / "tree") + new_bytes(s3 / "disk", s2 / "disk")
    assert changed <= data <= 1.1 * changed, (data, changed)

    sh("btrfs", "quota", "enable", fs)  # sizes come from quota groups
    sh("btrfs", "quota", "rescan", "-w", fs)
    listed = json.loads(inkind_cli("-c", cfg, "snapshots", "list", "--json").stdout)
    assert [s["id"] for s in listed["snapshots"]] == [
        first["snapshot"],
        second["snapshot"],
        third["snapshot"],
    ]
    assert all(isinstance(s["exclusive_bytes"], int) for s in listed["snapshots"])
    assert listed["snapshots"][0]["sources"] == {"tree": "ok", "disk": "ok"}
    # Restore the image as it was before the change, with dd from the snapshot.
    out = tmp_path / "restored.img"
    r = inkind_cli("-c", cfg, "restore", "disk", "--snapshot", second["snapshot"], "--to", out, "--run")
    assert r.returncode == 0, r.stderr
    assert f"store.snapshots/{second['snapshot']}/disk/disk.img" in r.stdout
    assert out.read_bytes() == (s2 / "disk" / "disk.img").read_bytes() != disk.read_bytes()


def test_btrfs_prune_deletes_subvolumes(mounted, tmp_path, inkind_cli):
    fs = mounted("btrfs")  # its own: the test counts every subvolume on it
    store = fs / "store"
    sh("btrfs", "subvolume", "create", store)
    init_store(store)
    tree, _disk = make_sources(tmp_path, random.Random(8))
    cfg = history_config(
        tmp_path / "inkind.toml",
        store,
        {"tree": {"type": "files", "path": tree}},
        "btrfs",
        keep_last=1,
        keep_daily=0,
        keep_weekly=0,
        keep_monthly=0,
    )
    for _ in range(3):
        history = backup(inkind_cli, cfg)["history"]
    assert [p.name for p in (fs / "store.snapshots").iterdir()] == [history["snapshot"]]
    assert len(history["pruned"]) == 1
    listing = sh("btrfs", "subvolume", "list", fs)
    assert listing.count("store.snapshots/") == 1


@pytest.mark.parametrize("inkind_store_fs", ["xfs", "btrfs"], indirect=True)  # ext4 has no reflinks
def test_reflink_copies_share_data(inkind_store_fs, inkind_store, tmp_path, inkind_cli):
    # On btrfs the store is a plain directory, so a copy, not a subvolume snapshot.
    tree, disk = make_sources(tmp_path, random.Random(9))
    cfg = history_config(
        tmp_path / "inkind.toml",
        inkind_store,
        {
            "tree": {"type": "files", "path": tree},
            "disk": {"type": "image", "path": disk, "block_size": BLOCK},
        },
        "reflink" if inkind_store_fs == "btrfs" else "auto",
    )
    first = backup(inkind_cli, cfg)["history"]
    assert first["provider"] == "reflink" and first["error"] is None
    changed = change_one_percent(tree, disk, random.Random(10))
    second = backup(inkind_cli, cfg)["history"]
    s1, s2 = (inkind_store.with_name("store.snapshots") / h["snapshot"] for h in (first, second))
    data = new_bytes(s2 / "tree", s1 / "tree") + new_bytes(s2 / "disk", s1 / "disk")
    assert changed <= data <= 1.1 * changed, (data, changed)
    f7 = Path("d7") / "f7.bin"
    assert (s1 / "tree" / f7).read_bytes() != (s2 / "tree" / f7).read_bytes() == (tree / f7).read_bytes()
    assert os.getxattr(s1 / "tree" / f7, "user.inkind.xxh3")  # cp -a keeps inkind's xattrs
