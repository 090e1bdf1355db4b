"""The SSH command that reaches a source's host, and what its failures mean.

inkind never talks to sshd itself: it runs the configured ``ssh_command``
(``ssh`` by default, as rsync's ``-e`` and ``BORG_RSH``), so keys, ports,
jump hosts and ``~/.ssh/config`` work as they do for the sysadmin. Host
keys are ssh's job: nothing here turns their checking off.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from inkind.errors import ConfigError

# [user@]name: no spaces, no option, no "host:path" part, nothing empty.
_HOST = re.compile(r"(?:(?P<user>[^@\s:/]+)@)?(?P<name>[^@\s:/]+)")


def check_host(host: str, where: str) -> str:
    """``host`` when it is a plain ``[user@]name``, else ConfigError naming
    ``where`` ("config: sources.web.host"). A ':' is refused (an IPv6 address needs a ``Host`` alias in
    ~/.ssh/config), and so is a leading '-', which ssh would take for an
    option."""
    m = _HOST.fullmatch(host)
    if m is None or host.startswith("-") or m["name"].startswith("-"):
        raise ConfigError(
            f"{where}: expected [user@]name (no spaces, no leading '-', no ':path'), got {host!r}"
        )
    return host


def split_command(text: str, key: str) -> list[str]:
    """``ssh_command`` split as a shell would, or ConfigError naming ``key``."""
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise ConfigError(f"config: {key}: cannot be split like a shell command: {e}") from None
    if not words:
        raise ConfigError(f'config: {key}: must name a command (e.g. "ssh -p 2222")')
    return words


def check_python(command: str, key: str) -> str:
    """``remote_python``: one program, a name on the host's PATH or a path."""
    if not command or command != command.strip() or len(command.split()) != 1 or command.startswith("-"):
        raise ConfigError(
            f"config: {key}: expected one program name or path (python3, /usr/bin/python3.11), got {command!r}"
        )
    return command


def split_remote(dest: str) -> tuple[str, str] | None:
    """``[user@]host:/path`` as (host, path); None for a local path, which
    is any ``dest`` whose first ':' comes after a '/' or that has none (the
    rule rsync follows). A remote path must be absolute."""
    head, colon, path = dest.partition(":")
    if not colon or "/" in head:
        return None
    check_host(head, f"restore: --to {dest}")
    if not path.startswith("/"):
        raise ConfigError(f"restore: --to {dest}: give an absolute path on the host ({head}:/{path})")
    return head, path


@dataclass(frozen=True)
class SshSettings:
    """How a source reaches a host, whichever host it is (the config's
    ``ssh_command``, ``remote_sudo`` and ``remote_python``)."""

    ssh_command: list[str] = field(default_factory=lambda: ["ssh"])
    remote_sudo: bool = False
    remote_python: str = "python3"

    def to(self, host: str) -> SshTarget:
        return SshTarget(host, self.ssh_command, self.remote_sudo, self.remote_python)


@dataclass(frozen=True)
class SshTarget:
    """One source's host and how to reach it (the config's ``host``,
    ``ssh_command``, ``remote_sudo`` and ``remote_python``)."""

    host: str
    ssh_command: list[str] = field(default_factory=lambda: ["ssh"])
    remote_sudo: bool = False
    remote_python: str = "python3"

    def argv(self, remote_argv: list[str]) -> list[str]:
        """The local command that runs ``remote_argv`` on the host.

        ssh hands the remote shell one string, so the argv is quoted into
        one; BatchMode keeps ssh from asking for a password or a host key
        it would otherwise prompt about (a backup runs unattended), and the
        keepalives (UNATTENDED) end a run whose network was cut, which TCP
        alone would leave waiting for hours. They come after
        ``ssh_command``: ssh takes the first value it is given, so an
        ``-o`` of the user's wins."""
        remote = (["sudo", "-n"] if self.remote_sudo else []) + remote_argv
        return [*self.ssh_command, *UNATTENDED, "--", self.host, shlex.join(remote)]

    def rsh(self) -> str:
        """``ssh_command`` as one shell word list, for rsync's ``-e``."""
        return shlex.join(self.ssh_command)

    @property
    def user(self) -> str | None:
        return self.host.rpartition("@")[0] or None

    @property
    def name(self) -> str:
        return self.host.rpartition("@")[2]

    def describe_failure(self, returncode: int, stderr_text: str) -> str:
        """One line naming the host that says why ``argv`` failed."""
        text = stderr_text
        lower = text.lower()
        where = f"host {self.host}"
        for needles, what in _FAILURES:
            if any(n in lower for n in needles):
                return f"{where}: {what}"
        if returncode == 127:
            missing = _missing_command(text)
            return (
                f"{where}: {missing}: command not found on the host (remote_python is {self.remote_python!r})"
            )
        if returncode == 126:
            return f"{where}: the remote command could not be executed (permission denied or not a program)"
        last = _last_line(text)
        return f"{where}: ssh exited {returncode}" + (f": {last}" if last else "")


