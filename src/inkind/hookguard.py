"""Calling hooks through pluggy's own caller with every plugin isolated.

pluggy stops a hook call at the first exception. inkind wants a plugin that
raises to cost one line naming it while the other plugins still run, so
once the plugins are registered each plain implementation's function is
replaced by one that catches the exception, logs it, records it in the
plugin's PluginInfo and returns None (which pluggy leaves out of the
results). Hook wrappers are left as they are: a wrapper must pass the call
on, so one that raises costs that call of the hook, still in one line naming
its plugin (found in the traceback).
"""

from __future__ import annotations

import functools
import logging
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from inkind.plugins import PluginInfo

log = logging.getLogger("inkind")


class HookGuard:
    """Installs the isolating functions and calls hooks through pluggy."""

    def __init__(self, info: dict[str, PluginInfo]):
        self.info = info
        self._returned: list[tuple[str, object]] | None = None

    def install(self, pm: pluggy.PluginManager, hooks: list[str]) -> None:
        """Guard every plain implementation of ``hooks``."""
        for hook in hooks:
            for impl in getattr(pm.hook, hook).get_hookimpls():
                if not (impl.wrapper or impl.hookwrapper):
                    impl.function = self._guarded(impl.function, self.info[impl.plugin_name], hook)

    def _guarded(self, function: Callable[..., Any], entry: PluginInfo, hook: str) -> Callable[..., Any]:
        @functools.wraps(function)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                value = function(*args, **kwargs)
            except Exception as e:
                log.debug("%s", traceback.format_exc())
                self.fail(entry, f"{hook} failed: {type(e).__name__}: {e}")
                return None
            if self._returned is not None:
                self._returned.append((entry.name, value))
            return value

        return guarded

    @contextmanager
    def recording(self) -> Iterator[list[tuple[str, object]]]:
        """Within it, what each implementation returns, as (plugin name,
        value): the "provided classes" hooks say who provided what."""
        returned: list[tuple[str, object]] = []
        self._returned = returned
        try:
            yield returned
        finally:
            self._returned = None

    def call(self, caller: pluggy.HookCaller, kwargs: dict[str, Any]) -> Any:
        """``caller(**kwargs)``; a wrapper that raises is one line naming its
        plugin, and the call returns no results."""
        try:
            return caller(**kwargs)
        except Exception as e:
            name = _raised_by(e, caller)
            if name is None:  # not a plugin's: pluggy's own or the host's mistake
                raise
            self.fail(self.info[name], f"{caller.name} failed: {type(e).__name__}: {e}")
            return None if caller.spec is not None and caller.spec.opts.get("firstresult") else []

    def fail(self, entry: PluginInfo | None, message: str) -> None:
        """One error line naming the plugin (None: a wrapper's own value);
        its first error is what ``inkind plugins`` shows."""
        if entry is None:
            log.error("%s", message)
            return
        entry.error = entry.error or message
        log.error("plugin %s: %s", entry.name, message)


def _raised_by(exc: BaseException, caller: pluggy.HookCaller) -> str | None:
    """The plugin whose wrapper raised ``exc``: the innermost frame of the
    traceback that runs one of the hook's wrappers."""
    wrappers = {
        impl.function.__code__: impl.plugin_name
        for impl in caller.get_hookimpls()
        if (impl.wrapper or impl.hookwrapper) and hasattr(impl.function, "__code__")
    }
    name = None
    tb = exc.__traceback__
    while tb is not None:
        name = wrappers.get(tb.tb_frame.f_code, name)
        tb = tb.tb_next
    return name
