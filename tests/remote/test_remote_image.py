"""The image source with ``host``: read through the real test sshd, only
changed blocks cross (Stats.bytes_received), the stored image equals the
source, and a host that cannot be reached leaves the stored copy intact."""

from __future__ import annotations

import os
import random
import re
import shlex
import signal
import socket
from pathlib import Path

import pytest

from inkind.engines.image.remote import NO_DATA, RemoteDigests
from inkind.remote.channel import Channel
from inkind.remote.wire import BLOCK_HASHES, block_digest, preferred_hash
from inkind.stats import Stats
from inkind.testing import dirtied_bytes
from inkind.testing.faults import cut_after

pytestmark = pytest.mark.root
BS = 256 << 10
BLOCKS = 40
FRAMING = 64 << 10  # generous bound on what crosses beside the blocks: hello, hashes, headers


def make_image(path: Path, rng: random.Random) -> None:
    """Data in every other block, holes between."""
    with open(path, "wb") as f:
        f.truncate(BLOCKS * BS)
        for i in range(0, BLOCKS, 2):
            f.seek(i * BS)
            f.write(rng.randbytes(BS))


def rewrite(path: Path, blocks: dict[int, bytes]) -> None:
    with open(path, "r+b") as f:
        for i, data in blocks.items():
            f.seek(i * BS)
            f.write(data)


@pytest.fixture
def remote_image(inkind_sshd, inkind_config, tmp_path):
    image = tmp_path / "vm1.img"
    make_image(image, random.Random(7))
    table = {
        "type": "image",
        "path": image,
        "block_size": "256K",
        "host": "root@127.0.0.1",
        "ssh_command": shlex.join(inkind_sshd.ssh_command()),
    }
    return image, inkind_config({"disk": table})


def stored(store: Path) -> Path:
    return store / "disk" / "vm1.img"


def test_first_run_fetches_the_data_blocks_and_stores_the_image(remote_image, inkind_run, inkind_store):
    image, cfg = remote_image
    report = inkind_run(cfg, seed=1)
    assert report.exit_status == 0, report.as_dict()
    s = report.results[0].stats
    assert stored(inkind_store).read_bytes() == image.read_bytes()
    data = BLOCKS // 2 * BS
    assert data <= s.bytes_received <= data + FRAMING  # random data: zlib does not pay, holes are not sent
    assert os.stat(stored(inkind_store)).st_blocks * 512 < data + 2 * BS  # the holes stay holes
    recorded = RemoteDigests.load(os.open(inkind_store, os.O_RDONLY), ".inkind/manifests/disk/vm1.img.remote")
    assert recorded is not None and recorded.size == BLOCKS * BS


def test_a_first_run_writes_the_fetched_blocks_once(remote_image, inkind_run, inkind_store):
    """They arrive in a scratch file on the store's filesystem, which
    becomes the image (adopted): not written there and again into it."""
    _image, cfg = remote_image
    before = dirtied_bytes()
    report = inkind_run(cfg, seed=1)
    assert report.exit_status == 0, report.as_dict()
    data = BLOCKS // 2 * BS
    derived = sum(p.stat().st_size for p in (inkind_store / ".inkind" / "manifests" / "disk").iterdir())
    assert report.results[0].stats.bytes_written == data + derived  # the blocks, the manifest and digests
    assert data <= dirtied_bytes() - before < data * 3 // 2


def test_a_run_without_change_moves_only_the_hashes_and_writes_nothing(
    remote_image, assert_second_run_writes_nothing
):
    _image, cfg = remote_image
    second = assert_second_run_writes_nothing(cfg)
    assert second.results[0].stats.bytes_received < FRAMING


def test_changed_blocks_alone_cross_and_a_zeroed_block_becomes_a_hole(remote_image, inkind_run, inkind_store):
    image, cfg = remote_image
    assert inkind_run(cfg, seed=1).exit_status == 0
    rng = random.Random(9)
    rewrite(image, {4: rng.randbytes(BS), 11: rng.randbytes(100), 6: bytes(BS)})
    report = inkind_run(cfg, seed=3)
    assert report.exit_status == 0, report.as_dict()
    s = report.results[0].stats
    # Block 4 whole; block 11 (100 bytes, then zeros) compressed; block 6
    # is zeros now: described, not sent.
    assert BS <= s.bytes_received <= BS + FRAMING
    assert s.objects_changed == 1
    assert stored(inkind_store).read_bytes() == image.read_bytes()
    again = inkind_run(cfg, seed=4)
    assert again.results[0].stats.bytes_written == 0


