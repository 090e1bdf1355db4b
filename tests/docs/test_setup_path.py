"""setup.sh's PATH step (scripts/link-inkind.sh): after setup, the README's
``inkind ...`` commands work as written, as root."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from inkind.testing import needs_root

REPO = Path(__file__).parents[2]
VENV_INKIND = REPO / ".venv" / "bin" / "inkind"
pytestmark = [
    needs_root,
    pytest.mark.skipif(
        not VENV_INKIND.exists(), reason="no .venv in the checkout (scripts/setup.sh makes it)"
    ),
]


def link(bin_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "INKIND_BIN_DIR": str(bin_dir)}
    return subprocess.run([REPO / "scripts" / "link-inkind.sh"], capture_output=True, text=True, env=env)


def test_setup_links_inkind_onto_path_and_says_so(tmp_path):
    r = link(tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"setup: linked {tmp_path}/inkind -> {VENV_INKIND}\n"
    # A login shell's PATH with the bin directory: the README's command as written.
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "HOME": str(tmp_path)}
    help_ = subprocess.run(["inkind", "--help"], capture_output=True, text=True, env=env)
    assert help_.returncode == 0 and "backup" in help_.stdout, help_.stderr
    again = link(tmp_path)
    assert again.stdout == f"setup: {tmp_path}/inkind -> {VENV_INKIND} (already there)\n"


def test_setup_leaves_another_inkind_alone_and_says_how(tmp_path):
    other = tmp_path / "inkind"
    other.write_text("#!/bin/sh\necho another inkind\n")
    r = link(tmp_path)
    assert r.returncode == 0
    assert "is not this checkout's inkind: left alone" in r.stdout
    assert f'export PATH="{REPO}/.venv/bin:$PATH"' in r.stdout
    assert other.read_text() == "#!/bin/sh\necho another inkind\n"


def test_setup_replaces_a_link_to_a_removed_checkout(tmp_path):
    gone = tmp_path / "removed-clone" / ".venv" / "bin" / "inkind"
    (tmp_path / "inkind").symlink_to(gone)
    r = link(tmp_path)
    assert r.returncode == 0, r.stderr
    assert (
        r.stdout
        == f"setup: relinked {tmp_path}/inkind -> {VENV_INKIND} (it pointed to {gone}, which is gone)\n"
    )
    assert os.readlink(tmp_path / "inkind") == str(VENV_INKIND)
