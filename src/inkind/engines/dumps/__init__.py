"""The dump engine: sources that keep one dump per database, made by the
database's own tool (postgres and mysql share it, neither copies the other).

* :mod:`~inkind.engines.dumps.tools`: finding and running the tools;
* :mod:`~inkind.engines.dumps.entries`: entry names, the databases
  selected, what is stored;
* :mod:`~inkind.engines.dumps.stream`: a tool's stdout into one file;
* :mod:`~inkind.engines.dumps.trees`: a dump directory swapped in whole;
* :mod:`~inkind.engines.dumps.scrub` and
  :mod:`~inkind.engines.dumps.failures`: checking stored dumps, and the
  one line that names every failed one;
* :mod:`~inkind.engines.dumps.source`: :class:`DumpSource`, the backup
  loop.

Plugins take these names from ``inkind``; host code imports the modules.
"""
