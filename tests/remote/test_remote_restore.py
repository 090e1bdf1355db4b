"""``inkind restore SOURCE --to host:/path``: the rsync or dd-over-ssh line
with the source's ssh_command, and a real restore through the test sshd,
compared byte for byte and metadata for metadata."""

from __future__ import annotations

import os
import random
import shlex
from pathlib import Path

import pytest

from inkind.testing import tree_diff

pytestmark = pytest.mark.root
SSH = "ssh -p 2222 -i '/root/.ssh/inkind backup'"
MiB = 1 << 20


def make_tree(src: Path) -> None:
    """Content, owners, modes, mtimes, xattrs, an ACL, links and a hole."""
    (src / "dir").mkdir(parents=True)
    (src / "plain.txt").write_text("plain\n")
    os.link(src / "plain.txt", src / "dir" / "hard")
    os.symlink("../plain.txt", src / "dir" / "link")
    (src / "dir" / "owned").write_bytes(random.Random(3).randbytes(300_000))
    os.chown(src / "dir" / "owned", 1234, 5678)
    os.chmod(src / "dir" / "owned", 0o4751)
    os.setxattr(src / "dir" / "owned", "user.note", b"kept \x00 across")
    os.setxattr(src / "dir", "trusted.mark", b"root only")
    with open(src / "sparse.img", "wb") as f:
        f.truncate(8 * MiB)
        f.seek(4 * MiB)
        f.write(b"data in the middle")
    for i, p in enumerate(sorted(src.rglob("*"))):
        os.utime(p, (1_600_000_000 + i, 1_600_000_000 + i * 7), follow_symlinks=False)


def test_a_files_restore_to_a_host_prints_rsync_over_the_source_ssh_command(
    inkind_config, inkind_run, inkind_cli, inkind_store, tmp_path
):
    src = tmp_path / "src"
    make_tree(src)
    cfg = inkind_config({"web": {"type": "files", "path": src, "ssh_command": SSH, "remote_sudo": True}})
    assert inkind_run(cfg).exit_status == 0
    r = inkind_cli("-c", cfg, "restore", "web", "--to", "admin@web1:/srv/www")
    assert r.returncode == 0, r.stderr
    argv = shlex.split(r.stdout)
    assert argv[:3] == ["rsync", "-aHAXS", "--numeric-ids"]
    assert argv[argv.index("-e") + 1] == SSH
    assert "--rsync-path=sudo -n rsync" in argv
    assert argv[-2:] == [f"{inkind_store}/web/", "admin@web1:/srv/www/"]
    local = inkind_cli("-c", cfg, "restore", "web", "--to", tmp_path / "here")
    assert "-e" not in shlex.split(local.stdout) and shlex.split(local.stdout)[-1] == f"{tmp_path}/here/"


def test_an_image_restore_to_a_host_prints_one_dd_pipeline(
    inkind_config, inkind_run, inkind_cli, inkind_store, tmp_path
):
    image = tmp_path / "vm1.img"
    with open(image, "wb") as f:
        f.truncate(4 * MiB)
    cfg = inkind_config({"disk": {"type": "image", "path": image, "ssh_command": SSH}})
    assert inkind_run(cfg).exit_status == 0
    r = inkind_cli("-c", cfg, "restore", "disk", "--to", "web1:/dev/vg0/vm 1")
    assert r.returncode == 0, r.stderr
    remote = shlex.join([*shlex.split(SSH), "--", "web1", "dd 'of=/dev/vg0/vm 1' bs=4M conv=sparse,fsync"])
    assert r.stdout == f"dd if={inkind_store}/disk/vm1.img bs=4M status=progress | {remote}\n"


def test_a_files_restore_runs_through_a_real_sshd_and_matches_the_source(
    inkind_sshd, inkind_config, inkind_run, inkind_cli, tmp_path
):
    src = tmp_path / "src"
    make_tree(src)
    cfg = inkind_config(
        {"web": {"type": "files", "path": src, "ssh_command": shlex.join(inkind_sshd.ssh_command())}}
    )
    assert inkind_run(cfg).exit_status == 0
    dest = tmp_path / "restored"
    r = inkind_cli("-c", cfg, "restore", "web", "--to", f"root@127.0.0.1:{dest}", "--run")
    assert r.returncode == 0, r.stderr + inkind_sshd.log
    assert tree_diff(src, dest) == []
    for rel in ("dir/owned", "sparse.img", "dir"):
        a, b = os.lstat(src / rel), os.lstat(dest / rel)
        assert (a.st_uid, a.st_gid, a.st_mode, a.st_mtime_ns) == (
            b.st_uid,
            b.st_gid,
            b.st_mode,
            b.st_mtime_ns,
        )
        assert (src / rel).is_dir() or (src / rel).read_bytes() == (dest / rel).read_bytes()
    assert os.getxattr(dest / "dir" / "owned", "user.note") == b"kept \x00 across"
    assert os.getxattr(dest / "dir", "trusted.mark") == b"root only"
    assert os.lstat(dest / "sparse.img").st_blocks * 512 < MiB  # -S: the hole stayed a hole
    assert not [n for n in os.listxattr(dest / "dir" / "owned") if n.startswith("user.inkind.")]


def test_an_image_restore_runs_through_a_real_sshd(
    inkind_sshd, inkind_config, inkind_run, inkind_cli, tmp_path
):
    image = tmp_path / "vm1.img"
    with open(image, "wb") as f:
        f.truncate(12 * MiB)
        f.seek(5 * MiB)
        f.write(random.Random(5).randbytes(MiB + 17))
    cfg = inkind_config(
        {"disk": {"type": "image", "path": image, "ssh_command": shlex.join(inkind_sshd.ssh_command())}}
    )
    assert inkind_run(cfg).exit_status == 0
    dest = tmp_path / "restored.img"
    r = inkind_cli("-c", cfg, "restore", "disk", "--to", f"root@127.0.0.1:{dest}", "--run")
    assert r.returncode == 0, r.stderr + inkind_sshd.log
    assert dest.read_bytes() == image.read_bytes()
    assert os.stat(dest).st_blocks * 512 < 4 * MiB  # conv=sparse: zero blocks were skipped


def test_a_failing_read_fails_the_image_pipeline(
    inkind_sshd, inkind_config, inkind_run, inkind_cli, inkind_store, tmp_path
):
    image = tmp_path / "vm1.img"
    image.write_bytes(b"x" * MiB)
    cfg = inkind_config(
        {"disk": {"type": "image", "path": image, "ssh_command": shlex.join(inkind_sshd.ssh_command())}}
    )
    assert inkind_run(cfg).exit_status == 0
    stored = inkind_store / "disk" / "vm1.img"
    os.rename(stored, stored.with_name("moved"))  # dd cannot open it: the remote dd gets nothing
    try:
        r = inkind_cli(
            "-c", cfg, "restore", "disk", "--to", f"root@127.0.0.1:{tmp_path / 'out.img'}", "--run"
        )
    finally:
        os.rename(stored.with_name("moved"), stored)
    assert r.returncode == 2 and "inkind: error: the pipeline exited 1" in r.stderr
