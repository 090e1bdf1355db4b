"""A configured source made from its plugin's class, its options checked,
and kept from reading the store."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from inkind.config import SourceConfig, build
from inkind.errors import ConfigError
from inkind.keepout import KeepOut
from inkind.plugins import Plugins
from inkind.source import Source


def make_source(cfg: SourceConfig, plugins: Plugins) -> Source:
    """Instantiate a configured source, checking its options."""
    cls = plugins.types.get(cfg.type)
    if cls is None:
        failed = ", ".join(p.name for p in plugins.failed)
        hint = f" (plugins that failed to load: {failed})" if failed else ""
        known = ", ".join(sorted(plugins.types)) or "none"
        raise ConfigError(
            f"config: sources.{cfg.name}.type: unknown source type '{cfg.type}' (known: {known}){hint}"
        )
    if cfg.host is not None and not cls.reads_remote_host:
        raise ConfigError(
            f"config: sources.{cfg.name}.host: the {cfg.type} source cannot read a remote host yet"
        )
    source = cls(cfg.name, build(cls.Options, cfg.options, f"sources.{cfg.name}", base=cfg.base))
    source.remote = cfg.remote
    source.ssh = cfg.ssh
    return source


def check_paths(name: str, source: Source, keep_out: KeepOut) -> None:
    """No path a source reads may be, or lie in, the store or its snapshot
    folder: it would back the store up into itself."""
    for f in dataclasses.fields(source.options):
        value = getattr(source.options, f.name)
        what = keep_out.around(value) if isinstance(value, Path) else None
        if what is not None:
            raise ConfigError(
                f"config: sources.{name}.{f.name}: {value} is in {what};"
                " a source must not read the store or its snapshots"
            )
