"""``inkind sudoers-rule``: the host's sudoers lines for a restricted key
that logs in as a user other than root (docs/remote.md, step 3)."""

import click

from inkind.remote.bootstrap import SUDO_PYTHON, sudoers_rule


@click.command("sudoers-rule")
@click.argument("user")
@click.option("--python", default=SUDO_PYTHON, show_default=True, help="The host's python3.")
def command(user, python):
    """Print the sudoers lines (for /etc/sudoers.d/inkind on the host) that
    let USER run this inkind's restricted remote side as root, and nothing
    else: the forced command of `inkind authorized-key --sudo`, its
    arguments compared whole. An upgrade of inkind changes the rule."""
    click.echo(sudoers_rule(user, python))
