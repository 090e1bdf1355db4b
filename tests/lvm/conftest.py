"""The fake LVM of tests/lvm/fakes first on PATH, over files in a temp
directory, with real thin-pool metadata (thin_restore, thin_delta)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

FAKES = Path(__file__).parent / "fakes"
sys.path.insert(0, str(FAKES))

import fakelvm  # noqa: E402
from lvm_helpers import CHUNK  # noqa: E402


class FakeLvm:
    """Set up and change fake volumes; every change is saved at once."""

    def __init__(self, directory: Path):
        self.dir = directory
        fakelvm.save(fakelvm.new_state(directory))

    def _do(self, fn: Callable[..., Any], *args: Any) -> Any:
        state = fakelvm.load()
        out = fn(state, *args)
        fakelvm.save(state)
        return out

    def linear(self, vg: str, lv: str, size: int) -> Path:
        return Path(self._do(fakelvm.new_linear, vg, lv, size))

    def pool(self, vg: str, pool: str, size: int = 1 << 30, chunk: int = CHUNK) -> None:
        self._do(fakelvm.new_pool, vg, pool, size, chunk)

    def thin(self, vg: str, pool: str, lv: str, size: int) -> Path:
        return Path(self._do(fakelvm.new_thin, vg, pool, lv, size))

    def write(self, vg: str, lv: str, offset: int, data: bytes) -> None:
        self._do(fakelvm.write, vg, lv, offset, data)

    def discard(self, vg: str, lv: str, offset: int, length: int) -> None:
        self._do(fakelvm.discard, vg, lv, offset, length)

    def set(self, **flags: Any) -> None:
        state = fakelvm.load()
        state.update(flags)
        fakelvm.save(state)

    def state(self) -> dict[str, Any]:
        return fakelvm.load()

    def calls(self, name: str | None = None) -> list[list[str]]:
        return [c for c in fakelvm.load()["calls"] if name is None or c[0] == name]

    def clear_calls(self) -> None:
        self.set(calls=[])

    def names(self, vg: str) -> list[str]:
        return sorted(r["lv_name"] for r in fakelvm.load()["lvs"] if r["vg_name"] == vg)

    def data(self, vg: str, lv: str) -> bytes:
        return Path(fakelvm.row(fakelvm.load(), vg, lv)["lv_path"]).read_bytes()


@pytest.fixture
def fake_lvm(tmp_path: Path, monkeypatch) -> FakeLvm:
    if shutil.which("thin_restore") is None or shutil.which("thin_delta") is None:
        pytest.skip("needs thin_restore and thin_delta (thin-provisioning-tools)")
    monkeypatch.setenv("FAKE_LVM", str(tmp_path / "fake-lvm.json"))
    # The fakes' "env python3" is this interpreter (not a slow version shim).
    python_dir = Path(sys.executable).parent
    monkeypatch.setenv("PATH", os.pathsep.join([str(FAKES), str(python_dir), os.environ["PATH"]]))
    return FakeLvm(tmp_path)
