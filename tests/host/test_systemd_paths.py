"""The unit ``inkind systemd`` prints lets a real backup write all it
writes: a backup with snapshots runs in a mount namespace made as systemd
makes one for ``ProtectSystem=strict`` (every mount read-only, each
``ReadWritePaths`` entry bound back read-write), and must succeed."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from loopfs import loop_device as loop_device  # a fixture
from loopfs import mounted as mounted  # a fixture

from inkind.testing import needs_root, render_config


def service_paths(inkind_cli, cfg: Path) -> list[str]:
    r = inkind_cli("-c", cfg, "systemd")
    assert r.returncode in (0, 1), r.stderr  # 1: a path does not exist yet
    (line,) = [x for x in r.stdout.splitlines() if x.startswith("ReadWritePaths=")]
    return shlex.split(line.split("=", 1)[1])


def mount_points_below(top: Path) -> list[str]:
    """The mount points at or below ``top`` (this test's own loop mounts)."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4].encode().decode("unicode_escape") for line in f]
    return [p for p in points if Path(p).is_relative_to(top)]


def under(path: str | Path, entries: list[str]) -> bool:
    return any(Path(path).is_relative_to(e) for e in entries)


def backup_as_the_unit_would(
    cfg: Path, writable: list[str], read_only: list[str]
) -> subprocess.CompletedProcess:
    """``inkind backup`` in a private mount namespace where ``read_only``
    mounts are read-only except the ``writable`` paths. Per-mount flags only
    (``remount,bind,ro``): nothing changes outside the namespace."""
    script = [f"mount --bind {shlex.quote(p)} {shlex.quote(p)}" for p in writable]
    covered = [m for m in read_only if not under(m, writable)]
    script += [f"mount -o remount,bind,ro {shlex.quote(m)}" for m in covered]
    script.append('exec "$@"')
    # verify-after: inside a mount namespace; the callers verify the store afterwards
    argv = [sys.executable, "-m", "inkind", "-c", str(cfg), "backup"]
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-ec", "\n".join(script), "sh", *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )


@needs_root
@pytest.mark.parametrize(("fstype", "provider"), [("btrfs", "btrfs"), ("ext4", "hardlink")])
def test_a_backup_with_snapshots_writes_only_where_the_unit_allows(
    tmp_path, mounted, inkind_cli, fstype, provider
):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_text("data\n" * 1000)
    mnt = mounted(fstype)
    store = mnt / "store"
    store.mkdir()
    (tmp_path / "metrics").mkdir()
    cfg = tmp_path / "inkind.toml"
    text = render_config(store, {"home": {"type": "files", "path": src}}).replace(
        'snapshots = "none"', f'snapshots = "{provider}"'
    )
    cfg.write_text(text + f'\n[metrics]\ntextfile = "{tmp_path / "metrics" / "inkind.prom"}"\n')
    assert inkind_cli("-c", cfg, "init").returncode == 0  # as a sysadmin makes the store
    writable = service_paths(inkind_cli, cfg)
    for p in writable:
        Path(p).mkdir(exist_ok=True)  # systemd starts the unit only once every path exists
    read_only = ["/", *mount_points_below(tmp_path)]

    # The shipped unit's paths (the store only): the snapshot is refused.
    r = backup_as_the_unit_would(cfg, [str(store)], read_only)
    assert r.returncode == 2 and "Read-only file system" in r.stderr, r.stderr

    r = backup_as_the_unit_would(cfg, writable, read_only)
    assert r.returncode == 0, r.stderr
    listed = inkind_cli("-c", cfg, "snapshots", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (snap,) = listed.json()["snapshots"]
    for wrote in (store, Path(snap["path"]), tmp_path / "metrics" / "inkind.prom"):
        assert under(wrote, writable), (wrote, writable)
    assert not under(src, writable) and not under(cfg, writable)
    assert (
        'inkind_last_run_outcome{source="home",type="files",outcome="ok"} 1'
        in (tmp_path / "metrics" / "inkind.prom").read_text()
    )
    assert inkind_cli("-c", cfg, "verify").returncode == 0
