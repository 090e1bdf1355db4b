"""The data ops through a Channel to a real remote side (local pipes):
read (ranges, holes), hashes and blocks against hashlib, run, and the
SQLite copy made on the host."""

from __future__ import annotations

import errno
import hashlib
import io
import itertools
import os
import random
import sqlite3
import tracemalloc

import pytest
from remote_helpers import HOST

from inkind.remote import agent, blockops
from inkind.remote.channel import RemoteOSError
from inkind.remote.wire import (
    BLOCK_DATA,
    BLOCK_HASHES,
    BLOCK_HOLE,
    BLOCK_ZERO,
    DATA,
    HEADER,
    FrameError,
    Writer,
)

BS = 64 << 10


def assemble(rf, size: int) -> bytes:
    out = bytearray(size)
    for off, data in rf.chunks():
        out[off : off + len(data)] = data
    return bytes(out)


def test_read_sends_the_data_and_not_the_holes(channel, tmp_path):
    path = tmp_path / "sparse"
    with open(path, "wb") as f:
        f.truncate(64 << 20)
        f.seek(40 << 20)
        f.write(random.Random(1).randbytes(3 << 20))
    before = channel.stats.bytes_received
    rf = channel.read(os.fsencode(path))
    assert assemble(rf, rf.size) == path.read_bytes()
    assert rf.after is not None and not rf.changed and rf.error is None
    assert rf.before.st_size == 64 << 20
    received = channel.stats.bytes_received - before
    assert 3 << 20 <= received < 4 << 20  # the 61 MiB of holes did not cross


def test_read_of_ranges_sends_those_ranges_only(channel, tmp_path):
    path = tmp_path / "f"
    content = random.Random(2).randbytes(3 << 20)
    path.write_bytes(content)
    rf = channel.read(os.fsencode(path), [(2 << 20, 100), (10, 20), (15, 10), (5 << 20, 10)])
    got = list(rf.chunks())
    assert [(o, bytes(d)) for o, d in got] == [
        (10, content[10:30]),
        (2 << 20, content[2 << 20 : (2 << 20) + 100]),
    ]


def test_compressible_data_crosses_compressed(channel, tmp_path):
    path = tmp_path / "text"
    path.write_bytes(b"the same line again and again\n" * 200_000)  # 6 MB
    before = channel.stats.bytes_received
    rf = channel.read(os.fsencode(path))
    assert assemble(rf, rf.size) == path.read_bytes()
    assert channel.stats.bytes_received - before < 600_000


