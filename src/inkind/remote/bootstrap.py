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
import hashlib
import re
import shlex
from pathlib import Path

from inkind.errors import ConfigError
from inkind.remote import agent, blockops, policy, sqlitecopy, walk, wire
from inkind.remote.wire import MIN_PYTHON, PROTOCOL

# The modules sent, in order: each may use the names of those before it.
MODULES = (wire, walk, blockops, policy, sqlitecopy, agent)


@functools.cache
def agent_source() -> bytes:
    """The remote side as one module: the six files, their imports of
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


def boot_line(min_python: tuple[int, int] = MIN_PYTHON, pin: str | None = None) -> str:
    """The ``-c`` program: refuse an old python with a hello that says its
    version (and exit 3), else read a line with the source's length, that
    many bytes of source, and run its ``main()``. One line (it holds
    single quotes: the server quotes it with shlex, as anyone writing it
    into a shell command must), and the same for every inkind of this
    protocol (the length comes on stdin).

    With ``pin`` (a SHA-256, hex), the program of a forced command in
    authorized_keys: a source of another digest is refused with a hello
    that says so (exit 4), and the remote side runs restricted (policy.py)."""
    hello = f"{{'agent':'inkind','protocol':{PROTOCOL},'python':v"
    send = "o.write(struct.pack('>IB',len(m),1)+m),o.flush(),sys.exit({})"
    check = ""
    if pin is not None:
        check = (
            "import hashlib;"
            f"m=json.dumps({hello},'pinned':'{pin}'}}).encode();"
            f"hashlib.sha256(s).hexdigest()!='{pin}' and ({send.format(4)});"
        )
    return (
        "import sys,struct,json;"
        "v=list(sys.version_info[:3]);"
        "o=getattr(sys.stdout,'buffer',sys.stdout);"
        f"m=json.dumps({hello},'too_old':True}}).encode();"
        f"v<[{min_python[0]},{min_python[1]}] and ({send.format(3)});"
        "i=sys.stdin.buffer;"
        "g={'__name__':'inkind_remote'};"
        "s=i.read(int(i.readline()));"
        f"{check}"
        "exec(compile(s,'inkind-remote','exec'),g);"
        f"g['main']({'' if pin is None else 'True'})"
    )


def agent_digest() -> str:
    """The SHA-256 of the remote side's source, as a pinned line checks it."""
    return hashlib.sha256(agent_source()).hexdigest()


def forced_command(python: str = "python3", sudo: bool = False) -> str:
    """The command a restricted key is forced to run: the pinned BOOT under
    ``python -I`` (isolated: no module in the login's directory and no
    PYTHON* variable changes what runs); with ``sudo``, as root through
    ``sudo -n`` (the rule :func:`sudoers_rule` prints allows just this)."""
    boot = boot_line(pin=agent_digest())
    # In double quotes: BOOT is full of single quotes and has none of what a
    # shell reads inside double quotes (a test runs the line through sh).
    return f'{"sudo -n " if sudo else ""}{shlex.quote(python)} -I -c "{boot}"'


# An OpenSSH public key line: its type, its base64 blob, any comment.
_PUBLIC_KEY = re.compile(r"(?:ssh|ecdsa|sk)-[A-Za-z0-9@.-]+ [A-Za-z0-9+/=]+( [^\n]*)?")


def authorized_keys_line(  # size: the key, where it runs, and how it is named in an error
    public_key: str,
    python: str = "python3",
    sources: str | None = None,
    where: str = "the public key",
    sudo: bool = False,
) -> str:
    """The line for the host's authorized_keys that lets ``public_key`` run
    this inkind's remote side, restricted, and nothing else: sshd runs the
    forced command whatever the client asks, ``restrict`` turns off
    forwarding and ttys, ``from=`` (``sources``) limits where it may log
    in from; ``sudo`` for a login that is not root. ``where`` names the
    key in an error."""
    key = public_key.strip()
    if not _PUBLIC_KEY.fullmatch(key):
        raise ConfigError(f"{where}: not an OpenSSH public key (one line: type, key, comment): {key[:80]!r}")
    options = ["restrict"]
    if sources is not None:
        if not re.fullmatch(r"[A-Za-z0-9.:/*?!,\[\]%_-]+", sources):
            raise ConfigError(f"--from: not a list of address patterns: {sources[:80]!r}")
        options.append(f'from="{sources}"')
    if sudo:
        check_sudo_python(python)
    command = forced_command(python, sudo)
    if "\\" in command:  # sshd unquotes only \" there: a backslash cannot be written
        raise ConfigError(f"--python: a path with a backslash: {python[:80]!r}")
    options.append('command="{}"'.format(command.replace('"', '\\"')))
    return f"{','.join(options)} {key}"


SUDO_PYTHON = "/usr/bin/python3"  # a sudoers rule names its program by path

# What sudoers reads in a command's arguments (separators, wildcards,
# negation); a backslash before each makes it literal.
_SUDOERS_SPECIAL = re.compile(r"([\\,:=\[\]*?!])")


def check_sudo_python(python: str) -> None:
    """A sudoers rule names the program by its absolute path, plainly."""
    if not re.fullmatch(r"/[A-Za-z0-9/._+-]+", python):
        raise ConfigError(f"--python: sudo needs the absolute path of the host's python3: {python[:80]!r}")


def sudoers_rule(user: str, python: str = SUDO_PYTHON) -> str:
    """The lines for the host's sudoers that let ``user`` run the forced
    command of ``authorized_keys_line(..., sudo=True)`` as root and nothing
    else: sudo compares the arguments whole, so another remote side (another
    digest), another python option or any other command is refused. No tty
    is needed (``restrict`` gives none)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", user):
        raise ConfigError(f"USER: not a user name: {user[:80]!r}")
    check_sudo_python(python)
    args = _SUDOERS_SPECIAL.sub(r"\\\1", f"-I -c {boot_line(pin=agent_digest())}")
    return f"Defaults:{user} !requiretty\n{user} ALL=(root) NOPASSWD: {python} {args}"


def boot_input() -> bytes:
    """What the server writes first to the remote side's stdin: the
    source's length on a line, then the source."""
    source = agent_source()
    return f"{len(source)}\n".encode() + source


BOOT = boot_line()
