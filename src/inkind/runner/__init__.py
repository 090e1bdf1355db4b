"""Running the configured sources: one after the other (or ``--jobs`` at
once), each isolated.

:class:`Runner` selects and checks the sources and runs one command over
them; what each command does to a source is a :class:`Command`
(:mod:`inkind.runner.commands`), and what every command shares (the
source's flock, recovery of a killed run, the state, the outcome) is
:mod:`inkind.runner.source_run`.
"""

from inkind.runner.report import RunReport, SourceResult
from inkind.runner.runner import Runner
from inkind.runner.signals import Interrupted
from inkind.runner.sources import make_source

__all__ = ["Interrupted", "RunReport", "Runner", "SourceResult", "make_source"]
