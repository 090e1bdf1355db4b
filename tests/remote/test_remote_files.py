"""The files source with ``host``: a tree read through the real test sshd,
stored as a local backup of the same tree stores it; only what is new or
changed crosses (Stats.bytes_received); a host that cannot be reached
leaves the stored tree intact."""

from __future__ import annotations

import os
import random
import shlex
from pathlib import Path

import pytest
from remote_helpers import installed_sudoers, make_tree

from inkind.engines.tree import pull, pullblocks
from inkind.remote.channel import Channel
from inkind.testing import flip_byte, tree_diff
from inkind.testing.sshd import make_key

pytestmark = pytest.mark.root
LISTING = 64 << 10  # generous bound on what crosses beside file data: hello, listing, headers


@pytest.fixture
def remote_tree(inkind_sshd, inkind_config, tmp_path):
    src = tmp_path / "srv"
    src.mkdir()
    make_tree(src)
    table = _source_table(src, inkind_sshd)
    return src, lambda **more: inkind_config({"web": {**table, **more}})


def _source_table(src: Path, sshd) -> dict:
    """A files source of ``src`` read through the test sshd."""
    return {
        "type": "files",
        "path": src,
        "host": "root@127.0.0.1",
        "ssh_command": shlex.join(sshd.ssh_command()),
    }


def file_bytes(src: Path) -> int:
    return sum(p.stat().st_size for p in src.rglob("*") if p.is_file() and not p.is_symlink())


def test_first_run_stores_the_tree_as_a_local_backup_does(
    remote_tree, inkind_run, inkind_store, inkind_config
):
    src, config = remote_tree
    report = inkind_run(config(), seed=1)
    assert report.exit_status == 0, report.as_dict()
    s = report.results[0].stats
    assert tree_diff(src, inkind_store / "web") == []
    # Each file's data crossed once (the hard link's second path not at all;
    # the hole was described); some of it compresses.
    data = file_bytes(src) - len("127.0.0.1 localhost\n") - (6 << 20) + len(b"data in the middle")
    assert data * 0.9 <= s.bytes_received <= data + LISTING
    local = inkind_config({"here": {"type": "files", "path": src}})
    assert inkind_run(local, seed=1).exit_status == 0
    assert tree_diff(inkind_store / "here", inkind_store / "web") == []
    assert os.stat(inkind_store / "web" / "sparse.img").st_blocks * 512 < 1 << 20  # the hole stays one


def test_a_run_without_change_moves_only_the_listing_and_writes_nothing(
    remote_tree, assert_second_run_writes_nothing
):
    _src, config = remote_tree
    second = assert_second_run_writes_nothing(config())
    assert second.results[0].stats.bytes_received < LISTING


def test_changes_alone_cross_and_a_full_pass_removes_what_is_gone(remote_tree, inkind_run, inkind_store):
    src, config = remote_tree
    cfg = config()
    assert inkind_run(cfg, seed=1).exit_status == 0
    rng = random.Random(8)
    (src / "etc" / "new").write_bytes(rng.randbytes(200_000))
    (src / "etc" / "deep" / "er" / "bin").write_bytes(rng.randbytes(100_000))
    (src / "caf\xe9".encode("latin-1").decode("utf-8", "surrogateescape")).unlink()
    os.rename(src / "etc" / "deep", src / "etc" / "moved")
    report = inkind_run(cfg, seed=2, full=True)
    assert report.exit_status == 0, report.as_dict()
    s = report.results[0].stats
    assert 300_000 <= s.bytes_received <= 300_000 + LISTING
    assert tree_diff(src, inkind_store / "web") == []


def test_excludes_and_cache_directories_stay_on_the_host(remote_tree, inkind_run, inkind_store):
    src, config = remote_tree
    (src / "cache").mkdir()
    (src / "cache" / "CACHEDIR.TAG").write_bytes(b"Signature: 8a477f597d28d172789f06886806bc55\n")
    (src / "cache" / "big").write_bytes(bytes(100_000))
    (src / "etc" / "x.log").write_text("log")
    report = inkind_run(config(exclude=["*.log", "/sparse.img"]), seed=1)
    assert report.exit_status == 0, report.as_dict()
    stored = inkind_store / "web"
    assert not (stored / "cache").exists() and not (stored / "etc" / "x.log").exists()
    assert not (stored / "sparse.img").exists() and (stored / "etc" / "hosts").exists()


