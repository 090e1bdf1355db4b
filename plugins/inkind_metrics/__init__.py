"""Built-in plugin: a Prometheus node_exporter textfile after every run.

Configured with ``[plugins.metrics] textfile = "/var/lib/node_exporter/textfile_collector/inkind.prom"``
(older configs wrote ``[metrics]``; it is read the same). It is an ordinary
plugin: its table comes through ``inkind_config_tables``, the textfile
through ``inkind_run_finished``; a third-party notifier would look the same.
"""

from dataclasses import dataclass
from pathlib import Path

import inkind
from inkind_metrics.textfile import render, write_textfile


@dataclass
class MetricsOptions:
    """``[plugins.metrics]``: where to write the textfile (none: no metrics)."""

    textfile: Path | None = None


def _textfile(config: inkind.Config) -> Path | None:
    options = config.plugins.get("metrics")
    return options.textfile if options is not None else None


@inkind.hookimpl
def inkind_config_tables() -> dict[str, type]:
    return {"metrics": MetricsOptions}


@inkind.hookimpl
def inkind_write_paths(config: inkind.Config) -> list[Path]:
    """The textfile is replaced by a rename in its directory."""
    textfile = _textfile(config)
    return [textfile.parent] if textfile is not None else []


@inkind.hookimpl
def inkind_run_finished(store: inkind.StoreLayout, config: inkind.Config) -> None:
    textfile = _textfile(config)
    if textfile is not None:
        write_textfile(render(store, config), textfile)
