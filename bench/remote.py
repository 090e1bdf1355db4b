"""Benchmark (not a test): a remote tree and image, pulled over ssh by
inkind and by rsync.

A tree and a ``--size`` GiB image (default 4) of random data lives on the "remote
host": this machine, reached through a real sshd (inkind.testing.sshd)
on 127.0.0.1 (loopback) and at a 50 ms round trip: where ``ip``/``tc``/netns
and the netem qdisc are available, in a network namespace behind a veth pair
(inkind.testing.netns) with ``tc netem delay 25ms`` on both ends, else on
loopback with bench/relay.py holding every chunk 25 ms each way (the
table's heading says which). It is kept up to date by
``inkind backup`` (image source with ``host``) and by ``rsync --inplace
--no-whole-file -t -e SSH root@HOST:SRC DEST``: first run, no change, 1% of
the 4 MiB blocks changed. Reported (medians of ``--rounds``): wall time,
bytes on the wire (both directions, counted by bench/relay.py as ssh's
ProxyCommand, the same for both tools), peak RSS on the server side
(measure(); the relay, about 10 MiB, may be in it) and of the remote side
(GNU time around remote_python / rsync-path). The tree part is
bench/files.py's generated tree (``--files``, default 100,000, and one
``--large-mib`` file) against ``rsync -aHAX -e SSH``, its 1% change
bench/files.py's.

Needs root, OpenSSH server and client, rsync, GNU time, iproute2 (``ip``,
``tc``, the netem qdisc) for the 50 ms setting.
Run:  .venv/bin/python bench/remote.py [--size 4] [--files 100000] [--rounds 3]
      [--settings loopback,50ms] [--parts tree,image] [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from files import change, largest_file, make_tree
from image import BLOCK, GiB, MiB, change_blocks, make_source
from measure import machine, markdown_table, measure, median

from inkind.storeroot import init_store
from inkind.testing import render_config
from inkind.testing.netns import NetnsError, netns_skip_reason, network_namespace
from inkind.testing.sshd import HOST, running_sshd, sshd_skip_reason

PYTHON = sys.executable
RELAY = Path(__file__).resolve().parent / "relay.py"


def wire_bytes(counts: Path) -> int:
    """Bytes the relays carried (waiting for the last to close)."""
    deadline = time.monotonic() + 10
    while list(counts.glob("*.open")) and time.monotonic() < deadline:
        time.sleep(0.05)
    total = sum(int(f.read_text()) for f in counts.iterdir() if f.suffix == "")
    for f in counts.iterdir():
        f.unlink()
    return total


def timed(remote: str, rss: Path) -> str:
    """``remote`` under GNU time, its peak RSS (KiB) to ``rss``."""
    return shlex.join(["/usr/bin/time", "-f", "%M", "-o", str(rss), remote])


def remote_python(work: Path) -> Path:
    """A remote_python that runs python3 under GNU time (the remote RSS)."""
    wrapper = work / "python3"
    wrapper.write_text(f'#!/bin/sh\nexec {timed("python3", work / "rss-inkind")} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def tools(  # size: where, what, and the two tools' options
    server, work: Path, table: dict, rsync: list[str], src: Path, dest: Path, delay_ms: int
) -> dict[str, list[str]]:
    """The two commands: inkind with ``table`` (its host and ssh_command
    added) and ``rsync`` with these options, both through the relay
    (holding each chunk ``delay_ms`` each way, if not 0)."""
    relay = f"{PYTHON} {RELAY} %h %p {work / 'counts'}" + (f" {delay_ms}" if delay_ms else "")
    ssh = [*server.ssh_command(), "-o", f"ProxyCommand={relay}"]
    (work / "counts").mkdir(exist_ok=True)
    store = work / "store"
    init_store(store)
    table = {**table, "path": str(src), "host": f"root@{server.address}"}
    table |= {"ssh_command": shlex.join(ssh), "remote_python": str(remote_python(work))}
    config = work / "inkind.toml"
    config.write_text(render_config(store, {"it": table}))
    return {
        "inkind": [PYTHON, "-m", "inkind", "-q", "-c", str(config), "backup"],
        "rsync": ["rsync", *rsync, "-e", shlex.join(ssh), "--rsync-path", timed("rsync", work / "rss-rsync"),
                  f"root@{server.address}:{src}", str(dest)],
    }  # fmt: skip


def run_cases(cmds: dict[str, list[str]], work: Path, rounds: int, change, target: str) -> list[list[str]]:
    """Rows for first run, no change, 1% changed (``change()`` makes the
    change and returns the bytes changed); each tool, then the ratio."""
    rows = []
    for case in ("first run", "no change", "1% changed"):
        res: dict[str, list] = {t: [] for t in cmds}
        changed = 0
        for _ in range(rounds if case != "first run" else 1):
            if case == "1% changed":
                changed = change()
            for tool, cmd in cmds.items():
                m = measure(cmd)
                remote = int((work / f"rss-{tool}").read_text().split()[-1]) * 1024
                res[tool].append((m.wall, wire_bytes(work / "counts"), m.peak_rss, remote))
        for tool, ms in res.items():
            wall, wire = median(x[0] for x in ms), median(x[1] for x in ms)
            rows.append([case, tool, f"{wall:.2f}", f"{wire / MiB:.1f}",
                         f"{median(x[2] for x in ms) / MiB:.0f}", f"{median(x[3] for x in ms) / MiB:.0f}"])  # fmt: skip
        ratio = median(x[0] for x in res["inkind"]) / median(x[0] for x in res["rsync"])
        rows.append(
            [case, "inkind / rsync", f"{ratio:.2f}x{target if case != 'first run' else ''}", "", "", ""]
        )
        if changed:
            rows[-1][3] = (
                f"inkind {median(x[1] for x in res['inkind']) / changed:.2f}x changed (target <= 1.2x + listing)"
            )
    return rows


def image_part(server, work: Path, size: int, rounds: int, rng, delay_ms: int) -> list[list[str]]:
    """The image: rsync --inplace --no-whole-file against the image source."""
    src = work / "remote.img"
    make_source(src, size, rng)
    # -t: rsync's quick check then compares the image's mtime (to the
    # second) as inkind's compares its own; without it rsync misses a change
    # made in the second of its last write, as it did in this bench.
    rsync = ["--inplace", "--no-whole-file", "-t"]
    cmds = tools(server, work, {"type": "image", "name": "disk"}, rsync, src, work / "rsync.img", delay_ms)
    return run_cases(cmds, work, rounds, lambda: change_blocks(src, size, 0.01, rng), " (target <= 0.5x)")


def tree_part(  # size: where, the tree's shape, and the rounds
    server, work: Path, files: int, large_mib: int, rounds: int, rng, delay_ms: int
) -> list[list[str]]:
    """The tree (bench/files.py's generated one): rsync -aHAX against the
    files source."""
    src = work / "tree"
    src.mkdir()
    small = make_tree(src, files, [large_mib * MiB] if large_mib else [], rng)
    big = largest_file(src) if large_mib else None
    cmds = tools(server, work, {"type": "files"}, ["-aHAX"], src, work / "rsync-tree", delay_ms)
    target = " (target at 50 ms: <= 1.0x no change)"
    return run_cases(cmds, work, rounds, lambda: change(src, small, big, rng), target)


def fifty_ms(stack: contextlib.ExitStack) -> tuple[str, tuple, int, str]:
    """Where a 50 ms round trip comes from: netem on a veth pair into a
    network namespace or, where the kernel has no netem, the relay's delay
    line (25 ms each way; see relay.py for how the two differ). The sshd's
    address, the command prefix to run there, the relay's delay, a label."""
    try:
        if reason := netns_skip_reason():
            raise NetnsError(reason)
        ns = stack.enter_context(network_namespace("bench", 0, "25ms"))
    except NetnsError as e:
        return HOST, (), 25, f"50 ms round trip (the relay's delay line; no netem: {e})"
    return ns.ns_addr, ns.prefix, 0, "50 ms round trip (netem)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=4, help="image size in GiB (default 4)")
    ap.add_argument("--files", type=int, default=100_000, help="files of the tree (default 100,000)")
    ap.add_argument("--large-mib", type=int, default=64, help="the tree's one large file (0: none)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path("/var/tmp"))
    ap.add_argument("--settings", default="loopback,50ms", help="of loopback,50ms (default both)")
    ap.add_argument("--parts", default="tree,image", help="of tree,image (default both)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if reason := sshd_skip_reason():
        sys.exit(f"bench/remote.py: {reason}")
    import random

    rng = random.Random(42)
    header = ["case", "tool", "wall s", "wire MiB", "server RSS MiB", "remote RSS MiB"]
    report = [f"Machine: {machine()}; image {args.size} GiB, 4 MiB blocks ({BLOCK})", ""]
    parts = {
        "tree": (
            "Tree",
            lambda srv, w, d: tree_part(srv, w, args.files, args.large_mib, args.rounds, rng, d),
        ),
        "image": ("Image", lambda srv, w, d: image_part(srv, w, args.size * GiB, args.rounds, rng, d)),
    }
    # Every part's work directory is deleted at the end, not before the next
    # part: on a journal-less ext4 (this VM's root) a first run made within a
    # minute of deleting the last part's 100,000 files is several times slower
    # for both tools (ext4's recently_deleted scan; bench/files.py's Tool.reset).
    done: list[Path] = []
    try:
        for setting in args.settings.split(","):
            report += run_setting(setting, args, parts, header, done)
    finally:
        for work in done:
            shutil.rmtree(work, ignore_errors=True)
    text = "\n".join(report)
    print(text)
    if args.out:
        args.out.write_text(text)


def run_setting(setting: str, args, parts: dict, header: list[str], done: list[Path]) -> list[str]:
    """The chosen parts at one setting (loopback or 50 ms): their tables;
    their work directories go into ``done``."""
    report: list[str] = []
    with contextlib.ExitStack() as stack:
        address, prefix, relay_ms, label = HOST, (), 0, "loopback"
        if setting == "50ms":
            address, prefix, relay_ms, label = fifty_ms(stack)
        server = stack.enter_context(running_sshd(address, prefix))
        for key in args.parts.split(","):
            part, run = parts[key]
            work = Path(tempfile.mkdtemp(prefix="inkind-bench-remote-", dir=args.workdir))
            done.append(work)
            rows = run(server, work, relay_ms)
            report += [f"### {part}, {label}", "", markdown_table(header, rows), ""]
    return report


if __name__ == "__main__":
    main()
