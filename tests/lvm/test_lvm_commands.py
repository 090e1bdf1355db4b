"""inkind.lvm: device-mapper names, parsing lvs and thin_delta output (the
real tool's, over metadata written by the real thin_restore)."""

from __future__ import annotations

from pathlib import Path

import pytest
from inkind_lvm.options import LvmOptions
from lvm_helpers import CHUNK

from inkind import ConfigError, lvm
from inkind.config import build

SAMPLES = Path(__file__).parent / "samples"


@pytest.mark.parametrize(
    ("vg", "lv", "name"),
    [
        ("vg0", "root", "vg0-root"),
        ("my-vg", "pool", "my--vg-pool"),
        ("my-vg", "web-data", "my--vg-web--data"),
        ("a--b", "c-", "a----b-c--"),
    ],
)
def test_dm_name_doubles_dashes(vg: str, lv: str, name: str) -> None:
    assert lvm.dm_name(vg, lv) == name


def test_parse_lvs_sample() -> None:
    vols = lvm.parse_lvs((SAMPLES / "lvs-thin.json").read_text())
    by = {v.full_name: v for v in vols}
    pool = by["my-vg/pool"]
    assert pool.is_pool and pool.chunk_size == 65536 and pool.metadata_lv == "[pool_tmeta]"
    assert (
        by["my-vg/[pool_tmeta]"].hidden and by["my-vg/[pool_tmeta]"].device == "/dev/mapper/my--vg-pool_tmeta"
    )
    web = by["my-vg/web-data"]
    assert web.is_thin and web.thin_id == 1 and web.size == 4294967296 and web.pool == "pool"
    assert by["my-vg/inkind-web-data-20261124T030000000000Z"].tags == ("inkind",)
    assert by["vg0/root-snap"].invalid and not by["vg0/root"].invalid and not by["vg0/root"].is_thin


@pytest.mark.parametrize(
    "text", ["", "{}", '{"report": []}', "not json", '{"report": [{"lv": [{"lv_name": "x"}]}]}']
)
def test_parse_lvs_garbage(text: str) -> None:
    with pytest.raises(lvm.LvmError, match="does not parse"):
        lvm.parse_lvs(text)


FLAT = """<superblock uuid="" time="1" transaction="3" data_block_size="128" nr_data_blocks="1024">
  <diff left="1" right="2">
    <same begin="0" length="1"/>
    <different begin="1" length="2"/>
    <left_only begin="5" length="1"/>
    <right_only begin="7" length="3"/>
  </diff>
</superblock>"""

VERBOSE = """<superblock uuid="" time="1" transaction="3" data_block_size="128" nr_data_blocks="1024">
  <diff left="1" right="2">
    <same><range begin="0" data_begin="0" length="1"/></same>
    <different><range begin="1" left_data_begin="1" right_data_begin="10" length="2"/></different>
    <left_only><range begin="5" data_begin="2" length="1"/></left_only>
    <right_only><range begin="7" data_begin="11" length="3"/></right_only>
  </diff>
</superblock>"""


@pytest.mark.parametrize("text", [FLAT, VERBOSE])
def test_parse_delta(text: str) -> None:
    d = lvm.parse_delta(text)
    assert d.block_sectors == 128
    assert d.changed == [(1, 2), (7, 3)] and d.discarded == [(5, 1)]
    unit = 128 * 512
    assert d.byte_ranges(100 * unit) == [(unit, 2 * unit), (5 * unit, unit), (7 * unit, 3 * unit)]
    # After a shrink: ranges past the end are dropped or clipped.
    assert d.byte_ranges(8 * unit + 100) == [(unit, 2 * unit), (5 * unit, unit), (7 * unit, unit + 100)]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "printed nothing"),
        ("   \n", "printed nothing"),
        ("<superblock", "does not parse"),
        ('<superblock data_block_size="128"></superblock>', "does not parse"),
        (
            '<superblock data_block_size="128"><diff><odd begin="1" length="1"/></diff></superblock>',
            "does not parse",
        ),
        ('<superblock><diff><different begin="1" length="1"/></diff></superblock>', "does not parse"),
        ('<superblock data_block_size="0"><diff/></superblock>', "not positive"),
    ],
)
def test_parse_delta_failures(text: str, why: str) -> None:
    with pytest.raises(lvm.LvmError, match=why):
        lvm.parse_delta(text)


