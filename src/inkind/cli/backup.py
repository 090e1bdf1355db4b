"""``inkind backup``: bring the store up to date with the sources."""

import logging

import click

from inkind.cli.common import finish, json_option, seed_option
from inkind.config import check_jobs
from inkind.storeroot import init_store

log = logging.getLogger("inkind")


# size: one parameter per click option
@click.command("backup")
@click.argument("sources", nargs=-1)
@click.option("--full", is_flag=True, help="Force a full pass (deletion sweep, full metadata check).")
@click.option(
    "--scrub-fraction",
    type=click.FloatRange(0, 1),
    help="Override the chance that an object is scrubbed.",
)
@click.option("--dry-run", is_flag=True, help="Log and count what would change; write nothing.")
@click.option(
    "--jobs",
    type=int,
    metavar="N",
    help="Run up to N sources at once, each in its own process (default: the config's"
    " top-level `jobs`, else 1).",
)
@click.option("--init", "init", is_flag=True, help="Make the store first if it is not one yet (a first run).")
@seed_option
@json_option
@click.pass_obj
def command(env, sources, full, scrub_fraction, dry_run, jobs, init, seed, as_json):
    """Back up SOURCES (default: all configured sources).

    With --jobs N, up to N sources run at the same time, each isolated as
    one by one (its own lock, state and outcome); log lines name their
    source and the report lists the sources in config order.
    """
    if jobs is not None:
        check_jobs(jobs, "--jobs")
    if init and dry_run:
        raise click.UsageError(
            "--init writes the store and --dry-run writes nothing: run `inkind init` first"
        )
    if init:
        env.setup()
        made = init_store(env.config.store.path)
        if made.created:
            log.info("store %s: initialised on %s", made.path, made.filesystem)
    runner = env.runner(seed, progress=not as_json)
    report = runner.backup(sources, full=full, scrub_fraction=scrub_fraction, dry_run=dry_run, jobs=jobs)
    finish(report, as_json)
