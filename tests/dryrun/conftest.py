"""The dry-run tests use every source type: the fake LVM of tests/lvm too."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_LVM = Path(__file__).parent.parent / "lvm"
sys.path.insert(0, str(_LVM))
_spec = importlib.util.spec_from_file_location("lvm_conftest", _LVM / "conftest.py")
assert _spec is not None and _spec.loader is not None
_lvm_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_lvm_conftest)

fake_lvm = _lvm_conftest.fake_lvm
