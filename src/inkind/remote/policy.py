"""What a restricted remote side lets the server do beyond reading.

A restricted remote side is one started by a forced command in the host's
authorized_keys (``inkind authorized-key`` prints the line; the bootstrap
runs only a remote side of the digest the line pins). It serves every
reading op as usual, and refuses what could change the host unless it is
one of the built-in sources' own commands with the arguments those
sources give it: a server that was taken over can still read what the key
reads, and cannot write a file, run a program of its choosing or remove
a volume that is not one of inkind's snapshots.

The commands are matched against patterns (tokens: a literal, a check
on one argument, or an optional group); a program must be one of those
named and live where only root or the login user can change it. The
patterns say what the built-in sources run; tests run each of those
sources through a restricted key, so a change to one of them that the
patterns do not allow fails there.

Sent to the host as part of the remote side: standard library only and
Python 3.9 syntax.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import subprocess


class Maybe:
    """Tokens that may be left out as a group (``-L 2G``)."""

    def __init__(self, *tokens) -> None:
        self.tokens = tokens


def refuse(why: str) -> PermissionError:
    return PermissionError(errno.EPERM, f"refused by the host's restricted key: {why}")


def fullmatch(pattern: str):
    """A token: the argument matches ``pattern`` whole."""
    compiled = re.compile(pattern)
    return lambda arg, temps: compiled.fullmatch(arg) is not None


# libpq keywords a restricted key passes on: where and as whom to connect,
# how to check the server. Left out: ``options`` (server settings such as
# session_preload_libraries), ``service``/``servicefile`` (options read
# from a file), any keyword that makes libpq write a file, and the TLS
# file keywords: ``sslkey`` takes ``engine:key``, and OpenSSL loads the
# engine as a library (a file the server had pg_dump write would do).
CONNINFO_KEYWORDS = {
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "passfile",
    "connect_timeout",
    "application_name",
    "sslmode",
    "gssencmode",
    "krbsrvname",
    "target_session_attrs",
}
_CONNINFO_PAIR = re.compile(r"\s*([a-z_]+)='((?:[^'\\]|\\.)*)'")


def plain_database(name: str, temps=None) -> bool:
    """A database name that libpq cannot take for a connection string."""
    return "=" not in name and not name.startswith(("postgresql:", "postgres:"))


def conninfo(arg: str, temps=None) -> bool:
    """A keyword/value string as the postgres source renders it (every
    value quoted), of CONNINFO_KEYWORDS only, its dbname a plain name."""
    pos, seen = 0, {}
    while pos < len(arg):
        m = _CONNINFO_PAIR.match(arg, pos)
        if m is None:
            return False
        seen[m.group(1)] = re.sub(r"\\(.)", r"\1", m.group(2))
        pos = m.end()
    return set(seen) <= CONNINFO_KEYWORDS and plain_database(seen.get("dbname", ""))


def any_argument(arg: str, temps=None) -> bool:
    return True


def dump_target(arg: str, temps) -> bool:
    """``dump`` in a temp directory this remote side made (pg_dump -Fd)."""
    parent, name = os.path.split(arg)
    return name == "dump" and parent in temps and not os.path.lexists(arg)


def owned_option(prefix: str):
    """A token: ``prefix`` then the path of a file that only root or this
    user can change and that is not in a temp directory (an option file
    names client plugins to load and files to write)."""

    def check(arg: str, temps) -> bool:
        if not arg.startswith(prefix):
            return False
        checked_file(arg[len(prefix) :])
        return True

    return check


LVM_NAME = r"[A-Za-z0-9+_.][A-Za-z0-9+_.-]*"
VOLUME = fullmatch(f"{LVM_NAME}/{LVM_NAME}")
SNAPSHOT = fullmatch(r"inkind-[A-Za-z0-9+_.-]+")
INTEGER = fullmatch(r"[0-9]+")
RESTRICT_KEY = fullmatch(r"--restrict-key=[A-Za-z0-9]+")
DEFAULTS_FILE = owned_option("--defaults-file=")

# The commands of the built-in sources (postgres, mysql, lvm), each as the
# source builds it: keep in step with them.
# fmt: off
COMMANDS = {
    "psql": [
        [
            "-X", "-q", "-A", "-t", "-0", "-d", conninfo, "-c",
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname",
        ],
    ],
    "pg_dump": [
        ["--help"],
        ["-Fp", "--create", Maybe(RESTRICT_KEY), "-d", conninfo],
        ["-Fd", "-Z0", "--no-sync", Maybe(fullmatch(r"--jobs=[0-9]+")), "-d", conninfo, "-f", dump_target],
    ],
    "pg_dumpall": [
        ["--help"],
        ["--globals-only", Maybe(RESTRICT_KEY), "-d", conninfo, "-l", plain_database],
    ],
    "mysql": [
        [Maybe(DEFAULTS_FILE), "--batch", "--skip-column-names", "--raw", "-e", "SHOW DATABASES"],
    ],
    "mysqldump": [
        [
            Maybe(DEFAULTS_FILE), "--single-transaction", "--routines", "--events", "--triggers",
            "--skip-dump-date", "--order-by-primary", "--hex-blob", "--", any_argument,
        ],
    ],
    "lvs": [
        [
            "--reportformat", "json", "-a", "-o",
            "vg_name,lv_name,lv_attr,lv_size,pool_lv,thin_id,lv_uuid,lv_path,lv_dm_path,origin,lv_tags,"
            "chunk_size,metadata_lv,data_percent",
            "--units", "b", "--nosuffix",
        ],
    ],
    "lvcreate": [
        [
            "-s", Maybe("-kn", "-ay"), "-pr", "--addtag", "inkind", "-n", SNAPSHOT,
            Maybe("-l", fullmatch(r"[0-9]+%(ORIGIN|VG|FREE|PVS)")),
            Maybe("-L", fullmatch(r"[0-9]+(\.[0-9]+)?[bBsSkKmMgGtTpPeE]?")),
            VOLUME,
        ],
    ],
    "lvremove": [["-y", fullmatch(f"{LVM_NAME}/inkind-[A-Za-z0-9+_.-]+")]],
    "dmsetup": [
        ["message", fullmatch(r"[A-Za-z0-9+_.-]+-tpool"), "0", fullmatch(r"(reserve|release)_metadata_snap")],
    ],
    # thin_delta only reads: the pool's metadata device, wherever lvs says it is
    "thin_delta": [["-m", "--snap1", INTEGER, "--snap2", INTEGER, fullmatch(r"/.+")]],
}
# fmt: on

# What a command's environment may gain: the postgres source's passfile.
ENVIRONMENT = {"PGPASSFILE"}


def matches(tokens, args, temps) -> bool:
    """Whether ``args`` is what ``tokens`` describe (optional groups
    tried in, then out)."""
    if not tokens:
        return not args
    first, rest = tokens[0], tokens[1:]
    if isinstance(first, Maybe):
        return matches(list(first.tokens) + list(rest), args, temps) or matches(rest, args, temps)
    if not args:
        return False
    ok = first == args[0] if isinstance(first, str) else first(args[0], temps)
    return ok and matches(rest, args[1:], temps)


def temp_root() -> str:
    """Where the host's temps go unless a request says: its TMPDIR (as
    the environment the remote side runs in has it), else /var/tmp (on
    disk, unlike a /tmp that may be memory: a database copy can be large)."""
    return os.environ.get("TMPDIR") or "/var/tmp"


# Where a file may be one the server had written: the remote side's temps
# (pg_dump -Fd output, SQLite copies) and the places anyone may write to.
TEMP_ROOTS = ("/tmp", "/var/tmp", "/dev/shm")


def in_temp(path: str) -> bool:
    """Whether ``path`` (symlinks resolved) is in a temp directory."""
    real = os.path.realpath(path)
    for root in {os.path.realpath(r) for r in (*TEMP_ROOTS, temp_root())}:
        if real == root or real.startswith(root.rstrip("/") + "/"):
            return True
    return False


def trusted(path: str, depth: int = 0) -> bool:
    """Whether only root or this user can change what ``path`` is: every
    entry met resolving it, each symlink and its directory and its
    target's included, is owned by one of them, and no directory among
    them can be written by anyone else unless it is sticky (nobody else
    can rename or remove what is ours in it). What was checked is then
    what runs, by the name given: a wrapper such as Debian's pg_wrapper
    reads it."""
    if depth > 40:  # as the kernel's ELOOP
        return False
    parts = os.path.join(os.getcwd(), path).split("/")[1:]  # ".." is taken after resolving
    current = "/"
    if not _unchangeable(current):
        return False
    proc = os.stat("/proc").st_dev  # what an entry there is depends on who looks
    for i, part in enumerate(parts):
        if part in ("", "."):
            continue
        if part == "..":
            current = os.path.dirname(current)
            continue
        entry = os.path.join(current, part)
        try:
            st = os.lstat(entry)
            link = os.readlink(entry) if stat.S_ISLNK(st.st_mode) else None
        except OSError:
            return False
        if st.st_dev == proc:
            return False
        if link is not None:  # another user may swap her own link, even in a sticky directory
            return st.st_uid in {0, os.geteuid()} and trusted(
                os.path.join(current, link, "/".join(parts[i + 1 :])), depth + 1
            )
        if not _unchangeable(entry, st):
            return False
        current = entry
    return True


def _unchangeable(path: str, st=None) -> bool:
    """``path`` is owned by root or this user and nobody else may write it
    (a sticky directory excepted)."""
    try:
        st = st or os.lstat(path)
    except OSError:
        return False
    writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    sticky = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
    return st.st_uid in {0, os.geteuid()} and not (writable and not sticky)


def checked_file(path: str) -> None:
    """Refuse a program or option file the server could have had written,
    that another user can change, or on procfs (``/proc/self`` is the
    command itself when it opens the path: its environment, say)."""
    if os.path.abspath(path).startswith("/proc/"):  # a symlink there: trusted() stops at /proc
        raise refuse(f"{path[:300]}: on /proc")
    if in_temp(path):
        raise refuse(f"{path[:300]}: in a temp directory, where the server may have had it written")
    if not trusted(path):
        raise refuse(f"{path[:300]}: it or a directory above it can be changed by a user other than root")


def allowed_command(argv: list[str], env: dict, temps) -> str:
    """The program to run for ``argv`` (its checked path), or
    PermissionError saying what the restricted key refuses."""
    name = os.path.basename(argv[0])
    if name not in COMMANDS:
        raise refuse(f"{name[:100]!r} is not a command of inkind's sources")
    extra = sorted(set(env) - ENVIRONMENT)
    if extra:
        raise refuse(f"{name}: environment {', '.join(extra)[:200]}")
    if not any(matches(p, argv[1:], temps) for p in COMMANDS[name]):
        raise refuse(f"{name} with these arguments: {' '.join(argv[1:])[:300]}")
    program = argv[0] if "/" in argv[0] else shutil.which(argv[0])
    if program is None:
        raise FileNotFoundError(errno.ENOENT, f"{argv[0]}: not found")
    checked_file(program)
    if name == "lvremove":
        inkind_snapshot(os.path.join(os.path.dirname(program), "lvs"), argv[-1])
    return program


def inkind_snapshot(lvs: str, volume: str) -> None:
    """Refuse to remove ``VG/LV`` unless ``lvs`` (the one beside lvremove,
    listing as the lvm source does, run here) says it is a snapshot with
    inkind's tag: a name alone could be one of the host's own volumes."""
    argv = [lvs, *COMMANDS["lvs"][0]]
    program = allowed_command(argv, {}, ())
    try:
        done = subprocess.run(
            argv, executable=program, stdin=subprocess.DEVNULL, capture_output=True, timeout=300, check=True
        )
        rows = json.loads(done.stdout)["report"][0]["lv"]
    except (OSError, subprocess.SubprocessError, ValueError, LookupError, TypeError):
        raise refuse(f"lvremove {volume}: lvs did not list the volumes") from None
    vg, lv = volume.split("/")
    for row in rows:
        named = isinstance(row, dict) and (row.get("vg_name"), row.get("lv_name")) == (vg, lv)
        if named and "inkind" in str(row.get("lv_tags", "")).split(",") and row.get("origin"):
            return
    raise refuse(f"lvremove {volume}: not a snapshot with inkind's tag")


def allowed_directory(directory, default: str) -> str:
    """Where a temp may go: ``default`` (the host's TMPDIR or /var/tmp);
    a restricted key writes nowhere else."""
    if directory is not None and os.path.realpath(directory) != os.path.realpath(default):
        raise refuse(f"a temp in {str(directory)[:300]} (only in {default})")
    return default
