"""Faults without a kill: a full store, a store that turns read-only, a
scrub beside a backup. Clear error, previous objects intact."""

import os
import subprocess
import time

import pytest
from harness import inkind, stored_files

from inkind.storeroot import init_store
from inkind.testing import needs_root, render_config, tree_diff


@pytest.fixture
def small_store(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", store], check=True)
    init_store(store)
    yield store
    subprocess.run(["umount", "-l", store], check=True)


@needs_root
def test_a_full_store_fails_clearly_and_keeps_what_it_had(tmp_path, small_store):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("first version")
    cfg = tmp_path / "c.toml"
    cfg.write_text(render_config(small_store, {"home": {"type": "files", "path": src}}))
    assert inkind("-c", cfg, "backup").returncode == 0
    (src / "a.txt").write_text("second version, stored only if there is room")
    (src / "big.bin").write_bytes(os.urandom(3 << 20))  # more than the store holds
    r = inkind("-c", cfg, "backup")
    assert r.returncode == 2
    assert "No space left on device" in r.stderr
    assert (small_store / "home" / "a.txt").read_text() in (
        "first version",
        "second version, stored only if there is room",
    )
    assert not (small_store / "home" / "big.bin").exists()
    assert [p for p in stored_files(small_store / "home") if ".inkind-tmp" in p] == []
    v = inkind("-c", cfg, "verify")
    assert v.returncode in (0, 1), v.stdout


@needs_root
def test_a_store_turning_read_only_mid_run(tmp_path, small_store):
    subprocess.run(["mount", "-o", "remount,size=64m", small_store], check=True)
    src = tmp_path / "src"
    for i in range(3000):
        p = src / f"d{i % 30}" / f"f{i}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(2000))
    cfg = tmp_path / "c.toml"
    cfg.write_text(render_config(small_store, {"home": {"type": "files", "path": src}}))
    p = subprocess.Popen(
        [*inkind_argv(cfg), "backup"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 30
    while not (small_store / "home" / "d3").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    # The kernel refuses while a file is open for writing: try until a gap
    # between two files.
    for _ in range(2000):
        if subprocess.run(["mount", "-o", "remount,ro", small_store], capture_output=True).returncode == 0:
            break
    else:
        pytest.fail("could not remount the store read-only")
    _, err = p.communicate(timeout=60)
    assert p.returncode == 2, err
    assert "Read-only file system" in err
    subprocess.run(["mount", "-o", "remount,rw", small_store], check=True)
    # Everything stored is whole: verify finds no corruption, and the
    # next run completes the store.
    assert inkind("-c", cfg, "verify").returncode in (0, 1)
    assert inkind("-c", cfg, "backup").returncode == 0
    assert tree_diff(src, small_store / "home") == []


def inkind_argv(cfg):
    import sys

    # verify-after: the store is remounted read-only or scrubbed mid-run
    return [sys.executable, "-m", "inkind", "-q", "-c", str(cfg)]


def test_scrub_beside_a_backup_waits_its_turn(tmp_path, inkind_store):
    src = tmp_path / "src"
    for i in range(4000):
        p = src / f"d{i % 40}" / f"f{i}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(1000))
    cfg = tmp_path / "c.toml"
    cfg.write_text(render_config(inkind_store, {"home": {"type": "files", "path": src}}))
    backup = subprocess.Popen([*inkind_argv(cfg), "backup"], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not (inkind_store / "home" / "d1").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    scrub = inkind("-c", cfg, "scrub", "--fraction", "1", "--json")
    assert backup.wait(timeout=120) == 0
    # The backup held the source: scrub skipped it (busy, exit 1) rather
    # than race it; nothing is corrupt either way.
    assert scrub.returncode == 1 and '"outcome": "busy"' in scrub.stdout
    assert inkind("-c", cfg, "verify").returncode == 0
    assert inkind("-c", cfg, "scrub", "--fraction", "1").returncode == 0


@needs_root
def test_an_image_update_that_runs_out_of_room_keeps_the_previous_image(tmp_path, small_store):
    """Exit 2 naming the cause, the stored image as it was, no temp left."""
    src = tmp_path / "disk.img"
    first = os.urandom(1 << 20)
    src.write_bytes(first)
    cfg = tmp_path / "c.toml"
    cfg.write_text(render_config(small_store, {"disk": {"type": "image", "path": src, "block_size": "64K"}}))
    assert inkind("-c", cfg, "backup").returncode == 0
    src.write_bytes(os.urandom(3 << 20))  # more than the store holds
    r = inkind("-c", cfg, "backup")
    assert r.returncode == 2
    assert "No space left on device" in r.stderr
    assert (small_store / "disk" / "disk.img").read_bytes() == first
    assert [p for p in stored_files(small_store) if ".inkind-tmp" in p] == []
    # The image and its manifest are as the first run left them: nothing
    # for verify to report, not even a recoverable finding.
    v = inkind("-c", cfg, "verify")
    assert v.returncode == 0, v.stdout
