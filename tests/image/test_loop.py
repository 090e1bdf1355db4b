"""The image source with real loop devices as sources, and the store on a
filesystem made on a loop device: btrfs and XFS (updates by reflink clone)
and ext4 (updates through a redo journal)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from image_helpers import MiB, allocated, digest, fill, scribble, sh

from inkind import config as config_mod
from inkind.plugins import load_plugins
from inkind.runner import Runner
from inkind.testing import needs_root

pytestmark = [needs_root, pytest.mark.root]

BS = 1 * MiB
SIZE = 64 * MiB
DATA_BLOCKS = range(0, 64, 4)  # 16 blocks of data, the rest never written


@pytest.fixture
def source(loop_device):
    loop = loop_device(SIZE)
    rng = random.Random(5)
    fill(loop.dev, {i * BS: rng.randbytes(BS) for i in DATA_BLOCKS})
    return loop


@pytest.fixture
def store(inkind_store) -> Path:
    return inkind_store


def configure(inkind_config, store: Path, dev: Path) -> Path:
    return inkind_config({"disk": {"type": "image", "path": dev, "block_size": "1M", "name": "disk"}}, store)


def backup(inkind_cli, cfg: Path, *args: str) -> dict:
    r = inkind_cli("-c", cfg, "backup", "--json", *args)
    assert r.returncode == 0, r.stderr
    return r.json()["sources"][0]["stats"]


def paths(store: Path) -> tuple[Path, Path]:
    return store / "disk" / "disk.img", store / ".inkind" / "manifests" / "disk" / "disk.img.manifest"


def test_first_incremental_holes_and_unchanged(store, inkind_store_fs, source, inkind_config, inkind_cli):
    fstype = inkind_store_fs
    cfg = configure(inkind_config, store, source.dev)
    image, manifest = paths(store)
    stats = backup(inkind_cli, cfg)
    data = len(DATA_BLOCKS) * BS
    assert stats["bytes_written"] == data + manifest.stat().st_size
    assert image.stat().st_size == SIZE and digest(image) == digest(source.dev)
    assert data <= allocated(image) <= data + MiB  # zeros are holes

    changed = scribble(source.dev, SIZE, BS, 5, random.Random(9))
    fill(source.dev, {0: bytes(BS)})  # block 0 held data and is now zeros
    stats = backup(inkind_cli, cfg)
    assert stats["bytes_written"] == len(changed) * BS + manifest.stat().st_size
    journaled = stats["bytes_journaled"]
    assert journaled == (len(changed) * BS if fstype == "ext4" else 0)  # clone vs journal
    assert digest(image) == digest(source.dev)
    assert allocated(image) <= data + (len(changed) - 1) * BS + MiB  # block 0 punched

    stats = backup(inkind_cli, cfg)
    assert (stats["bytes_written"], stats["xattrs_written"], stats["objects_unchanged"]) == (0, 0, 1)
    assert inkind_cli("-c", cfg, "verify").returncode == 0


def test_growth_and_shrink_of_the_device(store, source, inkind_config, inkind_cli):
    cfg = configure(inkind_config, store, source.dev)
    image, _ = paths(store)
    backup(inkind_cli, cfg)
    source.resize(SIZE + 5 * MiB + 512 * 1024)
    fill(source.dev, {SIZE + 2 * MiB: b"on the new space"})
    r = inkind_cli("-c", cfg, "backup")
    assert r.returncode == 0 and "grew from 64.0 MiB to 69.5 MiB" in r.stderr
    assert image.stat().st_size == SIZE + 5 * MiB + 512 * 1024 and digest(image) == digest(source.dev)
    source.resize(SIZE // 2 + 4096)
    r = inkind_cli("-c", cfg, "backup")
    assert r.returncode == 0 and "shrank from 69.5 MiB to 32.0 MiB" in r.stderr
    assert image.stat().st_size == SIZE // 2 + 4096 and digest(image) == digest(source.dev)
    assert inkind_cli("-c", cfg, "verify").returncode == 0


def test_a_device_shrinking_mid_run_fails_and_keeps_the_image(store, source, inkind_config, inkind_cli):
    cfg = configure(inkind_config, store, source.dev)
    image, manifest = paths(store)
    backup(inkind_cli, cfg)
    fill(source.dev, {0: os.urandom(BS)})
    before = (digest(image), image.stat().st_mtime_ns, manifest.read_bytes())

    class ShrinkOnFirstBlock:
        def advance(self, n: int = 1) -> None:
            if source.backing.stat().st_size == SIZE:
                source.resize(SIZE // 2)  # the volume shrinks while being read

    @contextmanager
    def progress(description, total, **_columns):
        yield ShrinkOnFirstBlock()

    # verify-after: a volume that shrinks mid-read; it fails, verify below
    runner = Runner(config_mod.load(str(cfg)), load_plugins(), seed=1, progress_factory=progress)
    (result,) = runner.backup().results
    assert result.outcome == "failed"
    assert result.messages == [
        f"source {source.dev}: ended at byte {SIZE // 2} of {SIZE} (shrunk or gone while being read); "
        "the previous image is kept"
    ]
    assert (digest(image), image.stat().st_mtime_ns, manifest.read_bytes()) == before
    assert inkind_cli("-c", cfg, "verify").returncode == 0


def test_restore_with_dd_onto_another_device(store, source, loop_device, inkind_config, inkind_cli):
    cfg = configure(inkind_config, store, source.dev)
    image, _ = paths(store)
    backup(inkind_cli, cfg)
    target = loop_device(SIZE)
    r = inkind_cli("-c", cfg, "restore", "disk", "--to", target.dev)
    assert r.stdout.split() == [
        "dd",
        f"if={image}",
        f"of={target.dev}",
        "bs=4M",
        "conv=sparse,fsync",
        "status=progress",
    ]
    assert inkind_cli("-c", cfg, "restore", "disk", "--to", target.dev, "--run").returncode == 0
    assert digest(target.dev) == digest(source.dev)


def test_a_mounted_source_is_backed_up_with_a_warning(
    source, inkind_config, inkind_cli, inkind_store, tmp_path
):
    sh("mkfs.ext4", "-q", "-F", source.dev)
    mnt = tmp_path / "mounted-source"
    mnt.mkdir()
    sh("mount", source.dev, mnt)
    try:
        (mnt / "file").write_text("busy")
        cfg = configure(inkind_config, inkind_store, source.dev)
        r = inkind_cli("-c", cfg, "backup")
    finally:
        sh("umount", mnt)
    assert r.returncode == 0, r.stderr
    (warning,) = [line for line in r.stderr.splitlines() if "WARNING" in line]
    assert f"{source.dev} is mounted at {mnt}" in warning and "lvm source" in warning


def start_backup(cfg: Path, state: Path) -> tuple[subprocess.Popen, float]:
    """Start ``inkind backup``; return it once it has begun working on the
    source (its state says "running"), with that moment."""
    proc = subprocess.Popen(
        # verify-after: the callers kill this backup or watch it mid-run
        [sys.executable, "-m", "inkind", "-c", str(cfg), "backup"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while proc.poll() is None:
        if state.exists() and '"running"' in state.read_text():
            break
        time.sleep(0.002)
    return proc, time.monotonic()


def test_killed_runs_converge(store, source, inkind_config, inkind_cli):
    """SIGKILL a backup at random moments of a large update; whatever the
    moment, the store verifies as whole or recoverable, and the next run
    converges to the source."""
    cfg = configure(inkind_config, store, source.dev)
    image, _ = paths(store)
    state = store / ".inkind" / "sources" / "disk.json"
    backup(inkind_cli, cfg)
    rng = random.Random(1234)
    scribble(source.dev, SIZE, BS, 32, rng)
    proc, start = start_backup(cfg, state)
    assert proc.wait() == 0
    work = time.monotonic() - start
    for _ in range(5):
        scribble(source.dev, SIZE, BS, 32, rng)
        proc, _ = start_backup(cfg, state)
        time.sleep(rng.uniform(0, work))
        proc.kill()
        proc.wait()
        assert inkind_cli("-c", cfg, "verify").returncode in (0, 1)  # never corrupt
        backup(inkind_cli, cfg)
        assert inkind_cli("-c", cfg, "verify").returncode == 0
        assert digest(image) == digest(source.dev)
