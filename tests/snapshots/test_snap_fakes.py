"""The lvm and zfs providers through fake ``findmnt``, ``lvs``,
``lvcreate``, ``lvremove`` and ``zfs`` executables first on PATH (this
machine has neither device-mapper nor ZFS). The fakes print the real tools'
formats and record every call, so the tests check the exact commands."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest
from snap_helpers import history_config

from inkind.store.xattrs import ACL_ALIAS_FILTER
from inkind.storeroot import init_store

FAKES = Path(__file__).parent / "fakes"
LVM_MOUNT = ("/dev/mapper/vg0-back--up", "ext4")  # dm doubles the dash of "back-up"


@pytest.fixture
def storage(tmp_path: Path, monkeypatch):
    """A directory standing for a mounted volume or dataset, with the store
    (made by ``init``) inside it, and the fakes' state file."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    init_store(mnt / "backup")
    src = tmp_path / "src"
    src.mkdir()
    (src / "hello.txt").write_text("hello\n")
    state = tmp_path / "fake-storage.json"
    monkeypatch.setenv("FAKE_STORAGE", str(state))
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")

    def setup(provider: str, mount: tuple[str, str], **extra) -> Path:
        """``mount``: what findmnt says holds the store (source, fstype)."""
        source, fstype = mount
        data = {"mounts": [{"source": source, "fstype": fstype, "target": str(mnt)}], "lvs": [], "calls": []}
        data.update(extra)
        state.write_text(json.dumps(data))
        return history_config(
            tmp_path / "inkind.toml",
            mnt / "backup",
            {"src": {"type": "files", "path": src}},
            provider,
            keep_last=2,
            keep_daily=0,
            keep_weekly=0,
            keep_monthly=0,
            min_free="10%",
        )

    setup.state = lambda: json.loads(state.read_text())  # type: ignore[attr-defined]
    setup.mnt = mnt  # type: ignore[attr-defined]
    setup.src = src  # type: ignore[attr-defined]
    return setup


def lvm_volumes(data_percent: str = "20.00", thin: bool = True) -> list[dict]:
    base = {"vg_name": "vg0", "lv_tags": "", "origin": "", "data_percent": "", "lv_size": "10737418240"}
    return [
        {
            **base,
            "lv_name": "pool",
            "pool_lv": "",
            "lv_path": "",
            "lv_dm_path": "/dev/mapper/vg0-pool",
            "data_percent": data_percent,
        },
        {
            **base,
            "lv_name": "back-up",
            "pool_lv": "pool" if thin else "",
            "lv_path": "/dev/vg0/back-up",
            "lv_dm_path": "/dev/mapper/vg0-back--up",
            "data_percent": "12.00",
        },
    ]


def test_lvm_thin_snapshot_named_tagged_and_mounted_for_restore(storage, inkind_cli):
    cfg = storage("lvm", LVM_MOUNT, lvs=lvm_volumes())
    r = inkind_cli("-c", cfg, "backup", "--json")
    assert r.returncode == 0, r.stderr
    sid = r.json()["history"]["snapshot"]
    (create,) = [c for c in storage.state()["calls"] if c[0] == "lvcreate"]
    assert create == [
        "lvcreate",
        "-s",
        "-pr",
        "--addtag",
        "inkind_history",
        "-n",
        f"inkind-history-{sid}",
        "vg0/back-up",
    ]
    listed = inkind_cli("-c", cfg, "snapshots", "list", "--json").json()
    assert [(s["id"], s["handle"], s["path"]) for s in listed["snapshots"]] == [
        (sid, f"vg0/inkind-history-{sid}", None)
    ]
    out = inkind_cli("-c", cfg, "restore", "src", "--snapshot", sid, "--to", "/srv/restored").stdout
    assert out.splitlines()[:3] == [
        f"lvchange --activate y --ignoreactivationskip vg0/inkind-history-{sid}",
        f"mkdir -p /mnt/inkind-{sid}",
        f"mount -o ro,noload /dev/vg0/inkind-history-{sid} /mnt/inkind-{sid}",
    ]
    # The snapshot cannot be looked into before it is mounted: the rsync
    # line keeps the XFS alias filter rather than guess its filesystem.
    rsync = shlex.split(out.splitlines()[3])
    assert f"/mnt/inkind-{sid}/backup/src/" in rsync and ACL_ALIAS_FILTER in rsync


