"""Load: a files source of many mostly empty files (20,000; 1,000,000 with
--soak) is backed up, backed up again with no change, and restored with
the command ``inkind restore`` prints, through bench/load.py. Each inkind
run stays under 150 MiB peak RSS; the no-change run writes nothing; the
restored tree equals the source. Wall time is reported, never asserted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RSS_LIMIT = 150 << 20


def test_many_files_in_bounded_memory_and_no_writes_when_unchanged(tmp_path, request):
    if not Path("/usr/bin/time").exists() or shutil.which("rsync") is None:
        pytest.skip("needs GNU time (/usr/bin/time) and rsync")
    soak = request.config.getoption("--soak")
    files, dirs = (1_000_000, 1000) if soak else (20_000, 100)
    argv = [sys.executable, str(ROOT / "bench" / "load.py"), "--files", str(files), "--dirs", str(dirs)]
    argv += ["--work", str(tmp_path / "w"), "--json"]
    if soak:
        if os.geteuid() != 0:
            pytest.skip("the 1,000,000-file run mounts a tmpfs (root)")
        argv.append("--tmpfs")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    print(json.dumps({k: v for k, v in r.items() if not k.endswith("stats")}))
    assert r["first_stats"]["objects_seen"] == files + dirs
    assert r["first_peak_rss"] < RSS_LIMIT, r["first_peak_rss"]
    assert r["again_peak_rss"] < RSS_LIMIT, r["again_peak_rss"]
    assert r["again_stats"]["objects_unchanged"] == files + dirs
    assert r["again_writes"] == dict.fromkeys(r["again_writes"], 0)
    assert r["restore_differs"] == 0, r["restore_diff"]
