"""Fixtures for the files source: awkward source trees and a configured store."""

from __future__ import annotations

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
