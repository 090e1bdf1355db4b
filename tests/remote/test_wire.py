"""The frames: what both ends read and write, their limits, and the remote
side's source as the host gets it (standard library only, Python 3.9)."""

from __future__ import annotations

import ast
import contextlib
import io
import random
import struct
import sys
import tracemalloc
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inkind.remote import agent, blockops, walk, wire
from inkind.remote.bootstrap import BOOT, agent_source
from inkind.remote.listing import Listing
from inkind.remote.wire import (
    BLOCK_HASHES,
    COMPRESSED,
    DATA,
    ENTRIES,
    HEADER,
    JSON,
    MAX_FRAME,
    MAX_JSON,
    FrameError,
    Writer,
    block_digest,
    preferred_hash,
    read_frame,
)


def frames(data: bytes) -> list:
    f = io.BytesIO(data)
    out = []
    while (got := read_frame(f.read)) is not None:
        out.append(got)
    return out


def test_frames_round_trip_and_compress_when_it_pays():
    buf = io.BytesIO()
    w = Writer(buf)
    w.json(op="scan", path="caf\udce9")
    w.send(DATA, b"x" * 100_000, prefix=b"\0" * 8, compress=True)
    w.send(DATA, bytes(range(256)) * 4, compress=False)
    raw = buf.getvalue()
    assert len(raw) < 100_000  # the repeated bytes went compressed
    assert raw[4] == JSON
    got = frames(raw)
    assert got[0] == (JSON, {"op": "scan", "path": "caf\udce9"})
    assert got[1] == (DATA, b"\0" * 8 + b"x" * 100_000)
    assert got[2] == (DATA, bytes(range(256)) * 4)


def test_incompressible_data_goes_as_it_is():
    buf = io.BytesIO()
    data = random.Random(1).randbytes(300_000)
    Writer(buf).send(DATA, data, compress=True)
    assert buf.getvalue()[4] == DATA and frames(buf.getvalue()) == [(DATA, data)]


@pytest.mark.parametrize(
    ("raw", "what"),
    [
        (b"\0\0", "truncated frame header"),
        (HEADER.pack(10, DATA) + b"abc", "truncated frame: 3 of 10"),
        (HEADER.pack(0, 9), "unknown frame kind 9"),
        (HEADER.pack(MAX_JSON + 1, JSON), "over the limit"),
        (HEADER.pack(MAX_FRAME + 1, DATA), "over the limit"),
        (HEADER.pack(0xFFFFFFFF, ENTRIES), "over the limit"),
        (HEADER.pack(2, JSON) + b"[]", "not an object"),
        (HEADER.pack(3, JSON) + b"\xff{}", "bad JSON"),
        (HEADER.pack(4000, JSON) + b"[" * 4000, "bad JSON"),
        (HEADER.pack(3, DATA | COMPRESSED) + b"abc", "bad compressed frame"),
        (HEADER.pack(6, DATA | COMPRESSED) + zlib.compress(b"abcdefgh")[:6], "truncated"),
    ],
)
def test_bad_frames_are_protocol_errors(raw, what):
    with pytest.raises(FrameError, match=what):
        frames(raw)


def test_a_huge_length_is_refused_before_it_is_read():
    asked = []

    def read(n: int) -> bytes:
        asked.append(n)
        return HEADER.pack(0xFFFFFFF0, DATA) if n == HEADER.size else b"\0" * n

    with pytest.raises(FrameError, match="over the limit"):
        read_frame(read)
    assert asked == [HEADER.size]


