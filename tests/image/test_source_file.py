"""The image source through the real command line, with image files as
sources (no root needed: the store is on the test's tmp filesystem, so
updates take the journal path)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from image_helpers import MiB, digest, fill

from inkind import XAttrs

IS_ROOT = os.geteuid() == 0
BS = 256 << 10
SIZE = 32 * BS


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "vm1.img"
    rng = random.Random(11)
    with open(path, "wb") as f:
        f.truncate(SIZE)
    fill(path, {i * BS: rng.randbytes(BS) for i in range(0, 32, 3)})
    return path


@pytest.fixture
def cfg(inkind_config, src: Path) -> Path:
    return inkind_config({"disk": {"type": "image", "path": src, "block_size": "256K"}})


def image_of(store: Path, name: str = "vm1") -> Path:
    return store / "disk" / f"{name}.img"


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "ERROR" in line or "error:" in line]


def test_second_run_writes_nothing(cfg, assert_second_run_writes_nothing, inkind_store, src):
    report = assert_second_run_writes_nothing(cfg)
    assert report.results[0].stats.objects_unchanged == 1
    assert report.results[0].stats.bytes_read == 11 * BS  # the data blocks; the holes are not read
    assert digest(image_of(inkind_store)) == digest(src)
    desc = XAttrs(str(image_of(inkind_store))).text("source")
    assert f'"path": "{src}"' in desc and '"size": 8388608' in desc and '"block_size": 262144' in desc


def test_a_full_pass_reads_the_holes_too(cfg, inkind_cli, src):
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    r = inkind_cli("-c", cfg, "backup", "--full", "--json")
    (source,) = json.loads(r.stdout)["sources"]
    assert r.returncode == 0 and source["full"]
    assert source["stats"]["bytes_read"] == SIZE  # not the filesystem's word for what is zeros


@pytest.mark.parametrize(
    "table, key",
    [
        ({"block_size": 3 * MiB}, "block_size"),
        ({"block_size": "32K"}, "block_size"),
        ({"block_size": 128 * MiB}, "block_size"),
        ({"block_size": "lots"}, "block_size"),
        ({"name": "../escape"}, "name"),
        ({"paht": "/dev/sdb"}, "paht"),
    ],
)
def test_bad_config_names_the_key(inkind_config, inkind_cli, src, table, key):
    cfg = inkind_config({"disk": {"type": "image", "path": src, **table}})
    r = inkind_cli("-c", cfg, "backup")
    assert r.returncode == 2
    (line,) = errors(r.stderr)
    assert "sources.disk" in line and key in line


def unreadable(path: Path) -> list[str]:
    """Make ``path`` unreadable; return the command prefix that runs inkind
    without the capability root uses to read it anyway."""
    os.chmod(path, 0)
    if IS_ROOT:
        return ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", "--"]
    return []


@pytest.mark.parametrize("breakage", ["missing", "directory", "unreadable", "fifo"])
def test_bad_source_fails_in_one_line_and_keeps_the_image(cfg, inkind_cli, inkind_store, src, breakage):
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    image = image_of(inkind_store)
    before = (digest(image), image.stat().st_mtime_ns)
    prefix: list[str] = []
    if breakage == "missing":
        src.unlink()
    elif breakage == "directory":
        src.unlink()
        src.mkdir()
    elif breakage == "fifo":  # not opened: an open would wait for a writer
        src.unlink()
        os.mkfifo(src)
    else:
        fill(src, {0: b"changed"})
        prefix = unreadable(src)
    # verify-after: run unreadable/broken, it must fail (exit 2); verify below
    cmd = [*prefix, sys.executable, "-m", "inkind", "-c", str(cfg), "backup"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    (line,) = errors(r.stderr)
    assert str(src) in line
    expected = {"missing": "does not exist", "directory": "is a directory", "unreadable": "ermission"}
    assert expected.get(breakage, "is neither a block device nor a regular file") in line
    assert (digest(image), image.stat().st_mtime_ns) == before
    assert inkind_cli("-c", cfg, "verify").returncode == 0


def test_restore_to_a_file_with_cp(cfg, inkind_cli, inkind_store, src, tmp_path):
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    dest = tmp_path / "restored.img"
    r = inkind_cli("-c", cfg, "restore", "disk", "--to", dest)
    assert r.stdout.strip() == f"cp --sparse=always {image_of(inkind_store)} {dest}"
    assert inkind_cli("-c", cfg, "restore", "disk", "--to", dest, "--run").returncode == 0
    assert digest(dest) == digest(src)
    assert dest.stat().st_blocks * 512 <= 11 * BS + 64 * 1024  # sparse: 11 data blocks


def test_scrub_names_corruption_and_a_full_pass_repairs_it(cfg, inkind_cli, inkind_store, src):
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    image = image_of(inkind_store)
    st = image.stat()
    fill(image, {3 * BS + 5: b"rot"})
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = inkind_cli("-c", cfg, "scrub", "--fraction", "1")
    assert r.returncode == 2
    (line,) = errors(r.stderr)
    assert "disk/vm1.img" in line and f"offset {3 * BS}" in line
    assert inkind_cli("-c", cfg, "verify").returncode == 2
    r = inkind_cli("-c", cfg, "backup", "--full", "--json")
    assert r.returncode == 0 and r.json()["sources"][0]["stats"]["bytes_written"] >= BS
    assert inkind_cli("-c", cfg, "verify").returncode == 0
    assert digest(image) == digest(src)


def test_scrub_repairs_and_counts_a_silent_source_change(cfg, inkind_cli, inkind_store, src):
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    fill(src, {6 * BS: os.urandom(BS)})
    r = inkind_cli("-c", cfg, "scrub", "--fraction", "1", "--json")
    assert r.returncode == 0, r.stderr
    stats = r.json()["sources"][0]["stats"]
    assert (stats["objects_scrubbed"], stats["objects_repaired"]) == (32, 1)
    assert digest(image_of(inkind_store)) == digest(src)
    assert inkind_cli("-c", cfg, "verify").returncode == 0


def test_a_first_copy_scrubs_nothing_it_has_just_written_and_the_next_backup_scrubs(
    inkind_config, inkind_cli, src
):
    cfg = inkind_config({"disk": {"type": "image", "path": src, "block_size": "256K"}}, scrub_fraction=1.0)
    stats = []
    for _ in range(2):
        r = inkind_cli("-c", cfg, "backup", "--json")
        assert r.returncode == 0, r.stderr
        stats.append(r.json()["sources"][0]["stats"])
    assert [s["objects_scrubbed"] for s in stats] == [0, 32]
    assert stats[0]["bytes_read"] == 11 * BS  # the source's data, once: no block read back
    assert stats[1]["objects_repaired"] == 0


def test_renamed_image_replaces_the_old_one_in_a_full_pass(inkind_config, inkind_cli, inkind_store, src):
    cfg = inkind_config({"disk": {"type": "image", "path": src, "block_size": "256K"}})
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    cfg = inkind_config({"disk": {"type": "image", "path": src, "block_size": "256K", "name": "web"}})
    r = inkind_cli("-c", cfg, "backup", "--json")
    assert r.returncode == 0 and r.json()["sources"][0]["stats"]["objects_deleted"] == 1
    assert sorted(os.listdir(inkind_store / "disk")) == ["web.img"]
    assert inkind_cli("-c", cfg, "verify").returncode == 0


KILLED_RUN = """
import os, signal, sys
import inkind.store.journal as journal

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