def test_real_thin_delta_through_a_reserved_metadata_snapshot(fake_lvm) -> None:
    """The fake pool's metadata is real: thin_delta -m reads it once
    dmsetup (emulated) has reserved the metadata snapshot, and not before."""
    fake_lvm.pool("my-vg", "thin-pool", chunk=CHUNK)
    fake_lvm.thin("my-vg", "thin-pool", "data", 16 * CHUNK)
    fake_lvm.write("my-vg", "data", 0, b"x" * 4 * CHUNK)
    origin = lvm.find(lvm.list_volumes(), "my-vg", "data")
    lvm.create_snapshot(origin, "snap1", None)
    fake_lvm.write("my-vg", "data", CHUNK, b"y")  # chunk 1: copied on write
    fake_lvm.write("my-vg", "data", 9 * CHUNK, b"z")  # chunk 9: newly provisioned
    fake_lvm.discard("my-vg", "data", 3 * CHUNK, CHUNK)
    vols = lvm.list_volumes()
    pool = lvm.find(vols, "my-vg", "thin-pool")
    meta = lvm.find(vols, "my-vg", pool.metadata_lv)
    snap1 = lvm.find(vols, "my-vg", "snap1")
    with pytest.raises(lvm.LvmError, match="thin_delta between thin ids"):
        lvm.thin_delta(meta.device, snap1.thin_id, origin.thin_id)  # no metadata snapshot yet
    with lvm.metadata_snapshot(pool):
        delta = lvm.thin_delta(meta.device, snap1.thin_id, origin.thin_id)
    assert delta.block_sectors * 512 == CHUNK
    assert delta.changed == [(1, 1), (9, 1)] and delta.discarded == [(3, 1)]
    assert [c[1:] for c in fake_lvm.calls("dmsetup")] == [
        ["message", "my--vg-thin--pool-tpool", "0", "reserve_metadata_snap"],
        ["message", "my--vg-thin--pool-tpool", "0", "release_metadata_snap"],
    ]


def test_metadata_snapshot_released_when_the_body_fails(fake_lvm) -> None:
    fake_lvm.pool("vg0", "pool")
    pool = lvm.find(lvm.list_volumes(), "vg0", "pool")
    with pytest.raises(RuntimeError), lvm.metadata_snapshot(pool):
        raise RuntimeError("boom")
    assert [c[-1] for c in fake_lvm.calls("dmsetup")] == ["reserve_metadata_snap", "release_metadata_snap"]
    assert not fake_lvm.state()["pools"]["vg0/pool"]["reserved"]


@pytest.mark.parametrize(
    ("table", "why"),
    [
        ({}, "set exactly one of volume"),
        ({"volume": "vg0/a", "volumes": ["vg0/b"]}, "set exactly one of volume"),
        ({"volume": "vg0"}, "volume: 'vg0' is not \"vg/lv\""),
        ({"volumes": ["vg0/*", "a b/c"]}, "volumes: 'a b/c'"),
        ({"volume": "vg0/a", "snapshot_size": "lots"}, "snapshot_size: 'lots'"),
        ({"volume": "vg0/a", "block_size": "3M"}, "block_size: must be a power of two"),
    ],
)
def test_options_errors_name_the_key(table: dict, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        build(LvmOptions, table, "sources.v")


def test_options_accept_sizes_and_globs() -> None:
    for size in ("10%ORIGIN", "20%FREE", "2G", "512m", "1.5g"):
        build(LvmOptions, {"volumes": ["vg*/db-?", "vg0/[ab]*"], "snapshot_size": size}, "sources.v")
