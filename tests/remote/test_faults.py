"""Faults: a remote side that is missing, too old, killed, preceded by a
login script's chatter, or hostile. Each is one error line naming the
host, and none makes the server hold more than a frame."""

from __future__ import annotations

import os
import random
import re
import signal
import sys
import textwrap
import tracemalloc

import pytest
from remote_helpers import HOST

from inkind.errors import SourceError
from inkind.remote.bootstrap import boot_line
from inkind.remote.channel import Channel
from inkind.remote.connection import ProtocolError, RemoteError
from inkind.remote.wire import MAX_FRAME, PROTOCOL


def test_python_missing_on_the_host(tmp_path):
    ch = Channel(["sh", "-c", "exec python3-not-here -c x"], HOST, python="python3-not-here")
    with pytest.raises(
        RemoteError, match=f"^host {HOST}: python3-not-here not found \\(exit status 127\\): .*not found"
    ):
        ch.open()
    ch.close()


def test_python_too_old_on_the_host():
    ch = Channel([sys.executable, "-c", boot_line((99, 0))], HOST)
    with pytest.raises(
        RemoteError,
        match=rf"^host {HOST}: python3 there is 3\.\d+: inkind needs 3\.9 or newer \(remote_python names another\)$",
    ):
        ch.open()
    ch.close()


def test_a_remote_side_of_another_protocol_is_refused_at_its_hello():
    code = textwrap.dedent(
        f"""
        import sys
        from inkind.remote.wire import Writer
        Writer(sys.stdout.buffer).json(agent="inkind", protocol={PROTOCOL + 1}, python=[3, 11, 0], pid=0, hash="sha256")
        sys.stdout.flush()
        sys.stdin.buffer.read()
        """
    )
    ch = Channel([sys.executable, "-c", code], HOST)
    with pytest.raises(
        ProtocolError,
        match=f"^host {HOST}: the remote side speaks protocol {PROTOCOL + 1}, this inkind {PROTOCOL}$",
    ):
        ch.open()
    ch.close()


def test_the_connection_command_missing():
    with pytest.raises(
        RemoteError, match=f"^host {HOST}: cannot run /nonexistent/ssh: No such file or directory$"
    ):
        Channel(["/nonexistent/ssh", "host"], HOST).open()


def test_a_remote_side_that_exits_before_its_hello():
    ch = Channel(["sh", "-c", "echo 'Permission denied (publickey).' >&2; exit 255"], HOST)
    with pytest.raises(
        RemoteError,
        match=f"^host {HOST}: the remote side ended before its hello \\(exit status 255\\): Permission denied",
    ):
        ch.open()
    ch.close()


def test_ssh_failures_are_worded_by_the_ssh_code():
    from inkind.remote.ssh import SshTarget

    argv = ["sh", "-c", "echo 'ssh: connect to host web1 port 22: Connection refused' >&2; exit 255"]
    ch = Channel(argv, HOST, describe=SshTarget(HOST).describe_failure)
    with pytest.raises(RemoteError, match=f"^host {HOST}: connection refused \\(is sshd running there"):
        ch.open()
    ch.close()


def test_a_login_script_that_prints_to_stdout():
    from inkind.remote.bootstrap import BOOT

    ch = Channel(["sh", "-c", 'echo "Welcome to web1!"; exec "$0" -c "$1"', sys.executable, BOOT], HOST)
    with pytest.raises(
        ProtocolError, match=f"^host {HOST}: the remote side did not say hello .*login script"
    ):
        ch.open()
    ch.close()


def test_the_remote_side_killed_mid_stream(channel, tmp_path):
    (tmp_path / "big").write_bytes(random.Random(5).randbytes(32 << 20))
    rf = channel.read(os.fsencode(tmp_path / "big"))
    chunks = rf.chunks()
    next(chunks)
    os.kill(channel.hello["pid"], signal.SIGKILL)
    with pytest.raises(
        ProtocolError, match=f"^host {HOST}: the remote side ended mid-reply \\(killed by signal 9\\)$"
    ):
        for _ in chunks:
            pass
    with pytest.raises(ProtocolError, match="ended mid-reply"):  # and stays broken, with the same line
        channel.scan(b"/")
    assert isinstance(ProtocolError("x"), SourceError)


def test_the_remote_side_gone_between_ops(channel):
    os.kill(channel.hello["pid"], signal.SIGKILL)
    with pytest.raises(
        ProtocolError,
        match=f"^host {HOST}: the remote side (is gone|ended mid-reply) \\(killed by signal 9\\)",
    ):
        list(channel.scan(b"/"))


