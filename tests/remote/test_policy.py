"""What a restricted remote side runs (policy.py): the built-in sources'
commands with their own arguments pass; another program, another
argument, an added environment variable, a program or option file that
another user can change, a dump outside the session's temps, a volume
that is not inkind's snapshot are each refused with EPERM and a line
saying what."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest

from inkind.remote import policy
from inkind.remote.policy import allowed_command, allowed_directory, conninfo, trusted

CONN = "host='/run/postgresql' port='5432' user='postgres' dbname='shop'"
LIST = "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname"
LVS_FIELDS = (
    "vg_name,lv_name,lv_attr,lv_size,pool_lv,thin_id,lv_uuid,lv_path,lv_dm_path,origin,lv_tags,"
    "chunk_size,metadata_lv,data_percent"
)
MYSQLDUMP = ["--single-transaction", "--routines", "--events", "--triggers", "--skip-dump-date"]
MYSQLDUMP += ["--order-by-primary", "--hex-blob"]


@pytest.fixture
def bin_dir(trusted_dir) -> Path:
    """A directory of stand-in programs, owned by this user, that only it
    can change, outside the temps (a trusted place, as /usr/bin is)."""
    where = trusted_dir / "bin"
    where.mkdir()
    for name in policy.COMMANDS:
        (where / name).write_text("#!/bin/sh\n")
        (where / name).chmod(0o755)
    report = {"report": [{"lv": [lv(n, tags, origin) for n, tags, origin in VOLUMES]}]}
    (where / "lvs").write_text(f"#!/bin/sh\nprintf '%s\\n' '{json.dumps(report)}'\n")
    return where


# What the stand-in lvs lists: (name, tags, origin).
VOLUMES = [
    ("data", "", ""),
    ("inkind-v-data-1", "inkind", "data"),
    ("inkind-a-b-1", "backup,inkind", "b"),
    ("inkind-mine", "", "data"),  # the host's own snapshot, its name in inkind's form
    ("inkind-plain", "inkind", ""),  # tagged, not a snapshot
]


def lv(name: str, tags: str, origin: str) -> dict:
    return {"vg_name": "vg0", "lv_name": name, "lv_tags": tags, "origin": origin, "lv_attr": "-wi-a-----"}


@pytest.fixture
def temps(tmp_path) -> set[str]:
    made = tmp_path / ".inkind-dump-x"
    made.mkdir()
    return {str(made)}


def allowed(bin_dir: Path, *argv: str, temps=frozenset(), env=None) -> str:
    return allowed_command([str(bin_dir / argv[0]), *argv[1:]], env or {}, temps)


def refused(bin_dir: Path, *argv: str, temps=frozenset(), env=None) -> str:
    with pytest.raises(PermissionError) as e:
        allowed(bin_dir, *argv, temps=temps, env=env)
    assert e.value.errno == errno.EPERM
    assert e.value.strerror.startswith("refused by the host's restricted key: ")
    return e.value.strerror


def test_the_built_in_sources_commands_pass(bin_dir, temps):
    dump = f"{next(iter(temps))}/dump"
    commands = [
        ["psql", "-X", "-q", "-A", "-t", "-0", "-d", CONN, "-c", LIST],
        ["pg_dump", "--help"],
        ["pg_dump", "-Fp", "--create", "--restrict-key=abc123", "-d", CONN],
        ["pg_dump", "-Fp", "--create", "-d", CONN],
        ["pg_dump", "-Fd", "-Z0", "--no-sync", "-d", CONN, "-f", dump],
        ["pg_dump", "-Fd", "-Z0", "--no-sync", "--jobs=4", "-d", CONN, "-f", dump],
        ["pg_dumpall", "--globals-only", "--restrict-key=k", "-d", CONN, "-l", "postgres"],
        ["mysql", "--batch", "--skip-column-names", "--raw", "-e", "SHOW DATABASES"],
        ["mysqldump", *MYSQLDUMP, "--", "shop; DROP"],
        ["lvs", "--reportformat", "json", "-a", "-o", LVS_FIELDS, "--units", "b", "--nosuffix"],
        ["lvcreate", "-s", "-kn", "-ay", "-pr", "--addtag", "inkind", "-n", "inkind-v-data-1", "vg0/data"],
        ["lvcreate", "-s", "-pr", "--addtag", "inkind", "-n", "inkind-v-root-2", "-L", "2G", "vg0/root"],
        ["lvcreate", "-s", "-pr", "--addtag", "inkind", "-n", "inkind-v-r-2", "-l", "10%ORIGIN", "vg0/r"],
        ["lvremove", "-y", "vg0/inkind-v-data-1"],
        ["dmsetup", "message", "vg0-pool-tpool", "0", "reserve_metadata_snap"],
        ["dmsetup", "message", "my--vg-pool-tpool", "0", "release_metadata_snap"],
        ["thin_delta", "-m", "--snap1", "1", "--snap2", "7", "/dev/mapper/vg0-pool_tmeta"],
    ]
    for argv in commands:
        assert allowed(bin_dir, *argv, temps=temps) == str(bin_dir / argv[0])
    assert allowed(bin_dir, "pg_dump", "--help", env={"PGPASSFILE": "/root/.pgpass"})


@pytest.mark.parametrize(
    "argv, why",
    [
        (["sh", "-c", "id"], "'sh' is not a command of inkind's sources"),
        (["rm", "-rf", "/"], "'rm' is not a command"),
        (["psql", "-X", "-q", "-A", "-t", "-0", "-d", CONN, "-c", "COPY x TO PROGRAM 'id'"], "psql with"),
        (["psql", "-d", CONN, "-f", "/etc/passwd"], "psql with these arguments"),
        (["pg_dump", "-Fp", "--create", "-d", CONN, "-f", "/etc/cron.d/x"], "pg_dump with"),
        (["pg_dump", "-Fd", "-Z0", "--no-sync", "-d", CONN, "-f", "/etc/dump"], "pg_dump with"),
        (["pg_dump", "-Fp", "--create", "-d", CONN + " options='-c log_statement=all'"], "pg_dump with"),
        (["pg_dump", "-Fp", "--create", "-d", "service='x'"], "pg_dump with"),
        (["pg_dump", "-Fp", "--create", "-d", "dbname='host=evil'"], "pg_dump with"),
        (["pg_dumpall", "--globals-only", "-d", CONN, "-l", "postgres://evil/db"], "pg_dumpall with"),
        (["pg_dumpall", "--globals-only", "-d", CONN, "-l", "x", "-f", "/etc/x"], "pg_dumpall with"),
        (["mysql", "--batch", "--skip-column-names", "--raw", "-e", "SELECT 1 INTO OUTFILE '/x'"], "mysql"),
        (["mysqldump", "--tab=/etc", *MYSQLDUMP, "--", "shop"], "mysqldump with"),
        (["mysqldump", *MYSQLDUMP, "--result-file=/etc/x", "--", "shop"], "mysqldump with"),
        (["lvs", "--config", "global{}", "-a"], "lvs with"),
        (["lvcreate", "-s", "-pr", "--addtag", "inkind", "-n", "home", "vg0/root"], "lvcreate with"),
        (["lvcreate", "-s", "-pr", "--addtag", "other", "-n", "inkind-x", "vg0/root"], "lvcreate with"),
        (["lvcreate", "-L", "2G", "-n", "inkind-x", "vg0"], "lvcreate with"),
        (["lvremove", "-y", "vg0/root"], "lvremove with these arguments: -y vg0/root"),
        (["lvremove", "-y", "vg0"], "lvremove with"),
        (["dmsetup", "remove", "vg0-root"], "dmsetup with"),
        (["dmsetup", "message", "vg0-pool-tpool", "0", "delete 1"], "dmsetup with"),
        (["thin_delta", "-m", "--snap1", "1", "--snap2", "2", "/dev/x", "-o", "/etc/x"], "thin_delta"),
        (["thin_delta", "-m", "--snap1", "1", "--snap2", "x", "/dev/x"], "thin_delta with"),
    ],
)
def test_other_commands_and_arguments_are_refused(bin_dir, temps, argv, why):
    assert why in refused(bin_dir, *argv, temps=temps)


def test_a_dump_directory_must_be_new_and_in_a_temp_of_this_run(bin_dir, temps, tmp_path):
    made = next(iter(temps))
    pg = ["pg_dump", "-Fd", "-Z0", "--no-sync", "-d", CONN, "-f"]
    refused(bin_dir, *pg, f"{tmp_path}/.inkind-dump-other/dump", temps=temps)  # not made by this run
    refused(bin_dir, *pg, f"{made}/elsewhere", temps=temps)
    os.mkdir(f"{made}/dump")  # there already: pg_dump would write into what it did not make
    refused(bin_dir, *pg, f"{made}/dump", temps=temps)


def test_lvremove_removes_only_a_snapshot_lvs_lists_with_inkinds_tag(bin_dir, monkeypatch):
    """The name alone could be the host's own volume: lvs, run by the remote
    side itself, must list it as a snapshot tagged inkind."""
    monkeypatch.setenv("PATH", str(bin_dir))
    assert allowed(bin_dir, "lvremove", "-y", "vg0/inkind-a-b-1")
    for name, why in [
        ("inkind-mine", "not a snapshot with inkind's tag"),
        ("inkind-plain", "not a snapshot with inkind's tag"),
        ("inkind-gone", "not a snapshot with inkind's tag"),
    ]:
        assert refused(bin_dir, "lvremove", "-y", f"vg0/{name}").endswith(f"lvremove vg0/{name}: {why}")
    (bin_dir / "lvs").write_text("#!/bin/sh\nprintf '%s' '{\"report\": []}'\n")
    assert refused(bin_dir, "lvremove", "-y", "vg0/inkind-a-b-1").endswith("lvs did not list the volumes")


def test_an_added_environment_variable_is_refused_but_the_passfile(bin_dir):
    why = refused(bin_dir, "pg_dump", "--help", env={"PGPASSFILE": "/p", "LD_PRELOAD": "/tmp/x.so"})
    assert why.endswith("pg_dump: environment LD_PRELOAD")


def test_a_program_another_user_can_change_is_refused(bin_dir, tmp_path):
    bin_dir.chmod(0o777)  # anyone may put another pg_dump there
    why = refused(bin_dir, "pg_dump", "--help")
    assert why.endswith(
        f"{bin_dir}/pg_dump: it or a directory above it can be changed by a user other than root"
    )
    bin_dir.chmod(0o1777)  # sticky: nobody else may replace what is ours in it
    assert allowed(bin_dir, "pg_dump", "--help")
    (bin_dir / "pg_dump").chmod(0o775)
    refused(bin_dir, "pg_dump", "--help")


def test_a_program_is_found_on_path_and_checked_there(bin_dir, monkeypatch):
    monkeypatch.setenv("PATH", str(bin_dir))
    assert allowed_command(["lvremove", "-y", "vg0/inkind-a-b-1"], {}, set()) == str(bin_dir / "lvremove")
    (bin_dir / "lvremove").unlink()
    with pytest.raises(FileNotFoundError):
        allowed_command(["lvremove", "-y", "vg0/inkind-a-b-1"], {}, set())


@pytest.mark.root
def test_a_file_owned_by_another_user_is_not_trusted(bin_dir, trusted_dir):
    os.chown(bin_dir / "mysql", 65534, 65534)
    refused(bin_dir, "mysql", "--batch", "--skip-column-names", "--raw", "-e", "SHOW DATABASES")
    option_file = trusted_dir / "my.cnf"
    option_file.write_text("[client]\n")
    argv = [str(bin_dir / "mysqldump"), f"--defaults-file={option_file}", *MYSQLDUMP, "--", "shop"]
    assert allowed_command(argv, {}, set())
    os.chown(option_file, 65534, 65534)  # its plugin-dir and default-auth would load that user's code
    with pytest.raises(PermissionError, match=f"{option_file}: it or a directory above it can be changed"):
        allowed_command(argv, {}, set())


def mysqldump_with(bin_dir: Path, option_file: Path) -> list[str]:
    return [str(bin_dir / "mysqldump"), f"--defaults-file={option_file}", *MYSQLDUMP, "--", "shop"]


def test_a_program_or_option_file_in_a_temp_is_refused(bin_dir, trusted_dir, tmp_path, monkeypatch):
    """A root-owned file in a temp may be one the server had pg_dump write
    (its result-file= would write anywhere): refused, however reached."""
    in_tmp = tmp_path / "my.cnf"  # pytest's tmp_path is in /tmp
    in_tmp.write_text("[client]\n")
    with pytest.raises(PermissionError, match=f"{in_tmp}: in a temp directory, where the server may"):
        allowed_command(mysqldump_with(bin_dir, in_tmp), {}, set())
    os.symlink(in_tmp, trusted_dir / "link.cnf")  # a trusted name for it
    with pytest.raises(PermissionError, match=r"link\.cnf: in a temp directory"):
        allowed_command(mysqldump_with(bin_dir, trusted_dir / "link.cnf"), {}, set())
    own = trusted_dir / "my.cnf"
    own.write_text("[client]\n")
    assert allowed_command(mysqldump_with(bin_dir, own), {}, set())
    monkeypatch.setenv("TMPDIR", str(trusted_dir))  # the remote side's temps go here now
    with pytest.raises(PermissionError, match=r"my\.cnf: in a temp directory"):
        allowed_command(mysqldump_with(bin_dir, own), {}, set())
    with pytest.raises(PermissionError, match="pg_dump: in a temp directory"):
        allowed(bin_dir, "pg_dump", "--help")


def test_a_symlink_is_trusted_only_where_nobody_else_can_swap_it(bin_dir, trusted_dir):
    """Every entry met resolving the path is checked, the symlinks' own
    directories too; the program runs by the name given (Debian's
    pg_wrapper picks the tool by it)."""
    links = trusted_dir / "links"
    links.mkdir()
    os.symlink(bin_dir / "pg_dump", links / "pg_dump")
    argv = [str(links / "pg_dump"), "--help"]
    assert allowed_command(argv, {}, set()) == str(links / "pg_dump")
    links.chmod(0o777)  # anyone may swap the link after the check, before the exec
    with pytest.raises(PermissionError, match="links/pg_dump: it or a directory above it can be changed"):
        allowed_command(argv, {}, set())
    links.chmod(0o755)
    os.symlink("bin", trusted_dir / "usr-bin")  # a symlinked directory on the way, as /bin on Debian
    via = [str(trusted_dir / "usr-bin" / "pg_dump"), "--help"]
    assert allowed_command(via, {}, set()) == via[0]
    bin_dir.chmod(0o757)
    with pytest.raises(PermissionError, match="usr-bin/pg_dump: it or a directory above"):
        allowed_command(via, {}, set())


@pytest.mark.root
def test_another_users_symlink_in_a_sticky_directory_is_not_trusted(bin_dir, trusted_dir):
    """She cannot remove ours there, but she may rename her own link over
    to another target between the check and the exec."""
    shared = trusted_dir / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    os.symlink(bin_dir / "mysql", shared / "mysql")
    argv = [str(shared / "mysql"), "--batch", "--skip-column-names", "--raw", "-e", "SHOW DATABASES"]
    assert allowed_command(argv, {}, set())
    os.lchown(shared / "mysql", 65534, 65534)
    with pytest.raises(PermissionError, match="shared/mysql: it or a directory above it can be changed"):
        allowed_command(argv, {}, set())


def test_an_option_file_on_proc_is_refused(bin_dir, trusted_dir):
    """/proc/self is the command itself when it opens the path: its
    environment (PGPASSFILE is the server's to set) would be its options."""
    for path in ("/proc/self/environ", "/proc/self/cmdline", "/proc/1/root/etc/mysql/my.cnf"):
        with pytest.raises(PermissionError, match=f"{path}: on /proc"):
            allowed_command(mysqldump_with(bin_dir, Path(path)), {}, set())
    os.symlink("/proc/self/environ", trusted_dir / "my.cnf")  # reached through a trusted name
    with pytest.raises(PermissionError, match=r"my\.cnf: it or a directory above it can be changed"):
        allowed_command(mysqldump_with(bin_dir, trusted_dir / "my.cnf"), {}, set())


def test_trusted_follows_symlinks_and_checks_every_directory_above(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    target = tmp_path / "a" / "b" / "prog"
    target.write_text("x")
    os.symlink(target, tmp_path / "link")
    os.symlink("a/b", tmp_path / "dirlink")
    assert trusted(str(tmp_path / "link"))
    assert trusted(str(tmp_path / "dirlink" / ".." / "b" / "prog"))  # ".." of the target, as the kernel
    assert not trusted(str(tmp_path / "dirlink" / ".." / "prog"))
    (tmp_path / "a").chmod(0o757)
    assert not trusted(str(tmp_path / "link"))
    assert not trusted(str(tmp_path / "missing"))
    os.symlink("loop", tmp_path / "loop")
    assert not trusted(str(tmp_path / "loop"))
    assert stat.S_IMODE(os.stat("/").st_mode) & 0o022 == 0


def test_conninfo_parses_the_quoted_form_the_postgres_source_renders():
    assert conninfo("host='/run/postgresql' user='o\\'brien' dbname='a b'")
    assert conninfo("")
    assert not conninfo("host=/run/postgresql")  # unquoted: not what the source renders
    assert not conninfo("host='x' password='secret' sslkeylogfile='/etc/x'")
    assert not conninfo("host='x' sslmode='require' sslkey='/var/tmp/.inkind-dump-x/dump/blob_1.dat:k'")
    assert not conninfo("host='x' dbname='postgresql://evil'")


def test_temps_go_to_the_temp_root_only(tmp_path):
    assert allowed_directory(None, str(tmp_path)) == str(tmp_path)
    assert allowed_directory(str(tmp_path) + "/", str(tmp_path)) == str(tmp_path)
    with pytest.raises(PermissionError, match=r"a temp in /etc \(only in "):
        allowed_directory("/etc", str(tmp_path))
