"""The example systemd units are valid for systemd itself."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).parents[2] / "examples" / "systemd"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_units_verify_cleanly(tmp_path):
    inkind = Path(sys.executable).with_name("inkind")
    for unit in UNITS.iterdir():
        text = unit.read_text().replace("/opt/inkind/.venv/bin/inkind", str(inkind))
        text = text.replace("RequiresMountsFor=/srv/backup", f"RequiresMountsFor={tmp_path}")
        name = unit.name.replace("@.service", "@home.service")
        (tmp_path / name).write_text(text)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["inkind.service", "inkind.timer", "inkind@home.service"]
    r = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names], cwd=tmp_path, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "", r.stderr


def test_timer_is_daily_randomized_and_persistent():
    timer = (UNITS / "inkind.timer").read_text()
    for line in ("OnCalendar=*-*-* 02:00:00", "RandomizedDelaySec=2h", "Persistent=true"):
        assert line in timer.splitlines()
    service = (UNITS / "inkind.service").read_text()
    assert "SuccessExitStatus=1" in service.splitlines()