HOSTILE = {
    "a name with ..": ('w.send(ENTRIES, ROOT + entry(1, b".."))', "a bad name in the listing: b'..'"),
    "a name with .": ('w.send(ENTRIES, ROOT + entry(1, b"."))', "a bad name in the listing: b'.'"),
    "a name with /": ('w.send(ENTRIES, ROOT + entry(1, b"../../etc/passwd"))', "a bad name in the listing"),
    "a name with NUL": ('w.send(ENTRIES, ROOT + entry(1, b"a\\0b"))', "a bad name in the listing"),
    "an empty name": ('w.send(ENTRIES, ROOT + entry(1, b""))', "a bad name in the listing"),
    "a name over 255 bytes": ('w.send(ENTRIES, ROOT + entry(1, b"n" * 256))', "a bad name in the listing"),
    "a name twice": ('w.send(ENTRIES, ROOT + entry(1, b"a") + entry(1, b"a"))', "out of order or twice"),
    "names out of order": (
        'w.send(ENTRIES, ROOT + entry(1, b"b") + entry(1, b"a"))',
        "out of order or twice",
    ),
    "an entry below a file": (
        'w.send(ENTRIES, ROOT + entry(1, b"f") + entry(2, b"x"))',
        "an entry at depth 2 outside the walk",
    ),
    "no root first": ('w.send(ENTRIES, entry(1, b"a"))', "does not start with its root"),
    "a second root": ("w.send(ENTRIES, ROOT + ROOT)", "outside the walk"),
    "a size of exabytes": ('w.send(ENTRIES, ROOT + entry(1, b"a", size=1 << 62))', "a size beyond limits"),
    "an unknown file type": ('w.send(ENTRIES, ROOT + entry(1, b"a", mode=0o170644))', "an unknown file mode"),
    "a target on a file": ('w.send(ENTRIES, ROOT + entry(1, b"a", target=b"x"))', "a bad symlink target"),
    "a repeated xattr": (
        'w.send(ENTRIES, ROOT + entry(1, b"a", xattrs=[(b"user.a", b"1"), (b"user.a", b"2")]))',
        "a bad or repeated xattr name",
    ),
    "a truncated entry": ('w.send(ENTRIES, ROOT + entry(1, b"abc")[:-1])', "a truncated entry"),
    "a frame claiming 4 GiB": ("out.write(HEADER.pack(0xFFFFFFFF, ENTRIES))", "over the limit"),
    "a compression bomb": (
        "import zlib; b = zlib.compress(bytes(200 << 20), 9); out.write(HEADER.pack(len(b), ENTRIES | COMPRESSED) + b)",
        "inflating over the limit",
    ),
    "a miscounted end": ("w.send(ENTRIES, ROOT); w.json(end=True, entries=5)", "a listing that ends wrong"),
    "a data frame": ("w.send(DATA, b'x')", "a frame of kind 2 in a listing"),
    "an end of stream": ("sys.exit(0)", "the remote side ended mid-reply \\(exit status 0\\)"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_listing_is_an_error_naming_the_host(fake, case):
    body, message = HOSTILE[case]
    ch = fake(body)
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError, match=f"^host {HOST}: .*{message}"):
            for _ in ch.scan(b"/srv"):
                pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * MAX_FRAME
    with pytest.raises(ProtocolError):  # broken for good
        ch.scan(b"/srv")


def test_a_block_that_does_not_match_its_hash(fake):
    ch = fake(
        """
        import hashlib
        w.json(stat=[0o100644, 0, 0, 8192, 0, 0, 1, 1, 1, 0, 16], size=8192)
        w.send(DATA, b"evil" * 1024, OFFSET.pack(0) + hashlib.blake2b(b"good" * 1024, digest_size=16).digest())
        """
    )
    with pytest.raises(
        ProtocolError, match=f"^host {HOST}: block 0 of /dev/vg/root does not match its announced hash$"
    ):
        list(ch.blocks(b"/dev/vg/root", [0], 4096))


def _hashes_with_data(fake, body: str):
    """A fake host answering a hashes request that sent known digests."""
    head = """
        import hashlib
        inp.read(HEADER.size + 32)  # the known digests the request announced
        w.json(stat=[0o100644, 0, 0, 8192, 0, 0, 1, 1, 1, 0, 16], size=8192, block_size=4096)
        good = hashlib.blake2b(b"good" * 1024, digest_size=16).digest()
        """
    ch = fake(textwrap.dedent(head) + body + "\n")
    return ch.hashes(b"/img", 4096, hash="blake2b-128", known=bytes(32))


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (  # the data does not match the digest it names
            'w.send(DATA, b"evil" * 1024, OFFSET.pack(0) + good)',
            "block 0 of /img does not match its announced hash",
        ),
        (  # data for a block past the one due
            'w.send(DATA, b"good" * 1024, OFFSET.pack(1) + good)',
            "block data out of order",
        ),
        (  # a record naming another digest than the data before it
            'w.send(DATA, b"good" * 1024, OFFSET.pack(0) + good)\n'
            'w.send(HASHES, HASH.pack(0, b"b" * 16), OFFSET.pack(0))',
            "block 0's data and its record name other digests",
        ),
        (  # two blocks of data before a record
            'w.send(DATA, b"good" * 1024, OFFSET.pack(0) + good)\n'
            'w.send(DATA, b"good" * 1024, OFFSET.pack(0) + good)',
            "an unexpected frame of kind 2 in the hashes",
        ),
        (  # a short block
            'w.send(DATA, b"good", OFFSET.pack(0) + hashlib.blake2b(b"good", digest_size=16).digest())',
            "block 0 of 4 bytes, not its block's length",
        ),
    ],
)
def test_block_data_in_the_hashes_is_checked(fake, body, error):
    with pytest.raises(ProtocolError, match=f"^host {HOST}: {re.escape(error)}"):
        list(_hashes_with_data(fake, body))


