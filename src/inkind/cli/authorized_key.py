"""``inkind authorized-key``: the restricted key's line for a host's
authorized_keys (docs/remote.md, step 3)."""

from pathlib import Path

import click

from inkind.errors import ConfigError
from inkind.remote.bootstrap import SUDO_PYTHON, authorized_keys_line


@click.command("authorized-key")
@click.argument("public_key", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--from", "sources", metavar="PATTERNS", help="Where the key may log in from (sshd's from=).")
@click.option(
    "--python",
    metavar="PATH",
    help=f"The host's python3 (remote_python)  [default: python3; {SUDO_PYTHON} with --sudo]",
)
@click.option("--sudo", is_flag=True, help="For a login that is not root: run as root through sudo -n.")
def command(public_key, sources, python, sudo):
    """Print the authorized_keys line that lets PUBLIC_KEY (the backup
    server's .pub) run this inkind's remote side and nothing else: it
    reads, runs only the built-in sources' commands with their arguments,
    and writes only its own temps. With --sudo, the host's sudoers also
    needs the rule `inkind sudoers-rule` prints. An upgrade of inkind
    changes the line."""
    try:
        text = public_key.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"{public_key}: cannot read the public key: {getattr(e, 'strerror', None) or e}"
        ) from None
    python = python or (SUDO_PYTHON if sudo else "python3")
    click.echo(authorized_keys_line(text, python, sources, where=str(public_key), sudo=sudo))