def test_lvm_prune_measures_the_pool_and_keeps_the_newest(storage, inkind_cli):
    cfg = storage("lvm", ("/dev/mapper/vg0-back--up", "xfs"), lvs=lvm_volumes(data_percent="95.00"))
    for _ in range(3):
        r = inkind_cli("-c", cfg, "backup", "--json")
        assert r.returncode == 0, r.stderr
    # The pool stays 95% full whatever is deleted: min_free prunes down to
    # the newest snapshot and no further.
    snaps = [v["lv_name"] for v in storage.state()["lvs"] if v["lv_name"].startswith("inkind-history-")]
    assert snaps == [f"inkind-history-{r.json()['history']['snapshot']}"]
    removes = [c for c in storage.state()["calls"] if c[0] == "lvremove"]
    assert len(removes) == 2 and all(c[1] == "-y" for c in removes)


def test_lvm_refuses_a_classic_volume(storage, inkind_cli):
    cfg = storage("lvm", LVM_MOUNT, lvs=lvm_volumes(thin=False))
    r = inkind_cli("-c", cfg, "backup", "--json")
    assert r.returncode == 2
    assert "vg0/back-up is not a thin volume" in r.json()["history"]["error"]
    assert (storage.mnt / "backup" / "src" / "hello.txt").read_text() == "hello\n"


def test_lvm_lvcreate_failure_is_one_line_and_keeps_the_data(storage, inkind_cli):
    cfg = storage("lvm", LVM_MOUNT, lvs=lvm_volumes(), fail=["lvcreate"])
    r = inkind_cli("-c", cfg, "backup", "--json")
    assert r.returncode == 2 and r.json()["sources"][0]["outcome"] == "ok"
    assert r.json()["history"]["error"] == (
        "snapshots: snapshot vg0/back-up: lvcreate exited 5: lvcreate: simulated failure (device busy)"
    )
    assert (storage.mnt / "backup" / "src" / "hello.txt").read_text() == "hello\n"


def zfs_dataset(mnt: Path) -> dict:
    return {"name": "tank/backup", "mountpoint": str(mnt), "used": 1000, "avail": 9000, "snapshot_used": 4096}


def test_zfs_snapshots_browse_under_dot_zfs(storage, inkind_cli, tmp_path):
    cfg = storage("zfs", ("tank/backup", "zfs"), dataset=zfs_dataset(storage.mnt))
    ids = []
    for text in ("one\n", "two\n", "three\n"):
        (storage.src / "hello.txt").write_text(text)
        r = inkind_cli("-c", cfg, "backup", "--json")
        assert r.returncode == 0, r.stderr
        ids.append(r.json()["history"]["snapshot"])
    calls = storage.state()["calls"]
    assert ["zfs", "snapshot", f"tank/backup@inkind-{ids[0]}"] in calls
    assert ["zfs", "destroy", f"tank/backup@inkind-{ids[0]}"] in calls  # keep_last = 2
    listed = inkind_cli("-c", cfg, "snapshots", "list", "--json").json()["snapshots"]
    assert [s["id"] for s in listed] == ids[1:]
    assert listed[0]["exclusive_bytes"] == 4096 and listed[0]["sources"] == {"src": "ok"}
    dest = tmp_path / "restored"
    r = inkind_cli("-c", cfg, "restore", "src", "--snapshot", ids[1], "--to", dest, "--run")
    assert r.returncode == 0, r.stderr
    assert f"mnt/.zfs/snapshot/inkind-{ids[1]}/backup/src/" in r.stdout
    assert (dest / "hello.txt").read_text() == "two\n"


def test_zfs_on_another_filesystem_is_one_clear_line(storage, inkind_cli):
    cfg = storage("zfs", ("/dev/sda1", "ext4"), dataset=zfs_dataset(storage.mnt))
    r = inkind_cli("-c", cfg, "backup", "--json")
    assert r.returncode == 2
    assert r.json()["history"]["error"].endswith("is on ext4, not a ZFS dataset")
