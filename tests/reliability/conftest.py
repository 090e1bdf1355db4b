"""Options of the reliability harness (``--soak`` for the long runs) and the
store the corruption and deletion attacks share."""

import random
import sqlite3

import pytest
from harness import inkind

from inkind.testing import render_config


def pytest_addoption(parser):
    parser.addoption(
        "--soak",
        action="store_true",
        help="reliability harness: run the long randomized attacks (200+ kill points)",
    )


@pytest.fixture
def kill_points(request) -> int:
    """Kill points per source: a few in the normal suite, many with --soak."""
    return 70 if request.config.getoption("--soak") else 7


@pytest.fixture
def db_kill_points(request) -> int:
    """Kill points per database source (each costs a few dumps)."""
    return 40 if request.config.getoption("--soak") else 3


@pytest.fixture
def store_of_three(tmp_path, inkind_store):
    """A store holding a files tree (with subdirectories), an image and a
    sqlite database, backed up and verified: (config, store, source tree)."""
    rng = random.Random(7)
    src = tmp_path / "tree"
    for i in range(60):
        p = src / f"d{i % 4}" / (f"sub{i % 2}" if i % 3 == 0 else "") / f"f{i}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.randbytes(rng.randrange(1, 20000)))
    image = tmp_path / "disk.raw"
    image.write_bytes(rng.randbytes(8 << 20))
    db = tmp_path / "app.db"
    con = sqlite3.connect(db)
    con.execute("create table t (v blob)")
    con.executemany("insert into t values (?)", [(rng.randbytes(500),) for _ in range(400)])
    con.commit()
    con.close()
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        render_config(
            inkind_store,
            {
                "home": {"type": "files", "path": src},
                "vm": {"type": "image", "path": image},
                "app": {"type": "sqlite", "path": db},
            },
        )
    )
    assert inkind("-c", cfg, "backup").returncode == 0
    assert inkind("-c", cfg, "verify").returncode == 0
    return cfg, inkind_store, src
