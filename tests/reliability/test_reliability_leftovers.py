"""What a killed run leaves outside ``STORE/NAME``, found by the database
kill harness (test_reliability_dbkill.py), each pinned down here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from harness import inkind

from inkind import run_tool
from inkind.errors import SourceError
from inkind.testing import render_config


def test_a_dump_tool_dies_with_a_killed_run():
    """A SIGKILLed inkind gives no chance to kill its tools: the kernel does
    (PR_SET_PDEATHSIG). Before, a pg_dump -Fd went on writing into the
    store's temp directory, with its transaction open on the server."""
    code = textwrap.dedent(
        """
        import sys, time
        from inkind.engines.dumps.tools import tool_process
        with tool_process(["sleep", "60"]) as proc:
            print(proc.pid, flush=True)
            time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    tool = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{tool}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            break
        if state == "Z":
            break
        time.sleep(0.02)
    else:
        os.kill(tool, signal.SIGKILL)
        raise AssertionError("the tool outlived the killed run")


def test_state_and_report_temps_of_a_killed_run_are_removed(tmp_path, inkind_store):
    """A run killed while it wrote its state or the run report left
    ``.inkind-tmp-*`` in ``.inkind/`` that no run removed. They are named
    after the file they were to replace; the next run that holds that
    file's lock removes them, and only them."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    cfg = tmp_path / "c.toml"
    cfg.write_text(render_config(inkind_store, {"home": {"type": "files", "path": src}}))
    assert inkind("-c", cfg, "backup").returncode == 0
    meta = inkind_store / ".inkind"
    ours = meta / "sources" / ".inkind-tmp-0123456789abcdef.home.json"
    report = meta / ".inkind-tmp-0123456789abcdef.last-run.json"
    others = meta / "sources" / ".inkind-tmp-0123456789abcdef.homeother.json"
    for p in (ours, report, others):
        p.write_text('{"half": ')
    r = inkind("-c", cfg, "backup")
    assert r.returncode == 0, r.stderr
    assert not ours.exists() and not report.exists()
    assert others.exists()  # another source's: only its own run may remove it


def test_a_dump_tool_run_touches_no_temp_directory(monkeypatch):
    """The tool's stderr goes into a memfd: Python's tempfile, whose first
    use probes the temp directory with a named file, is never asked, so a
    kill at that moment cannot leave an empty file in /tmp (the harness
    found one in its private TMPDIR)."""
    monkeypatch.setattr(tempfile, "tempdir", None)
    with pytest.raises(SourceError, match="went wrong"):
        run_tool(["sh", "-c", "echo 'went wrong' >&2; exit 3"])
    assert run_tool(["sh", "-c", "echo out; echo noise >&2"]) == b"out\n"
    assert tempfile.tempdir is None  # gettempdir() was never called
