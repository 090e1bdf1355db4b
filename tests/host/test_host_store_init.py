"""A store exists only once `inkind init` made it, on the filesystem it
recorded: an unmounted backup disk or a stray directory is refused before
anything is written (issue: operator mistakes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid

import pytest

from inkind.testing import needs_root, render_config
from inkind.testing.filesystems import sh, unmount

NOT_A_STORE = "not an inkind store (is the disk mounted?)"


@pytest.fixture
def tree(tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "a").write_text("a")
    (src / "b").write_text("b")
    return src


def device_of(mount_point) -> str:
    out = subprocess.run(
        ["findmnt", "-no", "SOURCE", mount_point], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def config(tmp_path, store, tree):
    cfg = tmp_path / "c.toml"
    cfg.write_text(render_config(store, {"h": {"type": "files", "path": tree}}))
    return cfg


def test_a_directory_init_did_not_make_is_refused_and_left_empty(
    tmp_path, tree, inkind_store_dir, inkind_cli
):
    cfg = config(tmp_path, inkind_store_dir, tree)
    for command in (["backup"], ["scrub"], ["verify"]):
        r = inkind_cli("-c", cfg, *command)
        assert r.returncode == 2, (command, r.stderr)
        assert f"store: {inkind_store_dir}: {NOT_A_STORE}" in r.stderr
    assert os.listdir(inkind_store_dir) == []


def test_init_then_backup(tmp_path, tree, inkind_store_dir, inkind_cli):
    cfg = config(tmp_path, inkind_store_dir, tree)
    r = inkind_cli("-c", cfg, "init")
    assert r.returncode == 0 and "initialised" in r.stdout, r.stderr
    info = json.loads((inkind_store_dir / ".inkind" / "store.json").read_text())
    assert info["format"] == 1 and info["filesystem"]["type"] in ("ext4", "btrfs", "xfs")
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    r = inkind_cli("-c", cfg, "init")
    assert r.returncode == 0 and "already an inkind store" in r.stdout
    assert (inkind_store_dir / "h" / "d" / "a").read_text() == "a"


def test_init_refuses_a_directory_that_holds_something(tmp_path, tree, inkind_store_dir, inkind_cli):
    (inkind_store_dir / "precious.txt").write_text("not a store")
    cfg = config(tmp_path, inkind_store_dir, tree)
    for command in (["init"], ["backup", "--init"]):
        r = inkind_cli("-c", cfg, *command)
        assert r.returncode == 2
        assert (
            f"store: {inkind_store_dir}: is not empty and not an inkind store (holds precious.txt)"
            in r.stderr
        )
    assert os.listdir(inkind_store_dir) == ["precious.txt"]


def test_a_first_run_given_init_makes_the_store(tmp_path, tree, inkind_store_dir, inkind_cli):
    cfg = config(tmp_path, inkind_store_dir, tree)
    r = inkind_cli("-c", cfg, "backup", "--init")
    assert r.returncode == 0, r.stderr
    assert (inkind_store_dir / "h" / "b").read_text() == "b"
    assert inkind_cli("-c", cfg, "backup", "--init").returncode == 0
    r = inkind_cli("-c", cfg, "backup", "--init", "--dry-run")
    assert r.returncode == 2 and "--dry-run" in r.stderr


@needs_root
@pytest.mark.parametrize("fstype", ["ext4", "xfs", "btrfs"])
def test_an_unmounted_backup_disk_is_refused(tmp_path, tree, mounted, inkind_cli, fstype):
    """The store is the root of its own filesystem (lost+found and all); with
    the disk unmounted the run finds the empty mount point and writes nothing."""
    disk = mounted(fstype)
    cfg = config(tmp_path, disk, tree)
    assert inkind_cli("-c", cfg, "init").returncode == 0
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    dev = device_of(disk)
    subprocess.run(["umount", disk], check=True)
    try:
        for command in (["backup"], ["verify"], ["scrub"], ["status"]):
            r = inkind_cli("-c", cfg, *command)
            assert r.returncode == 2, (command, r.stdout, r.stderr)
            assert NOT_A_STORE in r.stdout + r.stderr, command
            if command == ["status"]:  # not the root filesystem's space, nor its snapshot provider
                assert "free:" not in r.stdout and "history: UNKNOWN: the store is not usable" in r.stdout
        assert os.listdir(disk) == []
    finally:
        subprocess.run(["mount", dev, disk], check=True)
    assert inkind_cli("-c", cfg, "backup").returncode == 0


@needs_root
def test_a_store_on_another_filesystem_than_init_recorded(tmp_path, tree, mounted, inkind_cli):
    """store.json found on the wrong filesystem (the disk's mount point on
    the root filesystem, holding a stale copy) is refused; `init --adopt`
    takes a store that was moved on purpose."""
    disk = mounted("ext4")
    cfg = config(tmp_path, disk, tree)
    assert inkind_cli("-c", cfg, "init").returncode == 0
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    saved = tmp_path / "saved"
    shutil.copytree(disk / ".inkind", saved)
    dev = device_of(disk)
    subprocess.run(["umount", disk], check=True)
    try:
        shutil.copytree(saved, disk / ".inkind")
        r = inkind_cli("-c", cfg, "backup")
        assert r.returncode == 2
        assert f"store: {disk}: {NOT_A_STORE}: it is on " in r.stderr
        assert "inkind init --adopt" in r.stderr
        assert sorted(os.listdir(disk)) == [".inkind"]
        assert inkind_cli("-c", cfg, "init", "--adopt").returncode == 0
        assert inkind_cli("-c", cfg, "backup").returncode == 0
    finally:
        shutil.rmtree(disk / ".inkind", ignore_errors=True)
        shutil.rmtree(disk / "h", ignore_errors=True)
        subprocess.run(["mount", dev, disk], check=True)


@needs_root
def test_init_records_the_filesystem_the_device_holds_now(tmp_path, tree, inkind_cli):
    """A device that held another filesystem moments ago (a loop device
    reused, a disk reformatted): blkid's cache still names the old one for
    a while. init must record the UUID that is there, or every later run
    refuses the store as not mounted."""
    old, new = tmp_path / "old.fs", tmp_path / "new.fs"
    new_uuid = str(uuid.uuid4())
    for backing, fs_uuid in ((old, str(uuid.uuid4())), (new, new_uuid)):
        with open(backing, "wb") as f:
            f.truncate(64 << 20)
        sh("mkfs.ext4", "-q", "-F", "-U", fs_uuid, backing)
    dev = sh("losetup", "--find", "--show", old).strip()
    sh("blkid", dev)  # as any look at the disk before would: the cache holds old's UUID
    sh("losetup", "-d", dev)
    sh("losetup", dev, new)  # the same device, another filesystem
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        sh("mount", dev, mnt)
        cfg = config(tmp_path, mnt, tree)
        assert inkind_cli("-c", cfg, "init").returncode == 0
        info = json.loads((mnt / ".inkind" / "store.json").read_text())
        assert info["filesystem"]["uuid"] == new_uuid
        time.sleep(3)  # past the cache's quick-answer window: blkid looks at the device again
        r = inkind_cli("-c", cfg, "backup")
        assert r.returncode == 0, r.stderr
    finally:
        unmount(mnt)
        subprocess.run(["losetup", "-d", dev], capture_output=True)
