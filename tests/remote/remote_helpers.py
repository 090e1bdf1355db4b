"""What the remote tests share: the host name they use, the fake remote
side, a tree of every kind of entry to read on a host, and a sudoers rule
installed for a test."""

import os
import random
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HOST = "web1"


# A remote side that reads the source and one request like the real one,
# then sends what the test says (``body``, with Writer ``w`` and the
# helpers of wire.py in scope), then waits for stdin to close.
FAKE = """
import sys
from inkind.remote.wire import *
inp, out = sys.stdin.buffer, sys.stdout.buffer
inp.read(int(inp.readline()))
w = Writer(out)
w.json(agent="inkind", protocol=PROTOCOL, python=[3, 11, 0], pid=0, hash="blake2b-128")
out.flush()
read_frame(inp.read)
def entry(depth, name, mode=0o100644, flags=0, target=b"", xattrs=(), size=0):
    head = ENTRY.pack(depth, flags, len(name), mode, 0, 0, size, 0, 0, 1, 1, 1, 0, 0,
                      len(target), len(xattrs), 0, 0)
    return head + name + target + b"".join(XATTR.pack(len(k), len(v)) + k + v for k, v in xattrs)
ROOT = entry(0, b"", 0o40755)
{body}
out.flush()
inp.read()
"""


def make_tree(src: Path) -> None:
    """Names of every kind, owners, modes, xattrs, an ACL, links, a hole,
    a fifo and a device, data that does not compress."""
    rng = random.Random(5)
    (src / "etc" / "deep" / "er").mkdir(parents=True)
    (src / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    (src / "etc" / "deep" / "er" / "bin").write_bytes(rng.randbytes(700_000))
    os.link(src / "etc" / "hosts", src / "hosts-link")
    os.symlink("etc/hosts", src / "sym")
    os.symlink("/nowhere/at/all", src / "dangling")
    os.mkfifo(src / "fifo")
    os.mknod(src / "null", 0o20666, os.makedev(1, 3))
    raw = os.fsencode(src)
    for name in (b"caf\xe9", b"\xff\xfe-not-utf8", b"n" * 255, b"with\nnewline"):
        with open(raw + b"/" + name, "wb") as f:
            f.write(name * 3)
    with open(src / "sparse.img", "wb") as f:
        f.truncate(6 << 20)
        f.seek(3 << 20)
        f.write(b"data in the middle")
    os.chown(src / "etc" / "hosts", 1234, 5678)
    os.chmod(src / "etc" / "deep", 0o2750)
    os.setxattr(src / "etc" / "hosts", "user.note", b"\x00\xffbinary")
    os.setxattr(src / "etc", "trusted.mark", b"root only")
    subprocess.run(["setfacl", "-m", "u:1234:rwx", src / "etc" / "deep" / "er" / "bin"], check=True)
    for i, p in enumerate(sorted(src.rglob("*"))):
        os.utime(p, (1_600_000_000 + i, 1_600_000_000 + i * 7), follow_symlinks=False)


@contextmanager
def installed_sudoers(text: str, tmp_path: Path) -> Iterator[Path]:
    """``text`` as a file of /etc/sudoers.d, checked by visudo first (a
    broken file there would stop every sudo on this machine)."""
    draft = tmp_path / "sudoers"
    draft.write_text(text + "\n")
    checked = subprocess.run(["visudo", "-cf", str(draft)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    rule = Path(f"/etc/sudoers.d/inkind-test{os.environ.get('PYTEST_XDIST_WORKER', '')}")
    rule.write_text(draft.read_text())
    rule.chmod(0o440)
    try:
        yield rule
    finally:
        rule.unlink()