def test_a_compression_bomb_inflates_to_the_limit_only():
    bomb = zlib.compress(bytes(256 << 20), 9)  # 256 MiB of zeros in ~250 KiB
    raw = HEADER.pack(len(bomb), DATA | COMPRESSED) + bomb
    tracemalloc.start()
    try:
        with pytest.raises(FrameError, match="inflating over the limit"):
            frames(raw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * MAX_FRAME  # a few buffers of the limit, not the 256 MiB


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=4096))
def test_random_bytes_raise_nothing_but_the_protocol_error(data):
    asked = []

    def read(n: int) -> bytes:
        asked.append(n)
        return f.read(n)

    f = io.BytesIO(data)
    try:
        while read_frame(read) is not None:
            pass
    except FrameError:
        pass
    assert max(asked, default=0) <= MAX_FRAME


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([JSON, DATA, ENTRIES, 4, 7, JSON | COMPRESSED, DATA | COMPRESSED, ENTRIES | COMPRESSED]),
    st.binary(max_size=2048),
    st.booleans(),
)
def test_random_frames_raise_nothing_but_the_protocol_error(kind, payload, deflate):
    if deflate:
        payload = zlib.compress(payload, 1)
    raw = HEADER.pack(len(payload), kind) + payload
    try:
        for k, obj in frames(raw):
            if k == ENTRIES:
                Listing().decode(obj)
            assert isinstance(obj, dict if k == JSON else bytes)
    except FrameError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_random_entry_payloads_raise_nothing_but_the_protocol_error(payload):
    listing = Listing()
    with contextlib.suppress(FrameError):
        listing.decode(payload)


def test_the_remote_side_is_python_3_9_and_standard_library_only():
    tree = ast.parse(agent_source(), feature_version=(3, 9))
    for module in (wire, walk, blockops, agent):
        compile(module.__loader__.get_source(module.__name__), module.__file__, "exec")  # type: ignore[union-attr]
        ast.parse(module.__loader__.get_source(module.__name__), feature_version=(3, 9))  # type: ignore[union-attr]
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
        elif isinstance(node, ast.Call):  # zip(strict=) and friends are 3.10+
            assert not any(k.arg == "strict" for k in node.keywords), ast.unparse(node)
        assert not isinstance(node, ast.Match)
    assert imported - {"__future__"} <= set(sys.stdlib_module_names), imported
    assert "inkind" not in imported
    assert "from __future__ import annotations" in agent_source().decode().splitlines()[0]


def test_the_boot_line_is_one_line_that_any_python_parses():
    assert "\n" not in BOOT and '"' not in BOOT
    ast.parse(BOOT, feature_version=(3, 4))
    assert str(len(agent_source())) not in BOOT  # the same line whatever the source: authorized_keys keeps it


def test_the_frame_header_is_length_then_kind():
    assert HEADER.pack(5, JSON) == struct.pack(">I", 5) + b"\x01"


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [
        (
            "processor\t: 0\nflags\t\t: fpu sse2 avx2 sha_ni aes\n\nprocessor\t: 1\nflags\t\t: fpu\n",
            "sha256-128",
        ),
        ("processor\t: 0\nflags\t\t: fpu sse2 avx2 aes\n", "blake2b-128"),
        ("processor\t: 0\nFeatures\t: fp asimd aes pmull sha1 sha2 crc32\n", "sha256-128"),
        ("processor\t: 0\nFeatures\t: fp asimd\n", "blake2b-128"),
        ("cpu\t\t: POWER9\n", "blake2b-128"),
    ],
)
def test_the_preferred_block_hash_follows_the_first_cpus_flags(tmp_path, cpuinfo, expected):
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    assert preferred_hash(str(tmp_path / "cpuinfo")) == expected


def test_without_cpuinfo_the_block_hash_is_blake2b(tmp_path):
    assert preferred_hash(str(tmp_path / "none")) == "blake2b-128"


@pytest.mark.parametrize("name", BLOCK_HASHES)
def test_block_digests_are_16_bytes_and_differ_by_hash(name):
    other = next(n for n in BLOCK_HASHES if n != name)
    digest = block_digest(name)(b"block")
    assert len(digest) == 16 and digest != block_digest(other)(b"block")


def test_a_frame_whose_start_does_not_compress_goes_as_it_is_and_one_whose_start_does_is_compressed():
    noise = random.Random(2).randbytes(4096)
    text = b"a line of a config file that repeats\n" * 200
    buf = io.BytesIO()
    w = Writer(buf)
    w.send(DATA, noise + text, compress=True)  # the probe is the noise: sent as it is
    w.send(DATA, text + noise, compress=True)  # the probe is text: the whole frame compressed
    raw = buf.getvalue()
    first = HEADER.unpack(raw[:5])
    assert first == (len(noise + text), DATA)
    second = HEADER.unpack(raw[5 + first[0] : 10 + first[0]])
    assert second[1] == DATA | COMPRESSED and second[0] < len(noise) + 1000
    assert frames(raw) == [(DATA, noise + text), (DATA, text + noise)]
