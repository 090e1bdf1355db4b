"""Fixtures of the remote tests: an unprivileged login on the test sshd,
for what only a user who is not root meets (sudo asking for a password)."""

from __future__ import annotations

import pwd
import shutil
import subprocess
from collections.abc import Iterator

import pytest

TEST_USER = "inkind-sshtest"


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