def test_read_files_streams_many_files_and_says_which_failed(channel, tmp_path):
    paths = []
    for i in range(200):
        (tmp_path / f"f{i}").write_bytes(f"file {i}".encode() * i)
        paths.append(os.fsencode(tmp_path / f"f{i}"))
    os.symlink("f1", tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")
    asked = [
        *paths,
        os.fsencode(tmp_path / "gone"),
        os.fsencode(tmp_path / "link"),
        os.fsencode(tmp_path / "fifo"),
    ]
    got = {}
    for rf in channel.read_files(asked):
        got[rf.path] = (rf.error, rf.errno) if rf.error else assemble(rf, rf.size)
    assert [got[p] for p in paths] == [f"file {i}".encode() * i for i in range(200)]
    assert got[asked[-3]] == ("No such file or directory", errno.ENOENT)
    assert got[asked[-2]][1] == errno.ELOOP  # never through a symlink
    assert got[asked[-1]][1] == errno.EINVAL  # nor a fifo: not a file
    with pytest.raises(RemoteOSError, match=f"^host {HOST}: .*/gone: No such file"):
        channel.read(os.fsencode(tmp_path / "gone"))


def test_an_unread_stream_is_drained_by_the_next_op(channel, tmp_path):
    (tmp_path / "big").write_bytes(random.Random(3).randbytes(5 << 20))
    rf = channel.read(os.fsencode(tmp_path / "big"))
    next(rf.chunks())  # the rest is left unread
    assert [e.key for e in channel.scan(os.fsencode(tmp_path))] == [(), (b"big",)]


HASHLIB = {
    "sha256-128": lambda data: hashlib.sha256(data).digest()[:16],
    "blake2b-128": lambda data: hashlib.blake2b(data, digest_size=16).digest(),
}


@pytest.mark.parametrize("name", BLOCK_HASHES)
def test_hashes_and_blocks_match_hashlib(channel, tmp_path, name):
    path = tmp_path / "image"
    rnd = random.Random(4)
    with open(path, "wb") as f:
        f.write(rnd.randbytes(BS))  # 0: data
        f.seek(2 * BS)  # 1: a hole
        f.write(bytes(BS))  # 2: zeros written
        f.write(rnd.randbytes(BS // 2) + bytes(BS // 2))  # 3: data, half zeros
        f.write(rnd.randbytes(1000))  # 4: a short last block
    content = path.read_bytes()
    bh = channel.hashes(os.fsencode(path), BS, hash=name)
    records = list(bh)
    assert bh.size == len(content) and bh.block_size == BS and not bh.changed and bh.hash == name
    assert [r.index for r in records] == [0, 1, 2, 3, 4]
    assert [r.kind for r in records] == [BLOCK_DATA, BLOCK_HOLE, BLOCK_ZERO, BLOCK_DATA, BLOCK_DATA]
    for r in records:
        if r.kind == BLOCK_DATA:
            block = content[r.index * BS : (r.index + 1) * BS]
            assert r.digest == HASHLIB[name](block)
    blocks = channel.blocks(os.fsencode(path), [0, 3, 4], BS, hash=name)
    got = [(b.index, bytes(b.data)) for b in blocks]
    assert got == [(i, content[i * BS : (i + 1) * BS]) for i in (0, 3, 4)]
    assert blocks.after is not None and not blocks.changed


def test_hashes_of_spans_hash_those_blocks_alone(channel, tmp_path):
    path = tmp_path / "image"
    content = random.Random(5).randbytes(10 * BS)
    path.write_bytes(content)
    bh = channel.hashes(os.fsencode(path), BS, [(1, 2), (4, 1), (8, 2)])
    records = list(bh)
    assert [r.index for r in records] == [1, 2, 4, 8, 9]
    for r in records:
        assert r.digest == HASHLIB[channel.block_hash](content[r.index * BS : (r.index + 1) * BS])
    assert bh.after is not None and bh.size == 10 * BS
    with pytest.raises(ValueError, match="out of order"):
        channel.hashes(os.fsencode(path), BS, [(4, 1), (1, 2)])
    with pytest.raises(RemoteOSError, match="past block 10"):
        list(channel.hashes(os.fsencode(path), BS, [(9, 2)]))
    assert [r.index for r in channel.hashes(os.fsencode(path), BS, [(0, 1)])] == [0]  # the channel goes on


def test_a_span_of_millions_of_blocks_costs_the_host_no_memory():
    """The spans are checked whole, then their indices given one at a time:
    a span the server names (one of a thin delta, or a hostile one) is
    not expanded into a list on the host."""
    tracemalloc.start()
    try:
        indices = blockops.block_indices([[0, 3], [10, 3_000_000]], 4_000_000)
        head = list(itertools.islice(indices, 5))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert head == [0, 1, 2, 10, 11] and peak < 64 << 10
    assert next(itertools.islice(indices, 2_999_997, None)) == 3_000_009  # the last, then no more
    assert next(indices, None) is None
    with pytest.raises(ValueError, match="past block 4000000"):
        blockops.block_indices([[0, 3], [3_999_999, 2]], 4_000_000)  # before any index is given


def test_many_blocks_hash_in_order_on_the_host_threads(channel, tmp_path):
    """Groups of blocks are hashed on threads there: the records still come
    in order, holes and zeros between the groups in their places."""
    small = 4096
    path = tmp_path / "image"
    rnd = random.Random(6)
    kinds = [rnd.choice((BLOCK_DATA, BLOCK_DATA, BLOCK_HOLE, BLOCK_ZERO)) for _ in range(3000)]
    with open(path, "wb") as f:
        for i, kind in enumerate(kinds):
            if kind != BLOCK_HOLE:
                f.seek(i * small)
                f.write(rnd.randbytes(small) if kind == BLOCK_DATA else bytes(small))
        f.truncate(len(kinds) * small)
    content = path.read_bytes()
    records = list(channel.hashes(os.fsencode(path), small))
    assert [r.index for r in records] == list(range(len(kinds)))
    assert [r.kind for r in records] == kinds
    digest = HASHLIB[channel.block_hash]
    assert all(
        r.digest == digest(content[r.index * small : (r.index + 1) * small]) for r in records if r.digest
    )


def test_known_digests_bring_the_changed_blocks_in_the_same_stream(channel, tmp_path):
    path = tmp_path / "image"
    content = bytearray(random.Random(8).randbytes(6 * BS))
    path.write_bytes(content)
    first = list(channel.hashes(os.fsencode(path), BS))
    known = b"".join(r.digest for r in first)
    content[2 * BS : 2 * BS + 10] = b"x" * 10  # block 2 changes
    content[5 * BS :] = bytes(BS)  # block 5 turns to zeros: described, not sent
    path.write_bytes(content)
    records = list(channel.hashes(os.fsencode(path), BS, known=known))
    assert [r.index for r in records] == list(range(6))
    assert [r.index for r in records if r.data is not None] == [2]
    assert bytes(records[2].data) == content[2 * BS : 3 * BS]
    assert records[5].kind == BLOCK_ZERO and records[5].data is None
    with pytest.raises(ValueError, match="known digests of 15 bytes"):
        channel.hashes(os.fsencode(path), BS, known=b"x" * 15)
    assert len(list(channel.hashes(os.fsencode(path), BS))) == 6  # the channel goes on


def test_known_digests_cut_short_end_the_remote_side_with_a_protocol_error(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    out = io.BytesIO()
    request = {
        "op": "hashes",
        "path": str(tmp_path / "f"),
        "block_size": 4096,
        "hash": "sha256-128",
        "known": 32,
    }
    inp = io.BytesIO(HEADER.pack(16, DATA) + b"k" * 16)  # 16 of the 32 bytes announced, then the end
    with pytest.raises(FrameError, match="cut short"):
        blockops.op_hashes(Writer(out), request, agent.Session(inp.read))


def test_an_unknown_block_hash_is_refused_on_both_ends(channel, tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown block hash 'md5'"):
        channel.hashes(os.fsencode(tmp_path / "f"), 4096, hash="md5")
    request = {"op": "hashes", "path": str(tmp_path / "f"), "block_size": 4096, "hash": "md5"}
    with pytest.raises(ValueError, match="unknown block hash 'md5'"):
        blockops.op_hashes(Writer(io.BytesIO()), request, agent.Session())


def test_hashes_need_a_sane_block_size(channel, tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(ValueError, match="block size"):
        channel.hashes(os.fsencode(tmp_path / "f"), 100)


def test_run_streams_stdout_and_ends_with_the_status(channel):
    rp = channel.run(["sh", "-c", "head -c 3000000 /dev/zero; echo one >&2; echo two >&2; exit 3"])
    out = b"".join(bytes(c) for c in rp)
    assert out == bytes(3_000_000)
    assert rp.status == 3 and rp.stderr == "one\ntwo"
    assert channel.stats.bytes_received < 200_000  # zeros compress
    rp = channel.run(["sh", "-c", 'printf %s "$GREETING"; kill -9 $$'], env={"GREETING": "hi"})
    assert b"".join(bytes(c) for c in rp) == b"hi" and rp.status == -9


def test_a_command_that_does_not_exist_is_an_error_naming_it(channel):
    with pytest.raises(RemoteOSError, match=f"^host {HOST}: no-such-tool: no-such-tool: No such file") as e:
        channel.run(["no-such-tool", "--version"])
    assert e.value.errno == errno.ENOENT


def test_sqlite_backup_copies_on_the_host_and_removes_its_temp(channel, tmp_path):
    db = tmp_path / "app.db"
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE t (x)")
    con.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])
    con.commit()  # the rows are in the -wal file, not yet in app.db
    temps = tmp_path / "temps"
    temps.mkdir()
    tmp = channel.sqlite_backup(os.fsencode(db), os.fsencode(temps))
    assert os.path.dirname(tmp.path) == os.fsencode(temps) and tmp.size == os.path.getsize(tmp.path)
    rf = channel.read(tmp.path)
    copy = tmp_path / "copy.db"
    copy.write_bytes(assemble(rf, rf.size))
    assert sqlite3.connect(copy).execute("SELECT count(*), sum(x) FROM t").fetchone() == (1000, 499500)
    channel.remove(tmp)
    assert list(temps.iterdir()) == []
    con.close()


def test_remove_removes_nothing_but_its_own_temps(channel, tmp_path):
    from inkind.remote.channel import RemoteTemp

    (tmp_path / "precious").write_bytes(b"keep me")
    with pytest.raises(RemoteOSError, match="not a temp file of this run") as e:
        channel.remove(RemoteTemp(os.fsencode(tmp_path / "precious"), 7))
    assert e.value.errno == errno.EPERM and (tmp_path / "precious").exists()


def test_the_remote_side_removes_its_temps_when_it_ends(tmp_path):
    import sys

    from inkind.remote.bootstrap import BOOT
    from inkind.remote.channel import Channel

    db = tmp_path / "a.db"
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.commit()
    with Channel([sys.executable, "-c", BOOT], HOST) as ch:
        tmp = ch.sqlite_backup(os.fsencode(db), os.fsencode(tmp_path))
        assert os.path.exists(tmp.path)
    assert not os.path.exists(tmp.path)


def test_a_file_that_is_not_a_database_is_an_error(channel, tmp_path):
    (tmp_path / "not.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RemoteOSError, match=r"not\.db: sqlite: file is not a database"):
        channel.sqlite_backup(os.fsencode(tmp_path / "not.db"), os.fsencode(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not.db"]


def test_which_finds_a_program_in_a_directory_or_on_the_path(channel, tmp_path):
    tool = tmp_path / "pg_dump"
    tool.write_text("#!/bin/sh\n")
    assert channel.which("pg_dump", os.fsencode(tmp_path)) is None  # not executable
    tool.chmod(0o755)
    assert channel.which("pg_dump", os.fsencode(tmp_path)) == str(tool)
    assert channel.which("sh") in ("/usr/bin/sh", "/bin/sh")
    assert channel.which("no-such-tool-anywhere") is None
    with pytest.raises(RemoteOSError, match="which: ValueError: not a program name"):
        channel.which("../sh")


def test_temp_dir_is_removed_with_its_files_and_nothing_else(channel, tmp_path):
    temp = channel.temp_dir(os.fsencode(tmp_path))
    path = os.fsdecode(temp.path)
    assert os.path.dirname(path) == str(tmp_path) and os.stat(path).st_mode & 0o777 == 0o700
    outside = tmp_path / "outside"
    outside.write_text("keep me")
    os.mkdir(f"{path}/dump")
    with open(f"{path}/dump/toc.dat", "w") as f:
        f.write("x")
    os.symlink(outside, f"{path}/dump/link")
    channel.remove(temp)
    assert not os.path.exists(path) and outside.read_text() == "keep me"


def test_the_remote_side_removes_its_temp_dirs_when_it_ends(tmp_path):
    import sys

    from inkind.remote.bootstrap import BOOT
    from inkind.remote.channel import Channel

    with Channel([sys.executable, "-c", BOOT], HOST) as ch:
        temp = ch.temp_dir(os.fsencode(tmp_path))
        with open(os.path.join(temp.path, b"0001.dat"), "w") as f:
            f.write("rows")
    assert list(tmp_path.iterdir()) == []


def test_a_command_dies_when_the_server_goes(tmp_path):
    """A server that is gone (killed, the connection cut) hangs up the remote
    side's stdin: the command it runs is killed then, not left to run on."""
    import sys
    import time

    from inkind.remote.bootstrap import BOOT
    from inkind.remote.channel import Channel

    pidfile = tmp_path / "pid"
    ch = Channel([sys.executable, "-c", BOOT], HOST).open()
    ch.run(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"])
    deadline = time.monotonic() + 10
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    pid = int(pidfile.read_text())
    started = time.monotonic()
    ch.close()
    assert time.monotonic() - started < 5
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.parametrize("path", ["/dev/null", "/dev/zero"])
def test_a_character_device_is_refused_without_being_opened(path, monkeypatch):
    """Opening one can act on it (a watchdog starts counting down): the
    inode is looked at through O_PATH and nothing else is opened."""
    opened: list[int] = []
    real_open = os.open

    def recording(p, flags, *args, **kwargs):
        opened.append(flags)
        return real_open(p, flags, *args, **kwargs)

    monkeypatch.setattr(blockops.os, "open", recording)
    with pytest.raises(OSError) as e:
        blockops.open_source(path.encode())
    assert (e.value.errno, e.value.strerror) == (errno.EINVAL, "not a regular file or block device")
    assert opened and all(flags & os.O_PATH for flags in opened)


def test_a_symlink_to_read_is_refused_as_an_open_refuses_it(tmp_path):
    (tmp_path / "data").write_bytes(b"x")
    os.symlink("data", tmp_path / "link")
    with pytest.raises(OSError) as e:
        blockops.open_source(os.fsencode(tmp_path / "link"))
    assert e.value.errno == errno.ELOOP
    fd, _st, size = blockops.open_source(os.fsencode(tmp_path / "data"))
    os.close(fd)
    assert size == 1
