"""Benchmark (not a test): the files source against ``rsync -aHAX``, borg
1.2 and restic.

A generated tree (default 100,000 small files in 1,000 directories, plus a
few large files), or with ``--tree PATH`` a copy of a real tree (``cp -a``,
e.g. /usr/share or /usr), is backed up by ``inkind backup`` into a store, by
``rsync -aHAX SRC/ DEST/`` into a separate target and by each peer into its
own repository, for three cases:

* first run (empty store, target and repositories),
* no-change run,
* a run after 1% of the small files were rewritten and a few 4 KiB blocks
  of the largest file changed (the same change for every tool; in a real
  tree the small files are the regular files under 1 MiB with one link).

``--work`` says where the source copy, the store, the targets and the
repositories live: point it at a mounted btrfs or XFS to measure there.
Each round's stores are moved aside for the next and deleted at the end
(see ``Tool.reset``), so the work directory needs room for every round's.

The peers (``--peers``, default: all installed; rsync always, it is the
baseline): ``borg-none`` is ``borg create --compression none`` and
``borg-lz4`` plain ``borg create`` (lz4, borg 1.2's default), each into a
repository made with ``borg init --encryption none``; ``restic`` is
``restic backup -q`` into a repository of restic's default format (v2,
compression auto) with a fixed password. Each keeps its cache where a user
would have one, persistent across the runs of a round, in the work
directory (BORG_BASE_DIR, RESTIC_CACHE_DIR); every round starts from empty
stores, repositories and caches.

Each case runs ``--rounds`` times (the order of the tools rotates each
round; cold cache: the page cache is dropped before every measured command)
and the medians are reported: wall time, the ratio to rsync, the wall
time plus the ``sync`` right after the command and its ratio (inkind's
backup is on disk when it exits, it syncfs'es before it records the run;
rsync's, borg's and restic's writes may still be in the page cache), the
file data the tool wrote by its own count (inkind: bytes written and
journaled in its run report; rsync: the size of the files it transferred,
each written whole into a temp, from ``--stats``; "-" for borg and restic,
whose store growth says it), bytes written
(/proc/PID/io write_bytes: what the process dirtied, so a tool that
syncs has the filesystem's metadata counted to it and one that leaves it
to the kernel's flusher has not), the bytes the work directory's block
device wrote from the command's start to a ``sync`` after it (the same
count for every tool, metadata and journal included; "-" where the work
directory is not on one block device), bytes read (rchar), peak RSS, and how much the
run grew the store, rsync's target or the repository (``du -sb`` after
minus before: apparent bytes, not the filesystem's own usage such as
btrfs metadata) and, apart from it, the tool's cache (borg, restic).

Needs GNU time (Debian package `time`), rsync, and for the peers borg 1.2
and restic (Debian packages `borgbackup`, `restic`). Run as root:
  .venv/bin/python bench/files.py [--files 100000] [--rounds 5]
      [--tree /usr/share] [--work DIR] [--peers rsync,borg-none,borg-lz4,restic]
      [--out FILE]
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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from measure import (
    Measurement,
    disk_written,
    drop_caches,
    du_bytes,
    machine,
    markdown_table,
    measure,
    median,
    version,
)

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


def copy_tree(real: Path, src: Path) -> list[Path]:
    """Copy a real tree (``cp -a``, as a sysadmin would make a test copy);
    return its small regular files (under 1 MiB, for changing 1% later)."""
    done = subprocess.run(["cp", "-a", "--", str(real), str(src)], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"bench/files.py: cp -a {real}: {done.stderr.strip()}")
    small = []
    for dirpath, _dirs, names in os.walk(src):
        for name in names:
            p = Path(dirpath, name)
            st = p.lstat()
            if p.is_file() and not p.is_symlink() and st.st_size < MiB and st.st_nlink == 1:
                small.append(p)
    return sorted(small)


def largest_file(src: Path) -> Path | None:
    """The tree's largest regular file (``large0.bin`` in a generated one)."""
    best, size = None, 0
    for dirpath, _dirs, names in os.walk(src):
        for name in names:
            p = Path(dirpath, name)
            if not p.is_symlink() and p.is_file() and p.stat().st_size > size:
                best, size = p, p.stat().st_size
    return best if size >= 64 * 4096 else None


