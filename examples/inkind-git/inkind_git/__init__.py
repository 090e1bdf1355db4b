"""inkind-git: git repositories kept as git bundles."""

import inkind
from inkind_git.source import GitSource


@inkind.hookimpl
def inkind_source_types():
    return [GitSource]