def test_an_unreachable_host_is_one_line_exit_2_and_the_stored_image_stays(
    remote_image, inkind_cli, inkind_store
):
    image, cfg = remote_image
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    before = stored(inkind_store).read_bytes()
    rewrite(image, {0: random.Random(1).randbytes(BS)})
    with socket.socket() as free:  # a port where nothing listens
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    cfg.write_text(re.sub(r"-p \d+", f"-p {port}", cfg.read_text(), count=1))
    r = inkind_cli("-c", cfg, "backup")
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if "127.0.0.1" in line]
    assert lines and "connection refused" in lines[0], r.stderr
    assert stored(inkind_store).read_bytes() == before
    assert inkind_cli("-c", cfg, "verify").returncode == 0


def test_lost_digests_are_found_by_verify_and_the_next_run_fetches_every_data_block(
    remote_image, inkind_run, inkind_cli, inkind_store
):
    image, cfg = remote_image
    assert inkind_run(cfg, seed=1).exit_status == 0
    digests = inkind_store / ".inkind" / "manifests" / "disk" / "vm1.img.remote"
    digests.unlink()
    r = inkind_cli("-c", cfg, "verify")
    assert r.returncode != 0 and "vm1.img.remote" in r.stdout + r.stderr
    report = inkind_run(cfg, seed=2)
    assert report.exit_status == 0, report.as_dict()
    s = report.results[0].stats
    assert s.bytes_received >= BLOCKS // 2 * BS  # not trusted: every block with data crossed
    assert s.bytes_written == len(digests.read_bytes())  # the image was equal: only the digests
    assert stored(inkind_store).read_bytes() == image.read_bytes()


def test_a_host_claiming_more_blocks_than_the_limit_is_refused_before_any_is_read(
    remote_image, inkind_run, inkind_store, monkeypatch
):
    from inkind.engines.image import remote

    _image, cfg = remote_image
    monkeypatch.setattr(remote, "MAX_BLOCKS", BLOCKS - 1)
    report = inkind_run(cfg, seed=1)
    assert report.exit_status == 2
    error = " ".join(report.results[0].messages)
    assert "host root@127.0.0.1" in error and f"over the {BLOCKS - 1}" in error
    assert report.results[0].stats.bytes_received < FRAMING
    assert not stored(inkind_store).exists()


def test_the_quick_check_skips_hashing_an_unchanged_file_and_a_touch_rehashes_it(remote_image, inkind_run):
    image, cfg = remote_image
    assert inkind_run(cfg, seed=1).exit_status == 0
    quiet = inkind_run(cfg, seed=2).results[0].stats
    assert quiet.bytes_received < BLOCKS * 17  # the hello and a stat: no block hashes crossed
    assert (quiet.bytes_written, quiet.objects_changed) == (0, 0)
    st = os.stat(image)
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # same content, new mtime
    touched = inkind_run(cfg, seed=3).results[0].stats
    assert BLOCKS * 17 <= touched.bytes_received < FRAMING  # hashed again, no block fetched
    assert touched.objects_changed == 0
    full = inkind_run(cfg, seed=4, full=True).results[0].stats
    assert full.bytes_received >= BLOCKS // 2 * BS  # a full pass trusts no record: every data block


def test_digests_keep_their_block_hash_until_a_full_pass_takes_the_hosts(
    remote_image, inkind_run, inkind_store
):
    """Digests recorded with the other block hash (a host whose CPU changed,
    or a store from before the host's choice) are still compared, so only
    changed blocks cross; a full pass, which fetches every block anyway,
    records the host's own hash."""
    image, cfg = remote_image
    assert inkind_run(cfg, seed=1).exit_status == 0
    root = os.open(inkind_store, os.O_RDONLY)
    rel = ".inkind/manifests/disk/vm1.img.remote"
    try:
        recorded = RemoteDigests.load(root, rel)
        assert recorded is not None and recorded.hash == preferred_hash()
        other = next(name for name in BLOCK_HASHES if name != recorded.hash)
        content, digest = stored(inkind_store).read_bytes(), block_digest(other)
        recorded.digests = b"".join(
            old if old == NO_DATA else digest(content[i * BS : (i + 1) * BS])
            for i, old in enumerate(recorded.digests[n : n + 16] for n in range(0, len(recorded.digests), 16))
        )
        recorded.hash = other
        recorded.save(root, rel, Stats())
        rewrite(image, {4: random.Random(5).randbytes(BS)})
        s = inkind_run(cfg, seed=2).results[0].stats
        assert BS <= s.bytes_received <= BS + FRAMING  # compared in the recorded hash: one block crossed
        assert s.objects_changed == 1 and RemoteDigests.load(root, rel).hash == other
        assert stored(inkind_store).read_bytes() == image.read_bytes()
        full = inkind_run(cfg, seed=3, full=True).results[0].stats
        assert full.bytes_received >= BLOCKS // 2 * BS
        assert RemoteDigests.load(root, rel).hash == preferred_hash()
    finally:
        os.close(root)


