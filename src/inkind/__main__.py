"""``python -m inkind``: the same as the ``inkind`` command."""

from inkind.cli import main

main(prog_name="inkind")
