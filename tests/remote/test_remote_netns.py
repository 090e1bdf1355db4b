"""A host a real network hop away: its sshd in a network namespace the
test makes (a veth pair), and with ``tc netem`` delay on both ends where
the kernel has netem (25 ms each way). The files source backs up through
it as over loopback, and a run with no change costs its listing only."""

from __future__ import annotations

import contextlib
import os
import shlex

import pytest

from inkind.testing import tree_diff
from inkind.testing.netns import NetnsError, netns_skip_reason, network_namespace
from inkind.testing.sshd import running_sshd, sshd_skip_reason

pytestmark = pytest.mark.root


@pytest.mark.parametrize("inkind_store_fs", ["ext4"], indirect=True)  # the network is tested, not the store
@pytest.mark.parametrize("delay", [None, "25ms"])
def test_a_host_behind_a_veth_pair(delay, tmp_path, inkind_config, inkind_run, inkind_store):
    if reason := sshd_skip_reason() or netns_skip_reason():
        pytest.skip(reason)
    src = tmp_path / "srv"
    (src / "d").mkdir(parents=True)
    for i in range(300):
        (src / "d" / f"f{i:03}").write_bytes(os.urandom(i * 10))
    tag = f"t{os.getpid() % 100000}{'d' if delay else ''}"
    with contextlib.ExitStack() as stack:
        try:
            ns = stack.enter_context(network_namespace(tag, os.getpid() % 250 + bool(delay), delay))
        except NetnsError as e:
            pytest.skip(f"no network namespace with delay {delay}: {e}")
        server = stack.enter_context(running_sshd(ns.ns_addr, ns.prefix))
        table = {"type": "files", "path": src, "host": f"root@{ns.ns_addr}"}
        cfg = inkind_config({"web": {**table, "ssh_command": shlex.join(server.ssh_command())}})
        first = inkind_run(cfg, seed=1)
        assert first.exit_status == 0, first.as_dict()
        assert tree_diff(src, inkind_store / "web") == []
        second = inkind_run(cfg, seed=2)
        s = second.results[0].stats
        assert second.exit_status == 0 and s.bytes_written == 0 and s.objects_changed == 0
        assert 0 < s.bytes_received < 64 << 10
