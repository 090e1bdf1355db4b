"""Fixtures for the files source: awkward source trees and a configured store."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Setup:
    src: Path
    store: Path
    config: Path

    @property
    def data(self) -> Path:
        return self.store / "home"


@pytest.fixture
def setup(tmp_path, inkind_config, inkind_store) -> Setup:
    src = tmp_path / "src"
    src.mkdir()
    cfg = inkind_config({"home": {"type": "files", "path": src}})
    return Setup(src, inkind_store, cfg)


@pytest.fixture
def open_tmp():
    """A directory an unprivileged user can reach (pytest's tmp is 0700)."""
    d = Path(tempfile.mkdtemp(prefix="inkind-nobody-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)
