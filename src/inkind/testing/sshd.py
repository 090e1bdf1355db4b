"""A real OpenSSH server on 127.0.0.1 for the tests of remote sources.

One per test session: a host key and a client key made with ssh-keygen, a
non-default port, and an ``ssh_command`` that trusts exactly that host key
(a ``known_hosts`` of its own) and offers exactly that client key, so the
tests never read or write the machine's ~/.ssh. Root only: sshd changes
to the logged-in user, which only root may do. :func:`running_sshd` starts
one outside pytest too (bench/remote.py: in a network namespace).
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from inkind.remote.bootstrap import authorized_keys_line

SSHD = Path("/usr/sbin/sshd")
HOST = "127.0.0.1"


def make_key(path: Path) -> Path:
    """A new ed25519 key pair at ``path`` (and ``path``.pub), no passphrase."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _accepts(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class SshServer:
    """A running sshd and how to reach it."""

    dir: Path
    port: int
    host_key: Path
    client_key: Path
    known_hosts: Path
    authorized_keys: Path
    process: subprocess.Popen | None = None
    address: str = HOST

    def ssh_command(self, key: Path | None = None, known_hosts: Path | None = None) -> list[str]:
        """The ssh command line (``ssh_command`` of a source) that reaches
        this server with ``key`` (the authorized client key) and trusts
        the host keys in ``known_hosts`` (the server's own)."""
        return [
            "ssh",
            "-F",
            "/dev/null",
            "-p",
            str(self.port),
            "-i",
            str(key or self.client_key),
            "-o",
            f"UserKnownHostsFile={known_hosts or self.known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
        ]

    @contextmanager
    def restricted_login(
        self, python: str, line: Callable[[str, str], str] = authorized_keys_line
    ) -> Iterator[str]:
        """The ``ssh_command`` of a new key that this server lets run only
        what its authorized_keys line forces: ``line(public_key, python)``,
        by default the line ``inkind authorized-key`` prints. The line goes
        when the block ends."""
        key = make_key(Path(tempfile.mkdtemp(prefix="restricted-", dir=self.dir)) / "key")
        entry = line(key.with_suffix(".pub").read_text(), python) + "\n"
        with self.authorized_keys.open("a") as f:
            f.write(entry)
        try:
            yield shlex.join(self.ssh_command(key))
        finally:
            kept = self.authorized_keys.read_text().replace(entry, "")
            self.authorized_keys.write_text(kept)
            shutil.rmtree(key.parent)

    def known_hosts_line(self, public_key: Path) -> str:
        """A known_hosts line saying ``public_key`` is this server's key."""
        kind, blob = public_key.read_text().split()[:2]
        return f"[{self.address}]:{self.port} {kind} {blob}\n"

    @classmethod
    def start(cls, base: Path, address: str = HOST, prefix: Sequence[str] = ()) -> SshServer:
        """sshd listening on ``address``, run under ``prefix`` (e.g.
        ``ip netns exec NS``: the port is free on 127.0.0.1, and so in a
        new namespace too)."""
        host_key, client_key = make_key(base / "host_key"), make_key(base / "client_key")
        authorized = base / "authorized_keys"
        shutil.copyfile(client_key.with_suffix(".pub"), authorized)
        server = cls(
            base, _free_port(), host_key, client_key, base / "known_hosts", authorized, address=address
        )
        server.known_hosts.write_text(server.known_hosts_line(host_key.with_suffix(".pub")))
        config = base / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress {address}",
                    f"Port {server.port}",
                    f"HostKey {host_key}",
                    f"AuthorizedKeysFile {authorized}",
                    f"PidFile {base / 'sshd.pid'}",
                    "StrictModes no",
                    "UsePAM no",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "MaxStartups 50",
                    "",
                ]
            )
        )
        # Privilege separation: sshd refuses to start without its empty dir.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        log = (base / "sshd.log").open("wb")
        server.process = subprocess.Popen([*prefix, str(SSHD), "-D", "-e", "-f", str(config)], stderr=log)
        log.close()
        server._wait()
        return server

    def _wait(self) -> None:
        deadline = time.monotonic() + 15
        while not _accepts(self.address, self.port):
            assert self.process is not None
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sshd did not start: {(self.dir / 'sshd.log').read_text()[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    @property
    def log(self) -> str:
        """What sshd said so far (for a failing test's message)."""
        return (self.dir / "sshd.log").read_text(errors="replace")


def sshd_skip_reason() -> str | None:
    """Why this machine cannot run the test sshd, or None."""
    if os.geteuid() != 0:
        return "the test sshd needs root (it logs in as root; CI runs as root)"
    if not SSHD.is_file() or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        return "needs OpenSSH (openssh-server and openssh-client: scripts/setup.sh --test)"
    return None


@contextmanager
def running_sshd(address: str = HOST, prefix: Sequence[str] = ()) -> Iterator[SshServer]:
    """A real sshd (:meth:`SshServer.start`) in a directory of its own,
    stopped and removed on exit; for the tests' fixture and the benchmarks."""
    # Not pytest's 0700 tmp: sshd reads authorized_keys as the user logging
    # in, who may be a test's unprivileged user.
    base = Path(tempfile.mkdtemp(prefix="inkind-sshd-"))
    base.chmod(0o755)
    try:
        server = SshServer.start(base, address, prefix)
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(base)


@pytest.fixture(scope="session")
def inkind_sshd() -> Iterator[SshServer]:
    """A real sshd on 127.0.0.1, a port of its own, for the whole session;
    ``inkind_sshd.ssh_command()`` reaches it as root (skipped with the
    reason without root or without OpenSSH)."""
    reason = sshd_skip_reason()
    if reason:
        pytest.skip(reason)
    with running_sshd() as server:
        yield server
