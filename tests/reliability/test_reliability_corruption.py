"""Flipped and truncated objects are all found, by verify (the store alone)
and by scrub --fraction 1, each named, exit 2; a corrupt state file is set
aside, never trusted."""

import json
import os
import random
from pathlib import Path

import pytest
from harness import inkind, stored_files


def flip(path: Path, rng: random.Random) -> None:
    st = path.stat()
    with open(path, "r+b") as f:
        at = rng.randrange(0, st.st_size)
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x5A]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def truncate(path: Path, rng: random.Random) -> None:
    st = path.stat()
    os.truncate(path, rng.randrange(0, st.st_size))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("attack", [flip, truncate])
def test_every_damaged_object_is_found_and_named(store_of_three, attack):
    cfg, store, _ = store_of_three
    rng = random.Random(attack.__name__)
    files = stored_files(store / "home")
    victims = [f"home/{rel}" for rel in rng.sample(sorted(files), 5)]
    victims += ["vm/" + next(iter(stored_files(store / "vm"))), "app/app.db"]
    for v in victims:
        attack(store / v, rng)
    v = inkind("-c", cfg, "verify")
    assert v.returncode == 2
    missed = [x for x in victims if x not in v.stdout]
    assert missed == [], f"verify missed {missed}"
    s = inkind("-c", cfg, "scrub", "--fraction", "1")
    assert s.returncode == 2
    missed = [x for x in victims if x not in s.stdout + s.stderr]
    assert missed == [], f"scrub missed {missed}"


def test_a_corrupt_state_file_is_never_trusted(store_of_three):
    cfg, store, _ = store_of_three
    state = store / ".inkind" / "sources" / "home.json"
    state.write_text(state.read_text()[:40])
    r = inkind("-c", cfg, "backup", "home", "--json")
    assert r.returncode == 1
    assert "set aside" in r.stderr
    assert list(state.parent.glob("home.json.corrupt-*"))
    assert json.loads(state.read_text())["type"] == "files"


@pytest.mark.parametrize("attack", [flip, truncate])
def test_a_damaged_block_manifest_is_found_named_and_rewritten(store_of_three, attack):
    """The image is sound; only its manifest (derived data) is damaged: both
    commands name the manifest, not the image, and scrub rewrites it."""
    cfg, store, _ = store_of_three
    (manifest,) = (store / ".inkind" / "manifests" / "vm").glob("*.manifest")
    good = manifest.read_bytes()
    attack(manifest, random.Random(attack.__name__))
    v = inkind("-c", cfg, "verify", "vm")
    assert v.returncode == 2
    rel = f".inkind/manifests/vm/{manifest.name}"
    assert rel in v.stdout and f"vm/{manifest.name.removesuffix('.manifest')}:" not in v.stdout
    s = inkind("-c", cfg, "scrub", "--fraction", "1", "vm")
    assert s.returncode == 2
    assert rel in s.stderr and "rewritten from the image" in s.stderr
    assert manifest.read_bytes() == good
    assert inkind("-c", cfg, "verify").returncode == 0
