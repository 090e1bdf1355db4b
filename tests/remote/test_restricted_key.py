"""A restricted key through the real test sshd: the authorized_keys line
``inkind authorized-key`` prints forces the pinned remote side whatever
the client asks; the files, image and sqlite sources read through it as
through an open key (postgres, mysql and lvm: in their own tests); a
server that was taken over still reads, and its attempts to run, write or
remove are refused one by one on a connection that goes on; a line
pinned to another inkind is one line naming the host, exit 2, the stored
tree intact."""

from __future__ import annotations

import errno
import os
import random
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from remote_helpers import make_tree

from inkind.remote.bootstrap import agent_digest, authorized_keys_line, boot_line, forced_command
from inkind.remote.channel import Channel, RemoteOSError, RemoteTemp
from inkind.testing import tree_diff

HOST = "root@127.0.0.1"
ROOT = pytest.mark.root


def remote(ssh_command: str, table: dict) -> dict:
    return {**table, "host": HOST, "ssh_command": ssh_command}


def make_image(path: Path) -> None:
    with open(path, "wb") as f:
        f.write(random.Random(2).randbytes(3 << 20))
        f.truncate(8 << 20)  # the rest a hole


def make_db(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)")
        db.executemany("INSERT INTO t VALUES (?, ?)", [(i, os.urandom(200)) for i in range(500)])
    db.close()


def rows(path: Path) -> list:
    with sqlite3.connect(path) as db:
        got = db.execute("SELECT id, data FROM t ORDER BY id").fetchall()
    db.close()
    return got


@ROOT
def test_files_image_and_sqlite_read_through_a_restricted_key(
    inkind_sshd, inkind_config, inkind_run, inkind_store, tmp_path
):
    (tmp_path / "srv").mkdir()
    make_tree(tmp_path / "srv")
    make_image(tmp_path / "vm.img")
    make_db(tmp_path / "app.db")
    with inkind_sshd.restricted_login(sys.executable) as ssh:
        cfg = inkind_config(
            {
                "web": remote(ssh, {"type": "files", "path": tmp_path / "srv"}),
                "disk": remote(ssh, {"type": "image", "path": tmp_path / "vm.img", "block_size": "256K"}),
                "app": remote(ssh, {"type": "sqlite", "path": tmp_path / "app.db"}),
            }
        )
        report = inkind_run(cfg, seed=1)
    assert report.exit_status == 0, report.as_dict()
    assert tree_diff(tmp_path / "srv", inkind_store / "web") == []
    assert (inkind_store / "disk" / "vm.img").read_bytes() == (tmp_path / "vm.img").read_bytes()
    assert rows(inkind_store / "app" / "app.db") == rows(tmp_path / "app.db")


@ROOT
def test_the_command_the_client_asks_for_is_not_run(inkind_sshd, tmp_path):
    marker = tmp_path / "ran"

    def ask(ssh_command: list[str]) -> int:
        argv = [*ssh_command, HOST, f"touch {marker}"]
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60).returncode

    with inkind_sshd.restricted_login(sys.executable) as ssh:
        assert ask(shlex.split(ssh)) != 0  # the forced remote side, its source missing on stdin
    assert not marker.exists()
    assert ask(inkind_sshd.ssh_command()) == 0 and marker.exists()  # the open key runs it


def refused(call, what: str) -> None:
    with pytest.raises(RemoteOSError) as e:
        call()
    assert e.value.errno == errno.EPERM
    assert f"refused by the host's restricted key: {what}" in str(e.value)


