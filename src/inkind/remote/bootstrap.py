"""How the remote side gets onto a host that has nothing but python3: the
server runs ``[remote_python, "-c", BOOT]`` there (after ``ssh ... host``)
and writes the remote side's source text to its stdin (its length on a
line first); BOOT reads exactly that many bytes, compiles and runs them,
and the rest of stdin is the protocol (the Ansible/mitogen way). Nothing
is installed or left behind.

BOOT itself is one line that any python3 (and python 2) can parse, so an
interpreter too old for the remote side still answers with a hello naming
its version, and the server says so in one line.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from inkind.remote import agent, blockops, walk, wire
from inkind.remote.wire import MIN_PYTHON, PROTOCOL

# The modules sent, in order: each may use the names of those before it.
MODULES = (wire, walk, blockops, agent)


@functools.cache
def agent_source() -> bytes:
    """The remote side as one module: the four files, their imports of
    each other dropped (they share one namespace there) and one
    ``from __future__`` line at the top. Built on first use, not at import:
    most runs never open a connection."""
    parts = ["from __future__ import annotations\n"]
    for module in MODULES:
        text = Path(module.__file__).read_text()
        lines = text.splitlines(keepends=True)
        drop: set[int] = set()
        for node in ast.parse(text).body:
            if isinstance(node, ast.ImportFrom) and (
                node.module == "__future__" or (node.module or "").startswith("inkind")
            ):
                drop.update(range(node.lineno - 1, node.end_lineno or node.lineno))
        parts.append("".join(line for i, line in enumerate(lines) if i not in drop))
    return "\n".join(parts).encode()


def boot_line(min_python: tuple[int, int] = MIN_PYTHON) -> str:
    """The ``-c`` program: refuse an old python with a hello that says its
    version (and exit 3), else read a line with the source's length, that
    many bytes of source, and run its ``main()``. One line (it holds
    single quotes: the server quotes it with shlex, as anyone writing it
    into a shell command must), and the same for every inkind of this
    protocol (the length comes on stdin)."""
    return (
        "import sys,struct,json;"
        "v=list(sys.version_info[:3]);"
        "o=getattr(sys.stdout,'buffer',sys.stdout);"
        f"m=json.dumps({{'agent':'inkind','protocol':{PROTOCOL},'python':v,'too_old':True}}).encode();"
        f"v<[{min_python[0]},{min_python[1]}] and (o.write(struct.pack('>IB',len(m),1)+m),o.flush(),sys.exit(3));"
        "i=sys.stdin.buffer;"
        "g={'__name__':'inkind_remote'};"
        "exec(compile(i.read(int(i.readline())),'inkind-remote','exec'),g);"
        "g['main']()"
    )


def boot_input() -> bytes:
    """What the server writes first to the remote side's stdin: the
    source's length on a line, then the source."""
    source = agent_source()
    return f"{len(source)}\n".encode() + source


BOOT = boot_line()
