"""docs/restore.md as the tests see it: its marked blocks, its example
paths mapped onto a test's own, and the blocks run as a sysadmin would
paste them."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from itertools import takewhile
from pathlib import Path

from inkind.store.xattrs import ACL_ALIAS_FILTER
from inkind.testing import toml_value

PAGE = Path(__file__).parents[2] / "docs" / "restore.md"
BLOCK = re.compile(r"^<!-- test: (\S+) -->\n```(\w+)\n(.*?)^```$", re.M | re.S)
FENCE = re.compile(r"^```", re.M)
PRINTS = re.compile(r"^# (inkind .+?) prints\b")
# Every example path of the page: a block still naming one after the
# mapping would act on this machine's real /home or /dev/sdX.
EXAMPLES = ("/srv/", "/home", "/dev/sd", "/dev/vg0", "/var/lib/", "/etc/inkind", "/root/", "/run/")


def blocks() -> dict[str, str]:
    """Each ``<!-- test: NAME -->`` block's text; every fence is marked."""
    text = PAGE.read_text()
    found = {m.group(1): m.group(3) for m in BLOCK.finditer(text)}
    assert len(FENCE.findall(text)) == 2 * len(BLOCK.findall(text)), "a block of restore.md is not marked"
    return found


@dataclass
class Page:
    """The page's examples on a test's paths: ``paths`` maps each example
    path (or DSN part, snapshot id) of the page to the test's."""

    tmp: Path
    paths: dict[str, str] = field(default_factory=dict)

    def map(self, text: str) -> str:
        keys = sorted(self.paths, key=len, reverse=True)
        pattern = re.compile(r"(?<![\w./-])(" + "|".join(map(re.escape, keys)) + r")(?![\w.-])")
        out = pattern.sub(lambda m: self.paths[m.group(1)], text)
        left = [e for e in EXAMPLES if re.search(r"(?<![\w./-])" + re.escape(e), out)]
        assert not left, f"restore.md example paths {left} not mapped in:\n{out}"
        return out

    def config(self, *sources: str) -> Path:
        """The page's own config with the given sources only."""
        data = tomllib.loads(blocks()["config"])
        lines = ["[store]", *(f"{k} = {toml_value(v)}" for k, v in data["store"].items())]
        lines += ["", "[defaults]", "full_probability = 0.0", "scrub_fraction = 0.0"]
        for name in sources:
            lines += ["", f"[sources.{name}]"]
            lines += [f"{k} = {toml_value(v)}" for k, v in data["sources"][name].items()]
        path = self.tmp / "inkind.toml"
        path.write_text(self.map("\n".join(lines) + "\n"))
        return path

    @property
    def env(self) -> dict[str, str]:
        """``inkind`` on PATH (this interpreter's) and the config found
        without -c, as on a server with /etc/inkind/inkind.toml."""
        bin_dir = self.tmp / "bin"
        if not bin_dir.is_dir():
            bin_dir.mkdir()
            wrapper = bin_dir / "inkind"
            # verify-after: the page's blocks run `inkind verify` themselves
            wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m inkind "$@"\n')
            wrapper.chmod(0o755)
        path = os.pathsep.join([str(bin_dir), os.environ["PATH"]])
        return {**os.environ, "PATH": path, "INKIND_CONFIG": str(self.tmp / "inkind.toml")}

    def run(self, name: str) -> str:
        """Check each ``# inkind ... prints`` comment of block ``name``
        against what inkind prints, then run the block with bash; its
        stdout."""
        text = self.map(blocks()[name])
        lines = text.splitlines()
        for i, line in enumerate(lines):
            m = PRINTS.match(line)
            if m:
                expected = list(takewhile(lambda s: s and not s.startswith("#"), lines[i + 1 :]))
                # verify-after: these are the page's `inkind restore` lines, not backups
                argv = [sys.executable, "-m", "inkind", *shlex.split(m.group(1))[1:]]
                p = subprocess.run(argv, capture_output=True, text=True, env=self.env)
                assert p.returncode == 0, p.stderr
                # The page shows the command of an ext4 or btrfs store; on XFS
                # inkind adds one filter, which the page explains.
                printed = p.stdout.replace(f" {shlex.quote(ACL_ALIAS_FILTER)}", "")
                assert printed.splitlines() == expected, f"{m.group(1)} printed:\n{p.stdout}"
        p = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", text], capture_output=True, text=True, env=self.env
        )
        assert p.returncode == 0, f"restore.md block {name!r} failed:\n{text}\n{p.stdout}{p.stderr}"
        return p.stdout
