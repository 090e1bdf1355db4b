"""SshTarget against a real sshd: the command runs on the host, and each
way of failing is one line that names the host and says what to fix."""

from __future__ import annotations

import subprocess

import pytest

from inkind.remote.ssh import SshTarget
from inkind.testing.sshd import make_key

HOST = "root@127.0.0.1"


def run(target: SshTarget, argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(target.argv(argv), capture_output=True, text=True, timeout=60)


def failure(target: SshTarget, argv: list[str]) -> str:
    p = run(target, argv)
    assert p.returncode != 0, p
    line = target.describe_failure(p.returncode, p.stderr)
    assert "\n" not in line and line.startswith(f"host {target.host}: "), line
    return line


@pytest.mark.root
def test_a_python_command_runs_on_the_host_with_its_arguments_intact(inkind_sshd):
    target = SshTarget(HOST, inkind_sshd.ssh_command())
    odd = 'it\'s a "quoted" $HOME; `x` *'
    p = run(target, ["python3", "-c", "import os, sys; print(os.getuid(), sys.argv[1])", odd])
    assert p.returncode == 0, p.stderr + inkind_sshd.log
    assert p.stdout == f"0 {odd}\n"


def test_the_argv_is_the_ssh_command_then_the_unattended_options_then_one_quoted_string():
    target = SshTarget("backup@web1", ["ssh", "-p", "2222"], remote_sudo=True)
    assert target.argv(["python3", "-c", "print('x y')"]) == [
        "ssh",
        "-p",
        "2222",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=30",
        "-o",
        "ServerAliveInterval=15",
        "-o",
        "ServerAliveCountMax=4",
        "--",
        "backup@web1",
        "sudo -n python3 -c 'print('\"'\"'x y'\"'\"')'",
    ]


@pytest.mark.root
def test_a_closed_port_is_connection_refused(inkind_sshd):
    command = inkind_sshd.ssh_command()
    command[command.index("-p") + 1] = "1"  # nothing listens on tcpmux
    line = failure(SshTarget(HOST, command), ["true"])
    assert "connection refused" in line


@pytest.mark.root
def test_a_key_the_host_does_not_authorize_is_permission_denied(inkind_sshd):
    stranger = make_key(inkind_sshd.dir / "stranger_key")
    line = failure(SshTarget(HOST, inkind_sshd.ssh_command(key=stranger)), ["true"])
    assert "authentication failed: permission denied" in line and "authorized_keys" in line


@pytest.mark.root
def test_a_changed_host_key_is_refused_and_known_hosts_is_for_the_user_to_fix(inkind_sshd):
    impostor = make_key(inkind_sshd.dir / "impostor_host_key")
    known = inkind_sshd.dir / "known_hosts_changed"
    known.write_text(inkind_sshd.known_hosts_line(impostor.with_suffix(".pub")))
    line = failure(SshTarget(HOST, inkind_sshd.ssh_command(known_hosts=known)), ["true"])
    assert "host key has changed" in line and "known_hosts" in line and "never turns" in line
    assert known.read_text() == inkind_sshd.known_hosts_line(impostor.with_suffix(".pub"))  # untouched


@pytest.mark.root
def test_an_unknown_host_key_is_not_accepted_either(inkind_sshd):
    known = inkind_sshd.dir / "known_hosts_empty"
    known.write_text("")
    line = failure(SshTarget(HOST, inkind_sshd.ssh_command(known_hosts=known)), ["true"])
    assert "host key verification failed" in line
    assert known.read_text() == ""  # BatchMode: ssh added nothing


@pytest.mark.root
def test_a_missing_remote_python_is_command_not_found(inkind_sshd):
    target = SshTarget(HOST, inkind_sshd.ssh_command(), remote_python="python3-nowhere")
    line = failure(target, [target.remote_python, "-c", "pass"])
    assert "python3-nowhere: command not found on the host" in line


@pytest.mark.root
def test_remote_sudo_that_needs_a_password_says_so(inkind_sshd, ssh_user):
    target = SshTarget(f"{ssh_user}@127.0.0.1", inkind_sshd.ssh_command(), remote_sudo=True)
    assert run(SshTarget(target.host, target.ssh_command), ["id", "-un"]).stdout == f"{ssh_user}\n"
    line = failure(target, ["python3", "-c", "pass"])
    assert "sudo needs a password" in line and "NOPASSWD" in line


@pytest.mark.parametrize(
    ("returncode", "stderr", "needle"),
    [
        (255, "ssh: Could not resolve hostname web9: Name or service not known\n", "unknown host"),
        (255, "ssh: connect to host 10.0.0.9 port 22: No route to host\n", "no route to host"),
        (255, "ssh: connect to host 10.0.0.9 port 22: Connection timed out\n", "timed out"),
        (1, "sudo: a terminal is required to read the password\n", "sudo needs a password"),
        (127, "sh: 1: python3: not found\n", "python3: command not found"),
        (3, "Warning: Permanently added x\nsomething odd\n", "ssh exited 3: something odd"),
    ],
)
def test_what_the_tests_cannot_provoke_here_is_read_the_same_way(returncode, stderr, needle):
    assert needle in SshTarget("web9").describe_failure(returncode, stderr)
