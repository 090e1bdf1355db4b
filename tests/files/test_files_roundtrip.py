"""Back up an awkward tree, restore it with the real rsync, compare."""

import os
import stat

import pytest
from files_trees import IS_ROOT, make_awkward_tree

from inkind.testing import tree_diff


def test_awkward_tree_round_trips_through_rsync(setup, inkind_run, inkind_cli, tmp_path):
    make_awkward_tree(setup.src)
    report = inkind_run(setup.config)
    assert report.exit_status == 0, report.as_dict()
    dest = tmp_path / "restored"
    r = inkind_cli("-c", setup.config, "restore", "home", "--to", dest, "--run")
    assert r.returncode == 0, r.stderr
    assert tree_diff(setup.src, dest) == []
    # And the store itself already mirrors the source natively.
    assert tree_diff(setup.src, setup.data) == []


def test_store_keeps_holes_hard_links_and_symlinks(setup, inkind_run):
    make_awkward_tree(setup.src)
    inkind_run(setup.config)
    sparse = os.stat(setup.data / "sparse.img")
    assert sparse.st_size == 8 << 20
    assert sparse.st_blocks * 512 <= 64 << 10, "holes were written out"
    a, b, c = (os.stat(setup.data / p) for p in ("plain.txt", "hard1", "dir/hard2"))
    assert a.st_ino == b.st_ino == c.st_ino and a.st_nlink == 3
    assert os.readlink(setup.data / "link-abs") == "/etc/hostname"
    assert stat.S_ISLNK(os.lstat(setup.data / "link-dir").st_mode)
    assert stat.S_ISFIFO(os.lstat(setup.data / "fifo").st_mode)
    assert (setup.data / ("n" * 255)).read_text() == "long name"
    with open(os.fsencode(setup.data) + b"/bad-\xff\xfe-utf8", "rb") as f:
        assert f.read() == b"latin junk"


def test_every_stored_file_has_its_checksum(setup, inkind_run, inkind_cli):
    make_awkward_tree(setup.src)
    inkind_run(setup.config)
    r = inkind_cli("-c", setup.config, "verify", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    data = r.json()
    assert data["findings"] == []
    assert data["sources"][0]["stats"]["objects_seen"] >= 8


@pytest.mark.skipif(not IS_ROOT, reason="device nodes, owners and trusted xattrs need root")
def test_root_metadata_is_native(setup, inkind_run):
    make_awkward_tree(setup.src)
    inkind_run(setup.config)
    dev = os.lstat(setup.data / "null-dev")
    assert stat.S_ISCHR(dev.st_mode) and dev.st_rdev == os.makedev(1, 3)
    owned = os.lstat(setup.data / "owned")
    assert (owned.st_uid, owned.st_gid, stat.S_IMODE(owned.st_mode)) == (1234, 5678, 0o4755)
    link = os.lstat(setup.data / "link-rel")
    assert (link.st_uid, link.st_gid) == (2222, 3333)
    assert link.st_mtime_ns == 987_654_321_000_000_001
    assert os.getxattr(setup.data / "owned", "trusted.secret") == b"t"


def test_restore_of_one_path_uses_relative(setup, inkind_run, inkind_cli, tmp_path):
    make_awkward_tree(setup.src)
    inkind_run(setup.config)
    r = inkind_cli("-c", setup.config, "restore", "home", "dir/nested", "--to", tmp_path / "one")
    line = r.stdout.strip()
    assert line.startswith("rsync -aHAXS --numeric-ids")
    assert f"{setup.data}/./dir/nested" in line and "--relative" in line
    r = inkind_cli("-c", setup.config, "restore", "home", "dir/nested", "--to", tmp_path / "one", "--run")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "one" / "dir" / "nested" / "deep.bin").read_bytes() == (
        setup.src / "dir" / "nested" / "deep.bin"
    ).read_bytes()