setattr(journal, sys.argv[2], die)
from inkind.cli import main
main(["-c", sys.argv[1], "backup"])
"""


@pytest.mark.parametrize("kill_at", ["apply_journal", "punch_hole"])
def test_a_journal_left_by_a_killed_run_is_replayed(
    cfg, inkind_cli, inkind_store, inkind_store_fs, src, kill_at
):
    """Killed once the journal has its final name (``apply_journal``), or in
    the middle of applying it (``punch_hole``, after the data records): the
    next run replays it, and verify passes."""
    if inkind_store_fs != "ext4":
        pytest.skip(f"{inkind_store_fs} updates images by reflinked clone: no journal to replay")
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    fill(src, {1 * BS: os.urandom(BS), 2 * BS: os.urandom(BS), 3 * BS: bytes(BS)})
    r = subprocess.run([sys.executable, "-c", KILLED_RUN, str(cfg), kill_at], capture_output=True)
    assert r.returncode == -9
    journals = list((inkind_store / ".inkind" / "journal" / "disk").iterdir())
    assert [j.suffix for j in journals] == [".journal"]
    assert inkind_cli("-c", cfg, "verify").returncode == 1  # recoverable, not corrupt
    r = inkind_cli("-c", cfg, "backup", "--json")
    assert r.returncode == 0
    stats = r.json()["sources"][0]["stats"]
    manifest = inkind_store / ".inkind" / "manifests" / "disk" / "vm1.img.manifest"
    # The replay writes the two data blocks; the run then finds nothing to do
    # but rebuild the manifest the kill left stale.
    assert stats["bytes_written"] == 2 * BS + manifest.stat().st_size
    assert list((inkind_store / ".inkind" / "journal" / "disk").iterdir()) == []
    assert digest(image_of(inkind_store)) == digest(src)
    assert inkind_cli("-c", cfg, "verify").returncode == 0