def change(src: Path, small: list[Path], big: Path | None, rng: random.Random) -> int:
    """Rewrite 1% of the small files (same sizes, new content) and 4
    scattered 4 KiB blocks of the largest file; return the bytes changed."""
    changed = 0
    for p in rng.sample(small, max(1, len(small) // 100)):
        data = rng.randbytes(p.stat().st_size or 10)
        p.write_bytes(data)
        changed += len(data)
    if big is not None:
        size = big.stat().st_size
        with open(big, "r+b") as f:
            for _ in range(4):
                f.seek(rng.randrange(0, size - 4096) & ~4095)
                f.write(rng.randbytes(4096))
                changed += 4096
    return changed


def config(work: Path, src: Path) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "inkind.toml"
    cfg.write_text(render_config(work / "store", {"tree": {"type": "files", "path": src}}))
    return cfg


@dataclass
class Tool:
    """One tool under test: its n-th command of a round, what it stores into
    (whose growth is counted per run) and its cache (counted apart)."""

    name: str
    store: Path
    command: Callable[[int], list[str]]
    init: list[list[str]] = field(default_factory=list)  # commands making the empty store
    cache: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    # The bytes of file data the tool wrote in its last run, by its own
    # count (its output goes to ``stdout``); None where it gives none.
    data_written: Callable[[], int | None] = lambda: None
    stdout: Path | None = None
    runs: int = 0

    def reset(self, trash: Path) -> None:
        """Empty store and cache, as at the start of every round. The last
        round's are moved into ``trash``, not deleted: ext4 without a
        journal passes over inodes freed in the last minute when it
        allocates one (``recently_deleted``), reading each one's inode
        table block, so a first run just after deleting the last round's
        300,000 files measured that scan (a first run took 9.4 s after
        none, 17 s after such a deletion)."""
        trash.mkdir(parents=True, exist_ok=True)
        for path in (self.store, self.cache):
            if path is not None and path.exists():
                path.rename(trash / f"{path.name}.{len(list(trash.iterdir()))}")
        for argv in self.init:
            done = subprocess.run(argv, env={**os.environ, **self.env}, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"bench/files.py: {shlex.join(argv)}: exit {done.returncode}: {done.stderr}")
        self.runs = 0

    def run(self, cold: bool) -> Measurement:
        store, cache = du_bytes(self.store), du_bytes(self.cache)
        if cold:
            drop_caches()
        disk = disk_written(self.store.parent)
        if self.stdout is None:
            m = measure(self.command(self.runs), env=self.env)
        else:
            with self.stdout.open("wb") as out:
                m = measure(self.command(self.runs), stdout=out.fileno(), env=self.env)
        m.extra["data"] = self.data_written()
        self.runs += 1
        start = time.monotonic()
        os.sync()  # (inkind's run is durable when it exits: it syncfs'es; the others' is not)
        m.extra["sync"] = time.monotonic() - start
        after = disk_written(self.store.parent)
        m.extra["disk"] = None if disk is None or after is None else after - disk
        m.extra["store"] = du_bytes(self.store) - store
        m.extra["cache"] = du_bytes(self.cache) - cache if self.cache else None
        return m


PEERS = {"rsync": "rsync", "borg-none": "borg", "borg-lz4": "borg", "restic": "restic"}
PACKAGES = {"rsync": "rsync", "borg": "borgbackup", "restic": "restic"}


def borg(work: Path, src: Path, name: str, compression: list[str]) -> Tool:
    repo = work / name
    env = {"BORG_BASE_DIR": str(work / f"{name}.cache"), "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes"}
    return Tool(
        name,
        repo,
        lambda n: ["borg", "create", *compression, f"{repo}::run{n}", str(src)],
        init=[["borg", "init", "--encryption", "none", str(repo)]],
        cache=work / f"{name}.cache",
        env=env,
    )


def tools(work: Path, src: Path, peers: list[str]) -> list[Tool]:
    """inkind and the chosen peers, in the order of the first round."""
    cfg = config(work, src)
    inkind = [str(ROOT / ".venv" / "bin" / "inkind"), "-q", "-c", str(cfg)]
    made = {
        "rsync": lambda: Tool(
            "rsync",
            work / "rsync",
            lambda n: ["rsync", "-aHAX", "--stats", f"{src}/", f"{work / 'rsync'}/"],
            data_written=lambda: rsync_transferred(work / "rsync.out"),
            stdout=work / "rsync.out",
        ),
        "borg-none": lambda: borg(work, src, "borg-none", ["--compression", "none"]),
        "borg-lz4": lambda: borg(work, src, "borg-lz4", []),
        "restic": lambda: Tool(
            "restic",
            work / "restic",
            lambda n: ["restic", "backup", "-q", str(src)],
            init=[["restic", "init"]],
            cache=work / "restic.cache",
            env={
                "RESTIC_REPOSITORY": str(work / "restic"),
                "RESTIC_PASSWORD": "inkind-bench",
                "RESTIC_CACHE_DIR": str(work / "restic.cache"),
            },
        ),
    }
    first = Tool(
        "inkind",
        work / "store",
        lambda n: [*inkind, "backup"],
        init=[[*inkind, "init"]],
        data_written=lambda: inkind_written(work / "store"),
    )
    return [first] + [made[p]() for p in peers]


def inkind_written(store: Path) -> int:
    """What the last run wrote by its Stats (bytes written and journaled,
    every source): the data passed to the store's write calls."""
    report = json.loads((store / ".inkind" / "last-run.json").read_text())
    return sum(s["stats"]["bytes_written"] + s["stats"]["bytes_journaled"] for s in report["sources"])


def rsync_transferred(out: Path) -> int:
    """rsync's "Total transferred file size" (``--stats``): each file it
    updates it writes whole into a temp, so that is the data it wrote."""
    for line in out.read_text().splitlines():
        if line.startswith("Total transferred file size:"):
            return int(line.split(":")[1].split()[0].replace(",", ""))
    sys.exit(f"bench/files.py: no transferred size in rsync's --stats ({out})")


def chosen_peers(asked: str | None) -> list[str]:
    """The peers to run: rsync always, the rest as asked (default: all that
    are installed); a clear error for an unknown or missing one."""
    if asked is None:
        names = [p for p in PEERS if shutil.which(PEERS[p])]
    else:
        names = [p.strip() for p in asked.split(",") if p.strip()]
    for name in ["rsync", *names]:
        if name not in PEERS:
            sys.exit(f"bench/files.py: unknown peer {name!r} (choose from {', '.join(PEERS)})")
        if not shutil.which(PEERS[name]):
            binary = PEERS[name]
            sys.exit(
                f"bench/files.py: {name} needs {binary}, not installed (apt-get install {PACKAGES[binary]})"
            )
    return ["rsync", *(p for p in PEERS if p in names and p != "rsync")]


def versions(peers: list[str]) -> str:
    """The tools' versions for the header; a warning if borg is not 1.2."""
    found = [version(str(ROOT / ".venv" / "bin" / "inkind"), "--version")]
    found.append(" ".join(version("rsync", "--version").split()[:3:2]))
    if any(p.startswith("borg") for p in peers):
        found.append(version("borg", "--version"))
        if not found[-1].startswith("borg 1.2."):
            print(
                f"bench/files.py: warning: {found[-1]}, the comparison asked for is borg 1.2", file=sys.stderr
            )
    if "restic" in peers:
        found.append(" ".join(version("restic", "version").split()[:2]))
    return ", ".join(found)


Results = dict[str, dict[str, list[Measurement]]]


def run_rounds(
    work: Path, all_tools: list[Tool], args: argparse.Namespace, cold: bool
) -> tuple[Results, list[int]]:
    """Every round: empty stores, then the three cases, each tool in turn
    (the order rotates by one each round); return the measurements and the
    bytes each 1% change rewrote."""
    rng = random.Random(1)
    src = work / "src"
    if args.tree:
        small = copy_tree(args.tree, src)
    else:
        small = make_tree(src, args.files, [m * MiB for m in args.large_mib], rng)
    big = largest_file(src)
    results: Results = {}
    changed_bytes = []
    for r in range(args.rounds):
        k = r % len(all_tools)
        order = all_tools[k:] + all_tools[:k]
        for tool in order:
            tool.reset(work / "trash")
        for case in ("first run", "no change", "1% changed"):
            if case == "1% changed":
                changed_bytes.append(change(src, small, big, rng))
            for tool in order:
                results.setdefault(case, {}).setdefault(tool.name, []).append(tool.run(cold))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    return results, changed_bytes


def mib(value: float | None, digits: int = 1) -> str:
    """MiB for the table; '-' for none, no '-0.000' for a few bytes less."""
    if value is None:
        return "-"
    return f"{value / MiB:.{digits}f}".replace(f"-0.{'0' * digits}", f"0.{'0' * digits}")


def table(results: Results, names: list[str]) -> str:
    rows = []
    for case, by_tool in results.items():
        base = median(m.wall for m in by_tool["rsync"])
        durable_base = median(m.wall + m.extra["sync"] for m in by_tool["rsync"])
        for name in names:
            ms = by_tool[name]
            wall = median(m.wall for m in ms)
            durable = median(m.wall + m.extra["sync"] for m in ms)
            caches = [m.extra["cache"] for m in ms]
            disks = [m.extra["disk"] for m in ms]
            datas = [m.extra["data"] for m in ms]
            rows.append(
                [
                    case,
                    name,
                    f"{wall:.2f}",
                    f"{wall / base:.2f}x",
                    f"{durable:.2f}",
                    f"{durable / durable_base:.2f}x",
                    mib(None if None in datas else median(datas)),
                    mib(median(m.write_bytes for m in ms)),
                    mib(None if None in disks else median(disks)),
                    mib(median(m.read_bytes for m in ms)),
                    f"{max(m.peak_rss for m in ms) / MiB:.0f}",
                    mib(median(m.extra["store"] for m in ms), 3),
                    mib(None if None in caches else median(caches), 3),
                ]
            )
    header = ["case", "tool", "wall s (median)", "vs rsync", "wall + sync s", "vs rsync + sync"]
    header += ["data MiB written", "MiB written", "disk MiB written", "MiB read"]
    header += ["peak RSS MiB"]
    header += ["store growth MiB", "cache growth MiB"]
    return markdown_table(header, rows)


def count_entries(src: Path) -> int:
    return sum(len(dirs) + len(names) for _, dirs, names in os.walk(src))


def filesystem(path: Path) -> str:
    """The type of the filesystem the store and targets are on, as mounted
    (``stat -f`` names ext4 "ext2/ext3": they share a magic number)."""
    done = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", str(path)], capture_output=True, text=True)
    return done.stdout.strip() or "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--large-mib", type=int, nargs="*", default=[256, 128, 64])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--tree", type=Path, help="copy this real tree (e.g. /usr/share) instead of generating one"
    )
    ap.add_argument("--work", type=Path, default=Path("/tmp/inkind-bench-files"))
    ap.add_argument("--warm", action="store_true", help="do not drop the page cache")
    ap.add_argument("--peers", help=f"comma-separated, of {','.join(PEERS)} (default: all installed)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    cold = not args.warm
    if cold and os.geteuid() != 0:
        sys.exit("bench/files.py: cold-cache runs need root (or pass --warm)")
    peers = chosen_peers(args.peers)
    header = versions(peers)
    shutil.rmtree(args.work, ignore_errors=True)
    all_tools = tools(args.work, args.work / "src", peers)
    results, changed_bytes = run_rounds(args.work, all_tools, args, cold)
    shutil.rmtree(args.work / "trash", ignore_errors=True)
    if args.tree:
        what = f"a copy of {args.tree} ({count_entries(args.work / 'src'):,} entries)"
    else:
        total = args.files + len(args.large_mib)
        what = f"{total:,} files ({args.files:,} small, large files of {args.large_mib} MiB)"
    note = (
        f"{what} in {filesystem(args.work)}, "
        f"{args.rounds} rounds, {'cold' if cold else 'warm'} cache, {machine()}; {header}; "
        f"the 1% change rewrote {median(changed_bytes) / MiB:.1f} MiB (median)."
    )
    out = table(results, [t.name for t in all_tools])
    print(note)
    print(out)
    if args.out:
        args.out.write_text(note + "\n\n" + out + "\n")


if __name__ == "__main__":
    main()
