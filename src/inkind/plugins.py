"""Loading plugins: built-in and third-party alike, from the "inkind"
entry-point group. A plugin that fails to import or whose hook raises is
reported in one line naming it; the rest go on."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType

import pluggy

from inkind import hookspecs
from inkind.history.provider import SnapshotProvider
from inkind.source import Source

log = logging.getLogger("inkind")
GROUP = "inkind"


@dataclass
class PluginInfo:
    name: str
    module: str
    entry_point: EntryPoint | None = None  # None: registered by the caller
    source_types: list[str] = field(default_factory=list)
    snapshot_providers: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def origin(self) -> str:
        """ "built-in", the distribution's "name version", or "registered by
        caller". Worked out only when shown: reading the distributions'
        metadata took 3 ms of every start."""
        return "registered by caller" if self.entry_point is None else _origin(self.entry_point)


@dataclass
class Plugins:
    manager: pluggy.PluginManager
    info: dict[str, PluginInfo]
    types: dict[str, type[Source]]
    providers: dict[str, type[SnapshotProvider]] = field(default_factory=dict)

    @property
    def failed(self) -> list[PluginInfo]:
        return [p for p in self.info.values() if p.error]

    def call(self, hook: str, **kwargs) -> None:
        """Call a notification hook in every plugin, each one isolated."""
        for impl in getattr(self.manager.hook, hook).get_hookimpls():
            try:
                # Like pluggy, pass each implementation only the arguments it names.
                impl.function(**{k: kwargs[k] for k in impl.argnames})
            except Exception as e:
                log.error("plugin %s: hook %s failed: %s", impl.plugin_name, hook, e)


def _origin(ep: EntryPoint) -> str:
    dist = ep.dist
    if dist is None:
        return "unknown"
    if dist.name == "inkind":
        return "built-in"
    return f"{dist.name} {dist.version}"


def load_plugins(extra: list[ModuleType] | None = None) -> Plugins:
    """Register every entry point of the "inkind" group, then ``extra``
    modules (tests use these), and collect their source types."""
    pm = pluggy.PluginManager("inkind")
    pm.add_hookspecs(hookspecs)
    info: dict[str, PluginInfo] = {}
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        if ep.name in info:
            continue
        entry = PluginInfo(ep.name, ep.value, ep)
        info[ep.name] = entry
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as e:
            entry.error = f"failed to load: {type(e).__name__}: {e}"
            log.error("plugin %s: %s", ep.name, entry.error)
    for mod in extra or []:
        name = mod.__name__
        info[name] = PluginInfo(name, name)
        pm.register(mod, name=name)
    types: dict[str, type[Source]] = _collect(
        pm, info, "inkind_source_types", Source, lambda c: c.type_name, "source_types", "source type"
    )
    providers: dict[str, type[SnapshotProvider]] = _collect(
        pm,
        info,
        "inkind_snapshot_providers",
        SnapshotProvider,
        lambda c: c.name,
        "snapshot_providers",
        "snapshot provider",
    )
    return Plugins(pm, info, types, providers)


def _collect(
    pm: pluggy.PluginManager, info: dict[str, PluginInfo], hook: str, base: type, key, listed: str, what: str
) -> dict:
    """Gather the classes a "list of classes" hook returns, by their name;
    a plugin whose hook raises, returns something else or repeats a name
    is reported in one line and skipped."""
    found: dict[str, type] = {}
    for impl in getattr(pm.hook, hook).get_hookimpls():
        entry = info[impl.plugin_name]
        try:
            provided = list(impl.function())
            for cls in provided:
                if not (isinstance(cls, type) and issubclass(cls, base)):
                    raise TypeError(f"{cls!r} is not a subclass of {base.__module__}.{base.__name__}")
        except Exception as e:
            entry.error = f"{hook} failed: {type(e).__name__}: {e}"
            log.error("plugin %s: %s", entry.name, entry.error)
            continue
        for cls in provided:
            name = key(cls)
            if name in found:
                entry.error = f"{what} '{name}' is already provided by {found[name].__module__}"
                log.error("plugin %s: %s", entry.name, entry.error)
                continue
            found[name] = cls
            getattr(entry, listed).append(name)
    return found
