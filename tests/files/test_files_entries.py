"""user.inkind.entries: each stored directory records what it holds, so that
verify (the store alone) finds an entry deleted, or added, outside inkind."""

import json
import os
import shutil
import subprocess

from files_trees import write

from inkind.hashing import hash_bytes
from inkind.store.entries import entries_value
from inkind.testing import render_config, tree_diff


def only(report):
    (result,) = report.results
    return result


def entries(path) -> str:
    return os.getxattr(path, "user.inkind.entries").decode()


def stored_dirs(root):
    return [root] + [p for p in sorted(root.rglob("*")) if p.is_dir() and not p.is_symlink()]


def test_every_stored_directory_records_its_entries(setup, inkind_run):
    write(setup.src / "a", "1")
    write(setup.src / "d" / "b", "2")
    write(setup.src / "d" / "e" / "c", "3")
    (setup.src / "empty").mkdir()
    s = only(inkind_run(setup.config)).stats
    for d in stored_dirs(setup.data):
        assert entries(d) == entries_value(os.listdir(d)), d
    assert entries(setup.data) == entries_value(["a", "d", "empty"])
    assert entries(setup.data / "empty").startswith("0:")
    # 3 files (xxh3) + 4 directories (entries)
    assert s.xattrs_written == 3 + 4


def test_set_once_and_not_again_on_a_no_change_run(setup, inkind_run):
    write(setup.src / "d" / "f", "x")
    inkind_run(setup.config)
    ctimes = {d: os.stat(d).st_ctime_ns for d in stored_dirs(setup.data)}
    s = only(inkind_run(setup.config)).stats
    assert (s.xattrs_written, s.bytes_written, s.mtimes_set) == (0, 0, 0)
    # A full pass lists every directory (its sweep does) and still writes nothing.
    s = only(inkind_run(setup.config, full=True)).stats
    assert (s.xattrs_written, s.bytes_written, s.mtimes_set) == (0, 0, 0)
    assert ctimes == {d: os.stat(d).st_ctime_ns for d in stored_dirs(setup.data)}


def test_updated_when_a_file_is_added_or_removed(setup, inkind_run):
    write(setup.src / "d" / "f", "x")
    write(setup.src / "other" / "g", "y")
    inkind_run(setup.config)
    other = entries(setup.data / "other")
    write(setup.src / "d" / "new", "z")
    s = only(inkind_run(setup.config)).stats
    # the new file's xxh3 and its directory's entries; nothing else
    assert s.xattrs_written == 2
    assert entries(setup.data / "d") == entries_value(["f", "new"])
    assert entries(setup.data / "other") == other
    # A removal reaches the store in a full pass, which records it.
    (setup.src / "d" / "f").unlink()
    assert only(inkind_run(setup.config)).stats.xattrs_written == 0  # still stored
    assert entries(setup.data / "d") == entries_value(["f", "new"])
    s = only(inkind_run(setup.config, full=True)).stats
    assert s.objects_deleted == 1 and s.xattrs_written == 1
    assert entries(setup.data / "d") == entries_value(["new"])
    assert inkind_run(setup.config, "verify").exit_status == 0


def test_a_file_changed_in_place_leaves_entries_alone(setup, inkind_run):
    f = write(setup.src / "d" / "f", "x")
    inkind_run(setup.config)
    f.write_text("changed")
    s = only(inkind_run(setup.config)).stats
    assert s.xattrs_written == 1  # the file's xxh3 only


def test_verify_names_a_deleted_file_and_directory(setup, inkind_run, inkind_cli):
    write(setup.src / "d" / "f", "x")
    write(setup.src / "d" / "g", "y")
    write(setup.src / "d" / "sub" / "h", "z")
    inkind_run(setup.config)
    (setup.data / "d" / "f").unlink()
    v = inkind_cli("-c", setup.config, "verify", "--json")
    assert v.returncode == 2
    (finding,) = v.json()["findings"]
    assert finding["object"] == "home/d" and not finding["recoverable"]
    assert "1 entry missing" in finding["message"]
    shutil.rmtree(setup.data / "d" / "sub")
    v = inkind_cli("-c", setup.config, "verify")
    assert v.returncode == 2 and "home/d: 2 entries missing" in v.stdout
    # The next backup brings both back and records the directory again.
    r = only(inkind_run(setup.config))
    assert r.outcome == "ok"
    assert inkind_cli("-c", setup.config, "verify").returncode == 0
    assert tree_diff(setup.src, setup.data) == []


def test_verify_finds_an_entry_added_outside_inkind(setup, inkind_run, inkind_cli):
    write(setup.src / "f", "x")
    inkind_run(setup.config)
    (setup.data / "planted").write_text("?")
    v = inkind_cli("-c", setup.config, "verify")
    assert v.returncode == 2 and "home: 1 entry too many" in v.stdout
    # A full pass removes it (it is not in the source) and records again.
    inkind_run(setup.config, full=True)
    assert inkind_cli("-c", setup.config, "verify").returncode == 0