def test_many_files_over_many_pages_and_batches(remote_tree, inkind_run, inkind_store, monkeypatch):
    src, config = remote_tree
    for d in range(6):
        sub = src / "many" / f"d{d}"
        sub.mkdir(parents=True)
        for f in range(40):
            (sub / f"f{f:02}").write_bytes(b"%d-%d" % (d, f))
    monkeypatch.setattr(pull, "PAGE", 7)
    monkeypatch.setattr(pull, "BATCH_FILES", 5)
    monkeypatch.setattr(pull, "BATCH_DIRS", 2)
    report = inkind_run(config(), seed=1)
    assert report.exit_status == 0, report.as_dict()
    assert tree_diff(src, inkind_store / "web") == []
    (src / "many" / "d3" / "f07").write_bytes(b"changed")
    report = inkind_run(config(), seed=2)
    assert report.results[0].stats.objects_changed == 1
    assert tree_diff(src, inkind_store / "web") == []


def test_scrub_fetches_a_corrupt_file_again(remote_tree, inkind_run, inkind_store, inkind_cli):
    src, config = remote_tree
    cfg = config()
    assert inkind_run(cfg, seed=1).exit_status == 0
    stored = inkind_store / "web" / "etc" / "deep" / "er" / "bin"
    flip_byte(stored)
    r = inkind_cli("-c", cfg, "scrub", "--fraction", "1", "web")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "web/etc/deep/er/bin" in r.stderr
    assert stored.read_bytes() == (src / "etc" / "deep" / "er" / "bin").read_bytes()
    assert tree_diff(src, inkind_store / "web") == []
    assert inkind_cli("-c", cfg, "verify", "web").returncode == 0


def _refused(sshd, tmp_path) -> dict:
    argv = sshd.ssh_command()
    argv[argv.index("-p") + 1] = "1"  # nothing listens there
    return {"ssh_command": shlex.join(argv)}


def _stranger(sshd, tmp_path) -> dict:
    return {"ssh_command": shlex.join(sshd.ssh_command(key=make_key(tmp_path / "stranger_key")))}


def _impostor(sshd, tmp_path) -> dict:
    known = tmp_path / "known_hosts_changed"
    known.write_text(sshd.known_hosts_line(make_key(tmp_path / "impostor_host_key").with_suffix(".pub")))
    return {"ssh_command": shlex.join(sshd.ssh_command(known_hosts=known))}


def _no_python(sshd, tmp_path) -> dict:
    return {"remote_python": "python3-nowhere"}


@pytest.mark.parametrize("inkind_store_fs", ["ext4"], indirect=True)  # the store's filesystem cannot matter
@pytest.mark.parametrize(
    ("breaks", "line"),
    [
        (_refused, "web: host root@127.0.0.1: connection refused"),
        (_stranger, "web: host root@127.0.0.1: authentication failed: permission denied"),
        (_impostor, "web: host root@127.0.0.1: the host key has changed (ssh refuses it)"),
        (_no_python, "web: host root@127.0.0.1: python3-nowhere: command not found on the host"),
    ],
)
def test_a_host_out_of_reach_fails_in_one_line_and_leaves_the_stored_tree_intact(
    breaks, line, remote_tree, inkind_run, inkind_cli, inkind_store, inkind_sshd, tmp_path
):
    src, config = remote_tree
    assert inkind_run(config(), seed=1).exit_status == 0
    (src / "etc" / "hosts").write_text("changed\n")
    broken = config(**breaks(inkind_sshd, tmp_path))
    r = inkind_cli("-c", broken, "backup")
    assert r.returncode == 2
    errors = [x for x in r.stderr.splitlines() if ": ERROR: " in x]
    assert len(errors) == 1 and line in errors[0], r.stderr
    assert inkind_cli("-c", broken, "verify").returncode == 0
    assert (inkind_store / "web" / "etc" / "hosts").read_text() == "127.0.0.1 localhost\n"
    assert inkind_run(config(), seed=3).exit_status == 0
    assert tree_diff(src, inkind_store / "web") == []


