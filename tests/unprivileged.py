"""Running the inkind CLI as an unprivileged user from a suite that runs as root.

The user cannot be handed ``sys.executable``: a clone in /root (mode 0700)
puts the venv and the checkout out of its reach, and so does an interpreter
installed under /root/.pyenv. Once per session, everything ``python -m
inkind`` loads is laid out under one 0755 directory: the interpreter's
installation (executable, libpython, standard library), the venv's
site-packages (dependencies, and the dist-info whose entry points name the
plugins), and the packages an editable install maps from the checkout.
Files are hard-linked where the filesystem allows (no space, no time), else
copied. Nothing the user owns or can see changes permissions.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

from inkind.testing import BackupCall, verify_clean

NOBODY = 65534  # nobody:nogroup on Debian; the tests chown their trees to it
# Parts of an installation the CLI never imports (the base's own site-packages
# is the pyenv's, not the venv's).
SKIP = shutil.ignore_patterns("site-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip")


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, symlinks=True, ignore=SKIP, copy_function=_link_or_copy)
    else:
        _link_or_copy(str(src), str(dst))


def _project_packages() -> list[Path]:
    """Where inkind and every plugin registered in the "inkind" entry-point
    group are imported from, when not from a site-packages directory (an
    editable install maps them into the checkout)."""
    names = {"inkind"} | {ep.value.split(":")[0].split(".")[0] for ep in entry_points(group="inkind")}
    found = []
    for name in sorted(names):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        where = Path(spec.origin).parent if spec.submodule_search_locations else Path(spec.origin)
        if not any(where.is_relative_to(p) for p in site.getsitepackages()):
            found.append(where)
    return found


@dataclass
class Unprivileged:
    """The inkind CLI as uid/gid 65534 with no supplementary groups,
    from an interpreter and packages that user can read."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def python(self) -> Path:
        return self.root / "python" / "bin" / Path(sys.executable).resolve().name

    @classmethod
    def build(cls) -> Unprivileged:
        root = Path(tempfile.mkdtemp(prefix="inkind-unprivileged-"))
        root.chmod(0o755)
        home = root / "python"
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        _copy(Path(sys.executable).resolve(), home / "bin" / Path(sys.executable).resolve().name)
        _copy(Path(sysconfig.get_path("stdlib")), home / "lib" / version)
        if sysconfig.get_config_var("Py_ENABLE_SHARED"):
            libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
            _copy(Path(libdir) / soname, home / "lib" / soname)
        for i, packages in enumerate(site.getsitepackages()):
            if Path(packages).is_dir():
                _copy(Path(packages), root / f"site{i}")
        for package in _project_packages():
            _copy(package, root / "src" / package.name)
        sites = sorted(str(p) for p in root.glob("site*"))
        env = {
            "PYTHONHOME": str(home),
            "PYTHONPATH": os.pathsep.join([str(root / "src"), *sites]),
            "LD_LIBRARY_PATH": str(home / "lib"),  # before the RUNPATH a pyenv build records
            "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        made = cls(root, env)
        probe = made.inkind(["plugins"], cwd=root)
        if probe.returncode != 0 or probe.stderr:
            raise RuntimeError(f"inkind as uid {NOBODY} from {root} does not start: {probe.stderr.strip()}")
        return made

    def argv(self, args: list) -> list[str]:
        drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        # verify-after: inkind() below verifies a finished backup
        return [*drop, str(self.python), "-m", "inkind", *map(str, args)]

    def inkind(self, args: list, cwd: Path) -> subprocess.CompletedProcess:
        """Run ``inkind ARGS`` as the unprivileged user in ``cwd``; a
        finished backup is verified clean after it (by root, which reads the
        fake-super store as well), as inkind_cli does."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.pop("VIRTUAL_ENV", None)
        p = subprocess.run(self.argv(args), capture_output=True, text=True, cwd=cwd, env={**env, **self.env})
        call = BackupCall.parse([str(a) for a in args], {})
        if call and call.config and not call.dry_run and p.returncode in (0, 1):
            verify_clean(Path(cwd, call.config), call.names)
        return p

    def remove(self) -> None:
        shutil.rmtree(self.root)
