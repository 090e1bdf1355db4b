"""Progress bars on a terminal only; plain log lines otherwise."""

import shutil
import subprocess
import sys

import pytest

from inkind.testing import verify_clean


def make_tree(root, n=3000):
    for i in range(n):
        d = root / f"d{i % 30}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}").write_text(str(i))


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) from util-linux")
def test_progress_bar_on_a_terminal_only(tmp_path, inkind_config):
    src = tmp_path / "src"
    make_tree(src)
    cfg = inkind_config({"t": {"type": "files", "path": src}})
    # verify-after: on a terminal (script) and without one; verify_clean below
    cmd = f"{sys.executable} -m inkind -c {cfg} backup"
    log = tmp_path / "tty.log"
    subprocess.run(["script", "-q", "-e", "-c", cmd, str(log)], check=True, stdout=subprocess.DEVNULL)
    assert "━" in log.read_text(errors="replace"), "no progress bar on a terminal"
    # verify-after: verify_clean below
    plain = subprocess.run(
        [sys.executable, "-m", "inkind", "-c", str(cfg), "backup"], capture_output=True, text=True
    )
    assert plain.returncode == 0
    assert "━" not in plain.stderr + plain.stdout
    assert "inkind: INFO: t: ok" in plain.stderr
    verify_clean(cfg)


def test_log_json_writes_structured_lines(tmp_path, inkind_config, inkind_cli):
    import json

    src = tmp_path / "src"
    make_tree(src, 10)
    cfg = inkind_config({"t": {"type": "files", "path": src}})
    out = tmp_path / "log.jsonl"
    r = inkind_cli("-c", cfg, "--log-json", out, "-q", "backup")
    assert r.returncode == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert any(e["message"].startswith("t: ok") and e["level"] == "info" for e in lines)
    assert "INFO" not in r.stderr, "-q keeps info lines off the terminal, not out of the JSON log"
