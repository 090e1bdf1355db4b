"""``inkind init``: make the store (the only way one comes to exist)."""

import click

from inkind.storeroot import init_store


def init_and_say(path, *, adopt: bool = False) -> None:
    """Make the store at ``path`` (or find it made) and say which it was."""
    result = init_store(path, adopt=adopt)
    if result.created:
        said = f"initialised on {result.filesystem}"
    elif adopt:
        said = f"now recorded on {result.filesystem}"
    else:
        said = f"already an inkind store, on {result.filesystem}"
    click.echo(f"store {path}: {said}")


@click.command("init")
@click.option(
    "--adopt",
    is_flag=True,
    help="Record the filesystem an existing store is on now (after moving the store on purpose).",
)
@click.pass_obj
def command(env, adopt):
    """Make the configured store directory an inkind store.

    Refuses a directory that holds anything (but an empty lost+found) and is
    not a store. Every other command refuses a directory that `init` did not
    make, so a run never fills the empty mount point of an unmounted disk.
    """
    init_and_say(env.config.store.path, adopt=adopt)
