"""Benchmark (not a test): the files source against ``rsync -aHAX``.

A generated tree (default 100,000 small files in 1,000 directories, plus a
few large files) is backed up by ``inkind backup`` into a store and by
``rsync -aHAX SRC/ DEST/`` into a separate target, for three cases:

* first run (empty store and target),
* no-change run,
* a run after 1% of the small files were rewritten and a few 4 KiB blocks
  of one large file changed (the same change for both tools).

Each case runs ``--rounds`` times (the tools alternate who goes first;
cold cache: the page cache is dropped before every measured command) and
the medians are reported: wall time, the ratio to rsync, bytes written
(/proc/PID/io write_bytes), bytes read (rchar) and peak RSS.

Needs GNU time (Debian package `time`) and rsync. Run as root:
  .venv/bin/python bench/files.py [--files 100000] [--rounds 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
from pathlib import Path

from measure import Measurement, drop_caches, machine, markdown_table, measure, median

from inkind.storeroot import init_store
from inkind.testing import render_config

ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20


def make_tree(src: Path, files: int, large: list[int], rng: random.Random) -> list[Path]:
    """Write the tree; return the small files (for changing 1% later)."""
    small = []
    per_dir = 100
    for i in range(files):
        d = src / f"d{i // (per_dir * 10):03}" / f"e{(i // per_dir) % 10}"
        if i % per_dir == 0:
            d.mkdir(parents=True, exist_ok=True)
        p = d / f"f{i:06}.dat"
        p.write_bytes(rng.randbytes(rng.choice((0, 100, 1000, 4000, 16000))))
        small.append(p)
    for n, size in enumerate(large):
        with open(src / f"large{n}.bin", "wb") as f:
            for _ in range(size // MiB):
                f.write(rng.randbytes(MiB))
    return small


def change(src: Path, small: list[Path], rng: random.Random) -> int:
    """Rewrite 1% of the small files and 4 scattered 4 KiB blocks of a
    large file; return the bytes changed."""
    changed = 0
    for p in rng.sample(small, max(1, len(small) // 100)):
        data = rng.randbytes(p.stat().st_size or 10)
        p.write_bytes(data)
        changed += len(data)
    big = src / "large0.bin"
    if big.exists():
        size = big.stat().st_size
        with open(big, "r+b") as f:
            for _ in range(4):
                f.seek(rng.randrange(0, size - 4096) & ~4095)
                f.write(rng.randbytes(4096))
                changed += 4096
    return changed


def config(work: Path, src: Path) -> Path:
    cfg = work / "inkind.toml"
    cfg.write_text(render_config(work / "store", {"tree": {"type": "files", "path": src}}))
    return cfg


def run_pair(inkind: list[str], rsync: list[str], first: str, cold: bool) -> dict[str, Measurement]:
    out = {}
    for tool in (first, "rsync" if first == "inkind" else "inkind"):
        if cold:
            drop_caches()
        out[tool] = measure(inkind if tool == "inkind" else rsync)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--large-mib", type=int, nargs="*", default=[256, 128, 64])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--work", type=Path, default=Path("/tmp/inkind-bench-files"))
    ap.add_argument("--warm", action="store_true", help="do not drop the page cache")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    cold = not args.warm
    if cold and os.geteuid() != 0:
        sys.exit("bench/files.py: cold-cache runs need root (or pass --warm)")
    rng = random.Random(1)
    shutil.rmtree(args.work, ignore_errors=True)
    src = args.work / "src"
    small = make_tree(src, args.files, [m * MiB for m in args.large_mib], rng)
    cfg = config(args.work, src)
    inkind = [str(ROOT / ".venv" / "bin" / "inkind"), "-q", "-c", str(cfg), "backup"]
    rsync = ["rsync", "-aHAX", f"{src}/", f"{args.work / 'rsync'}/"]
    results: dict[str, dict[str, list[Measurement]]] = {}
    changed_bytes = []

    def record(case: str, pair: dict[str, Measurement]) -> None:
        for tool, m in pair.items():
            results.setdefault(case, {}).setdefault(tool, []).append(m)

    for r in range(args.rounds):
        first = "inkind" if r % 2 == 0 else "rsync"
        for d in ("store", "rsync"):
            shutil.rmtree(args.work / d, ignore_errors=True)
        init_store(args.work / "store")
        record("first run", run_pair(inkind, rsync, first, cold))
        record("no change", run_pair(inkind, rsync, first, cold))
        changed_bytes.append(change(src, small, rng))
        record("1% changed", run_pair(inkind, rsync, first, cold))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    rows = []
    for case, tools in results.items():
        base = median(m.wall for m in tools["rsync"])
        for tool in ("inkind", "rsync"):
            ms = tools[tool]
            wall = median(m.wall for m in ms)
            rows.append(
                [
                    case,
                    tool,
                    f"{wall:.2f}",
                    f"{wall / base:.2f}x",
                    f"{median(m.write_bytes for m in ms) / MiB:.1f}",
                    f"{median(m.read_bytes for m in ms) / MiB:.1f}",
                    f"{max(m.peak_rss for m in ms) / MiB:.0f}",
                ]
            )
    header = ["case", "tool", "wall s (median)", "vs rsync", "MiB written", "MiB read", "peak RSS MiB"]
    table = markdown_table(header, rows)
    total = args.files + len(args.large_mib)
    note = (
        f"{total:,} files ({args.files:,} small, large files of {args.large_mib} MiB), "
        f"{args.rounds} rounds, {'cold' if cold else 'warm'} cache, {machine()}; "
        f"the 1% change rewrote {median(changed_bytes) / MiB:.1f} MiB (median)."
    )
    print(note)
    print(table)
    if args.out:
        args.out.write_text(note + "\n\n" + table + "\n")


if __name__ == "__main__":
    main()