def test_a_change_comes_back_with_the_hashes_in_one_request(
    remote_image, inkind_run, inkind_store, monkeypatch
):
    """With trusted digests the host gets them with the hashes request and
    sends the changed blocks in the same stream: no blocks request follows."""
    from inkind.remote.channel import Channel

    image, cfg = remote_image
    assert inkind_run(cfg, seed=1).exit_status == 0
    asked: list[list[int]] = []
    original = Channel.blocks

    def blocks(self, path, indices, *args, **kwargs):
        asked.append(list(indices))
        return original(self, path, indices, *args, **kwargs)

    monkeypatch.setattr(Channel, "blocks", blocks)
    rewrite(image, {2: random.Random(3).randbytes(BS), 8: random.Random(4).randbytes(BS)})
    s = inkind_run(cfg, seed=2).results[0].stats
    assert asked == []
    assert 2 * BS <= s.bytes_received <= 2 * BS + FRAMING
    assert stored(inkind_store).read_bytes() == image.read_bytes()


def test_the_remote_side_killed_mid_fetch_keeps_the_stored_image(
    remote_image, inkind_run, inkind_cli, inkind_store, monkeypatch
):
    """The remote side dies (SIGKILL) after the first block's record (a
    changed block comes with the hashes) arrived: the run fails in one line
    naming the host, the stored image and its manifest are the previous
    run's, and the next run stores the change."""
    image, cfg = remote_image
    assert inkind_run(cfg, seed=1).exit_status == 0
    before = stored(inkind_store).read_bytes()
    rewrite(image, {i: random.Random(i).randbytes(BS) for i in range(0, BLOCKS, 4)})
    real = Channel.hashes

    def killed_after_one(self, *args, **kwargs):
        stream = real(self, *args, **kwargs)
        blocks = iter(stream.stream)

        def first_then_kill():
            yield next(blocks)
            os.kill(self.hello["pid"], signal.SIGKILL)
            yield from blocks

        stream.stream = first_then_kill()
        return stream

    monkeypatch.setattr(Channel, "hashes", killed_after_one)
    killed = inkind_run(cfg, seed=2)
    assert killed.exit_status == 2, killed.as_dict()
    (line,) = killed.results[0].messages
    # (what ssh says of a remote side killed by a signal: its exit status 255)
    assert line == "host root@127.0.0.1: the remote side ended mid-reply (exit status 255)"
    assert stored(inkind_store).read_bytes() == before
    assert inkind_cli("-c", cfg, "verify").returncode == 0
    monkeypatch.undo()
    assert inkind_run(cfg, seed=3).exit_status == 0
    assert stored(inkind_store).read_bytes() == image.read_bytes()


def test_a_first_copy_cut_short_goes_on_from_the_blocks_it_fetched(remote_image, inkind_run, inkind_store):
    image, cfg = remote_image
    with pytest.MonkeyPatch.context() as mp:
        cut_after(mp, "blocks", 5)
        cut = inkind_run(cfg, seed=1)
    assert cut.exit_status == 2 and "the network went away" in " ".join(cut.results[0].messages)
    partial = inkind_store / ".inkind" / "manifests" / "disk" / "vm1.img.partial"
    assert partial.stat().st_blocks * 512 >= 5 * BS and not stored(inkind_store).exists()  # blocks 0, 2 ... 8
    assert inkind_run(cfg, "verify").exit_status == 0  # nothing stored yet, nothing wrong
    # Since the cut: a fetched block changed there, another zeroed, one not fetched yet changed.
    rng = random.Random(9)
    rewrite(image, {2: rng.randbytes(BS), 4: bytes(BS), 30: rng.randbytes(BS)})
    second = inkind_run(cfg, seed=2)
    assert second.exit_status == 0, second.as_dict()
    s = second.results[0].stats
    fetched = 15 + 1  # the data blocks from 10 on, and block 2 again
    assert fetched * BS <= s.bytes_received <= fetched * BS + FRAMING
    assert stored(inkind_store).read_bytes() == image.read_bytes()
    assert not partial.exists()
    third = inkind_run(cfg, seed=3)  # the digests recorded are the host's: no change, nothing crosses
    assert third.exit_status == 0 and third.results[0].stats.bytes_received < FRAMING
