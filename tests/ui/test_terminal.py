"""Progress bars on a terminal only; plain log lines otherwise."""

import json
import os
import re
import shlex
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


needs_script = pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) from util-linux")


def on_terminal(tmp_path, cfg, *args: str) -> str:
    """What ``inkind -c CFG ARGS`` writes to a terminal (script(1) gives it
    one); a backup is verified clean after it, as inkind_cli does."""
    # verify-after: verify_clean below
    cmd = shlex.join([sys.executable, "-m", "inkind", "-c", str(cfg), *args])
    log = tmp_path / "tty.log"
    subprocess.run(["script", "-q", "-e", "-c", cmd, str(log)], check=True, stdout=subprocess.DEVNULL)
    if args[0] == "backup":
        verify_clean(cfg)
    return log.read_text(errors="replace")


@needs_script
@pytest.mark.parametrize("inkind_store_fs", ["ext4"], indirect=True)  # a terminal, not a store, is tested
def test_progress_bar_on_a_terminal_only(tmp_path, inkind_config):
    src = tmp_path / "src"
    make_tree(src)
    cfg = inkind_config({"t": {"type": "files", "path": src}})
    assert "━" in on_terminal(tmp_path, cfg, "backup"), "no progress bar on a terminal"
    # verify-after: verify_clean below
    plain = subprocess.run(
        [sys.executable, "-m", "inkind", "-c", str(cfg), "backup"], capture_output=True, text=True
    )
    assert plain.returncode == 0
    assert "━" not in plain.stderr + plain.stdout
    assert "inkind: INFO: t: ok" in plain.stderr
    verify_clean(cfg)


def test_log_json_writes_structured_lines(tmp_path, inkind_config, inkind_cli):
    src = tmp_path / "src"
    make_tree(src, 10)
    cfg = inkind_config({"t": {"type": "files", "path": src}})
    out = tmp_path / "log.jsonl"
    r = inkind_cli("-c", cfg, "--log-json", out, "-q", "backup")
    assert r.returncode == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert any(e["message"].startswith("t: ok") and e["level"] == "info" for e in lines)
    assert "INFO" not in r.stderr, "-q keeps info lines off the terminal, not out of the JSON log"
    (done,) = [e for e in lines if e.get("event") == "finished"]
    assert done["message"].startswith("t: ok: 20 seen, 20 changed, 10 B read, 10 B written, "), done
    assert (done["source"], done["command"], done["outcome"]) == ("t", "backup", "ok")
    assert done["stats"]["objects_seen"] == 20 and done["stats"]["bytes_written"] == 10
    assert "{" not in done["message"], "counters go in fields, not as dict text in the message"
    assert all(e["source"] == "t" for e in lines if e["message"].startswith("t: "))


@needs_script
@pytest.mark.parametrize("inkind_store_fs", ["ext4"], indirect=True)  # a terminal, not a store, is tested
def test_progress_bars_show_the_total_where_it_is_known(tmp_path, inkind_config, inkind_cli):
    """The files walk counts towards the last run's count, marked as an
    estimate (``~``); an image's bar counts bytes of its known size."""
    src = tmp_path / "src"
    make_tree(src)
    disk = tmp_path / "disk.raw"
    disk.write_bytes(os.urandom(6 << 20))
    cfg = inkind_config({"t": {"type": "files", "path": src}, "disk": {"type": "image", "path": disk}})
    first = inkind_cli("-c", cfg, "backup", "--json")
    assert first.returncode == 0, first.stderr
    seen = first.json()["sources"][0]["stats"]["objects_seen"]
    assert seen == 3030  # 3000 files in 30 directories
    screen = on_terminal(tmp_path, cfg, "backup", "--full")
    assert re.search(r"t: files .*/~3030", screen), screen
    assert re.search(r"disk: read .*/6\.0 MiB", screen), screen


def test_terminal_numbers_in_human_units(tmp_path, inkind_config, inkind_cli):
    """The summary, list and status say sizes in KiB/MiB/GiB; --json keeps
    the integers."""
    disk = tmp_path / "disk.raw"
    disk.write_bytes(os.urandom(3 << 20))
    cfg = inkind_config({"disk": {"type": "image", "path": disk}})
    r = inkind_cli("-c", cfg, "backup")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("disk: ok: 1 seen, 1 changed, 3.0 MiB read, 3.0 MiB written"), r.stdout
    assert "disk: ok: 1 seen, 1 changed, 3.0 MiB read" in r.stderr  # the log line says the same
    listed = inkind_cli("-c", cfg, "list")
    assert re.search(r"^disk +image .* ok +3\.0 MiB$", listed.stdout, re.M), listed.stdout
    assert inkind_cli("-c", cfg, "list", "--json").json()[0]["bytes"] >= 3 << 20
    status = inkind_cli("-c", cfg, "status")
    assert re.search(r"^free: \d+\.\d [KMGTPE]iB of \d+\.\d [KMGTPE]iB$", status.stdout, re.M), status.stdout
