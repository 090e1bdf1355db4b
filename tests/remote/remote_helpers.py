"""What the remote tests share: the host name they use and the fake remote side."""

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
