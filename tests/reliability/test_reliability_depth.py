"""Paths longer than PATH_MAX: the walk works on directory fds, so depth
is no limit (restoring needs a tool that does the same, like tar or cp -a)."""

import os

from harness import inkind

from inkind.testing import render_config

LEVEL = b"d" * 200
DEPTH = 30  # 30 * 201 bytes: past PATH_MAX (4096)


def descend(root: bytes, depth: int, create: bool) -> int:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        if create:
            os.mkdir(LEVEL, dir_fd=fd)
        nfd = os.open(LEVEL, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        os.close(fd)
        fd = nfd
    return fd


def test_a_tree_deeper_than_path_max(tmp_path, inkind_store):
    src = tmp_path / "src"
    src.mkdir()
    fd = descend(os.fsencode(src), DEPTH, create=True)
    try:
        wfd = os.open("deep.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(wfd, b"at the bottom")
        os.close(wfd)
    finally:
        os.close(fd)
    assert len(os.fsencode(src)) + DEPTH * (len(LEVEL) + 1) > 4096
    cfg = tmp_path / "c.toml"
    cfg.write_text(render_config(inkind_store, {"h": {"type": "files", "path": src}}))
    r = inkind("-c", cfg, "backup")
    assert r.returncode == 0, r.stderr
    fd = descend(os.fsencode(inkind_store / "h"), DEPTH, create=False)
    try:
        rfd = os.open("deep.txt", os.O_RDONLY, dir_fd=fd)
        assert os.read(rfd, 100) == b"at the bottom"
        os.close(rfd)
    finally:
        os.close(fd)
    assert inkind("-c", cfg, "backup", "--json").returncode == 0
    v = inkind("-c", cfg, "verify")
    assert v.returncode == 0, v.stdout + v.stderr