# What a backup's ssh is told: never prompt; give up on a connection that
# does not open in 30 s, and on one whose host answers no keepalive for a
# minute (4 x 15 s: a network cut, a host frozen).
UNATTENDED = (
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=30",
    "-o",
    "ServerAliveInterval=15",
    "-o",
    "ServerAliveCountMax=4",
)

_SUDO_PASSWORD = (
    "sudo needs a password (remote_sudo = true runs 'sudo -n'): give the backup user a NOPASSWD "
    "rule for the inkind command, for a restricted key the rule `inkind sudoers-rule` prints for "
    "this inkind (docs/remote.md)"
)

# (substrings of ssh's stderr, lower case) -> what to say; first match wins.
_FAILURES: list[tuple[tuple[str, ...], str]] = [
    (
        ("remote host identification has changed",),
        "the host key has changed (ssh refuses it): check why, then fix known_hosts "
        "(ssh-keygen -R); inkind never turns host key checking off",
    ),
    (
        ("host key verification failed", "no matching host key", "host key is known"),
        "host key verification failed (not in known_hosts, or different): check the key's "
        "fingerprint and add it to known_hosts; inkind never turns host key checking off",
    ),
    (("connection refused",), "connection refused (is sshd running there, on the port ssh_command gives?)"),
    (
        ("could not resolve hostname", "name or service not known", "temporary failure in name resolution"),
        "unknown host (the name does not resolve)",
    ),
    (("no route to host", "network is unreachable"), "no route to host"),
    (("connection timed out", "operation timed out"), "connection timed out"),
    (
        ("permission denied (",),
        "authentication failed: permission denied (is the backup key in the host's authorized_keys?)",
    ),
    (
        ("connection closed by", "connection reset by"),
        "the connection was closed by the host before it started",
    ),
    (("sudo: a password is required", "sudo: a terminal is required"), _SUDO_PASSWORD),
    (
        ("is not in the sudoers file", "is not allowed to execute"),
        "sudo refused the command (see docs/remote.md)",
    ),
]


def _missing_command(text: str) -> str:
    """The name a shell said it could not find ("bash: line 1: X: command
    not found", "sh: 1: X: not found"), else a generic phrase."""
    for line in text.splitlines():
        m = re.search(r"(?:^|: )([^:\s]+): (?:command )?not found", line)
        if m:
            return m[1]
    return "the remote command"


def _last_line(text: str) -> str:
    lines = [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("Warning: Permanently")
    ]
    return lines[-1][:200] if lines else ""


def restore_target(dest: str, ssh: SshSettings, source_host: str | None) -> tuple[SshTarget | None, str]:
    """A restore's ``--to`` as (the host to reach, or None for this machine;
    the path there). ``--to web1:/srv`` of a source read from
    ``root@web1`` logs in as root, as the backup did; a user given in
    ``--to`` wins."""
    remote = split_remote(dest)
    if remote is None:
        return None, dest
    host, path = remote
    if "@" not in host and source_host and source_host.rpartition("@")[2] == host:
        host = source_host
    return ssh.to(host), path


# A restore command that is a pipeline: run by bash with pipefail (a dd that
# fails on the reading side must fail the restore; dash has no pipefail),
# printed as the line itself.
PIPELINE = ["bash", "-o", "pipefail", "-c"]


def pipeline(line: str) -> list[str]:
    """The argv that runs the shell ``line``, failing when any part fails."""
    return [*PIPELINE, line]


def shell_line(argv: list[str]) -> str:
    """``argv`` as one line a sysadmin can paste (a pipeline as itself)."""
    if argv[: len(PIPELINE)] == PIPELINE and len(argv) == len(PIPELINE) + 1:
        return argv[-1]
    return shlex.join(argv)
