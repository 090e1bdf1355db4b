"""inkind-git: git repositories kept as git bundles."""

import inkind


@inkind.hookimpl
def inkind_source_types() -> dict[str, str]:
    # By its path: the source is imported only when a config has a git source.
    return {"git": "inkind_git.source:GitSource"}
