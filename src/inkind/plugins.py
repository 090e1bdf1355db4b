"""Loading plugins: built-in and third-party alike, from the "inkind"
entry-point group. A plugin that fails to import or whose hook raises is
reported in one line naming it; the rest go on."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import ModuleType

import pluggy

from inkind import hookspecs
from inkind.source import Source

log = logging.getLogger("inkind")
GROUP = "inkind"


@dataclass
class PluginInfo:
    name: str
    origin: str  # "built-in" or the distribution "name version"
    module: str
    source_types: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Plugins:
    manager: pluggy.PluginManager
    info: dict[str, PluginInfo]
    types: dict[str, type[Source]]

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


def _origin(ep) -> str:
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
        entry = PluginInfo(ep.name, _origin(ep), ep.value)
        info[ep.name] = entry
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as e:
            entry.error = f"failed to load: {type(e).__name__}: {e}"
            log.error("plugin %s: %s", ep.name, entry.error)
    for mod in extra or []:
        name = mod.__name__
        info[name] = PluginInfo(name, "registered by caller", name)
        pm.register(mod, name=name)
    types: dict[str, type[Source]] = {}
    for impl in pm.hook.inkind_source_types.get_hookimpls():
        entry = info[impl.plugin_name]
        try:
            provided = list(impl.function())
            for cls in provided:
                if not (isinstance(cls, type) and issubclass(cls, Source)):
                    raise TypeError(f"{cls!r} is not a subclass of inkind.Source")
        except Exception as e:
            entry.error = f"inkind_source_types failed: {type(e).__name__}: {e}"
            log.error("plugin %s: %s", entry.name, entry.error)
            continue
        for cls in provided:
            if cls.type_name in types:
                other = types[cls.type_name].__module__
                entry.error = f"source type '{cls.type_name}' is already provided by {other}"
                log.error("plugin %s: %s", entry.name, entry.error)
                continue
            types[cls.type_name] = cls
            entry.source_types.append(cls.type_name)
    return Plugins(pm, info, types)
