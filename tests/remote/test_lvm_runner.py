"""``lvm.channel_runner``: the LVM module's commands run through a remote
side (here the real one over pipes), each failure one LvmError naming the
host: a missing command, a failing one, output past the limit, a dead
connection."""

from __future__ import annotations

import os
import signal

import pytest
from remote_helpers import HOST

from inkind import lvm

LVS = '{"report": [{"lv": [{"vg_name": "vg0", "lv_name": "data", "lv_size": "4096", "lv_attr": "-wi-a-----"}]}]}'


def test_the_commands_run_there_and_their_output_is_parsed_here(channel, tmp_path):
    fake = tmp_path / "lvs"
    fake.write_text(f"#!/bin/sh\necho '{LVS}'\necho \"$@\" > {tmp_path / 'args'}\n")
    fake.chmod(0o755)
    cmds = lvm.Commands(lambda argv, what: lvm.channel_runner(channel)([str(fake), *argv[1:]], what))
    [vol] = cmds.list_volumes()
    assert (vol.full_name, vol.size) == ("vg0/data", 4096)
    assert (tmp_path / "args").read_text().split()[:2] == ["--reportformat", "json"]


def test_a_command_missing_there_says_so_naming_the_host(channel):
    run = lvm.channel_runner(channel)
    with pytest.raises(lvm.LvmError) as e:
        run(["/nonexistent/lvcreate", "-s"], "snapshot vg0/data")
    assert str(e.value) == (
        f"host {HOST}: snapshot vg0/data: command not found there: /nonexistent/lvcreate "
        "(install lvm2 / thin-provisioning-tools)"
    )
    assert run(["echo", "still here"], "echo") == "still here\n"  # the channel goes on


def test_a_failing_command_is_its_status_and_last_line(channel):
    run = lvm.channel_runner(channel)
    with pytest.raises(lvm.LvmError) as e:
        run(
            ["sh", "-c", "echo first >&2; echo 'Volume group \"vg9\" not found' >&2; exit 5"],
            "list logical volumes",
        )
    assert str(e.value) == f'host {HOST}: list logical volumes: sh exited 5: Volume group "vg9" not found'


def test_output_past_the_limit_ends_the_connection_with_one_line(channel, monkeypatch):
    monkeypatch.setattr(lvm, "MAX_OUTPUT", 1 << 20)
    run = lvm.channel_runner(channel)
    with pytest.raises(lvm.LvmError, match=f"^host {HOST}: thin_delta: head printed more than 1048576 bytes"):
        run(["head", "-c", str(4 << 20), "/dev/zero"], "thin_delta")
    with pytest.raises(lvm.LvmError, match=f"^host {HOST}: "):  # the connection is done
        run(["echo"], "echo")


def test_a_dead_connection_is_an_lvm_error_a_finally_can_log(channel):
    os.kill(channel.hello["pid"], signal.SIGKILL)
    with pytest.raises(lvm.LvmError) as e:
        lvm.Commands(lvm.channel_runner(channel)).remove("vg0", "inkind-x")
    assert str(e.value).startswith(f"host {HOST}: ") and str(e.value).endswith("(remove vg0/inkind-x)")
