"""A fake LVM over plain files, for machines without device-mapper.

One JSON file named by $FAKE_LVM holds the volumes (rows printed by ``lvs``
exactly as lvm2's JSON report does: every value a string), the thin pools
(chunk size, the block mapping of every thin device) and the calls made.
Each volume's data is a file. Thin pool metadata is real: after every change
the mappings are written as XML and turned into a metadata file by the real
``thin_restore``, so the real ``thin_delta`` reads them. ``dmsetup message
... reserve_metadata_snap`` is emulated on that file the way the kernel does
it: a copy of the superblock in a new block, named by the superblock's
``metadata_snap`` field, both with valid checksums.

Tests import this module to create volumes and to write or discard data
(which updates the mappings as a thin pool would: a write to a chunk shared
with a snapshot gets a new data block).
"""

from __future__ import annotations

import atexit
import json
import os
import struct
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

SB = 4096
META_SIZE = 64 << 20  # room for three devices of 131072 mappings each
_SB_CSUM_XOR = 160774


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc_table()


def _crc32c(data: bytes, crc: int = 0xFFFFFFFF) -> int:
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def _seal(block: bytearray) -> None:
    """Recompute a superblock's checksum (dm-persistent-data's: crc32c of
    everything after the checksum field, seeded with ~0, xor a constant)."""
    struct.pack_into("<I", block, 0, _crc32c(bytes(block[4:SB])) ^ _SB_CSUM_XOR)


def dm_name(vg: str, lv: str) -> str:
    return f"{vg.replace('-', '--')}-{lv.replace('-', '--')}"


# --- state ------------------------------------------------------------------


def load() -> dict[str, Any]:
    """The state. Each thin device's mapping is a list of runs (first chunk,
    first data block, length), consecutive on both sides: an 8 GiB volume
    written in order is one run, not 131072 entries to handle at every fake
    command; only writes and discards (made by tests, not by inkind) unpack."""
    with open(os.environ["FAKE_LVM"]) as f:
        return json.load(f)