def test_a_large_file_changed_in_a_block_moves_that_block_alone(
    remote_tree, inkind_run, inkind_store, monkeypatch
):
    src, config = remote_tree
    monkeypatch.setattr(pull, "BIG_FILE", 8 << 20)  # (64 MiB otherwise)
    big = src / "etc" / "disk.raw"
    big.write_bytes(random.Random(3).randbytes(12 << 20))
    cfg = config()
    assert inkind_run(cfg, seed=1).exit_status == 0
    with open(big, "r+b") as f:
        f.seek((5 << 20) + 123)
        f.write(b"a few changed bytes")
        f.seek(0, os.SEEK_END)
        f.write(random.Random(4).randbytes(1000))  # and it grew
    report = inkind_run(cfg, seed=2)
    assert report.exit_status == 0, report.as_dict()
    s = report.results[0].stats
    # The 64 KiB block with the change (random: it does not compress) and
    # the new tail block.
    assert (64 << 10) <= s.bytes_received <= (64 << 10) + 1000 + LISTING
    assert s.bytes_written <= 2 * (64 << 10)  # one 64 KiB piece of block 1, and the tail
    assert s.objects_changed == 1
    assert tree_diff(src, inkind_store / "web") == []


def _a_changed_large_file(remote_tree, inkind_run, monkeypatch) -> tuple[Path, Path]:
    """A 12 MiB file stored, then a block of it changed (large from 8 MiB)."""
    src, config = remote_tree
    monkeypatch.setattr(pull, "BIG_FILE", 8 << 20)
    big = src / "etc" / "disk.raw"
    big.write_bytes(random.Random(3).randbytes(12 << 20))
    cfg = config()
    assert inkind_run(cfg, seed=1).exit_status == 0
    with open(big, "r+b") as f:
        f.seek(5 << 20)
        f.write(b"a few changed bytes")
    return src, cfg


def test_a_large_file_of_more_blocks_than_the_limit_crosses_whole(
    remote_tree, inkind_run, inkind_store, monkeypatch
):
    src, cfg = _a_changed_large_file(remote_tree, inkind_run, monkeypatch)
    monkeypatch.setattr(pullblocks, "MAX_BLOCKS", 12 * 16 - 1)  # one fewer than its 64 KiB blocks
    report = inkind_run(cfg, seed=2)
    assert report.exit_status == 0, report.as_dict()
    assert report.results[0].stats.bytes_received >= 12 << 20  # fetched whole, no list of blocks
    assert tree_diff(src, inkind_store / "web") == []


def test_block_hashes_of_another_size_than_the_listed_keep_the_stored_copy(
    remote_tree, inkind_run, inkind_store, monkeypatch
):
    """A host whose hashes claim another size than its listing said (it
    grew meanwhile, or the host lies, to have the server list more blocks)."""
    _src, cfg = _a_changed_large_file(remote_tree, inkind_run, monkeypatch)
    before = (inkind_store / "web" / "etc" / "disk.raw").read_bytes()
    real = Channel.hashes

    def claiming_more(self, *args, **kwargs):
        got = real(self, *args, **kwargs)
        got.size += 1 << 40
        return got

    monkeypatch.setattr(Channel, "hashes", claiming_more)
    report = inkind_run(cfg, seed=2)
    assert report.exit_status == 1, report.as_dict()
    assert any(
        "etc/disk.raw: changed while it was read; previous copy kept" in m for m in report.results[0].messages
    )
    assert (inkind_store / "web" / "etc" / "disk.raw").read_bytes() == before


def store_listing(store: Path) -> list[tuple[str, int, int]]:
    return sorted(
        (str(p.relative_to(store)), p.lstat().st_mtime_ns, p.lstat().st_size) for p in store.rglob("*")
    )


def test_a_dry_run_counts_what_the_backup_then_does_and_writes_nothing(remote_tree, inkind_run, inkind_store):
    src, config = remote_tree
    cfg = config()
    for step in ("first", "changed"):
        before = store_listing(inkind_store)
        dry = inkind_run(cfg, seed=7, dry_run=True)
        assert dry.exit_status == 0, dry.as_dict()
        assert store_listing(inkind_store) == before
        real = inkind_run(cfg, seed=7)
        assert real.exit_status == 0, real.as_dict()
        would, did = dry.results[0].stats, real.results[0].stats
        for counter in (
            "objects_seen",
            "objects_changed",
            "objects_unchanged",
            "bytes_written",
            "mtimes_set",
        ):
            assert getattr(would, counter) == getattr(did, counter), (step, counter)
        assert did.objects_changed > 0
        (src / "etc" / "hosts").write_text("changed\n")
        (src / "etc" / "deep" / "added").write_bytes(b"new")


