"""What every command shares: config, plugins, logging, JSON output."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

import click

from inkind import config as config_mod
from inkind.config import Config
from inkind.plugins import Plugins, load_plugins
from inkind.runner import Runner, RunReport
from inkind.ui import progress_factory, setup_logging, stats_text

seed_option = click.option("--seed", type=int, help="Make every random choice reproducible (or INKIND_SEED).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")


@dataclass
class Env:
    """The global options, and what they lazily load."""

    config_path: str | None
    verbosity: int
    log_json: str | None
    _plugins: Plugins | None = field(default=None, repr=False)
    _config: Config | None = field(default=None, repr=False)
    _console: Any = field(default=None, repr=False)
    _logging: bool = False

    def setup(self) -> None:
        if not self._logging:
            self._console = setup_logging(self.verbosity, self.log_json)
            self._logging = True

    @property
    def plugins(self) -> Plugins:
        self.setup()
        if self._plugins is None:
            self._plugins = load_plugins()
        return self._plugins

    @property
    def config(self) -> Config:
        self.setup()
        if self._config is None:
            self._config = config_mod.load(self.config_path)
        return self._config

    def runner(self, seed: int | None = None, *, progress: bool = True) -> Runner:
        self.setup()
        factory = progress_factory(self._console) if progress else None
        return Runner(self.config, self.plugins, seed=seed, progress_factory=factory)


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def finish(report: RunReport, as_json: bool) -> None:
    """Print a run's result and exit with its status."""
    if as_json:
        emit_json(report.as_dict())
    else:
        for r in report.results:
            click.echo(f"{r.name}: {r.outcome}{' (full pass)' if r.full else ''}: {stats_text(r.stats)}")
    sys.exit(report.exit_status)
