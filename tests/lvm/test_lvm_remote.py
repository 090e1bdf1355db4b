"""The lvm source with ``host``: the LVM commands run on the host (the
fakes are on the remote side's PATH only: this process cannot run them),
through the real test sshd; the snapshot's blocks cross only where their
digest changed, a thin volume's delta limits what is hashed there, and
the snapshot goes whatever happens."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import sys
from pathlib import Path

import pytest
from lvm_helpers import BLOCK, CHUNK, SIZE, image_of, random_bytes

from inkind.remote.channel import Channel
from inkind.testing.faults import cut_after

pytestmark = pytest.mark.root
FAKES = Path(__file__).parent / "fakes"
HOST = "root@127.0.0.1"
FRAMING = 32 << 10  # generous bound on what crosses beside the blocks: hello, lvs, thin_delta, hashes
MIN_SAMPLE = 4
MANIFEST = 24 + 16 * (SIZE // BLOCK) + 40  # the xxh3 manifest: head, a hash a block, tail


@pytest.fixture
def on_host(fake_lvm, inkind_sshd, tmp_path, monkeypatch) -> dict[str, str]:
    """The keys that read the fake LVM on the host: its remote_python is a
    wrapper that puts the fakes first on the remote side's PATH (after
    ``tmp_path/host-bin``) and names their state; this process's PATH
    loses them."""
    wrapper = tmp_path / "python3-on-host"
    (tmp_path / "host-bin").mkdir()  # first on the host's PATH: a test may shadow a command there
    path = os.pathsep.join(
        [str(tmp_path / "host-bin"), str(FAKES), str(Path(sys.executable).parent), "$PATH"]
    )
    wrapper.write_text(
        f"#!/bin/sh\nPATH={path} FAKE_LVM={shlex.quote(os.environ['FAKE_LVM'])} "
        f'exec {shlex.quote(sys.executable)} "$@"\n'
    )
    wrapper.chmod(0o755)
    here = [p for p in os.environ["PATH"].split(os.pathsep) if p != str(FAKES)]
    monkeypatch.setenv("PATH", os.pathsep.join(here))
    assert shutil.which("lvs") is None  # an LVM command run here, not there, fails
    return {"host": HOST, "ssh_command": shlex.join(inkind_sshd.ssh_command()), "remote_python": str(wrapper)}


@pytest.fixture
def hashed(monkeypatch) -> list[list[tuple[int, int]] | None]:
    """The spans of every ``hashes`` request the server makes (None: all)."""
    calls: list[list[tuple[int, int]] | None] = []
    original = Channel.hashes

    def spy(self, path, block_size=Channel.hashes.__defaults__[0], spans=None, *more, **options):
        calls.append(None if spans is None else [tuple(s) for s in spans])
        return original(self, path, block_size, spans, *more, **options)

    monkeypatch.setattr(Channel, "hashes", spy)
    return calls


def thin_on_host(fake_lvm, inkind_config, on_host, **options) -> Path:
    fake_lvm.pool("vg0", "pool", chunk=CHUNK)
    fake_lvm.thin("vg0", "pool", "data", SIZE)
    fake_lvm.write("vg0", "data", 0, random_bytes(SIZE // 2, 1))  # the rest never written
    table = {"type": "lvm", "volume": "vg0/data", "block_size": BLOCK, **on_host, **options}
    return inkind_config({"vols": table})


def classic_on_host(fake_lvm, inkind_config, on_host) -> Path:
    fake_lvm.linear("vg0", "root", SIZE)
    fake_lvm.write("vg0", "root", 0, random_bytes(SIZE, 7))
    table = {"type": "lvm", "volume": "vg0/root", "block_size": BLOCK, "snapshot_size": "2G", **on_host}
    return inkind_config({"vols": table})


def snapshots(fake_lvm) -> list[str]:
    return [n for n in fake_lvm.names("vg0") if n.startswith("inkind-")]


def digests_size(store: Path, image: str) -> int:
    return (store / ".inkind" / "manifests" / "vols" / f"{image}.img.remote").stat().st_size


def test_first_run_creates_the_snapshot_there_and_fetches_the_data(
    fake_lvm, inkind_config, inkind_store, inkind_run, on_host, hashed
):
    config = thin_on_host(fake_lvm, inkind_config, on_host)
    r = inkind_run(config, seed=1)
    assert r.exit_status == 0, r.as_dict()
    s = r.results[0].stats
    img = image_of(inkind_store, "vg0-data")
    assert img.read_bytes() == fake_lvm.data("vg0", "data")
    assert SIZE // 2 <= s.bytes_received <= SIZE // 2 + FRAMING  # the data half; holes are described
    assert s.bytes_read == SIZE // 2  # from the scratch file: the blocks that crossed
    assert s.bytes_written == SIZE // 2 + MANIFEST + digests_size(inkind_store, "vg0-data")
    [base] = snapshots(fake_lvm)
    [create] = fake_lvm.calls("lvcreate")
    assert create[1:] == ["-s", "-kn", "-ay", "-pr", "--addtag", "inkind", "-n", base, "vg0/data"]
    assert hashed == [None]  # no base yet: every block hashed
    source = json.loads(os.getxattr(img, "user.inkind.source"))
    assert (source["host"], source["volume"], source["kind"]) == (HOST, "vg0/data", "thin volume")


def test_no_change_writes_nothing_and_hashes_only_the_sample(
    fake_lvm, inkind_config, inkind_run, on_host, hashed, assert_second_run_writes_nothing
):
    config = thin_on_host(fake_lvm, inkind_config, on_host)
    second = assert_second_run_writes_nothing(config)
    s = second.results[0].stats
    assert s.bytes_received < 8 << 10 and s.bytes_read == 0  # lvs, thin_delta, 4 digests: no block
    assert (s.objects_scrubbed, s.objects_repaired) == (MIN_SAMPLE, 0)
    # The first run hashed all; the second: the delta's blocks (none),
    # then the re-check sample's blocks.
    assert hashed[0] is None and hashed[1] == []
    assert len(hashed) == 3 and 1 <= sum(n for _, n in hashed[2]) <= MIN_SAMPLE
    assert [c[-1] for c in fake_lvm.calls("dmsetup")] == ["reserve_metadata_snap", "release_metadata_snap"]
    assert len(snapshots(fake_lvm)) == 1


def test_a_change_crosses_as_its_blocks_alone_and_thin_delta_limits_the_hashing(
    fake_lvm, inkind_config, inkind_store, inkind_run, on_host, hashed
):
    config = thin_on_host(fake_lvm, inkind_config, on_host)
    assert inkind_run(config, seed=1).exit_status == 0
    [old_base] = snapshots(fake_lvm)
    # Inside block 2, across blocks 9/10, in the never-written half (block 25).
    fake_lvm.write("vg0", "data", 2 * BLOCK + 5000, b"a" * 100)
    fake_lvm.write("vg0", "data", 10 * BLOCK - 10, random_bytes(20, 2))
    fake_lvm.write("vg0", "data", 25 * BLOCK + 3 * CHUNK, random_bytes(CHUNK, 3))
    fake_lvm.clear_calls()
    hashed.clear()
    r = inkind_run(config, seed=2)
    assert r.exit_status == 0, r.as_dict()
    s = r.results[0].stats
    assert image_of(inkind_store, "vg0-data").read_bytes() == fake_lvm.data("vg0", "data")
    assert hashed[0] == [(2, 1), (9, 2), (25, 1)]  # thin_delta's chunks, as engine blocks
    # Blocks 2, 9, 10 are random data; block 25 is one random chunk and zeros.
    assert 3 * BLOCK + CHUNK <= s.bytes_received <= 4 * BLOCK + FRAMING
    assert s.bytes_read == 4 * BLOCK and s.objects_changed == 1
    # What the image took: blocks 2, 9, 10 and block 25's data chunk (it
    # was a hole); beside it the manifest and the digests.
    assert s.bytes_written == 3 * BLOCK + CHUNK + MANIFEST + digests_size(inkind_store, "vg0-data")
    assert [c[-1] for c in fake_lvm.calls("dmsetup")] == ["reserve_metadata_snap", "release_metadata_snap"]
    [new_base] = snapshots(fake_lvm)
    assert new_base != old_base and ["lvremove", "-y", f"vg0/{old_base}"] in fake_lvm.calls("lvremove")


def test_a_classic_volume_sends_the_changed_block_and_drops_its_snapshot(
    fake_lvm, inkind_config, inkind_store, inkind_run, on_host, hashed
):
    config = classic_on_host(fake_lvm, inkind_config, on_host)
    first = inkind_run(config, seed=1)
    assert first.exit_status == 0, first.as_dict()
    assert SIZE <= first.results[0].stats.bytes_received <= SIZE + FRAMING
    fake_lvm.write("vg0", "root", 5 * BLOCK + 1, b"changed")
    r = inkind_run(config, seed=2)
    assert r.exit_status == 0, r.as_dict()
    s = r.results[0].stats
    assert BLOCK <= s.bytes_received <= BLOCK + FRAMING
    assert (s.objects_changed, s.bytes_read) == (1, BLOCK)
    assert s.bytes_written == BLOCK + MANIFEST + digests_size(inkind_store, "vg0-root")
    assert hashed == [None, None]  # no delta for a classic snapshot: hashed whole, there
    assert image_of(inkind_store, "vg0-root").read_bytes() == fake_lvm.data("vg0", "root")
    assert fake_lvm.names("vg0") == ["root"] and len(fake_lvm.calls("lvremove")) == 2


def test_a_delta_that_misses_a_change_is_caught_by_the_sample_hashed_there(
    fake_lvm, inkind_config, inkind_store, inkind_run, on_host
):
    config = thin_on_host(fake_lvm, inkind_config, on_host)
    assert inkind_run(config, seed=1).exit_status == 0
    vol = Path(fake_lvm.state()["lvs"][-1]["lv_path"].rsplit("/", 1)[0]) / "vg0-data"
    with open(vol, "r+b") as f:  # no mapping change: thin_delta cannot see it
        f.seek(3 * BLOCK)
        f.write(b"unseen")
    config.write_text(config.read_text().replace("scrub_fraction = 0.0", "scrub_fraction = 1.0"))
    r = inkind_run(config, seed=2)
    assert r.exit_status == 1, r.as_dict()
    assert any("thin_delta missed a change in 1 sampled block(s)" in m for m in r.results[0].messages)
    s = r.results[0].stats
    # Every chunk sampled (the delta is empty), then every block scrubbed.
    assert s.objects_repaired == 1 and s.objects_scrubbed == SIZE // CHUNK + SIZE // BLOCK
    assert BLOCK <= s.bytes_received <= BLOCK + FRAMING  # the differing block alone crossed
    assert image_of(inkind_store, "vg0-data").read_bytes() == fake_lvm.data("vg0", "data")
    state = json.loads((inkind_store / ".inkind" / "sources" / "vols.json").read_text())
    assert state["full_pending"] is True


def test_a_failed_read_removes_the_snapshot_on_the_host_and_keeps_the_image(
    fake_lvm, inkind_config, inkind_store, inkind_run, inkind_cli, on_host
):
    config = classic_on_host(fake_lvm, inkind_config, on_host)
    assert inkind_run(config, seed=1).exit_status == 0
    img = image_of(inkind_store, "vg0-root")
    before = img.read_bytes()
    fake_lvm.write("vg0", "root", 0, b"changed")
    fake_lvm.set(unreadable_snapshots_of="root")  # the snapshot's device is gone
    r = inkind_cli("-c", config, "backup")
    assert r.returncode == 2
    [line] = [x for x in r.stderr.splitlines() if x.startswith("inkind: ERROR:")]
    assert line.startswith(f"inkind: ERROR: vols: host {HOST}: vg0/root: "), r.stderr
    assert line.endswith(": No such file or directory"), r.stderr
    assert fake_lvm.names("vg0") == ["root"]  # removed on the host
    assert img.read_bytes() == before
    assert inkind_cli("-c", config, "verify").returncode == 0


def test_a_connection_cut_after_lvcreate_leaves_a_snapshot_the_next_run_removes(
    fake_lvm, inkind_config, inkind_store, inkind_run, inkind_cli, on_host
):
    config = classic_on_host(fake_lvm, inkind_config, on_host)
    assert inkind_run(config, seed=1).exit_status == 0
    before = image_of(inkind_store, "vg0-root").read_bytes()
    fake_lvm.set(kill_after_lvcreate=True)  # kills its parent: the remote side dies mid-op
    r = inkind_cli("-c", config, "backup")
    assert r.returncode == 2
    [line] = [x for x in r.stderr.splitlines() if x.startswith("inkind: ERROR:")]
    assert f"host {HOST}: the remote side ended mid-reply" in line, r.stderr
    [left] = snapshots(fake_lvm)  # the host could not be told to remove it
    assert image_of(inkind_store, "vg0-root").read_bytes() == before
    assert inkind_cli("-c", config, "verify").returncode == 0
    fake_lvm.set(kill_after_lvcreate=False)
    again = inkind_run(config, seed=2)
    assert again.exit_status == 0, again.as_dict()
    assert ["lvremove", "-y", f"vg0/{left}"] in fake_lvm.calls("lvremove")
    assert fake_lvm.names("vg0") == ["root"]


def test_an_unreachable_host_is_one_line_exit_2_and_the_image_stays(
    fake_lvm, inkind_config, inkind_store, inkind_cli, on_host
):
    config = thin_on_host(fake_lvm, inkind_config, on_host)
    assert inkind_cli("-c", config, "backup").returncode == 0
    before = image_of(inkind_store, "vg0-data").read_bytes()
    with socket.socket() as free:  # a port where nothing listens
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    config.write_text(re.sub(r"-p \d+", f"-p {port}", config.read_text(), count=1))
    fake_lvm.clear_calls()
    r = inkind_cli("-c", config, "backup")
    assert r.returncode == 2
    errors = [x for x in r.stderr.splitlines() if x.startswith("inkind: ERROR:")]
    assert len(errors) == 1 and f"host {HOST}: connection refused" in errors[0], r.stderr
    assert fake_lvm.calls() == []
    assert image_of(inkind_store, "vg0-data").read_bytes() == before
    assert inkind_cli("-c", config, "verify").returncode == 0


def test_a_pattern_that_matches_nothing_on_the_host_names_it(
    fake_lvm, inkind_config, inkind_store, inkind_cli, on_host
):
    config = thin_on_host(fake_lvm, inkind_config, on_host)
    config.write_text(config.read_text().replace('"vg0/data"', '"vg0/nothing*"'))
    r = inkind_cli("-c", config, "backup")
    assert r.returncode == 2
    assert f"lvm: no logical volume on host {HOST} matches 'vg0/nothing*'" in r.stderr, r.stderr


@pytest.mark.parametrize(
    ("script", "why"),
    [
        ("echo 'bad metadata' >&2; exit 1", "thin_delta exited 1: bad metadata"),
        ('echo \'<superblock data_block_size="128"><diff><different begin="1"\'', "does not parse"),
    ],
)
def test_a_thin_delta_failing_there_releases_the_pool_and_removes_the_snapshot(  # size: fixtures
    fake_lvm, inkind_config, inkind_store, inkind_run, on_host, tmp_path, script, why
):
    config = thin_on_host(fake_lvm, inkind_config, on_host)
    assert inkind_run(config, seed=1).exit_status == 0
    [base] = snapshots(fake_lvm)
    img = image_of(inkind_store, "vg0-data")
    before = img.read_bytes()
    fake_lvm.write("vg0", "data", 0, b"new data")
    shadow = tmp_path / "host-bin" / "thin_delta"
    shadow.write_text(f"#!/bin/sh\n{script}\n")
    shadow.chmod(0o755)
    fake_lvm.clear_calls()
    r = inkind_run(config, seed=2)
    assert r.exit_status == 2
    [msg] = r.results[0].messages
    assert msg.startswith(f"host {HOST}: vg0/data: thin_delta") and why in msg and "\n" not in msg
    assert img.read_bytes() == before
    assert snapshots(fake_lvm) == [base]  # the new snapshot removed there, the base kept
    assert [c[-1] for c in fake_lvm.calls("dmsetup")] == ["reserve_metadata_snap", "release_metadata_snap"]
    assert not fake_lvm.state()["pools"]["vg0/pool"]["reserved"]


def test_scrub_of_a_host_volume_checks_the_store_alone(
    fake_lvm, inkind_config, inkind_store, inkind_run, inkind_cli, on_host
):
    config = thin_on_host(fake_lvm, inkind_config, on_host)
    assert inkind_run(config, seed=1).exit_status == 0
    fake_lvm.clear_calls()
    r = inkind_run(config, "scrub", fraction=1.0, seed=2)
    assert r.exit_status == 0, r.as_dict()
    assert r.results[0].stats.objects_scrubbed == SIZE // BLOCK  # every block, against the manifest
    assert fake_lvm.calls() == []  # nothing asked of the host
    img = image_of(inkind_store, "vg0-data")
    with open(img, "r+b") as f:  # a failing disk under the store
        f.seek(BLOCK + 7)
        f.write(b"\xff")
    bad = inkind_cli("-c", config, "scrub", "--fraction", "1")
    assert bad.returncode == 2 and "vg0-data.img" in bad.stderr, bad.stderr


def test_a_dry_run_over_a_host_writes_nothing_and_keeps_the_base(
    fake_lvm, inkind_config, inkind_store, inkind_run, on_host
):
    config = thin_on_host(fake_lvm, inkind_config, on_host)
    assert inkind_run(config, seed=1).exit_status == 0
    [base] = snapshots(fake_lvm)
    img = image_of(inkind_store, "vg0-data")
    before = img.read_bytes()
    fake_lvm.write("vg0", "data", 3 * BLOCK, random_bytes(BLOCK, 4))
    r = inkind_run(config, seed=2, dry_run=True)
    assert r.exit_status == 0, r.as_dict()
    assert r.results[0].stats.objects_changed == 1
    assert img.read_bytes() == before and snapshots(fake_lvm) == [base]
    real = inkind_run(config, seed=3)
    assert real.exit_status == 0 and real.results[0].stats.objects_changed == 1
    assert img.read_bytes() == fake_lvm.data("vg0", "data")


def test_a_volume_read_from_a_host_restores_to_it_with_dd_over_ssh(
    fake_lvm, inkind_config, inkind_store, inkind_run, inkind_cli, on_host, tmp_path
):
    config = thin_on_host(fake_lvm, inkind_config, on_host)
    assert inkind_run(config, seed=1).exit_status == 0
    dest = tmp_path / "restored.img"
    r = inkind_cli("-c", config, "restore", "vols", "--to", f"127.0.0.1:{dest}", "--run")
    assert r.returncode == 0, r.stderr
    assert dest.read_bytes() == fake_lvm.data("vg0", "data")


def test_a_connection_lost_on_one_volume_leaves_the_others_unread_in_one_line(
    fake_lvm, inkind_config, inkind_store, inkind_cli, on_host
):
    for lv in ("a", "b"):
        fake_lvm.linear("vg0", lv, SIZE // 4)
        fake_lvm.write("vg0", lv, 0, random_bytes(SIZE // 4, ord(lv)))
    table = {"type": "lvm", "volumes": ["vg0/*"], "block_size": BLOCK, "snapshot_size": "1G", **on_host}
    config = inkind_config({"vols": table})
    fake_lvm.set(kill_after_lvcreate=True)
    r = inkind_cli("-c", config, "backup")
    assert r.returncode == 2
    [line] = [x for x in r.stderr.splitlines() if x.startswith("inkind: ERROR:")]
    assert line.startswith(f"inkind: ERROR: vols: host {HOST}: the remote side ended mid-reply"), r.stderr
    assert line.endswith("(snapshot vg0/a); vg0/b: not read (the previous image of each is kept)"), r.stderr
    assert len(fake_lvm.calls("lvcreate")) == 1  # nothing more was asked of the host
    fake_lvm.set(kill_after_lvcreate=False)
    again = inkind_cli("-c", config, "backup")
    assert again.returncode == 0, again.stderr
    assert fake_lvm.names("vg0") == ["a", "b"]  # the leftover of vg0/a removed
    for lv in ("a", "b"):
        assert image_of(inkind_store, f"vg0-{lv}").read_bytes() == fake_lvm.data("vg0", lv)


def test_a_classic_snapshot_that_fills_up_there_discards_the_image(
    fake_lvm, inkind_config, inkind_store, inkind_run, on_host
):
    config = classic_on_host(fake_lvm, inkind_config, on_host)
    assert inkind_run(config, seed=1).exit_status == 0
    img = image_of(inkind_store, "vg0-root")
    before = img.read_bytes()
    fake_lvm.write("vg0", "root", 0, b"changed while the snapshot filled up")
    fake_lvm.set(fill_snapshots=True)  # lvs on the host: the snapshot is invalid
    r = inkind_run(config, seed=2)
    assert r.exit_status == 2
    [msg] = r.results[0].messages
    assert msg.startswith(f"host {HOST}: vg0/root: snapshot vg0/inkind-vols-root-"), msg
    assert "filled up while it was read" in msg and "snapshot_size = '2G'" in msg
    assert img.read_bytes() == before  # checked before the commit
    assert fake_lvm.names("vg0") == ["root"]


@pytest.mark.parametrize("inkind_store_fs", ["ext4"], indirect=True)  # the store's writes: tested above
@pytest.mark.parametrize(("make", "volume"), [(thin_on_host, "data"), (classic_on_host, "root")])
def test_a_restricted_key_runs_the_lvm_commands_a_backup_needs(  # size: fixtures
    make, volume, fake_lvm, inkind_config, inkind_store, inkind_run, inkind_sshd, on_host
):
    with inkind_sshd.restricted_login(on_host["remote_python"]) as ssh:
        config = make(fake_lvm, inkind_config, {**on_host, "ssh_command": ssh})
        assert inkind_run(config, seed=1).exit_status == 0
        fake_lvm.write("vg0", volume, 3 * BLOCK, b"changed")
        r = inkind_run(config, seed=2)
    assert r.exit_status == 0, r.as_dict()
    assert image_of(inkind_store, f"vg0-{volume}").read_bytes() == fake_lvm.data("vg0", volume)
    assert fake_lvm.calls("lvremove")  # the old base or the classic snapshot, removed through the key
    if make is thin_on_host:
        assert [c[-1] for c in fake_lvm.calls("dmsetup")][-2:] == [
            "reserve_metadata_snap",
            "release_metadata_snap",
        ]


def test_a_first_copy_cut_short_goes_on_from_the_blocks_it_fetched(
    fake_lvm, inkind_config, inkind_store, inkind_run, on_host
):
    config = thin_on_host(fake_lvm, inkind_config, on_host)
    with pytest.MonkeyPatch.context() as mp:
        cut_after(mp, "blocks", 4)
        cut = inkind_run(config, seed=1)
    assert cut.exit_status == 2 and "the network went away" in " ".join(cut.results[0].messages)
    [left] = snapshots(fake_lvm)  # the connection is gone: the next run removes it
    partial = inkind_store / ".inkind" / "manifests" / "vols" / "vg0-data.img.partial"
    assert partial.stat().st_blocks * 512 >= 4 * BLOCK
    r = inkind_run(config, seed=2)  # a new snapshot: its blocks are compared, not its name
    assert r.exit_status == 0, r.as_dict()
    rest = SIZE // 2 - 4 * BLOCK
    assert rest <= r.results[0].stats.bytes_received <= rest + FRAMING
    assert image_of(inkind_store, "vg0-data").read_bytes() == fake_lvm.data("vg0", "data")
    assert not partial.exists() and left not in snapshots(fake_lvm) and len(snapshots(fake_lvm)) == 1
