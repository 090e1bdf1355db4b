"""UpdateFile(new=True): a file the caller found missing is written into an
unnamed temp (O_TMPFILE) made with its final permission bits, and linked in
whole; on each store filesystem, and with the named temp where there is no
O_TMPFILE."""

import os
import stat

import pytest

from inkind import Stats, UpdateFile, XAttrs
from inkind.store import set_mode, unnamed


def temps(d):
    return [n for n in os.listdir(d) if n.startswith(".inkind-tmp-")]


@pytest.fixture(params=["unnamed", "named"])
def where(request, inkind_store_dir, monkeypatch):
    """A directory on the store filesystem; "named": as on a filesystem
    without O_TMPFILE, where the temp has a name and is renamed."""
    if request.param == "named":
        monkeypatch.setattr(unnamed, "works", False)
    return inkind_store_dir


def test_a_new_file_appears_whole_with_its_mode_and_no_temp_name(where):
    p = where / "f"
    s = Stats()
    seen = []
    with UpdateFile(
        p, stats=s, new=True, mode=0o640, before_commit=lambda fd: seen.append(temps(where))
    ) as f:
        f.write(b"hello ")
        assert not p.exists()  # nothing under the final name before the end
        f.write(b"world")
    assert f.changed and p.read_bytes() == b"hello world"
    assert XAttrs(p).text("xxh3") == f.xxh3
    assert (s.bytes_written, s.xattrs_written) == (11, 1)
    named = not unnamed.works
    assert len(seen[0]) == (1 if named else 0)  # unnamed: no name while it is written
    assert temps(where) == []
    # Unnamed, the file was made 0640 (umask allowing): no chmod is left to do.
    st = os.stat(p)
    want = 0o600 if named else 0o640 & ~_umask()
    assert stat.S_IMODE(st.st_mode) == want
    s = Stats()
    assert set_mode(p, 0o640, stats=s) == (s.modes_set == 1)


def test_a_failed_new_file_leaves_nothing(where):
    p = where / "f"
    with pytest.raises(RuntimeError), UpdateFile(p, new=True, mode=0o644) as f:
        f.write(b"half")
        raise RuntimeError("boom")
    assert os.listdir(where) == []


def test_a_name_taken_since_the_caller_looked_is_replaced_whole(where):
    p = where / "f"

    def squatter(_fd):
        p.write_bytes(b"appeared meanwhile")

    with UpdateFile(p, new=True, mode=0o644, before_commit=squatter) as f:
        f.write(b"the new content")
    assert p.read_bytes() == b"the new content"
    assert temps(where) == []


def test_a_new_empty_and_a_sparse_file(where):
    s = Stats()
    with UpdateFile(where / "empty", new=True, mode=0o644, stats=s) as f:
        pass
    with UpdateFile(where / "sparse", new=True, mode=0o644, stats=s) as f:
        f.write_zeros(1 << 20)
        f.write(b"end")
    assert (where / "empty").read_bytes() == b""
    assert (where / "sparse").read_bytes() == bytes(1 << 20) + b"end"
    assert s.bytes_written == 3
    assert os.stat(where / "sparse").st_blocks * 512 < 1 << 20


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
