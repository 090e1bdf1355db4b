"""Generated file names: every byte but "/" and NUL, up to 255 bytes."""

import os
import shutil

from harness import inkind
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inkind.testing import render_config, tree_diff

name_bytes = st.binary(min_size=1, max_size=255).filter(
    lambda b: (
        b"/" not in b and b"\0" not in b and b not in (b".", b"..") and not b.startswith(b".inkind-tmp-")
    )
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(name_bytes, min_size=1, max_size=12, unique=True))
def test_any_names_round_trip(tmp_path_factory, names):
    base = tmp_path_factory.mktemp("names")
    src, store = base / "src", base / "store"
    os.makedirs(os.fsencode(src) + b"/sub")
    store.mkdir()
    for i, n in enumerate(names):
        parent = os.fsencode(src) + (b"/sub/" if i % 2 else b"/")
        with open(parent + n, "wb") as f:
            f.write(n)
    cfg = base / "c.toml"
    cfg.write_text(render_config(store, {"h": {"type": "files", "path": src}}))
    r = inkind("-c", cfg, "backup", "--full")
    assert r.returncode == 0, r.stderr
    assert tree_diff(src, store / "h") == []
    again = inkind("-c", cfg, "backup", "--json")
    assert '"bytes_written": 0' in again.stdout
    shutil.rmtree(base)
