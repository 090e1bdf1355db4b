"""Fixtures of the remote tests: the remote side run locally (``python -c
BOOT`` over pipes, no ssh), fake remote sides that break the protocol on
purpose, an unprivileged login on the test sshd, for what only a user
who is not root meets (sudo asking for a password), and a trusted
directory outside the temps for the restricted key's programs."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from remote_helpers import FAKE, HOST

from inkind.remote.bootstrap import BOOT
from inkind.remote.channel import Channel
from inkind.stats import Stats

# One per xdist worker: a worker whose session ends removes its user while
# the others may still be logged in as theirs.
TEST_USER = f"inkind-sshtest{os.environ.get('PYTEST_XDIST_WORKER', '')}"


@pytest.fixture(scope="session")
def ssh_user(inkind_sshd) -> Iterator[str]:
    """A system user with no sudo rule and no password ('*': sshd refuses a
    locked '!' account without PAM, but a key login works), removed after."""
    if shutil.which("sudo") is None:
        pytest.skip("needs sudo (scripts/setup.sh --test installs it)")
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "-M", "-d", "/nonexistent", "-s", "/bin/sh", "-p", "*", TEST_USER],
            check=True,
        )
    try:
        yield TEST_USER
    finally:
        subprocess.run(["userdel", TEST_USER], check=False)


@pytest.fixture
def trusted_dir() -> Iterator[Path]:
    """A directory only this user can change, outside the temp directories
    (a restricted key runs no program and reads no option file from a
    temp, where the server may have had it written): in /var/lib as root,
    else in the home directory."""
    base = "/var/lib" if os.geteuid() == 0 else os.path.expanduser("~")
    where = Path(tempfile.mkdtemp(prefix="inkind-test-", dir=base))
    where.chmod(0o755)
    try:
        yield where
    finally:
        shutil.rmtree(where)


@pytest.fixture
def channel() -> Iterator[Channel]:
    """An open Channel to the real remote side, run locally over pipes."""
    with Channel([sys.executable, "-c", BOOT], HOST, Stats()) as ch:
        yield ch


@pytest.fixture
def fake() -> Iterator[Callable[[str], Channel]]:
    """``fake(body)``: an open Channel to a remote side that says hello,
    reads one request and answers with ``body``."""
    opened: list[Channel] = []

    def start(body: str) -> Channel:
        code = FAKE.replace("{body}", textwrap.dedent(body))
        ch = Channel([sys.executable, "-c", code], HOST, Stats()).open()
        opened.append(ch)
        return ch

    yield start
    for ch in opened:
        ch.close()
