"""The restricted key for a login that is not root, through the real test
sshd and the real sudo: the line ``inkind authorized-key --sudo`` prints
and the rule ``inkind sudoers-rule`` prints let the user run the pinned
remote side as root (it reads what only root can) and nothing else as
root: sudo compares the arguments whole, so the user's own sudo of
anything else, or a line of another inkind, is refused; the remote side
is restricted as with a root login."""

from __future__ import annotations

import errno
import shlex
import subprocess

import pytest
from remote_helpers import installed_sudoers, make_tree

from inkind.remote.bootstrap import agent_digest, authorized_keys_line, boot_line, sudoers_rule
from inkind.remote.channel import Channel, RemoteOSError
from inkind.testing import tree_diff

pytestmark = pytest.mark.root
PYTHON = "/usr/bin/python3"


def sudo_line(key: str, python: str) -> str:
    return authorized_keys_line(key, python, sudo=True)


def as_user(user: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", user, "--", *argv], capture_output=True, text=True, timeout=60)


def test_a_login_that_is_not_root_reads_as_root_through_sudo_and_no_more(
    ssh_user, inkind_sshd, inkind_config, inkind_run, inkind_store, tmp_path
):
    src = tmp_path / "srv"  # in pytest's 0700 tmp: the user alone cannot even reach it
    src.mkdir()
    make_tree(src)
    (src / "shadow").write_text("root only\n")
    (src / "shadow").chmod(0o600)
    host = f"{ssh_user}@127.0.0.1"
    with (
        installed_sudoers(sudoers_rule(ssh_user, PYTHON), tmp_path),
        inkind_sshd.restricted_login(PYTHON, sudo_line) as ssh,
    ):
        cfg = inkind_config({"web": {"type": "files", "path": src, "host": host, "ssh_command": ssh}})
        report = inkind_run(cfg, seed=1)
        assert report.exit_status == 0, report.as_dict()
        with Channel([*shlex.split(ssh), host, "anything"], "web1") as ch:
            assert ch.hello["restricted"] is True
            with pytest.raises(RemoteOSError) as e:
                ch.run(["sh", "-c", "id"])
            assert e.value.errno == errno.EPERM
        # The rule lets the user run that one command as root, nothing else:
        assert (
            as_user(
                ssh_user, "sudo", "-n", "-l", PYTHON, "-I", "-c", boot_line(pin=agent_digest())
            ).returncode
            == 0
        )
        for other in ([PYTHON, "-c", "print(1)"], [PYTHON], ["/bin/sh", "-c", "id"]):
            assert as_user(ssh_user, "sudo", "-n", "-l", *other).returncode != 0, other
    assert tree_diff(src, inkind_store / "web") == []
    assert (inkind_store / "web" / "shadow").read_text() == "root only\n"


@pytest.mark.parametrize("inkind_store_fs", ["ext4"], indirect=True)  # no store write differs here
def test_a_rule_of_another_inkind_is_one_line_naming_the_host(
    ssh_user, inkind_sshd, inkind_config, inkind_cli, tmp_path
):
    src = tmp_path / "srv"
    src.mkdir()
    make_tree(src)
    other = sudoers_rule(ssh_user, PYTHON).replace(agent_digest(), "0" * 64)  # the rule not upgraded
    host = f"{ssh_user}@127.0.0.1"
    with installed_sudoers(other, tmp_path), inkind_sshd.restricted_login(PYTHON, sudo_line) as ssh:
        cfg = inkind_config({"web": {"type": "files", "path": src, "host": host, "ssh_command": ssh}})
        r = inkind_cli("-c", cfg, "backup")
    assert r.returncode == 2
    errors = [line for line in r.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, r.stderr
    assert f"web: host {host}: sudo needs a password" in errors[0], errors[0]
    assert "the rule `inkind sudoers-rule` prints for this inkind" in errors[0]


def test_sudoers_rule_prints_what_visudo_accepts_and_refuses_bad_input(inkind_cli, tmp_path):
    r = inkind_cli("sudoers-rule", "backup")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == sudoers_rule("backup", PYTHON)
    defaults, rule = r.stdout.splitlines()
    assert defaults == "Defaults:backup !requiretty"
    assert rule.startswith(f"backup ALL=(root) NOPASSWD: {PYTHON} -I -c import sys\\,struct\\,json;")
    (tmp_path / "rule").write_text(r.stdout)
    assert subprocess.run(["visudo", "-cf", str(tmp_path / "rule")], capture_output=True).returncode == 0
    for args, message in [
        (["a b"], "USER: not a user name: 'a b'"),
        (["backup", "--python", "python3"], "--python: sudo needs the absolute path of the host's python3"),
    ]:
        bad = inkind_cli("sudoers-rule", *args)
        assert bad.returncode == 2 and bad.stdout == ""
        assert len(bad.stderr.splitlines()) == 1 and message in bad.stderr, bad.stderr
    pub = tmp_path / "backup.pub"
    pub.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0 backup@server\n")
    line = inkind_cli("authorized-key", pub, "--sudo", "--from", "10.0.0.5").stdout.strip()
    assert line.startswith(f'restrict,from="10.0.0.5",command="sudo -n {PYTHON} -I -c \\"import sys,')
