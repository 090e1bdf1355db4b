"""Benchmark (not a test): the files source under load, 1,000,000 files.

A generated tree of ``--files`` mostly empty files spread over ``--dirs``
directories (one file in 1,000 holds 4 KiB) is backed up into a fresh store,
backed up again with no change, and restored with the command that
``inkind restore NAME --to DIR`` prints (rsync), into an empty directory.
Each command runs under GNU time: wall time and peak RSS (the largest
process of its tree). The no-change run's Stats (``--json``) must show zero
writes; the restored tree must equal the source.

Source, store and restore target live on a tmpfs mounted for the run
(``--tmpfs``, root only) or in ``--work`` as it is (warm cache: this
measures inkind's own cost per file, not a disk's seeks).

  .venv/bin/python bench/load.py [--files 1000000] [--dirs 1000] [--tmpfs] [--json] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from measure import Measurement, machine, markdown_table, measure

from inkind.storeroot import init_store
from inkind.testing import render_config

ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20
CONTENT_EVERY = 1000  # one file in this many holds data
CONTENT_SIZE = 4096
WRITES = ("bytes_written", "xattrs_written", "mtimes_set", "modes_set", "owners_set", "objects_changed")


def make_tree(src: Path, files: int, dirs: int, rng: random.Random) -> int:
    """Write the tree; return the number of files with content."""
    per_dir = -(-files // dirs)
    data = 0
    for i in range(files):
        d, n = divmod(i, per_dir)
        if n == 0:
            os.makedirs(src / f"d{d:05d}", exist_ok=True)
        fd = os.open(src / f"d{d:05d}" / f"f{n:05d}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            if i % CONTENT_EVERY == CONTENT_EVERY // 2:
                os.write(fd, rng.randbytes(CONTENT_SIZE))
                data += 1
        finally:
            os.close(fd)
    return data


def config(work: Path, src: Path) -> Path:
    """The default scrub fraction (1%): a no-change run as cron runs it."""
    cfg = work / "inkind.toml"
    cfg.write_text(
        render_config(work / "store", {"load": {"type": "files", "path": src}}, scrub_fraction=0.01)
    )
    return cfg


def backup(cfg: Path, out: Path) -> tuple[Measurement, dict]:
    """One ``inkind backup --json`` under GNU time; its Stats."""
    inkind = [str(ROOT / ".venv" / "bin" / "inkind"), "-q", "-c", str(cfg), "backup", "--seed", "1", "--json"]
    with open(out, "wb") as f:
        m = measure(inkind, stdout=f.fileno())
    report = json.loads(out.read_text())
    (source,) = report["sources"]
    assert source["outcome"] == "ok", source
    return m, source["stats"]


def restore_command(cfg: Path, target: Path) -> list[str]:
    """The command ``inkind restore`` prints, as argv."""
    inkind = [str(ROOT / ".venv" / "bin" / "inkind"), "-q", "-c", str(cfg), "restore", "load", "--to"]
    out = subprocess.run([*inkind, str(target)], check=True, capture_output=True, text=True).stdout
    return shlex.split(out.strip())


def same_tree(a: Path, b: Path) -> list[str]:
    """What rsync would change to make ``b`` equal ``a`` (names, sizes,
    mtimes, modes; --checksum would read every file twice more)."""
    cmd = ["rsync", "-naHS", "--numeric-ids", "--itemize-changes", "--delete", f"{a}/", f"{b}/"]
    out = subprocess.run(cmd, capture_output=True, check=True).stdout.decode(errors="replace")
    return [line for line in out.splitlines() if line.strip()]


def run(work: Path, files: int, dirs: int) -> dict:
    rng = random.Random(1)
    src = work / "src"
    data_files = make_tree(src, files, dirs, rng)
    init_store(work / "store")
    cfg = config(work, src)
    first, first_stats = backup(cfg, work / "first.json")
    again, again_stats = backup(cfg, work / "again.json")
    target = work / "restored"
    restore = measure(restore_command(cfg, target))
    diff = same_tree(src, target)
    return {
        "files": files,
        "dirs": dirs,
        "data_files": data_files,
        "first_s": first.wall,
        "first_peak_rss": first.peak_rss,
        "first_stats": first_stats,
        "again_s": again.wall,
        "again_peak_rss": again.peak_rss,
        "again_stats": again_stats,
        "again_writes": {k: again_stats[k] for k in WRITES},
        "files_per_s": files / again.wall,
        "restore_s": restore.wall,
        "restore_peak_rss": restore.peak_rss,
        "restore_diff": diff[:20],
        "restore_differs": len(diff),
    }


def table(r: dict) -> str:
    header = [
        "files",
        "first run s",
        "no-change run s",
        "files/s (no change)",
        "restore s (rsync)",
        "peak RSS MiB: first / no change / restore",
    ]
    rss = f"{r['first_peak_rss'] / MiB:.0f} / {r['again_peak_rss'] / MiB:.0f} / {r['restore_peak_rss'] / MiB:.0f}"
    row = [
        f"{r['files']:,}",
        f"{r['first_s']:.1f}",
        f"{r['again_s']:.1f}",
        f"{r['files_per_s']:,.0f}",
        f"{r['restore_s']:.1f}",
        rss,
    ]
    return markdown_table(header, [row])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--dirs", type=int, default=1000)
    ap.add_argument("--work", type=Path, help="a directory to work in (default: a fresh temp dir)")
    ap.add_argument("--tmpfs", action="store_true", help="mount a tmpfs on the work directory (root)")
    ap.add_argument("--json", action="store_true", help="print the measurements as JSON")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="inkind-bench-load-"))
    work.mkdir(parents=True, exist_ok=True)
    mounted = False
    try:
        if args.tmpfs:
            if os.geteuid() != 0:
                sys.exit("bench/load.py: --tmpfs needs root")
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=50%,nr_inodes=0", "tmpfs", str(work)], check=True
            )
            mounted = True
        r = run(work, args.files, args.dirs)
    finally:
        if mounted:
            subprocess.run(["umount", str(work)], check=False)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    note = (
        f"{r['files']:,} files in {r['dirs']:,} directories ({r['data_files']:,} of {CONTENT_SIZE} bytes, "
        f"the rest empty), {'tmpfs' if args.tmpfs else 'the work directory'}, warm cache, {machine()}; "
        f"no-change run writes: {r['again_writes']}; restored tree differs in {r['restore_differs']} entries."
    )
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print(note)
        print(table(r))
    if args.out:
        args.out.write_text(note + "\n\n" + table(r) + "\n")


if __name__ == "__main__":
    main()
