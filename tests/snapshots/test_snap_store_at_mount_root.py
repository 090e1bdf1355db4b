"""A store that is the root of its own filesystem (what docs/operations.md
suggests: a disk mounted at /srv/backup), with the default snapshot folder:
the folder must be on that filesystem, where every provider can make its
snapshots, and a snapshot must not take in the ones before it. An explicit
``snapshot_dir`` where the provider cannot work is a config error."""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

import pytest
from snap_helpers import history_config, make_sources

from inkind.testing import needs_root, tree_diff

pytestmark = [pytest.mark.root, needs_root]
KiB = 1 << 10
AUTO_PICKS = {"btrfs": "btrfs", "xfs": "reflink", "ext4": "hardlink"}


def fingerprint(root: Path) -> list[tuple]:
    out = []
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            st = os.lstat(os.path.join(dirpath, name))
            out.append((os.path.join(dirpath, name), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return sorted(out)


@pytest.mark.parametrize("fstype", sorted(AUTO_PICKS))
def test_store_at_the_root_of_its_filesystem_keeps_history(mounted, tmp_path, inkind_cli, fstype):
    store = mounted(fstype)
    tree, disk = make_sources(tmp_path, random.Random(4), files=30, dirs=3, size=4 * KiB, disk=2 << 20)
    sources = {"tree": {"type": "files", "path": tree}, "disk": {"type": "image", "path": disk}}
    cfg = history_config(tmp_path / "inkind.toml", store, sources, "auto")
    assert inkind_cli("-c", cfg, "init").returncode == 0
    ids = []
    old = (tree / "d1" / "f1.bin").read_bytes()
    for run in range(2):
        if run:
            (tree / "d1" / "f1.bin").write_bytes(b"changed after the first run")
        r = inkind_cli("-c", cfg, "backup", "--json")
        assert r.returncode == 0, r.stderr
        history = r.json()["history"]
        assert history["provider"] == AUTO_PICKS[fstype] and history["error"] is None, history
        ids.append(history["snapshot"])

    listed = json.loads(inkind_cli("-c", cfg, "snapshots", "list", "--json").stdout)
    assert [s["id"] for s in listed["snapshots"]] == ids
    for s in listed["snapshots"]:
        snap = Path(s["path"])
        assert snap.is_relative_to(store), snap  # on the store's own filesystem
        assert s["sources"] == {"tree": "ok", "disk": "ok"}
        # No snapshot holds the ones before it (btrfs: an empty directory
        # where the folder, a subvolume of its own, is).
        assert not (snap / ".snapshots").exists() or not os.listdir(snap / ".snapshots")

    latest = tmp_path / "latest"
    r = inkind_cli("-c", cfg, "restore", "tree", "--snapshot", "latest", "--to", latest, "--run")
    assert r.returncode == 0, r.stderr
    assert tree_diff(tree, latest) == []
    first = tmp_path / "first"
    r = inkind_cli("-c", cfg, "restore", "tree", "--snapshot", ids[0], "--to", first, "--run")
    assert r.returncode == 0, r.stderr
    assert (first / "d1" / "f1.bin").read_bytes() == old
    image = tmp_path / "disk.img"
    r = inkind_cli("-c", cfg, "restore", "disk", "--snapshot", "latest", "--to", image, "--run")
    assert r.returncode == 0, r.stderr
    assert image.read_bytes() == disk.read_bytes()
    assert inkind_cli("-c", cfg, "verify").returncode == 0


def second_mount(of: Path, at: Path, fstype: str) -> Path:
    """Another mount of the filesystem ``of`` is the root of: for btrfs a
    mount of the same device (one filesystem, two mounts), else a bind."""
    at.mkdir()
    if fstype == "btrfs":
        dev = subprocess.run(["findmnt", "-no", "SOURCE", str(of)], capture_output=True, text=True).stdout
        subprocess.run(["mount", dev.strip(), str(at)], check=True)
    else:
        subprocess.run(["mount", "--bind", str(of), str(at)], check=True)
    return at


@pytest.mark.parametrize(
    "fstype, provider, where, problem",
    [
        ("btrfs", "btrfs", "other-fs", "filesystem"),
        ("xfs", "reflink", "other-fs", "filesystem"),
        ("ext4", "hardlink", "other-fs", "mount"),
        ("ext4", "hardlink", "other-mount", "mount"),
        ("xfs", "reflink", "in-store", "inside"),
        ("btrfs", "btrfs", "other-mount", None),  # one btrfs: snapshots work across its mounts
    ],
)
def test_a_snapshot_dir_the_provider_cannot_use_is_a_config_error(
    mounted, tmp_path, inkind_cli, fstype, provider, where, problem
):
    fs = mounted(fstype)
    store = fs / "store"
    store.mkdir()
    tree, _disk = make_sources(tmp_path, random.Random(4), files=30, dirs=3, size=4 * KiB, disk=2 << 20)
    outside = {
        "other-fs": lambda: tmp_path / "elsewhere" / "snaps",
        "other-mount": lambda: second_mount(fs, tmp_path / "again", fstype) / "snaps",
        "in-store": lambda: store / "tree" / "snaps",
    }
    snapshot_dir = outside[where]()
    sources = {"tree": {"type": "files", "path": tree}}
    cfg = history_config(tmp_path / "inkind.toml", store, sources, provider, snapshot_dir)
    assert inkind_cli("-c", cfg, "init").returncode == 0
    before = fingerprint(fs)
    try:
        r = inkind_cli("-c", cfg, "backup")
        if problem is None:
            assert r.returncode == 0, r.stderr
            assert len(os.listdir(snapshot_dir)) == 1
            return
        assert r.returncode == 2, r.stderr
        said = {
            "filesystem": f"is not on the store's filesystem ({store}): {provider} snapshots can only be made there",
            "mount": f"is not on the store's mount ({store}): hardlink snapshots link to the store's files,"
            " and links cannot cross mounts",
            "inside": "lies inside the store; the one place there that sources and snapshots leave alone"
            f" is {store}/.snapshots",
        }
        assert r.stderr.strip().splitlines() == [
            f"inkind: error: config: store.snapshot_dir: {snapshot_dir} {said[problem]}"
        ]
        assert fingerprint(fs) == before
        assert not snapshot_dir.exists()
    finally:
        if where == "other-mount":
            subprocess.run(["umount", str(tmp_path / "again")], check=True)
