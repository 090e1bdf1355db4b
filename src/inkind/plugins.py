"""Loading plugins: built-in and third-party alike, from the "inkind"
entry-point group, and calling their hooks.

Every hook is called through pluggy's own caller (``manager.hook.NAME``),
so call order, ``tryfirst``/``trylast``, wrappers and ``firstresult``
behave as pluggy documents. Plugins are registered so that, tryfirst and
trylast aside, they are called in the order ``inkind plugins`` lists them.
A plugin that fails to import, names a hook inkind does not have, or whose
hook raises is reported in one line naming it; the rest go on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any

import pluggy

from inkind import hookspecs
from inkind.config import Config, ConfigError, build
from inkind.history.provider import SnapshotProvider
from inkind.hookguard import HookGuard
from inkind.provided import Named, Provided
from inkind.source import Source

log = logging.getLogger("inkind")
GROUP = "inkind"
HOOKS = sorted(n for n in dir(hookspecs) if n.startswith("inkind_"))


@dataclass
class PluginInfo:
    name: str
    module: str
    entry_point: EntryPoint | None = None  # None: registered by the caller
    source_types: list[str] = field(default_factory=list)
    snapshot_providers: list[str] = field(default_factory=list)
    config_tables: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def origin(self) -> str:
        """ "built-in", the distribution's "name version", or "registered by
        caller". Worked out only when shown: reading the distributions'
        metadata took 3 ms of every start."""
        if self.entry_point is None:
            return "registered by caller"
        dist = self.entry_point.dist
        if dist is None:
            return "unknown"
        return "built-in" if dist.name == "inkind" else f"{dist.name} {dist.version}"


SOURCE_TYPES = Provided("inkind_source_types", "source type", "source_types", Source, "type_name")
PROVIDERS = Provided(
    "inkind_snapshot_providers", "snapshot provider", "snapshot_providers", SnapshotProvider, "name"
)
CONFIG_TABLES = Provided("inkind_config_tables", "config table", "config_tables", None)


@dataclass(eq=False)  # (comparing the mappings would import every class named by its path)
class Plugins:
    manager: pluggy.PluginManager
    info: dict[str, PluginInfo]
    guard: HookGuard
    types: Mapping[str, type[Source]] = field(default_factory=dict)
    providers: Mapping[str, type[SnapshotProvider]] = field(default_factory=dict)
    tables: Mapping[str, type] = field(default_factory=dict)  # [plugins.NAME] -> its options dataclass

    @property
    def failed(self) -> list[PluginInfo]:
        return [p for p in self.info.values() if p.error]

    def call(self, hook: str, **kwargs: Any) -> Any:
        """Call ``hook`` through pluggy and return what pluggy returns (the
        list of results; for a firstresult hook the first). An implementation
        that raises is one line naming its plugin, and the others run."""
        return self.guard.call(getattr(self.manager.hook, hook), kwargs)

    def collect(self, kind: Provided) -> Named[Any]:
        """Gather the classes (or their paths) ``kind.hook`` returns, by
        name; a plugin whose hook raises, returns something else or repeats
        a name is reported in one line and skipped."""
        with self.guard.recording() as returned:
            results = self.call(kind.hook)
        owners = {id(value): name for name, value in returned}
        found: Named[Any] = Named(kind, self.guard.fail)
        for value in results:
            owner = owners.get(id(value))  # None: a hook wrapper's own value
            entry = self.info[owner] if owner is not None else None
            try:
                pairs = kind.pairs(value)
            except (TypeError, AttributeError) as e:  # not classes, or one without its name
                self.guard.fail(entry, f"{kind.hook} failed: {type(e).__name__}: {e}")
                continue
            for name, given in pairs:
                if name in found:
                    self.guard.fail(
                        entry, f"{kind.what} '{name}' is already provided by {found.provider(name)}"
                    )
                    continue
                found.add(name, given, entry)
                if entry is not None:
                    getattr(entry, kind.listed).append(name)
        return found

    def import_all(self) -> None:
        """Import every source type and provider given by its path, so that
        each one that cannot be used is reported (``inkind plugins``)."""
        for named in (self.types, self.providers):
            for name in list(named):
                named.get(name)

    def configure(self, config: Config) -> None:
        """Check each ``[plugins.NAME]`` table of ``config`` against the
        options dataclass its plugin declares, into ``config.plugins[NAME]``;
        a wrong key is a ConfigError naming ``plugins.NAME.KEY``. A table no
        plugin declares is an error too, unless a plugin failed to load (the
        table may be its own): then it is left out with a warning."""
        built: dict[str, Any] = {}
        for name, raw in config.plugin_tables.items():
            cls = self.tables.get(name)
            if cls is not None:
                built[name] = build(cls, raw.table, raw.where, base=raw.base)
                continue
            known = ", ".join(f"plugins.{n}" for n in sorted(self.tables)) or "none"
            if not self.failed:
                raise ConfigError(f"config: {raw.where}: no plugin declares this table (known: {known})")
            failed = ", ".join(p.name for p in self.failed)
            log.warning(
                "config: %s: not checked: no loaded plugin declares it (failed to load: %s)",
                raw.where,
                failed,
            )
        config.plugins = built


def _import(
    info: dict[str, PluginInfo], guard: HookGuard, extra: list[ModuleType]
) -> list[tuple[str, object]]:
    """Every entry point of the group (by name), then ``extra``: (name,
    module) in the order ``inkind plugins`` lists them."""
    modules: list[tuple[str, object]] = []
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        if ep.name in info:
            continue
        info[ep.name] = PluginInfo(ep.name, ep.value, ep)
        try:
            modules.append((ep.name, ep.load()))
        except Exception as e:
            guard.fail(info[ep.name], f"failed to load: {type(e).__name__}: {e}")
    for mod in extra:
        info[mod.__name__] = PluginInfo(mod.__name__, mod.__name__)
        modules.append((mod.__name__, mod))
    return modules


def _refuse_unknown_hooks(pm: pluggy.PluginManager, info: dict[str, PluginInfo], guard: HookGuard) -> None:
    """pluggy's ``check_pending``: a plugin implementing a hook that has no
    hookspec (a misspelt name) is not loaded, in one line naming the hook."""
    while True:
        try:
            pm.check_pending()
            return
        except pluggy.PluginValidationError as e:
            name = pm.get_name(e.plugin) or ""
            unknown = sorted(c.name for c in pm.get_hookcallers(e.plugin) or [] if not c.has_spec())
            pm.unregister(e.plugin)
            guard.fail(
                info[name],
                f"not loaded: unknown hook {', '.join(unknown)} (inkind's hooks: {', '.join(HOOKS)})",
            )


def load_plugins(extra: list[ModuleType] | None = None) -> Plugins:
    """Register every entry point of the "inkind" group, then ``extra``
    modules (tests use these), and collect what they provide."""
    pm = pluggy.PluginManager("inkind")
    pm.add_hookspecs(hookspecs)
    info: dict[str, PluginInfo] = {}
    guard = HookGuard(info)
    modules = _import(info, guard, extra or [])
    for name, module in reversed(modules):  # pluggy calls the last registered first
        try:
            pm.register(module, name=name)
        except Exception as e:  # a hookimpl whose arguments its hookspec does not have
            guard.fail(info[name], f"failed to load: {type(e).__name__}: {e}")
    _refuse_unknown_hooks(pm, info, guard)
    guard.install(pm, HOOKS)
    plugins = Plugins(pm, info, guard)
    plugins.types = plugins.collect(SOURCE_TYPES)
    plugins.providers = plugins.collect(PROVIDERS)
    plugins.tables = plugins.collect(CONFIG_TABLES)
    return plugins