@ROOT
def test_a_taken_over_server_reads_but_cannot_run_write_or_remove(inkind_sshd, tmp_path):
    marker, secret = tmp_path / "written", tmp_path / "secret"
    secret.write_bytes(b"root's data, read as a backup reads it")
    make_db(tmp_path / "app.db")
    with (
        inkind_sshd.restricted_login(sys.executable) as ssh,
        Channel([*shlex.split(ssh), HOST, "python3", "-c", "anything"], "web1") as ch,
    ):
        assert ch.hello["restricted"] is True
        refused(lambda: ch.run(["sh", "-c", f"touch {marker}"]), "'sh' is not a command")
        refused(lambda: ch.run(["pg_dump", "-Fp", "--create", "-d", "", "-f", str(marker)]), "pg_dump with")
        refused(lambda: ch.run(["lvremove", "-y", "vg0/root"]), "lvremove with")
        refused(lambda: ch.run(["pg_dump", "--help"], {"LD_PRELOAD": str(marker)}), "pg_dump: environment")
        refused(lambda: ch.temp_dir(os.fsencode(tmp_path)), f"a temp in {tmp_path}")
        refused(lambda: ch.sqlite_backup(os.fsencode(tmp_path / "app.db"), os.fsencode(tmp_path)), "a temp")
        with pytest.raises(RemoteOSError, match="not a temp file of this run"):
            ch.remove(RemoteTemp(os.fsencode(secret), 0))
        rf = ch.read(os.fsencode(secret))
        assert b"".join(bytes(data) for _, data in rf.chunks()) == secret.read_bytes()
        temp = ch.sqlite_backup(os.fsencode(tmp_path / "app.db"))  # in its own temp root: allowed
        ch.remove(temp)
    assert not marker.exists() and secret.exists()
    assert not os.path.exists(os.fsdecode(temp.path))


@ROOT
@pytest.mark.parametrize("inkind_store_fs", ["ext4"], indirect=True)  # no store write differs here
def test_a_line_pinned_to_another_inkind_is_one_line_and_the_tree_stays(
    inkind_sshd, inkind_config, inkind_cli, inkind_store, tmp_path
):
    (tmp_path / "srv").mkdir()
    make_tree(tmp_path / "srv")
    cfg = inkind_config(
        {"web": remote(shlex.join(inkind_sshd.ssh_command()), {"type": "files", "path": tmp_path / "srv"})}
    )
    assert inkind_cli("-c", cfg, "backup").returncode == 0

    def other_inkind(key: str, python: str) -> str:
        return authorized_keys_line(key, python).replace(agent_digest(), "0" * 64)

    with inkind_sshd.restricted_login(sys.executable, other_inkind) as ssh:
        cfg = inkind_config({"web": remote(ssh, {"type": "files", "path": tmp_path / "srv"})})
        r = inkind_cli("-c", cfg, "backup")
    assert r.returncode == 2
    errors = [line for line in r.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, r.stderr
    assert f"web: host {HOST}: its authorized_keys pins another remote side (sha256 {'0' * 64})" in errors[0]
    assert "`inkind authorized-key`" in errors[0]
    assert tree_diff(tmp_path / "srv", inkind_store / "web") == []


def test_authorized_key_prints_the_line_for_the_key_given(inkind_cli, tmp_path):
    pub = tmp_path / "backup.pub"
    pub.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0 backup@server\n")
    r = inkind_cli("authorized-key", pub, "--from", "10.0.0.5", "--python", "/usr/bin/python3")
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert line == authorized_keys_line(pub.read_text(), "/usr/bin/python3", "10.0.0.5")
    assert line.startswith('restrict,from="10.0.0.5",command="/usr/bin/python3 -I -c ')
    assert line.endswith('" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0 backup@server')
    assert agent_digest() in line


def test_the_forced_command_is_the_pinned_boot_as_a_shell_splits_it():
    python = "/opt/py 3/bin/python3"
    words = subprocess.run(
        ["sh", "-c", f"set -- {forced_command(python)}; printf '%s\\0' \"$@\""],
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")[:-1]
    assert [w.decode() for w in words] == [python, "-I", "-c", boot_line(pin=agent_digest())]


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.pub"], "missing.pub: cannot read the public key: No such file or directory"),
        (["bad.pub"], "bad.pub: not an OpenSSH public key"),
        (["good.pub", "--from", 'x",command="sh'], "--from: not a list of address patterns"),
        (["good.pub", "--python", "C:\\python"], "--python: a path with a backslash"),
    ],
)
def test_authorized_key_refuses_bad_input_in_one_line(inkind_cli, tmp_path, args, message):
    (tmp_path / "bad.pub").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    (tmp_path / "good.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0\n")
    r = inkind_cli("authorized-key", *(str(tmp_path / a) if a.endswith(".pub") else a for a in args))
    assert r.returncode == 2
    assert r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and message in r.stderr, r.stderr
