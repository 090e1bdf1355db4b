"""What plugins provide through hooks, by name: source types, snapshot
providers and config tables.

A plugin may name a class by its import path (``"module:Class"``) instead
of handing the class over; it is imported, and checked, the first time it
is looked up. So loading the plugins imports no source, and a files backup
imports neither the image nor the dump machinery.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from typing import Any, Generic, TypeVar

T = TypeVar("T")
Given = type | str  # a class, or the "module:attr" path of one
Fail = Callable[[Any, str], None]  # (the providing plugin's entry, one line)


@dataclass(frozen=True)
class Provided:
    """A hook through which plugins provide named classes."""

    hook: str
    what: str  # in messages: "source type"
    listed: str  # the PluginInfo field that lists the names a plugin provides
    base: type | None  # each class subclasses it; None: an options dataclass, given as such
    name_attr: str = ""  # the class attribute that holds its name ("type_name")

    def pairs(self, provided: Any) -> list[tuple[str, Given]]:
        """(name, class or path) from one hook's return: a dict of name to
        class or path, or (classes only) a list of classes. TypeError when
        it is neither."""
        if self.base is None:
            return _tables(provided)
        if isinstance(provided, Mapping):
            for name, value in provided.items():
                if not (isinstance(name, str) and isinstance(value, str | type)):
                    raise TypeError(f"{name!r}: {value!r} is neither a class nor a 'module:Class' path")
                if isinstance(value, type):
                    self.check(name, value)
            return list(provided.items())
        return [(self.check(None, cls), cls) for cls in provided]

    def check(self, name: str | None, cls: Any) -> str:
        """The name ``cls`` carries; TypeError unless it subclasses the
        base and (when a name is given) carries that name."""
        assert self.base is not None
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise TypeError(f"{cls!r} is not a subclass of {self.base.__module__}.{self.base.__name__}")
        own = getattr(cls, self.name_attr)
        if name is not None and own != name:
            raise TypeError(f"{cls.__module__}.{cls.__qualname__}.{self.name_attr} is {own!r}, not {name!r}")
        return own


def _tables(provided: Any) -> list[tuple[str, Given]]:
    if not isinstance(provided, dict):
        raise TypeError(f"expected a dict of table name to options dataclass, got {provided!r}")
    for name, cls in provided.items():
        if not (isinstance(name, str) and isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise TypeError(f"{name!r}: {cls!r} is not an options dataclass")
    return list(provided.items())


def _imported(path: str) -> Any:
    """What ``path`` names, imported as an entry point's value is (the
    syntax plugins already use in their entry points)."""
    module, colon, attr = path.partition(":")
    if not (colon and module and attr):
        raise ValueError("not a 'module:Class' path")
    return EntryPoint("", path, "").load()


class Named(Mapping[str, T], Generic[T]):
    """The classes of one kind by name. An entry given as a path is imported
    when first looked up; one that fails to import, or is not the class it
    should be, is one line against its plugin and is missing from then on,
    as if that plugin had failed to load."""

    def __init__(self, kind: Provided, fail: Fail) -> None:
        self.kind = kind
        self._fail = fail
        self._given: dict[str, tuple[Given, Any]] = {}  # name -> (class or path, owner's entry)

    def add(self, name: str, value: Given, owner: Any) -> None:
        self._given[name] = (value, owner)

    def provider(self, name: str) -> str:
        """Who provides ``name``, for a message: the plugin, and the class's
        module or the path."""
        value, owner = self._given[name]
        where = value if isinstance(value, str) else value.__module__
        return f"plugin {owner.name} ({where})" if owner is not None else where

    def __getitem__(self, name: str) -> T:
        value, owner = self._given[name]
        if isinstance(value, str):
            try:
                cls = _imported(value)
                self.kind.check(name, cls)
            except Exception as e:  # a plugin's import may raise anything
                del self._given[name]
                if owner is not None:  # `inkind plugins` lists only what can be used
                    getattr(owner, self.kind.listed).remove(name)
                self._fail(owner, f"{self.kind.what} '{name}': cannot use {value}: {type(e).__name__}: {e}")
                raise KeyError(name) from None
            self._given[name] = value, owner = (cls, owner)
        return value  # type: ignore[return-value]

    def __contains__(self, name: object) -> bool:  # Mapping's own would look the entry up, importing it
        return name in self._given

    def __iter__(self) -> Iterator[str]:
        return iter(self._given)

    def __len__(self) -> int:
        return len(self._given)
