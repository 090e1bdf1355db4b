"""Benchmark (not a test): the image source against rsync and cp.

A 4 GiB image file (random data) is kept up to date in three targets on a
btrfs filesystem made on a loop device: an inkind store, an rsync target and
a cp target. Each round changes 1% of the image's 4 MiB blocks at random, then
runs, from a cold page cache (the source and target files are evicted first):

* ``inkind backup``                                (image source, 4 MiB blocks)
* ``rsync --inplace --no-whole-file SRC DEST``
* ``cp --sparse=always SRC DEST``
* ``cat SRC`` > /dev/null                          (the read-speed reference)

and reports wall time, bytes read and written (/proc/PID/io), peak RSS, and
the target's btrfs exclusive bytes against a snapshot taken before the round
(``btrfs filesystem du -s --raw``). The same rounds run with a warm cache.
Medians of ``--rounds`` rounds. Finally, a 100 GiB sparse source with 60 MiB
of data, backed up twice and copied by ``cp --sparse=always``, shows that
memory does not grow with the source and that holes are not read. The
first copies, before the rounds, are made ``--first-rounds`` times into new
targets; they are reported by wall time and by wall time plus the ``sync``
right after it (inkind's copy is durable when it exits, cp's and rsync's
are not).

Run as root:  .venv/bin/python bench/image.py [--rounds 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import Btrfs, Measurement, markdown_table, measure, median, settle, sh

from inkind.storeroot import init_store
from inkind.testing import render_config

MiB = 1 << 20
GiB = 1 << 30
BLOCK = 4 * MiB
PYTHON = sys.executable


def make_source(path: Path, size: int, rng: random.Random) -> None:
    with open(path, "wb") as f:
        for _ in range(size // BLOCK):
            f.write(rng.randbytes(BLOCK))


def change_blocks(path: Path, size: int, fraction: float, rng: random.Random) -> int:
    """Overwrite ``fraction`` of the 4 MiB blocks with random data; return
    the bytes changed."""
    blocks = rng.sample(range(size // BLOCK), max(1, round(size // BLOCK * fraction)))
    fd = os.open(path, os.O_WRONLY)
    try:
        for b in blocks:
            os.pwrite(fd, rng.randbytes(BLOCK), b * BLOCK)
        os.fsync(fd)
    finally:
        os.close(fd)
    return len(blocks) * BLOCK


def exclusive(path: Path) -> int:
    """Bytes below ``path`` shared with nothing else (e.g. not with the
    snapshot taken before the round)."""
    out = sh("btrfs", "filesystem", "du", "-s", "--raw", path).splitlines()
    return int(out[-1].split()[1])


def write_config(path: Path, store: Path, source: Path) -> Path:
    path.write_text(render_config(store, {"disk": {"type": "image", "path": source, "name": "disk"}}))
    return path


class Targets:
    """The three copies of the source and the commands that update them."""

    def __init__(self, fs: Btrfs, work: Path, source: Path, tag: str = ""):
        self.fs = fs
        self.source = source
        self.subs = {
            "inkind": fs.store(f"inkind{tag}"),
            "rsync": fs.subvolume(f"rsync{tag}"),
            "cp": fs.subvolume(f"cp{tag}"),
        }
        config = write_config(work / f"inkind{tag}.toml", self.subs["inkind"], source)
        self.files = {
            "inkind": self.subs["inkind"] / "disk" / "disk.img",
            "rsync": self.subs["rsync"] / "disk.img",
            "cp": self.subs["cp"] / "disk.img",
        }
        self.commands: dict[str, list[str]] = {
            "inkind": [PYTHON, "-m", "inkind", "-q", "-c", str(config), "backup", "--json"],
            "rsync": ["rsync", "--inplace", "--no-whole-file", str(source), str(self.files["rsync"])],
            "cp": ["cp", "--sparse=always", str(source), str(self.files["cp"])],
        }

    def run(self, tool: str, cold: bool) -> Measurement:
        snap = self.fs.snapshot(self.subs[tool])
        try:
            settle(cold, self.source, self.files[tool])
            with tempfile.TemporaryFile() as out:
                m = measure(self.commands[tool], stdout=out.fileno())
                if tool == "inkind":  # its own time for the source, from --json
                    out.seek(0)
                    m.extra["pass"] = json.load(out)["sources"][0]["stats"]["duration_seconds"]
            # Let btrfs allocate what was written before counting it; how
            # long that takes is what the command left unwritten (inkind's
            # syncfs is inside its own wall time; cp and rsync do not sync).
            start = time.monotonic()
            os.sync()
            m.extra["sync"] = time.monotonic() - start
            m.extra["exclusive"] = exclusive(self.subs[tool])
        finally:
            self.fs.drop(snap)
        return m

    def cat(self, cold: bool) -> Measurement:
        settle(cold, self.source)
        return measure(["cat", str(self.source)], stdout=subprocess.DEVNULL)


def rounds(targets: Targets, n: int, size: int, cold: bool, rng: random.Random) -> dict[str, list]:
    results: dict[str, list[Measurement]] = {"inkind": [], "rsync": [], "cp": [], "cat": []}
    changed = 0
    for r in range(n):
        changed = change_blocks(targets.source, size, 0.01, rng)
        if not cold:
            targets.cat(False)  # warm the source
        # cat and inkind one right after the other, so both read the source
        # in the same state, and which goes first alternates: the VM's disk
        # has a cache of its own that guest eviction misses.
        for tool in ("cat", "inkind") if r % 2 == 0 else ("inkind", "cat"):
            results[tool].append(targets.cat(cold) if tool == "cat" else targets.run(tool, cold))
        for tool in ("rsync", "cp"):
            results[tool].append(targets.run(tool, cold))
    return {"changed": changed, **results}


def table(res: dict, size: int) -> str:
    """Medians; "vs cat" is the median over rounds of the throughput ratio
    to the cat run of the same round (the VM's disk is noisy)."""
    changed = res["changed"]
    rows = []
    for tool in ("inkind", "rsync", "cp", "cat"):
        ms = res[tool]
        walls = [m.wall for m in ms]
        wall = median(walls)
        ratio = median(c.wall / m.wall for c, m in zip(res["cat"], ms, strict=True))
        excl = median(m.extra["exclusive"] for m in ms) if tool != "cat" else None
        rows.append(
            [
                tool,
                f"{wall:.2f} ({min(walls):.2f}-{max(walls):.2f})",
                f"{size / wall / 1e6:.0f}",
                f"{ratio:.0%}",
                f"{median(m.read_bytes for m in ms) / MiB:.0f}",
                f"{median(m.write_bytes for m in ms) / MiB:.1f}",
                "" if excl is None else f"{excl / MiB:.1f} ({excl / changed:.2f}x)",
                f"{median(m.peak_rss for m in ms) / MiB:.0f}",
            ]
        )
    header = [
        "command",
        "wall s (min-max)",
        "MB/s of image",
        "vs cat",
        "read MiB",
        "written MiB",
        "btrfs exclusive MiB (x changed)",
        "peak RSS MiB",
    ]
    passes = [m.extra["pass"] for m in res["inkind"]]
    pass_ratio = median(c.wall / p for c, p in zip(res["cat"], passes, strict=True))
    return "\n\n".join(
        [
            markdown_table(header, rows),
            f"inkind's own time for the source (`stats.duration_seconds`: read, hash, write "
            f"and commit, without the interpreter's start-up, plugin loading and the final syncfs): "
            f"median {median(passes):.2f} s, {pass_ratio:.0%} of cat's throughput.",
        ]
    )


def first_copies(fs: Btrfs, work: Path, source: Path, n: int) -> tuple[Targets, str]:
    """``n`` first copies per tool, each into new, empty targets, the order
    rotating; the last round's targets are kept for the incremental rounds.
    Returns them and the table: wall time, and wall time plus the
    ``sync`` that makes the copy durable (inkind syncs before it exits)."""
    tools = ["inkind", "rsync", "cp"]
    results: dict[str, list[Measurement]] = {tool: [] for tool in tools}
    targets = None
    for r in range(n):
        if targets is not None:
            for sub in targets.subs.values():
                fs.drop(sub)
        targets = Targets(fs, work, source, tag=str(r))
        k = r % len(tools)
        for tool in tools[k:] + tools[:k]:
            results[tool].append(targets.run(tool, True))
    rows = []
    for tool, ms in results.items():
        walls = [m.wall for m in ms]
        durable = [m.wall + m.extra["sync"] for m in ms]
        rows.append(
            [
                tool,
                f"{median(walls):.2f} ({min(walls):.2f}-{max(walls):.2f})",
                f"{median(durable):.2f} ({min(durable):.2f}-{max(durable):.2f})",
                f"{median(durable) / median(m.wall + m.extra['sync'] for m in results['cp']):.2f}x",
                f"{median(m.write_bytes for m in ms) / MiB:.0f}",
                f"{max(m.peak_rss for m in ms) / MiB:.0f}",
            ]
        )
    header = ["command", "wall s (min-max)", "wall + sync s (min-max)", "vs cp + sync", "written MiB"]
    return targets, markdown_table([*header, "peak RSS MiB"], rows)


def huge_sparse(work: Path) -> dict[str, Measurement]:
    """A 100 GiB sparse file with 15 blocks of data: memory must not grow,
    and its holes are not read (inkind, then again unchanged, and cp)."""
    src = work / "huge.img"
    with open(src, "wb") as f:
        f.truncate(100 * GiB)
        for i in range(0, 100, 7):
            f.seek(i * GiB)
            f.write(os.urandom(BLOCK))
    store = work / "huge-store"
    init_store(store)
    config = write_config(work / "huge.toml", store, src)
    inkind = [PYTHON, "-m", "inkind", "-q", "-c", str(config), "backup"]
    return {
        "inkind, first backup": measure(inkind),
        "inkind, unchanged": measure(inkind),
        "cp --sparse=always": measure(["cp", "--sparse=always", str(src), str(work / "huge-copy.img")]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=4, help="image size in GiB (default 4)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--first-rounds", type=int, default=3, help="first copies per tool (default 3)")
    ap.add_argument("--workdir", type=Path, default=Path("/var/tmp"))
    ap.add_argument("--out", type=Path, help="write the tables (markdown) here")
    ap.add_argument("--no-huge", action="store_true", help="skip the 100 GiB sparse source")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/image.py: needs root (loop device, btrfs)")
    size = args.size * GiB
    rng = random.Random(42)
    work = Path(tempfile.mkdtemp(prefix="inkind-bench-image-", dir=args.workdir))
    fs = None
    try:
        source = work / "source.img"
        print(f"generating {args.size} GiB of random data in {source}", file=sys.stderr)
        make_source(source, size, rng)
        fs = Btrfs(work, 8 * size + 8 * GiB)
        print("first copies", file=sys.stderr)
        targets, first = first_copies(fs, work, source, args.first_rounds)
        report = [f"Image: {args.size} GiB of random data; 1% of its 4 MiB blocks changed per round.", ""]
        for cold in (True, False):
            label = "cold page cache" if cold else "warm page cache"
            print(f"rounds, {label}", file=sys.stderr)
            res = rounds(targets, args.rounds, size, cold, rng)
            report += [
                f"### Incremental, {label} (median of {args.rounds}; "
                f"changed: {res['changed'] / MiB:.0f} MiB)",
                "",
                table(res, size),
                "",
            ]
        report += [f"### First copy (median of {args.first_rounds}, cold)", "", first, ""]
        if not args.no_huge:
            print("100 GiB sparse source", file=sys.stderr)
            rows = [
                [what, f"{m.wall:.2f}", f"{m.read_bytes / MiB:.0f}", f"{m.peak_rss / MiB:.0f}"]
                for what, m in huge_sparse(work).items()
            ]
            report += [
                "### A 100 GiB sparse image file (15 blocks of data, 60 MiB)",
                "",
                markdown_table(["command", "wall s", "read MiB", "peak RSS MiB"], rows),
                "",
            ]
        text = "\n".join(report)
        print(text)
        if args.out:
            args.out.write_text(text)
    finally:
        if fs is not None:
            fs.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
