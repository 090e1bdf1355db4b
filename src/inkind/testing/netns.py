"""A network namespace behind a veth pair, for a remote host that is a
real network hop away in tests and benchmarks: this machine's end at .1 of
a /30 in 10.200.0.0/16, the namespace's at .2, and, when asked, ``tc
netem`` delay on both ends (the kernel needs the sch_netem module)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


class NetnsError(RuntimeError):
    """The namespace, its link or its delay could not be set up (the
    failing command and what it said)."""


@dataclass(frozen=True)
class Netns:
    name: str
    veth: str
    host_addr: str  # this machine's end
    ns_addr: str  # the namespace's end: where its sshd listens

    @property
    def prefix(self) -> tuple[str, ...]:
        """Run a command inside the namespace."""
        return ("ip", "netns", "exec", self.name)

    def link(self, up: bool) -> None:
        """Cut the namespace's end of the link (``up=False``) or mend it:
        a silent cut, as a pulled cable or a frozen host; this machine's end
        keeps its address and route, and what it sends is lost."""
        _run(*self.prefix, "ip", "link", "set", self.veth + "n", "up" if up else "down")
        if up:  # what the cut taught this machine's end (an unanswered ARP) is forgotten
            _run("ip", "neigh", "flush", "dev", self.veth)


def netns_skip_reason() -> str | None:
    """Why this machine cannot make one, or None."""
    if os.geteuid() != 0:
        return "a network namespace needs root"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "needs iproute2 (ip, tc)"
    return None


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode:
        raise NetnsError(f"{shlex.join(argv)}: {done.stderr.strip() or f'exit status {done.returncode}'}")


@contextmanager
def network_namespace(tag: str, net: int, delay: str | None = None) -> Iterator[Netns]:
    """A namespace ``inkind-TAG`` linked to this machine through
    10.200.NET.0/30 (``net`` 0-255: one per namespace alive at a time), with
    ``delay`` (e.g. "25ms") on both ends; removed on exit."""
    ns = Netns(f"inkind-{tag}", f"ink{tag}"[:12], f"10.200.{net}.1", f"10.200.{net}.2")
    peer = ns.veth + "n"
    _run("ip", "netns", "add", ns.name)
    try:
        _run("ip", "link", "add", ns.veth, "type", "veth", "peer", "name", peer, "netns", ns.name)
        _run("ip", "addr", "add", f"{ns.host_addr}/30", "dev", ns.veth)
        _run("ip", "link", "set", ns.veth, "up")
        _run(*ns.prefix, "ip", "addr", "add", f"{ns.ns_addr}/30", "dev", peer)
        _run(*ns.prefix, "ip", "link", "set", peer, "up")
        _run(*ns.prefix, "ip", "link", "set", "lo", "up")
        if delay:
            _run("tc", "qdisc", "add", "dev", ns.veth, "root", "netem", "delay", delay)
            _run(*ns.prefix, "tc", "qdisc", "add", "dev", peer, "root", "netem", "delay", delay)
        yield ns
    finally:
        subprocess.run(["ip", "link", "del", ns.veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns.name], capture_output=True)
