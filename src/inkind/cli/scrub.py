"""``inkind scrub``: check a random sample of stored objects."""

import click

from inkind.cli.common import finish, json_option, seed_option


@click.command("scrub")
@click.argument("sources", nargs=-1)
@click.option(
    "--fraction",
    type=click.FloatRange(0, 1),
    help="Chance that an object is checked (1 checks all).",
)
@seed_option
@json_option
@click.pass_obj
def command(env, sources, fraction, seed, as_json):
    """Check stored objects against their checksums and the source.

    Corruption (a stored object that fails its own checksum) exits 2; an
    object that only differs from the source is repaired and counted.
    """
    finish(env.runner(seed, progress=not as_json).scrub(sources, fraction=fraction), as_json)
