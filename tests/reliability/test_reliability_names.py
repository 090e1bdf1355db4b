"""Generated file names: every byte but "/" and NUL, up to 255 bytes."""

import os

from harness import inkind
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inkind.storeroot import init_store
from inkind.testing import render_config, tree_diff
from inkind.testing.filesystems import remove_tree

name_bytes = st.binary(min_size=1, max_size=255).filter(
    lambda b: (
        b"/" not in b and b"\0" not in b and b not in (b".", b"..") and not b.startswith(b".inkind-tmp-")
    )
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(name_bytes, min_size=1, max_size=12, unique=True))
def test_any_names_round_trip(inkind_filesystems, inkind_store_fs, names):
    """Each example gets a fresh directory on the store filesystem (hypothesis
    calls the test many times within one function-scoped fixture)."""
    base = inkind_filesystems.new_dir(inkind_store_fs, "names")
    src, store = base / "src", base / "store"
    os.makedirs(os.fsencode(src) + b"/sub")
    init_store(store)
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
    remove_tree(base)