def save(state: dict[str, Any]) -> None:
    tmp = os.environ["FAKE_LVM"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.rename(tmp, os.environ["FAKE_LVM"])


def _unpack(runs: list[list[int]]) -> dict[int, int]:
    return {c + i: b + i for c, b, n in runs for i in range(n)}


def called(name: str) -> dict[str, Any]:
    """Record the call; fail as the real tool would when asked to."""
    _time_this_process(name)
    state = load()
    state["calls"].append([name, *sys.argv[1:]])
    save(state)
    if name in state.get("fail", []):
        print(f"  {name}: simulated failure: Input/output error", file=sys.stderr)
        sys.exit(5)
    return state


def _time_this_process(name: str) -> None:
    """With $FAKE_LVM_TIMES set, append this command's lifetime (from process
    start, its children included) to that file, so a benchmark can report
    inkind's time net of the emulation, which real lvm2 does not cost."""
    path = os.environ.get("FAKE_LVM_TIMES")
    if not path:
        return

    def log() -> None:
        with open("/proc/self/stat") as f:
            started = int(f.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
        with open("/proc/uptime") as f:
            now = float(f.read().split()[0])
        with open(path, "a") as f:
            f.write(f"{name} {now - started:.3f}\n")

    atexit.register(log)


def fail(message: str, status: int = 5) -> None:
    print(f"  {message}", file=sys.stderr)
    sys.exit(status)


def new_state(directory: Path) -> dict[str, Any]:
    return {"dir": str(directory), "lvs": [], "pools": {}, "calls": [], "fail": []}


def row(state: dict[str, Any], vg: str, lv: str) -> dict[str, str] | None:
    return next((r for r in state["lvs"] if (r["vg_name"], r["lv_name"]) == (vg, lv)), None)


def _file(state: dict[str, Any], vg: str, lv: str) -> str:
    return os.path.join(state["dir"], "volumes", f"{dm_name(vg, lv)}")


def _add(state: dict[str, Any], vg: str, lv: str, attr: str, size: int, **fields: str) -> dict[str, str]:
    path = _file(state, vg, lv)
    r = {
        "vg_name": vg,
        "lv_name": lv,
        "lv_attr": attr,
        "lv_size": str(size),
        "pool_lv": "",
        "thin_id": "",
        "lv_uuid": uuid.uuid4().hex[:32],
        "lv_path": path if not lv.startswith("[") else "",
        "lv_dm_path": path,
        "origin": "",
        "lv_tags": "",
        "chunk_size": "0",
        "metadata_lv": "",
        "data_percent": "",
    }
    r.update(fields)
    state["lvs"].append(r)
    return r


# --- creating volumes (tests) ----------------------------------------------


def new_linear(state: dict[str, Any], vg: str, lv: str, size: int) -> str:
    r = _add(state, vg, lv, "-wi-a-----", size)
    os.makedirs(os.path.dirname(r["lv_path"]), exist_ok=True)
    with open(r["lv_path"], "wb") as f:
        f.truncate(size)
    return r["lv_path"]


def new_pool(state: dict[str, Any], vg: str, pool: str, size: int, chunk: int) -> None:
    meta = os.path.join(state["dir"], "volumes", dm_name(vg, f"{pool}_tmeta"))
    os.makedirs(os.path.dirname(meta), exist_ok=True)
    _add(
        state,
        vg,
        pool,
        "twi-aotz--",
        size,
        chunk_size=str(chunk),
        metadata_lv=f"[{pool}_tmeta]",
        data_percent="0.00",
    )
    _add(state, vg, f"[{pool}_tmeta]", "ewi-ao----", 4 << 20, lv_dm_path=meta)
    state["pools"][f"{vg}/{pool}"] = {
        "chunk": chunk,
        "meta": meta,
        "nr_blocks": size // chunk,
        "next_id": 1,
        "next_block": 0,
        "devices": {},
        "reserved": False,
        "transaction": 0,
    }
    write_metadata(state, f"{vg}/{pool}")


def new_thin(state: dict[str, Any], vg: str, pool: str, lv: str, size: int) -> str:
    p = state["pools"][f"{vg}/{pool}"]
    tid = p["next_id"]
    p["next_id"] += 1
    p["devices"][str(tid)] = []
    r = _add(state, vg, lv, "Vwi-a-tz--", size, pool_lv=pool, thin_id=str(tid), data_percent="0.00")
    with open(r["lv_path"], "wb") as f:
        f.truncate(size)
    write_metadata(state, f"{vg}/{pool}")
    return r["lv_path"]


# --- thin pool mappings -------------------------------------------------------


def _pool_of(state: dict[str, Any], r: dict[str, str]) -> dict[str, Any]:
    return state["pools"][f"{r['vg_name']}/{r['pool_lv']}"]


def write(state: dict[str, Any], vg: str, lv: str, offset: int, data: bytes) -> None:
    write_many(state, vg, lv, [(offset, data)])


def write_many(state: dict[str, Any], vg: str, lv: str, writes: list[tuple[int, bytes]]) -> None:
    """Write to a volume; for a thin one, provision or break sharing of
    every chunk touched, as the pool does (the metadata is rewritten once)."""
    r = row(state, vg, lv)
    with open(r["lv_path"], "r+b") as f:
        for offset, data in writes:
            f.seek(offset)
            f.write(data)
    mark_written(state, vg, lv, [(offset, len(data)) for offset, data in writes])


def mark_written(state: dict[str, Any], vg: str, lv: str, ranges: list[tuple[int, int]]) -> None:
    """The pool's side of writes whose data is already in the volume's file."""
    r = row(state, vg, lv)
    if not r["pool_lv"]:
        return
    p = _pool_of(state, r)
    refs = Counter(b for runs in p["devices"].values() for b in _unpack(runs).values())
    dev = _unpack(p["devices"][r["thin_id"]])
    for offset, length in ranges:
        for chunk in range(offset // p["chunk"], (offset + max(length, 1) - 1) // p["chunk"] + 1):
            mapped = dev.get(chunk)
            if mapped is None or refs[mapped] > 1:
                if mapped is not None:
                    refs[mapped] -= 1
                dev[chunk] = p["next_block"]
                refs[p["next_block"]] += 1
                p["next_block"] += 1
    p["devices"][r["thin_id"]] = _runs(dev)
    write_metadata(state, f"{vg}/{r['pool_lv']}")


def discard(state: dict[str, Any], vg: str, lv: str, offset: int, length: int) -> None:
    """blkdiscard of whole chunks: unmapped, and reading as zeros."""
    r = row(state, vg, lv)
    p = _pool_of(state, r)
    assert offset % p["chunk"] == 0 and length % p["chunk"] == 0
    with open(r["lv_path"], "r+b") as f:
        f.seek(offset)
        f.write(bytes(length))
    dev = _unpack(p["devices"][r["thin_id"]])
    for chunk in range(offset // p["chunk"], (offset + length) // p["chunk"]):
        dev.pop(chunk, None)
    p["devices"][r["thin_id"]] = _runs(dev)
    write_metadata(state, f"{vg}/{r['pool_lv']}")


def snapshot_thin(state: dict[str, Any], origin: dict[str, str], name: str, tag: str) -> None:
    p = _pool_of(state, origin)
    tid = p["next_id"]
    p["next_id"] += 1
    p["devices"][str(tid)] = [list(run) for run in p["devices"][origin["thin_id"]]]
    r = _add(
        state,
        origin["vg_name"],
        name,
        "Vri-a-tz-k",
        int(origin["lv_size"]),
        pool_lv=origin["pool_lv"],
        thin_id=str(tid),
        origin=origin["lv_name"],
        lv_tags=tag,
        data_percent="0.00",
    )
    copy_volume(origin["lv_path"], r["lv_path"])
    write_metadata(state, f"{origin['vg_name']}/{origin['pool_lv']}")


def copy_volume(src: str, dst: str) -> None:
    """A snapshot's data: a reflink where the filesystem has them (instant,
    like the real thing), else a sparse copy."""
    subprocess.run(["cp", "--reflink=auto", "--sparse=always", src, dst], check=True)


def _runs(dev: dict[int, int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for chunk, block in sorted(dev.items()):
        if runs and chunk == runs[-1][0] + runs[-1][2] and block == runs[-1][1] + runs[-1][2]:
            runs[-1][2] += 1
        else:
            runs.append([chunk, block, 1])
    return runs


def write_metadata(state: dict[str, Any], key: str) -> None:
    """The pool's mappings as thin_restore XML, restored into its metadata file."""
    p = state["pools"][key]
    if p["reserved"]:
        raise RuntimeError("fake: metadata changed while a metadata snapshot is reserved")
    p["transaction"] += 1
    lines = [
        f'<superblock uuid="" time="1" transaction="{p["transaction"]}" flags="0" version="2" '
        f'data_block_size="{p["chunk"] // 512}" nr_data_blocks="{max(p["nr_blocks"], p["next_block"] + 1)}">'
    ]
    for tid, runs in sorted(p["devices"].items(), key=lambda kv: int(kv[0])):
        lines.append(
            f'  <device dev_id="{tid}" mapped_blocks="{sum(n for _, _, n in runs)}" transaction="0" creation_time="0" snap_time="0">'
        )
        for chunk, block, length in runs:
            if length == 1:
                lines.append(f'    <single_mapping origin_block="{chunk}" data_block="{block}" time="0"/>')
            else:
                lines.append(
                    f'    <range_mapping origin_begin="{chunk}" data_begin="{block}" length="{length}" time="0"/>'
                )
        lines.append("  </device>")
    lines.append("</superblock>")
    xml = p["meta"] + ".xml"
    Path(xml).write_text("\n".join(lines) + "\n")
    with open(p["meta"], "wb") as f:
        f.truncate(META_SIZE)
    subprocess.run(["thin_restore", "-i", xml, "-o", p["meta"]], check=True, capture_output=True)


def reserve(meta: str) -> None:
    """Copy the superblock into a new block at the end of the metadata file
    and name it in the superblock's metadata_snap field."""
    with open(meta, "r+b") as f:
        sb = bytearray(f.read(SB))
        end = f.seek(0, os.SEEK_END)
        snap = end // SB
        copy = bytearray(sb)
        struct.pack_into("<Q", copy, 8, snap)  # the copy's own block number
        _seal(copy)
        f.write(copy)
        struct.pack_into("<Q", sb, 56, snap)  # metadata_snap
        _seal(sb)
        f.seek(0)
        f.write(sb)


def release(meta: str) -> None:
    with open(meta, "r+b") as f:
        sb = bytearray(f.read(SB))
        snap = struct.unpack_from("<Q", sb, 56)[0]
        struct.pack_into("<Q", sb, 56, 0)
        _seal(sb)
        f.seek(0)
        f.write(sb)
        f.truncate(snap * SB)
