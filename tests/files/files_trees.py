"""Helpers that build source trees for the files-source tests."""

from __future__ import annotations

import contextlib
import gc
import os
import subprocess
from pathlib import Path

IS_ROOT = os.geteuid() == 0


def write(path: Path, data: bytes | str, mtime_ns: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def make_awkward_tree(root: Path) -> None:
    """Every kind of entry and name the files source must round-trip."""
    write(root / "plain.txt", "hello\n")
    write(root / "empty", b"")
    write(root / "dir" / "nested" / "deep.bin", os.urandom(70_000))
    os.makedirs(root / "emptydir")
    # Names are bytes: invalid UTF-8, a newline, and the longest allowed.
    raw = os.fsencode(root)
    with open(raw + b"/bad-\xff\xfe-utf8", "wb") as f:
        f.write(b"latin junk")
    write(root / "new\nline", "newline in name")
    write(root / ("n" * 255), "long name")
    # A sparse file: 8 MiB apparent, one byte of data in the middle.
    with open(root / "sparse.img", "wb") as f:
        f.truncate(8 << 20)
        f.seek(3 << 20)
        f.write(b"x")
    # Symlinks: relative, absolute outside the tree, dangling, to a dir.
    os.symlink("plain.txt", root / "link-rel")
    os.symlink("/etc/hostname", root / "link-abs")
    os.symlink("does/not/exist", root / "link-dangling")
    os.symlink("dir", root / "link-dir")
    # Hard links, one of them in another directory.
    os.link(root / "plain.txt", root / "hard1")
    os.link(root / "plain.txt", root / "dir" / "hard2")
    os.mkfifo(root / "fifo")
    os.chmod(root / "dir", 0o750)
    os.chmod(root / "plain.txt", 0o640)
    subprocess.run(["setfattr", "-n", "user.note", "-v", "kept", root / "plain.txt"], check=True)
    subprocess.run(["setfattr", "-n", "user.dirnote", "-v", "d", root / "dir"], check=True)
    subprocess.run(["setfacl", "-m", "u:1234:r", root / "dir" / "nested" / "deep.bin"], check=True)
    subprocess.run(["setfacl", "-d", "-m", "g:4321:rx", root / "dir" / "nested"], check=True)
    if IS_ROOT:
        os.mknod(root / "null-dev", 0o620 | 0o020000, os.makedev(1, 3))
        os.mknod(root / "blk-dev", 0o600 | 0o060000, os.makedev(7, 200))
        write(root / "owned", "someone else's")
        os.chown(root / "owned", 1234, 5678)
        os.chmod(root / "owned", 0o4755)  # set-uid survives the chown order
        os.lchown(root / "link-rel", 2222, 3333)
        subprocess.run(["setfattr", "-n", "trusted.secret", "-v", "t", root / "owned"], check=True)
    # Odd mtimes with nanoseconds, also on a directory and a symlink.
    os.utime(root / "plain.txt", ns=(1, 1_234_567_891_123_456_789))
    os.utime(root / "link-rel", ns=(1, 987_654_321_000_000_001), follow_symlinks=False)
    os.utime(root / "dir", ns=(1, 1_500_000_000_999_999_999))


def interrupt_at_mirror(monkeypatch, n: int) -> None:
    """The walk is interrupted (SIGINT) at its n-th entry mirrored by itself."""
    from inkind.engines.tree.walker import Walker
    from inkind.runner import Interrupted

    calls = {"n": 0}
    real_mirror = Walker.mirror

    def mirror(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise Interrupted("SIGINT")
        return real_mirror(self, *args, **kwargs)

    monkeypatch.setattr(Walker, "mirror", mirror)


def open_fds() -> set[tuple[str, str]]:
    """This process's descriptors and what each names. A run may see fewer than
    it started with (another test's file object collected meanwhile), never one
    it did not start with."""
    gc.collect()
    fds = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the listing's own, closed since
            fds.add((fd, os.readlink(f"/proc/self/fd/{fd}")))
    return fds


def stats_of(report) -> dict:
    """The one source's Stats of a run report, without its duration."""
    (r,) = report.results
    return {k: v for k, v in r.stats.as_dict().items() if k != "duration_seconds"}


def one_core(monkeypatch) -> None:
    """The walk may use one core only: no worker."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})


def twin_stores(inkind_config, inkind_run, src: Path, source: dict | None = None, **defaults) -> Path:
    """A config of two sources of the same tree, "two" (for a run with the
    walk's worker) and "one" (for one without), each backed up once."""
    names = ("two", "one")
    config = inkind_config({n: {"type": "files", "path": src, **(source or {})} for n in names}, **defaults)
    for name in names:
        inkind_run(config, "backup", name)
    return config