@pytest.mark.parametrize(
    "inkind_store_fs", ["btrfs"], indirect=True
)  # the kill, not the filesystem: see tests/files
def test_a_killed_backup_leaves_a_sound_store_and_the_next_run_completes(
    remote_tree, inkind_kill_and_check, inkind_store
):
    src, config = remote_tree
    for i in range(3000):
        d = src / "many" / f"d{i % 30}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}").write_bytes(os.urandom(2000))
    cfg = config()
    for delay in (0.8, 1.6):
        inkind_kill_and_check(cfg, "web", delay=delay)
        assert tree_diff(src, inkind_store / "web") == []
        (src / f"later{delay}").write_text("changed")


def test_one_ssh_connection_a_source_run(remote_tree, inkind_run, inkind_sshd):
    """Listing, batches of files, a large file's blocks and the scrub all go
    over the one connection the run opens."""
    src, config = remote_tree
    cfg = config(scrub_fraction=1.0)
    for seed in (1, 2):
        before = inkind_sshd.log.count("Accepted publickey")
        (src / "etc" / "hosts").write_text(f"run {seed}\n")
        assert inkind_run(cfg, seed=seed).exit_status == 0
        assert inkind_sshd.log.count("Accepted publickey") - before == 1


@pytest.mark.parametrize("inkind_store_fs", ["ext4"], indirect=True)  # the store's filesystem cannot matter
def test_jobs_with_one_host_down_store_the_others(
    tmp_path, inkind_config, inkind_cli, inkind_store, inkind_sshd
):
    src = tmp_path / "srv"
    make_tree(src)
    table = _source_table(src, inkind_sshd)
    cfg = inkind_config({"web1": table, "web2": {**table, **_refused(inkind_sshd, tmp_path)}, "web3": table})
    r = inkind_cli("-c", cfg, "backup", "--jobs", "2")
    assert r.returncode == 2, r.stderr
    errors = [x for x in r.stderr.splitlines() if ": ERROR: " in x]
    assert errors == [
        "inkind: ERROR: web2: host root@127.0.0.1: connection refused (is sshd running there, on the port ssh_command gives?)"
    ]
    assert tree_diff(src, inkind_store / "web1") == [] and tree_diff(src, inkind_store / "web3") == []
    assert not (inkind_store / "web2").exists() or not any((inkind_store / "web2").iterdir())
    assert inkind_cli("-c", cfg, "verify", "web1", "web3").returncode == 0


@pytest.mark.parametrize("inkind_store_fs", ["ext4"], indirect=True)  # the store's filesystem cannot matter
def test_remote_sudo_reads_as_root_what_the_login_user_cannot(
    tmp_path, inkind_config, inkind_run, inkind_store, inkind_sshd, ssh_user
):
    src = tmp_path / "srv"
    (src / "etc").mkdir(parents=True)
    secret = src / "etc" / "shadow"
    secret.write_text("root only\n")
    os.chmod(secret, 0o600)
    rule = f"Defaults:{ssh_user} !requiretty\n{ssh_user} ALL=(root) NOPASSWD: /usr/bin/python3"
    with installed_sudoers(rule, tmp_path):
        table = {"type": "files", "path": src, "host": f"{ssh_user}@127.0.0.1"}
        table["ssh_command"] = shlex.join(inkind_sshd.ssh_command())
        plain = inkind_run(inkind_config({"web": table}), seed=1)
        assert plain.exit_status == 2  # the user alone cannot even reach it (pytest's 0700 tmp)
        assert plain.results[0].messages == [f"host {ssh_user}@127.0.0.1: {src}: Permission denied"]
        report = inkind_run(inkind_config({"web": {**table, "remote_sudo": True}}), seed=2)
        assert report.exit_status == 0, report.as_dict()
        assert tree_diff(src, inkind_store / "web") == []
        assert (inkind_store / "web" / "etc" / "shadow").read_text() == "root only\n"