def test_scrub_names_and_brings_back_what_was_deleted(setup, inkind_run, inkind_cli):
    write(setup.src / "d" / "f", "x")
    write(setup.src / "d" / "sub" / "h", "z")
    write(setup.src / "keep", "k")
    inkind_run(setup.config)
    (setup.data / "d" / "f").unlink()
    shutil.rmtree(setup.data / "d" / "sub")
    r = inkind_cli("-c", setup.config, "scrub", "--fraction", "1")
    assert r.returncode == 2
    assert "home/d/f" in r.stderr and "home/d/sub" in r.stderr
    # Brought back from the source, as scrub rebuilds a corrupt file.
    assert tree_diff(setup.src, setup.data) == []
    assert os.stat(setup.data / "d").st_mtime_ns == os.stat(setup.src / "d").st_mtime_ns
    assert inkind_cli("-c", setup.config, "verify").returncode == 0
    s = only(inkind_run(setup.config)).stats
    assert (s.bytes_written, s.xattrs_written, s.mtimes_set) == (0, 0, 0)


def test_excluded_and_unreadable_files_do_not_count_as_missing(setup, inkind_config, inkind_run):
    write(setup.src / "a", "1")
    write(setup.src / "skip.tmp", "2")
    cfg = inkind_config({"home": {"type": "files", "path": setup.src, "exclude": ["*.tmp"]}})
    inkind_run(cfg)
    assert entries(setup.data) == entries_value(["a"])
    # A file that vanishes (or cannot be read) keeps its previous copy, or none.
    write(setup.src / "b", "3")
    os.chmod(setup.src / "b", 0)
    r = only(inkind_run(cfg))
    if os.geteuid() != 0:
        assert r.outcome == "warnings"
    assert entries(setup.data) == entries_value(os.listdir(setup.data))
    assert inkind_run(cfg, "verify").exit_status == 0


def test_an_interrupted_walk_is_recoverable_and_the_next_run_records(setup, inkind_run, inkind_cli):
    for i in range(20):
        write(setup.src / "d" / f"f{i:02}", str(i))
    inkind_run(setup.config)
    state_path = setup.store / ".inkind" / "sources" / "home.json"
    # What a run stopped half-way leaves: new entries, the record not yet updated.
    write(setup.src / "d" / "new", "n")
    shutil.copy2(setup.src / "d" / "new", setup.data / "d" / "new")
    os.setxattr(setup.data / "d" / "new", "user.inkind.xxh3", hash_bytes(b"n").encode())

    state = json.loads(state_path.read_text())
    state["partial"] = True
    state["resume"] = "d/f05"
    state_path.write_text(json.dumps(state))
    v = inkind_cli("-c", setup.config, "verify", "--json")
    assert v.returncode == 1, v.stdout
    assert all(f["recoverable"] for f in v.json()["findings"])
    # The next run (resuming after d/f05) lists every directory again.
    r = only(inkind_run(setup.config))
    assert r.outcome == "ok"
    assert "partial" not in json.loads(state_path.read_text())
    assert inkind_cli("-c", setup.config, "verify").returncode == 0


def test_fake_super_directories_record_entries_too(open_tmp, inkind_store, unprivileged):
    """Run as a user, directories carry user.rsync.%stat and the entries
    record side by side; a full pass rewrites neither."""
    src, store = open_tmp / "src", inkind_store
    write(src / "d" / "f", "x")
    write(src / "g", "y")
    subprocess.run(["chmod", "-R", "a+rX", src], check=True)
    subprocess.run(["chown", "-R", "65534:65534", store], check=True)
    cfg = open_tmp / "c.toml"
    cfg.write_text(render_config(store, {"home": {"type": "files", "path": src}}))
    assert unprivileged.inkind(["-c", cfg, "backup"], open_tmp).returncode == 0
    data = store / "home"
    assert os.getxattr(data / "d", "user.rsync.%stat")
    assert entries(data / "d") == entries_value(["f"])
    assert entries(data) == entries_value(["d", "g"])
    again = unprivileged.inkind(["-c", cfg, "backup", "--full", "--json"], open_tmp)
    assert json.loads(again.stdout)["sources"][0]["stats"]["xattrs_written"] == 0
    (data / "d" / "f").unlink()
    v = unprivileged.inkind(["-c", cfg, "verify"], open_tmp)
    assert v.returncode == 2 and "home/d: 1 entry missing" in v.stdout


def test_scrub_leaves_an_unfinished_walk_to_the_next_backup(setup, inkind_run, inkind_cli):
    write(setup.src / "d" / "f", "x")
    write(setup.src / "d" / "g", "y")
    inkind_run(setup.config)
    state_path = setup.store / ".inkind" / "sources" / "home.json"
    state = json.loads(state_path.read_text())
    state["partial"] = True
    state_path.write_text(json.dumps(state))
    (setup.data / "d" / "f").unlink()  # as if a walk had stopped before copying it
    r = inkind_cli("-c", setup.config, "scrub", "--fraction", "1", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(state_path.read_text())["partial"] is True
    v = inkind_cli("-c", setup.config, "verify", "--json")
    assert v.returncode == 1
    (f,) = v.json()["findings"]
    assert f["object"] == "home/d" and f["recoverable"]
    assert only(inkind_run(setup.config)).outcome == "ok"
    assert inkind_cli("-c", setup.config, "verify").returncode == 0
    assert tree_diff(setup.src, setup.data) == []