def test_a_block_that_was_not_asked_for(fake):
    ch = fake(
        """
        import hashlib
        w.json(stat=[0o100644, 0, 0, 8192, 0, 0, 1, 1, 1, 0, 16], size=8192)
        w.send(DATA, b"x", OFFSET.pack(7) + hashlib.blake2b(b"x", digest_size=16).digest())
        """
    )
    with pytest.raises(ProtocolError, match="not block 0 of"):
        list(ch.blocks(b"/img", [0], 4096))


def test_read_data_outside_the_file(fake):
    ch = fake(
        """
        w.json(file=0, stat=[0o100644, 0, 0, 10, 0, 0, 1, 1, 1, 0, 8], size=10)
        w.send(DATA, b"x" * 100, OFFSET.pack(0))
        """
    )
    rf = ch.read(b"/etc/hosts")
    with pytest.raises(ProtocolError, match=r"data at 0\+100 outside what was asked"):
        list(rf.chunks())


def test_a_size_claiming_exabytes(fake):
    ch = fake("w.json(file=0, stat=[0o100644, 0, 0, 10, 0, 0, 1, 1, 1, 0, 8], size=1 << 62)")
    with pytest.raises(ProtocolError, match="a bad 'size' in a reply"):
        ch.read(b"/etc/hosts")


def test_more_hashes_than_blocks(fake):
    ch = fake(
        """
        w.json(stat=[0o100644, 0, 0, 4096, 0, 0, 1, 1, 1, 0, 8], size=4096, block_size=4096)
        w.send(HASHES, HASH.pack(0, b"a" * 16) * 2, OFFSET.pack(0))
        """
    )
    with pytest.raises(ProtocolError, match="past block 1"):
        list(ch.hashes(b"/img", 4096))


def test_a_strange_temp_path(fake):
    ch = fake('w.json(end=True, path="/etc/passwd", size=1)')
    with pytest.raises(ProtocolError, match="a sqlite copy at a strange path"):
        ch.sqlite_backup(b"/srv/app.db")


def test_a_strange_temp_dir_or_program_path(fake):
    ch = fake('w.json(end=True, path="/etc", size=0)')
    with pytest.raises(ProtocolError, match="a temp directory at a strange path"):
        ch.temp_dir()
    ch = fake('w.json(end=True, path="x" * 5000)')
    with pytest.raises(ProtocolError, match="a strange path for pg_dump"):
        ch.which("pg_dump")


def test_a_bad_request_is_an_error_and_the_channel_goes_on(channel, tmp_path):
    from inkind.remote.channel import RemoteOSError

    with pytest.raises(RemoteOSError, match=f"^host {HOST}: {tmp_path}: scan: error: missing \\)"):
        list(channel.scan(os.fsencode(tmp_path), exclude=[("(unclosed", True)]))
    assert [e.key for e in channel.scan(os.fsencode(tmp_path))] == [()]


def test_an_unknown_op_ends_the_remote_side(channel):
    channel._begin(op="format-the-disk")
    with pytest.raises(
        ProtocolError,
        match=f"^host {HOST}: the remote side says: protocol error: not a request: 'format-the-disk'$",
    ):
        channel.check(channel.message(), b"")


def test_a_page_larger_than_asked(fake):
    ch = fake(
        'w.send(ENTRIES, ROOT + entry(1, b"a") + entry(1, b"b") + entry(1, b"c")); w.json(page_end=True, entries=4)'
    )
    with pytest.raises(ProtocolError, match=f"^host {HOST}: a page of more than the 2 entries asked$"):
        next(ch.scan_pages(b"/srv", page=2))


def test_a_page_end_in_a_whole_listing(fake):
    ch = fake('w.send(ENTRIES, ROOT + entry(1, b"a")); w.json(page_end=True, entries=2)')
    with pytest.raises(ProtocolError, match=f"^host {HOST}: a page end in a listing asked for whole$"):
        list(ch.scan(b"/srv"))


def test_a_pinned_bootstrap_runs_the_source_of_its_digest_only():
    from inkind.remote.bootstrap import agent_digest

    with Channel([sys.executable, "-c", boot_line(pin=agent_digest())], HOST) as ch:
        assert ch.hello["agent"] == "inkind"
    other = "0" * 64
    ch = Channel([sys.executable, "-c", boot_line(pin=other)], HOST)
    with pytest.raises(
        RemoteError, match=f"^host {HOST}: its authorized_keys pins another remote side \\(sha256 {other}\\)"
    ):
        ch.open()
    ch.close()
