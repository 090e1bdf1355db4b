"""``inkind systemd``: the service and timer units for the loaded config.

The units are hardened with ``ProtectSystem=strict``: a run may write only
the paths in ``ReadWritePaths``. A unit copied by hand goes stale the day the
store, its snapshot folder or a plugin's output moves, and every run then
fails with "Read-only file system"; so the paths come from the config: the
store, the snapshot folder as the snapshot provider resolves it, and what
each plugin says it writes (the ``inkind_write_paths`` hook).
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import click

import inkind
from inkind.config import Config
from inkind.errors import ConfigError
from inkind.history.folders import provider_for
from inkind.plugins import Plugins


@dataclass(frozen=True)
class Unit:
    name: str
    text: str


def inkind_command() -> list[str]:
    """How systemd starts this same inkind: its console script when it runs
    as one or has one beside its interpreter (a venv), else ``python -m``."""
    for script in (Path(sys.argv[0]), Path(sys.executable).with_name("inkind")):
        if script.name == "inkind" and os.access(script, os.X_OK):
            return [os.path.abspath(script)]
    return [os.path.abspath(sys.executable), "-m", "inkind"]


def write_paths(config: Config, plugins: Plugins) -> list[Path]:
    """Every path a run writes: the store, the snapshot provider's paths and
    each plugin's; one entry per tree (a path inside another is dropped)."""
    found = [config.store.path, *provider_for(config.store, plugins.providers).write_paths()]
    plugins.configure(config)
    for paths in plugins.call("inkind_write_paths", config=config):
        found += paths or []
    unique = sorted({Path(os.path.abspath(p)) for p in found})
    return [p for p in unique if not any(p != q and p.is_relative_to(q) for q in unique)]


def word(text: str, *, command: bool = False) -> str:
    """One word as systemd reads it back: ``%`` doubled (a specifier), and
    in a command line ``$`` too (a variable); quoted when it holds a blank,
    a quote or a backslash."""
    text = text.replace("%", "%%")
    if command:
        text = text.replace("$", "$$")
    if any(c in text for c in " \t\"'\\"):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def instance(name: str) -> str:
    """A source name as a unit's instance name, escaped as ``systemd-escape`` does."""
    keep = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_."
    return "".join(c if c in keep else "".join(f"\\x{b:02x}" for b in c.encode()) for c in name)


def docs_uri() -> str | None:
    """operations.md of the checkout inkind runs from, when there is one."""
    page = Path(inkind.__file__).resolve().parents[2] / "docs" / "operations.md"
    return page.as_uri() if page.is_file() else None


def units(config: Config, plugins: Plugins, source: str | None) -> list[Unit]:
    """The service and its timer: for every source, or for ``source`` only."""
    if source is not None and source not in config.sources:
        known = ", ".join(config.sources) or "none"
        raise ConfigError(f"no source named '{source}' in {config.path} (known: {known})")
    conf = os.path.abspath(config.path)
    header = (
        f"# Made by `inkind systemd` from {conf}: make it again after changing\n"
        "# the store, its snapshot folder, the plugins or their tables.\n"
    )
    what = "all sources" if source is None else f"source {source}"
    argv = [*inkind_command(), "-q", "-c", conf, "backup", *([source] if source else [])]
    mounts = [config.store.path, *provider_for(config.store, plugins.providers).write_paths()]
    service = service_text(what, argv, mounts, write_paths(config, plugins))
    stem = "inkind" if source is None else f"inkind@{instance(source)}"
    return [
        Unit(f"{stem}.service", header + service),
        Unit(f"{stem}.timer", header + TIMER.format(what=what)),
    ]


# Hardening that still lets a backup read everything; after ReadWritePaths.
HARDENING = """ProtectHome=read-only
PrivateTmp=true
PrivateNetwork=false
NoNewPrivileges=true
ProtectKernelTunables=true
ProtectKernelModules=true
ProtectControlGroups=true
ProtectClock=true
ProtectHostname=true
RestrictRealtime=true
RestrictSUIDSGID=true
LockPersonality=true
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
SystemCallArchitectures=native
# Reading as root needs these; nothing else.
CapabilityBoundingSet=CAP_DAC_READ_SEARCH CAP_DAC_OVERRIDE CAP_FOWNER CAP_CHOWN CAP_MKNOD CAP_SYS_ADMIN CAP_FSETID
# CAP_SYS_ADMIN: trusted.* xattrs, loop devices and snapshots (btrfs, LVM).
# Device nodes for image and lvm sources:
PrivateDevices=false
"""

