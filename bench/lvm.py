"""Benchmark (not a test): the lvm source on an emulated thin pool.

This machine has no device-mapper, so the thin pool is the fake LVM of the
tests (tests/lvm/fakes: lvs, lvcreate, lvremove and dmsetup emulated over
files, the pool metadata real, written by thin_restore and read by the real
thin_delta). Volumes and their snapshots are files on a btrfs filesystem on
a loop device, so a snapshot is a reflink: instant, as a thin snapshot is.

An 8 GiB thin volume of random data is backed up three ways after each
round changes 1% of its 4 MiB blocks (through the fake pool, so the metadata
records the new chunks):

* ``inkind backup`` with a base snapshot: thin_delta names the changed
  chunks and only their blocks are read (the delta path);
* ``inkind backup`` with ``keep_base_snapshot = false``: the whole volume is
  read and hashed against the block manifest (the whole-volume path);
* ``dd if=VOLUME of=TARGET bs=4M conv=sparse``: the peer, a full copy.

Each command starts with the volume evicted from the page cache. Reported:
median wall time, and the same net of the emulated LVM commands (each fake
logs its own lifetime: Python, the state file and a thin_restore of the
whole pool's metadata at every lvcreate and lvremove, where lvm2 commits a
few metadata blocks), bytes read from the source as inkind counts them (Stats),
bytes read by the whole process tree (rchar: fake LVM commands and
thin_delta included), bytes written to the store as inkind counts them and
by the whole tree (write_bytes: the fake pool's metadata included), peak
RSS.

Run as root:  .venv/bin/python bench/lvm.py [--size 8] [--rounds 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
FAKES = HERE.parent / "tests" / "lvm" / "fakes"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(FAKES))
import fakelvm  # noqa: E402
from measure import Btrfs, Measurement, machine, markdown_table, measure, median, settle  # noqa: E402

from inkind.testing import render_config  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
BLOCK = 4 * MiB
CHUNK = 64 << 10
PYTHON = sys.executable


def config(path: Path, store: Path, name: str) -> Path:
    """Source ``name`` (distinct per store: snapshots carry the source name,
    and a source removes unrecorded snapshots with its prefix as leftovers)."""
    table = {"type": "lvm", "volume": "vg0/vm", "keep_base_snapshot": name == "delta"}
    path.write_text(render_config(store, {name: table}))
    return path


def fill(volume: Path, size: int, rng: random.Random) -> None:
    with open(volume, "r+b") as f:
        for offset in range(0, size, BLOCK):
            f.seek(offset)
            f.write(rng.randbytes(BLOCK))


def change(size: int, fraction: float, rng: random.Random) -> int:
    """Rewrite ``fraction`` of the 4 MiB blocks through the fake pool."""
    blocks = rng.sample(range(size // BLOCK), max(1, round(size // BLOCK * fraction)))
    state = fakelvm.load()
    fakelvm.write_many(state, "vg0", "vm", [(b * BLOCK, rng.randbytes(BLOCK)) for b in blocks])
    fakelvm.save(state)
    os.sync()
    return len(blocks) * BLOCK


def emulation_seconds(times: Path) -> float:
    """Seconds spent in the fake LVM commands of one run (none for dd)."""
    if not times.exists():
        return 0.0
    return sum(float(line.split()[1]) for line in times.read_text().splitlines())


def run_stats(store: Path, name: str) -> dict:
    """inkind's own Stats of the last backup of source ``name``."""
    state = json.loads((store / ".inkind" / "sources" / f"{name}.json").read_text())
    return state["last_backup"]["stats"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=8, help="volume size in GiB (default 8)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path("/var/tmp"))
    ap.add_argument("--out", type=Path, help="write the table (markdown) here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/lvm.py: needs root (loop device, btrfs)")
    size = args.size * GiB
    rng = random.Random(42)
    work = Path(tempfile.mkdtemp(prefix="inkind-bench-lvm-", dir=args.workdir))
    fs = Btrfs(work, 4 * size + 8 * GiB)
    try:
        lvm_dir = fs.subvolume("lvm")
        os.environ["FAKE_LVM"] = str(lvm_dir / "fake-lvm.json")
        # The fakes' "env python3" is this interpreter (not a slow version shim).
        os.environ["PATH"] = os.pathsep.join([str(FAKES), str(Path(PYTHON).parent), os.environ["PATH"]])
        state = fakelvm.new_state(lvm_dir)
        fakelvm.new_pool(state, "vg0", "pool", 2 * size, CHUNK)
        volume = Path(fakelvm.new_thin(state, "vg0", "pool", "vm", size))
        print(f"filling the {args.size} GiB thin volume with random data", file=sys.stderr)
        fill(volume, size, rng)
        fakelvm.mark_written(state, "vg0", "vm", [(0, size)])
        fakelvm.save(state)
        stores = {"delta": fs.store("delta"), "whole": fs.store("whole")}
        dd_target = fs.subvolume("dd") / "vm.img"
        commands = {
            name: [
                PYTHON,
                "-m",
                "inkind",
                "-q",
                "-c",
                str(config(work / f"{name}.toml", store, name)),
                "backup",
            ]
            for name, store in stores.items()
        }
        commands["dd"] = ["dd", f"if={volume}", f"of={dd_target}", "bs=4M", "conv=sparse", "status=none"]
        print("first copies", file=sys.stderr)
        for cmd in commands.values():
            settle(True, volume)
            measure(cmd)
        results: dict[str, list[Measurement]] = {name: [] for name in commands}
        changed = 0
        for n in range(args.rounds):
            changed = change(size, 0.01, rng)
            order = list(commands) if n % 2 == 0 else list(reversed(commands))
            print(f"round {n + 1}: {changed // MiB} MiB changed; {', '.join(order)}", file=sys.stderr)
            for name in order:
                settle(True, volume)
                times = work / "fake-lvm-times"
                times.unlink(missing_ok=True)
                os.environ["FAKE_LVM_TIMES"] = str(times)
                m = measure(commands[name])
                m.extra["emulation"] = emulation_seconds(times)
                if name in stores:
                    stats = run_stats(stores[name], name)
                    m.extra["source_read"] = stats["bytes_read"]
                    m.extra["store_written"] = stats["bytes_written"]
                results[name].append(m)
        report = report_table(results, changed, size)
        print(report)
        if args.out:
            args.out.write_text(report + "\n")
    finally:
        fs.close()
        shutil.rmtree(work, ignore_errors=True)


def report_table(results: dict[str, list[Measurement]], changed: int, size: int) -> str:
    def net(m: Measurement) -> float:
        return m.wall - m.extra["emulation"]

    whole = median(net(m) for m in results["whole"])
    label = {
        "delta": "inkind, thin delta",
        "whole": "inkind, whole volume",
        "dd": "dd (full copy)",
    }
    rows = []
    for name, ms in results.items():
        walls = [m.wall for m in ms]
        nets = [net(m) for m in ms]
        source = median(m.extra["source_read"] for m in ms) if name != "dd" else size
        written = median(m.extra["store_written"] for m in ms) if name != "dd" else size
        rows.append(
            [
                label[name],
                f"{median(walls):.2f} ({min(walls):.2f}-{max(walls):.2f})",
                f"{median(nets):.2f} ({min(nets):.2f}-{max(nets):.2f})",
                f"{median(nets) / whole:.1%}",
                f"{source / MiB:.0f} ({source / changed:.2f}x)",
                f"{median(m.read_bytes for m in ms) / MiB:.0f}",
                f"{written / MiB:.1f}",
                f"{median(m.write_bytes for m in ms) / MiB:.1f}",
                f"{median(m.peak_rss for m in ms) / MiB:.0f}",
            ]
        )
    header = [
        "command",
        "wall s (min-max)",
        "net of emulated LVM, s",
        "net vs whole-volume path",
        "source MiB read (x changed)",
        "rchar MiB",
        "stored MiB written",
        "write_bytes MiB",
        "peak RSS MiB",
    ]
    title = (
        f"Thin volume of {size // GiB} GiB, {changed // MiB} MiB changed per round (1% of its 4 MiB blocks), "
        f"cold cache, median of {len(results['dd'])} rounds; {machine()}."
    )
    return title + "\n\n" + markdown_table(header, rows)


if __name__ == "__main__":
    main()
