"""The lvm source on classic (non-thin) volumes: a temporary classic
snapshot per run, read whole against the block manifest, always removed."""

from __future__ import annotations

from lvm_helpers import BLOCK, SIZE, image_of, random_bytes


def classic_setup(fake_lvm, inkind_config, **options):
    fake_lvm.linear("vg0", "root", SIZE)
    fake_lvm.write("vg0", "root", 0, random_bytes(SIZE, 7))
    return inkind_config({"vols": {"type": "lvm", "volume": "vg0/root", "block_size": BLOCK, **options}})


def test_classic_snapshot_each_run(
    fake_lvm, inkind_config, inkind_store, inkind_run, assert_second_run_writes_nothing
):
    config = classic_setup(fake_lvm, inkind_config, snapshot_size="2G")
    assert_second_run_writes_nothing(config)
    assert image_of(inkind_store, "vg0-root").read_bytes() == fake_lvm.data("vg0", "root")
    creates = fake_lvm.calls("lvcreate")
    assert len(creates) == 2
    name = creates[0][creates[0].index("-n") + 1]
    assert name.startswith("inkind-vols-root-")
    assert creates[0][1:] == [
        "-s",
        "-kn",
        "-ay",
        "-pr",
        "--addtag",
        "inkind",
        "-n",
        name,
        "-L",
        "2G",
        "vg0/root",
    ]
    assert fake_lvm.names("vg0") == ["root"]  # removed after each run
    assert len(fake_lvm.calls("lvremove")) == 2


def test_changed_blocks_only_are_written(fake_lvm, inkind_config, inkind_store, inkind_run):
    config = classic_setup(fake_lvm, inkind_config)
    assert inkind_run(config, seed=1).exit_status == 0
    assert "-l" in fake_lvm.calls("lvcreate")[0] and "10%ORIGIN" in fake_lvm.calls("lvcreate")[0]
    fake_lvm.write("vg0", "root", 5 * BLOCK + 1, b"changed")
    r = inkind_run(config, seed=2)
    s = r.results[0].stats
    assert r.exit_status == 0 and s.objects_changed == 1 and s.bytes_read == SIZE
    assert image_of(inkind_store, "vg0-root").read_bytes() == fake_lvm.data("vg0", "root")


def test_filled_snapshot_discards_the_image(fake_lvm, inkind_config, inkind_store, inkind_run):
    config = classic_setup(fake_lvm, inkind_config)
    assert inkind_run(config, seed=1).exit_status == 0
    img = image_of(inkind_store, "vg0-root")
    before = img.read_bytes()
    fake_lvm.write("vg0", "root", 0, b"changed while the snapshot filled up")
    fake_lvm.set(fill_snapshots=True)
    r = inkind_run(config, seed=2)
    assert r.exit_status == 2
    [msg] = r.results[0].messages
    assert "filled up while it was read" in msg and "snapshot_size = '10%ORIGIN'" in msg
    assert img.read_bytes() == before
    assert fake_lvm.names("vg0") == ["root"]


def test_globs_select_volumes_not_snapshots_or_pools(fake_lvm, inkind_config, inkind_store, inkind_run):
    fake_lvm.linear("vg0", "db-1", 2 * BLOCK)
    fake_lvm.linear("vg0", "db-2", 3 * BLOCK)
    fake_lvm.linear("vg0", "web", BLOCK)
    fake_lvm.pool("vg0", "pool")
    fake_lvm.thin("vg0", "pool", "db-thin", 4 * BLOCK)
    fake_lvm.write("vg0", "db-thin", 0, b"thin")
    config = inkind_config({"vols": {"type": "lvm", "volumes": ["vg0/db-*"], "block_size": BLOCK}})
    r = inkind_run(config, seed=1)
    assert r.exit_status == 0, r.as_dict()
    assert sorted(p.name for p in (inkind_store / "vols").iterdir()) == [
        "vg0-db--1.img",
        "vg0-db--2.img",
        "vg0-db--thin.img",
    ]
    assert r.results[0].stats.objects_seen == 3
    # The second run does not pick up the base snapshot of db-thin.
    r = inkind_run(config, seed=2)
    assert r.exit_status == 0 and r.results[0].stats.objects_seen == 3


def test_a_pattern_that_matches_nothing(fake_lvm, inkind_config, inkind_run):
    fake_lvm.linear("vg0", "root", BLOCK)
    config = inkind_config({"vols": {"type": "lvm", "volumes": ["vg0/root", "vg1/*"]}})
    r = inkind_run(config)
    assert r.exit_status == 2 and r.results[0].messages == ["lvm: no logical volume matches 'vg1/*'"]
    assert fake_lvm.calls("lvcreate") == []


def test_one_failing_volume_does_not_stop_the_others(fake_lvm, inkind_config, inkind_store, inkind_run):
    fake_lvm.linear("vg0", "a", BLOCK)
    fake_lvm.linear("vg0", "b", BLOCK)
    config = inkind_config({"vols": {"type": "lvm", "volumes": ["vg0/*"], "block_size": BLOCK}})
    fake_lvm.set(unreadable_snapshots_of="b")
    r = inkind_run(config, seed=1)
    assert r.exit_status == 2
    [msg] = r.results[0].messages
    assert msg.startswith("vg0/b: source ") and "vg0-inkind--vols--b--" in msg and "does not exist" in msg
    assert (inkind_store / "vols" / "vg0-a.img").exists()
    assert not (inkind_store / "vols" / "vg0-b.img").exists()
    assert fake_lvm.names("vg0") == ["a", "b"]  # both snapshots removed
