"""The lvm source on thin volumes: a base snapshot kept between runs, and
only the blocks thin_delta names read on the next run."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
import xxhash
from lvm_helpers import BLOCK, CHUNK, SIZE, allocated, image_of, random_bytes, thin_setup

from inkind.store.xattrs import XAttrs
from inkind.testing import flip_byte

MIN_SAMPLE = 4


def stored_state(store: Path) -> dict:
    return json.loads((store / ".inkind" / "sources" / "vols.json").read_text())["plugin"]["volumes"][
        "vg0/data"
    ]


def snapshots(fake_lvm) -> list[str]:
    return [n for n in fake_lvm.names("vg0") if n.startswith("inkind-")]


def backed_up_then_changed(
    fake_lvm, inkind_config, inkind_store, inkind_run
) -> tuple[Path, Path, bytes, str]:
    """One good run, then a change: (config, image, its bytes, base snapshot)."""
    config = thin_setup(fake_lvm, inkind_config)
    assert inkind_run(config, seed=1).exit_status == 0
    img = image_of(inkind_store, "vg0-data")
    [base] = snapshots(fake_lvm)
    before = img.read_bytes()
    fake_lvm.write("vg0", "data", 0, b"new data")
    return config, img, before, base


def shadowing(tmp_path: Path, name: str, script: str) -> str:
    """A PATH on which ``name`` is this shell script."""
    directory = tmp_path / f"shadow-{name}"
    directory.mkdir()
    (directory / name).write_text(f"#!/bin/sh\n{script}\n")
    (directory / name).chmod(0o755)
    return f"{directory}{os.pathsep}{os.environ['PATH']}"


def test_first_run_reads_all_and_keeps_a_base(fake_lvm, inkind_config, inkind_store, inkind_run) -> None:
    config = thin_setup(fake_lvm, inkind_config)
    r = inkind_run(config)
    assert r.exit_status == 0, r.as_dict()
    img = image_of(inkind_store, "vg0-data")
    assert img.read_bytes() == fake_lvm.data("vg0", "data")
    assert allocated(img) <= SIZE // 2 + CHUNK  # the unwritten half is a hole
    assert r.results[0].stats.bytes_read == SIZE
    [base] = snapshots(fake_lvm)
    assert stored_state(inkind_store)["base"]["name"] == base
    [create] = fake_lvm.calls("lvcreate")
    assert create[1:] == ["-s", "-kn", "-ay", "-pr", "--addtag", "inkind", "-n", base, "vg0/data"]
    assert fake_lvm.calls("dmsetup") == []  # no base yet: no delta


def test_incremental_reads_only_the_changed_blocks(fake_lvm, inkind_config, inkind_store, inkind_run) -> None:
    config = thin_setup(fake_lvm, inkind_config)
    assert inkind_run(config, seed=1).exit_status == 0
    [old_base] = snapshots(fake_lvm)
    # Three scattered writes: inside block 2, across blocks 9/10, in the
    # never-written half (block 25).
    fake_lvm.write("vg0", "data", 2 * BLOCK + 5000, b"a" * 100)
    fake_lvm.write("vg0", "data", 10 * BLOCK - 10, random_bytes(20, 2))
    fake_lvm.write("vg0", "data", 25 * BLOCK + 3 * CHUNK, random_bytes(CHUNK, 3))
    fake_lvm.clear_calls()
    r = inkind_run(config, seed=2)
    assert r.exit_status == 0, r.as_dict()
    assert image_of(inkind_store, "vg0-data").read_bytes() == fake_lvm.data("vg0", "data")
    stats = r.results[0].stats
    # Four changed blocks, plus the re-check sample of unchanged chunks.
    assert stats.bytes_read == 4 * BLOCK + MIN_SAMPLE * CHUNK
    assert stats.objects_scrubbed == MIN_SAMPLE and stats.objects_repaired == 0
    assert [c[-1] for c in fake_lvm.calls("dmsetup")] == ["reserve_metadata_snap", "release_metadata_snap"]
    [new_base] = snapshots(fake_lvm)
    assert new_base != old_base
    assert stored_state(inkind_store)["base"]["name"] == new_base
    assert ["lvremove", "-y", f"vg0/{old_base}"] in fake_lvm.calls("lvremove")


def test_unchanged_volume_writes_nothing(fake_lvm, inkind_config, inkind_store, inkind_run) -> None:
    config = thin_setup(fake_lvm, inkind_config)
    assert inkind_run(config, seed=1).exit_status == 0
    r = inkind_run(config, seed=2)
    s = r.results[0].stats
    assert r.exit_status == 0
    assert (s.bytes_written, s.xattrs_written, s.objects_changed) == (0, 0, 0)
    assert s.bytes_read == MIN_SAMPLE * CHUNK


def test_discard_becomes_a_hole(fake_lvm, inkind_config, inkind_store, inkind_run) -> None:
    config = thin_setup(fake_lvm, inkind_config)
    assert inkind_run(config, seed=1).exit_status == 0
    img = image_of(inkind_store, "vg0-data")
    before = allocated(img)
    fake_lvm.discard("vg0", "data", 4 * BLOCK, 2 * BLOCK)  # left_only in the delta
    r = inkind_run(config, seed=2)
    assert r.exit_status == 0, r.as_dict()
    assert img.read_bytes() == fake_lvm.data("vg0", "data")
    assert allocated(img) <= before - 2 * BLOCK
    assert r.results[0].stats.bytes_read == 2 * BLOCK + MIN_SAMPLE * CHUNK


def test_dashes_in_names(fake_lvm, inkind_config, inkind_store, inkind_run) -> None:
    config = thin_setup(fake_lvm, inkind_config, vg="my-vg", lv="web-data")
    assert inkind_run(config, seed=1).exit_status == 0
    fake_lvm.write("my-vg", "web-data", 0, b"changed")
    r = inkind_run(config, seed=2)
    assert r.exit_status == 0, r.as_dict()
    assert image_of(inkind_store, "my--vg-web--data").read_bytes() == fake_lvm.data("my-vg", "web-data")
    assert {c[2] for c in fake_lvm.calls("dmsetup")} == {"my--vg-pool-tpool"}


def test_full_pass_reads_the_whole_volume(fake_lvm, inkind_config, inkind_store, inkind_run) -> None:
    config = thin_setup(fake_lvm, inkind_config)
    assert inkind_run(config, seed=1).exit_status == 0
    fake_lvm.clear_calls()
    r = inkind_run(config, seed=2, full=True)
    assert r.exit_status == 0 and r.results[0].stats.bytes_read == SIZE
    assert fake_lvm.calls("dmsetup") == []


def test_missing_base_falls_back_to_the_whole_volume(
    fake_lvm, inkind_config, inkind_store, inkind_run
) -> None:
    config = thin_setup(fake_lvm, inkind_config)
    assert inkind_run(config, seed=1).exit_status == 0
    [base] = snapshots(fake_lvm)
    subprocess.run(["lvremove", "-y", f"vg0/{base}"], check=True, capture_output=True)
    fake_lvm.write("vg0", "data", 7, b"x")
    r = inkind_run(config, seed=2)
    assert r.exit_status == 0 and r.results[0].stats.bytes_read == SIZE
    assert image_of(inkind_store, "vg0-data").read_bytes() == fake_lvm.data("vg0", "data")


def test_keep_base_snapshot_false(fake_lvm, inkind_config, inkind_store, inkind_run) -> None:
    config = thin_setup(fake_lvm, inkind_config, keep_base_snapshot=False)
    assert inkind_run(config, seed=1).exit_status == 0
    assert snapshots(fake_lvm) == [] and "base" not in stored_state(inkind_store)
    r = inkind_run(config, seed=2)
    assert r.exit_status == 0 and r.results[0].stats.bytes_read == SIZE


def test_a_delta_that_misses_a_change_is_caught(fake_lvm, inkind_config, inkind_store, inkind_run) -> None:
    """Data changed behind the pool's back (the mapping says unchanged):
    the re-check finds it, repairs it, warns, and schedules a full pass."""
    config = thin_setup(fake_lvm, inkind_config)
    assert inkind_run(config, seed=1).exit_status == 0
    vol = Path(fake_lvm.state()["lvs"][-1]["lv_path"].rsplit("/", 1)[0]) / "vg0-data"
    with open(vol, "r+b") as f:  # no mapping change: thin_delta cannot see it
        f.seek(3 * BLOCK)
        f.write(b"unseen")
    config.write_text(config.read_text().replace("scrub_fraction = 0.0", "scrub_fraction = 1.0"))
    r = inkind_run(config, seed=2)
    assert r.exit_status == 1, r.as_dict()
    assert any("thin_delta missed a change in 1 sampled chunk(s)" in m for m in r.results[0].messages)
    assert image_of(inkind_store, "vg0-data").read_bytes() == fake_lvm.data("vg0", "data")
    state = json.loads((inkind_store / ".inkind" / "sources" / "vols.json").read_text())
    assert state["full_pending"] is True
    r = inkind_run(config, seed=3)
    assert r.results[0].full and r.results[0].stats.bytes_read >= SIZE


@pytest.mark.parametrize(
    ("script", "why"),
    [
        ("exit 1", "thin_delta exited 1"),
        ("exit 0", "thin_delta printed nothing"),
        ('echo \'<superblock data_block_size="128"><diff><different begin="1"\'', "does not parse"),
    ],
)
def test_thin_delta_failure_keeps_everything(
    fake_lvm, inkind_config, inkind_store, inkind_run, tmp_path, monkeypatch, script, why
) -> None:
    config, img, before, base = backed_up_then_changed(fake_lvm, inkind_config, inkind_store, inkind_run)
    monkeypatch.setenv("PATH", shadowing(tmp_path, "thin_delta", script))
    fake_lvm.clear_calls()
    r = inkind_run(config, seed=2)
    assert r.exit_status == 2
    [msg] = r.results[0].messages
    assert why in msg and "\n" not in msg
    assert img.read_bytes() == before
    assert snapshots(fake_lvm) == [base]  # new snapshot removed, base kept
    assert [c[-1] for c in fake_lvm.calls("dmsetup")] == ["reserve_metadata_snap", "release_metadata_snap"]
    assert not fake_lvm.state()["pools"]["vg0/pool"]["reserved"]


@pytest.mark.parametrize("flag", [{"fail": ["lvcreate"]}, {"pool_full": True}])
def test_lvcreate_failure_keeps_everything(fake_lvm, inkind_config, inkind_store, inkind_run, flag) -> None:
    config, img, before, base = backed_up_then_changed(fake_lvm, inkind_config, inkind_store, inkind_run)
    fake_lvm.set(**flag)
    r = inkind_run(config, seed=2)
    assert r.exit_status == 2
    [msg] = r.results[0].messages
    assert msg.startswith("snapshot vg0/data: lvcreate exited 5") and "\n" not in msg
    assert img.read_bytes() == before and snapshots(fake_lvm) == [base]


def test_killed_after_lvcreate_then_a_clean_run(
    fake_lvm, inkind_config, inkind_store, inkind_run, inkind_cli
) -> None:
    config = thin_setup(fake_lvm, inkind_config)
    assert inkind_run(config, seed=1).exit_status == 0
    [base] = snapshots(fake_lvm)
    fake_lvm.write("vg0", "data", BLOCK, b"after the kill")
    fake_lvm.set(kill_after_lvcreate=True)
    killed = inkind_cli("-c", config, "backup")
    assert killed.returncode == -9
    assert len(snapshots(fake_lvm)) == 2  # the new one is left behind
    fake_lvm.set(kill_after_lvcreate=False)
    r = inkind_run(config, seed=2)
    assert r.exit_status == 0, r.as_dict()
    [new_base] = snapshots(fake_lvm)
    assert new_base != base
    assert image_of(inkind_store, "vg0-data").read_bytes() == fake_lvm.data("vg0", "data")
    assert inkind_cli("-c", config, "verify").returncode == 0


def test_restore_prints_dd_onto_a_device_and_cp_into_a_file(
    fake_lvm, inkind_config, inkind_store, inkind_run, inkind_cli, tmp_path
) -> None:
    config = thin_setup(fake_lvm, inkind_config)
    assert inkind_run(config, seed=1).exit_status == 0
    img = image_of(inkind_store, "vg0-data")
    target = tmp_path / "restored.img"
    r = inkind_cli("-c", config, "restore", "vols", "--to", target)
    assert r.returncode == 0, r.stderr
    assert f"cp --sparse=always {img} {target}" in r.stdout
    r = inkind_cli("-c", config, "restore", "vols", "vg0/data", "--to", target)
    assert f"cp --sparse=always {img} {target}" in r.stdout
    r = inkind_cli("-c", config, "restore", "vols", "vg9/other", "--to", target)
    assert r.returncode == 2 and "volume 'vg9/other' is not stored (stored: vg0/data)" in r.stderr
    device = next((d for d in ("/dev/loop0", "/dev/sda", "/dev/vda") if stat.S_ISBLK(_mode(d))), None)
    if device is None:
        pytest.skip("no block device node to name as a restore target")
    r = inkind_cli("-c", config, "restore", "vols", "--to", device)
    assert f"dd if={img} of={device} bs=4M conv=sparse,fsync status=progress" in r.stdout


def _mode(path: str) -> int:
    try:
        return os.stat(path).st_mode
    except OSError:
        return 0


def test_scrub_and_verify_find_a_flipped_byte(
    fake_lvm, inkind_config, inkind_store, inkind_run, inkind_cli
) -> None:
    config = thin_setup(fake_lvm, inkind_config)
    assert inkind_run(config, seed=1).exit_status == 0
    assert inkind_cli("-c", config, "verify").returncode == 0
    flip_byte(image_of(inkind_store, "vg0-data"), 6 * BLOCK + 17)
    r = inkind_cli("-c", config, "scrub", "--fraction", "1")
    assert r.returncode == 2 and f"block at offset {6 * BLOCK} does not match" in r.stderr
    r = inkind_cli("-c", config, "verify")
    assert r.returncode == 2 and "vg0-data.img" in r.stdout + r.stderr


def test_scrub_repairs_from_the_base_snapshot(fake_lvm, inkind_config, inkind_store, inkind_run) -> None:
    """The base snapshot holds exactly what the image should: a block of the
    image that differs from it (and from the manifest, rewritten to agree)
    is a missed change, repaired and counted."""
    config = thin_setup(fake_lvm, inkind_config)
    assert inkind_run(config, seed=1).exit_status == 0
    [base] = snapshots(fake_lvm)
    base_file = Path(next(r["lv_path"] for r in fake_lvm.state()["lvs"] if r["lv_name"] == base))
    with open(base_file, "r+b") as f:  # what the store missed
        f.seek(BLOCK)
        f.write(b"missed")
    r = inkind_run(config, "scrub", fraction=1.0)
    assert r.exit_status == 0, r.as_dict()
    assert r.results[0].stats.objects_repaired == 1
    assert image_of(inkind_store, "vg0-data").read_bytes() == base_file.read_bytes()


def test_two_sources_on_one_volume_keep_their_own_bases(
    fake_lvm, inkind_config, inkind_store, inkind_run
) -> None:
    thin_setup(fake_lvm, inkind_config)
    table = {"type": "lvm", "volume": "vg0/data", "block_size": BLOCK}
    config = inkind_config({"a": table, "b": table})
    for seed in (1, 2, 3):
        fake_lvm.write("vg0", "data", seed * BLOCK, b"run %d" % seed)
        r = inkind_run(config, seed=seed)
        assert r.exit_status == 0, r.as_dict()
    assert [n.rsplit("-", 1)[0] for n in snapshots(fake_lvm)] == ["inkind-a-data", "inkind-b-data"]
    assert all(r.stats.bytes_read < SIZE for r in r.results)  # both read by delta
    for name in ("a", "b"):
        assert (inkind_store / name / "vg0-data.img").read_bytes() == fake_lvm.data("vg0", "data")


def test_delta_run_checksums_by_blocks_until_the_next_whole_read(
    fake_lvm, inkind_config, inkind_store, inkind_run, inkind_cli
) -> None:
    """A delta-driven run does not read the whole content, so the image's
    checksum takes the block-hash form; verify checks it; a whole read
    brings back the content xxh3 (what ``xxhsum -H2`` prints)."""
    config = thin_setup(fake_lvm, inkind_config)
    assert inkind_run(config, seed=1).exit_status == 0
    img = image_of(inkind_store, "vg0-data")
    assert XAttrs(img).text("xxh3") == xxhash.xxh3_128_hexdigest(img.read_bytes())
    fake_lvm.write("vg0", "data", 11 * BLOCK, b"delta")
    assert inkind_run(config, seed=2).exit_status == 0
    x = XAttrs(img)
    assert x.text("xxh3") is None
    size, _, digest = x.text("xxh3-blocks").partition(":")
    data = img.read_bytes()
    per_block = b"".join(xxhash.xxh3_128_digest(data[o : o + BLOCK]) for o in range(0, len(data), BLOCK))
    assert int(size) == BLOCK and digest == xxhash.xxh3_128_hexdigest(per_block)
    assert inkind_cli("-c", config, "verify").returncode == 0
    flip_byte(img, 20 * BLOCK + 3)
    r = inkind_cli("-c", config, "verify")
    assert r.returncode == 2 and "content does not match user.inkind.xxh3-blocks" in r.stdout + r.stderr
    flip_byte(img, 20 * BLOCK + 3)  # back as it was
    r = inkind_run(config, seed=3, full=True)
    assert r.exit_status == 0 and r.results[0].stats.objects_changed == 0
    x = XAttrs(img)
    assert x.text("xxh3") == xxhash.xxh3_128_hexdigest(img.read_bytes()) and x.text("xxh3-blocks") is None
    assert inkind_cli("-c", config, "verify").returncode == 0


def test_killed_while_the_metadata_snapshot_is_reserved(
    fake_lvm, inkind_config, inkind_store, inkind_run, inkind_cli, tmp_path, monkeypatch
) -> None:
    config, *_ = backed_up_then_changed(fake_lvm, inkind_config, inkind_store, inkind_run)
    killed = inkind_cli(
        "-c", config, "backup", env={"PATH": shadowing(tmp_path, "thin_delta", "kill -9 $PPID")}
    )
    assert killed.returncode == -9
    assert fake_lvm.state()["pools"]["vg0/pool"]["reserved"]  # left reserved
    fake_lvm.clear_calls()
    r = inkind_run(config, seed=2)
    assert r.exit_status == 0, r.as_dict()
    assert [c[-1] for c in fake_lvm.calls("dmsetup")] == [
        "release_metadata_snap",  # the killed run's
        "reserve_metadata_snap",
        "release_metadata_snap",
    ]
    assert image_of(inkind_store, "vg0-data").read_bytes() == fake_lvm.data("vg0", "data")
    assert len(snapshots(fake_lvm)) == 1