TIMER = """# Daily at a random time within two hours after 02:00 (a fleet does not
# hit shared storage at once), caught up at boot when the machine was off.
[Unit]
Description=Daily inkind backup of {what}

[Timer]
OnCalendar=*-*-* 02:00:00
RandomizedDelaySec=2h
Persistent=true
AccuracySec=1min

[Install]
WantedBy=timers.target
"""


def service_text(what: str, argv: list[str], mounts: list[Path], writes: list[Path]) -> str:
    """The service unit below its header: run ``argv`` once the store's
    disk (``mounts``) is mounted, writing only ``writes``."""
    docs = docs_uri()
    documentation = f"Documentation={docs}\n" if docs else ""
    return f"""[Unit]
Description=inkind backup of {what}
{documentation}Wants=network-online.target
After=network-online.target local-fs.target
# The store's disk must be mounted first.
RequiresMountsFor={" ".join(word(str(p)) for p in mounts)}

[Service]
Type=oneshot
ExecStart={" ".join(word(a, command=True) for a in argv)}
# Exit 1 means "finished with warnings" (a file vanished or was unreadable,
# its previous copy kept): not a unit failure. Exit 2 is.
SuccessExitStatus=1
# Stop on SIGTERM: inkind records where it stopped; the next run continues.
KillMode=mixed
TimeoutStopSec=60
Nice=10
IOSchedulingClass=idle
CPUSchedulingPolicy=batch

# Hardening that still lets a backup read everything. A run writes the store,
# its snapshot folder and what the plugins name (the metrics textfile's
# directory), nothing else. Root is needed to read all files and keep owners,
# device nodes and ACLs.
ProtectSystem=strict
ReadWritePaths={" ".join(word(str(p)) for p in writes)}
{HARDENING}"""


def install(made: list[Unit], directory: Path, force: bool) -> None:
    """Write each unit into ``directory`` atomically (temp, fsync, rename).
    A file there that differs is replaced only with ``force``; without it
    nothing is written, so a hand-edited unit is never lost."""
    if not directory.is_dir():
        raise ConfigError(f"systemd: --output {directory}: not a directory")
    differ = [
        directory / u.name
        for u in made
        if (directory / u.name).exists() and (directory / u.name).read_text() != u.text
    ]
    if differ and not force:
        raise ConfigError(
            f"systemd: {differ[0]} exists and differs (see the difference, then --force replaces it)"
        )
    for u in made:
        target = directory / u.name
        if target.exists() and target not in differ:
            click.echo(f"{target}: unchanged")
            continue
        fd, tmp = tempfile.mkstemp(prefix=f".{u.name}.", dir=directory)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(u.text)
                f.flush()
                os.fchmod(f.fileno(), 0o644)
                os.fsync(f.fileno())
            os.rename(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        click.echo(f"{target}: {'replaced' if target in differ else 'written'}")
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@click.command("systemd")
@click.option("--source", metavar="NAME", help="A unit for this source only (inkind@NAME.service).")
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Write the units into DIR (e.g. /etc/systemd/system) instead of printing them.",
)
@click.option("--force", is_flag=True, help="With --output: replace a unit file that differs.")
@click.pass_obj
def command(env, source, output, force):
    """Print the systemd service and timer for this config.

    ExecStart runs this inkind with this config; ReadWritePaths lists the
    store, its snapshot folder and what plugins write (the metrics
    textfile's directory). Exit 1 when one of those paths does not exist
    yet: systemd refuses to start a unit until every one does.
    """
    made = units(env.config, env.plugins, source)
    if output is None:
        click.echo("\n".join(f"==> {u.name} <==\n{u.text}" for u in made), nl=False)
    else:
        install(made, output, force)
    missing = [p for p in write_paths(env.config, env.plugins) if not p.exists()]
    for p in missing:
        click.echo(
            f"inkind: warning: ReadWritePaths: {p} does not exist yet, and systemd does not start the "
            f"unit until it does: make it first (install -d -m 700 {p})",
            err=True,
        )
    sys.exit(1 if missing else 0)
