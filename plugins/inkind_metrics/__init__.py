"""Built-in plugin: a Prometheus node_exporter textfile after every run.

Configured with ``[metrics] textfile = "/var/lib/node_exporter/textfile_collector/inkind.prom"``.
It is an ordinary ``inkind_run_finished`` implementation: a third-party
notifier would look the same.
"""

from pathlib import Path

import inkind
from inkind.config import Config
from inkind_metrics.textfile import write_textfile


@inkind.hookimpl
def inkind_write_paths(config: Config) -> list[Path]:
    """The textfile is replaced by a rename in its directory."""
    return [config.metrics.textfile.parent] if config.metrics.textfile is not None else []


@inkind.hookimpl
def inkind_run_finished(config: Config) -> None:
    if config.metrics.textfile is not None:
        write_textfile(config, config.metrics.textfile)
