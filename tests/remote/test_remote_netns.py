"""A host a real network hop away: its sshd in a network namespace the
test makes (a veth pair), and with ``tc netem`` delay on both ends where
the kernel has netem (25 ms each way). The files source backs up through
it as over loopback, a run with no change costs its listing only, and a
link cut mid-file ends the run."""

from __future__ import annotations

import contextlib
import os
import shlex
import time
from collections.abc import Iterator

import pytest

from inkind.engines.tree.pull import PullWalker
from inkind.testing import tree_diff
from inkind.testing.netns import Netns, NetnsError, netns_skip_reason, network_namespace
from inkind.testing.sshd import SshServer, running_sshd, sshd_skip_reason

pytestmark = pytest.mark.root


@contextlib.contextmanager
def _sshd_behind_veth(tag: str, net: int, delay: str | None = None) -> Iterator[tuple[Netns, SshServer]]:
    """A namespace (see network_namespace) with an sshd in it; the test is
    skipped where either cannot be made."""
    if reason := sshd_skip_reason() or netns_skip_reason():
        pytest.skip(reason)
    with contextlib.ExitStack() as stack:
        try:
            ns = stack.enter_context(network_namespace(tag, net, delay))
        except NetnsError as e:
            pytest.skip(f"no network namespace with delay {delay}: {e}")
        yield ns, stack.enter_context(running_sshd(ns.ns_addr, ns.prefix))


@pytest.mark.parametrize("inkind_store_fs", ["ext4"], indirect=True)  # the network is tested, not the store
@pytest.mark.parametrize("delay", [None, "25ms"])
def test_a_host_behind_a_veth_pair(delay, tmp_path, inkind_config, inkind_run, inkind_store):
    src = tmp_path / "srv"
    (src / "d").mkdir(parents=True)
    for i in range(300):
        (src / "d" / f"f{i:03}").write_bytes(os.urandom(i * 10))
    tag = f"t{os.getpid() % 100000}{'d' if delay else ''}"
    with _sshd_behind_veth(tag, os.getpid() % 250 + bool(delay), delay) as (ns, server):
        table = {"type": "files", "path": src, "host": f"root@{ns.ns_addr}"}
        cfg = inkind_config({"web": {**table, "ssh_command": shlex.join(server.ssh_command())}})
        first = inkind_run(cfg, seed=1)
        assert first.exit_status == 0, first.as_dict()
        assert tree_diff(src, inkind_store / "web") == []
        second = inkind_run(cfg, seed=2)
        s = second.results[0].stats
        assert second.exit_status == 0 and s.bytes_written == 0 and s.objects_changed == 0
        assert 0 < s.bytes_received < 64 << 10


@pytest.mark.parametrize("inkind_store_fs", ["ext4"], indirect=True)
def test_a_network_cut_mid_file_ends_the_run_and_keeps_the_stored_tree(
    tmp_path, inkind_config, inkind_run, inkind_store, monkeypatch
):
    """The link goes silent while a file crosses: ssh's keepalives (the
    test's own, shorter than UNATTENDED's minute, and winning over them as
    a user's ``-o`` does) end the run with one line naming the host, the
    stored tree stays as it was, and the run after the link is back stores
    the file."""
    src = tmp_path / "srv"
    src.mkdir()
    (src / "kept").write_bytes(b"stored before the cut")
    with _sshd_behind_veth(f"c{os.getpid() % 100000}", (os.getpid() + 2) % 250) as (ns, server):
        alive = ["-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2"]
        ssh = shlex.join([*server.ssh_command(), *alive])
        cfg = inkind_config(
            {"web": {"type": "files", "path": src, "host": f"root@{ns.ns_addr}", "ssh_command": ssh}}
        )
        assert inkind_run(cfg, seed=1).exit_status == 0
        (src / "big").write_bytes(os.urandom(48 << 20))  # more than ssh's window and the sockets hold
        real = PullWalker._pieces

        def cut_after_the_first_piece(self, rf):
            pieces = real(self, rf)
            yield next(pieces)
            ns.link(up=False)
            yield from pieces

        monkeypatch.setattr(PullWalker, "_pieces", cut_after_the_first_piece)
        start = time.monotonic()
        cut = inkind_run(cfg, seed=2)
        assert time.monotonic() - start < 60  # keepalives, not TCP's hours
        assert cut.exit_status == 2, cut.as_dict()
        (line,) = [m for m in cut.results[0].messages if ns.ns_addr in m]
        assert "ended mid-reply" in line and "not responding" in line, line  # ssh's own words
        assert not (inkind_store / "web" / "big").exists()
        assert (inkind_store / "web" / "kept").read_bytes() == b"stored before the cut"
        assert inkind_run(cfg, "verify").exit_status == 0
        monkeypatch.undo()
        ns.link(up=True)
        assert inkind_run(cfg, seed=3).exit_status == 0
        assert tree_diff(src, inkind_store / "web") == []
