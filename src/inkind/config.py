"""The TOML configuration, checked key by key against dataclasses.

Every table maps onto a dataclass; a key that is not a field, a value of the
wrong type, or a missing required field is a :class:`ConfigError` that names
the key and where it is.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inkind.errors import ConfigError
from inkind.remote.ssh import SshSettings, SshTarget, check_host, check_python, split_command

DEFAULT_CONFIG = Path("/etc/inkind/inkind.toml")


@dataclass
class Retention:
    keep_last: int = 3
    keep_hourly: int = 0
    keep_daily: int = 7
    keep_weekly: int = 4
    keep_monthly: int = 12
    keep_yearly: int = 0
    min_free: str = "10%"

    def check(self, where: str) -> None:
        free_target(self.min_free, 1)
        for name in ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"):
            if getattr(self, name) < 0:
                raise ConfigError(f"config: {where}.{name}: must not be negative")


@dataclass
class StoreConfig:
    path: Path
    snapshots: str = "auto"
    snapshot_dir: Path | None = None
    retention: Retention = field(default_factory=Retention)


@dataclass
class Defaults:
    """Keys every source may override."""

    full_probability: float = 0.033
    scrub_fraction: float = 0.01
    max_age: str = ""  # e.g. "26h": ``inkind status`` fails when the last success is older
    # How a source with ``host`` reaches it (docs/remote.md), and where a
    # restore to ``host:/path`` goes through.
    ssh_command: str = "ssh"  # split like a shell: "ssh -p 2222 -i /root/.ssh/backup"
    remote_sudo: bool = False  # run the remote side under ``sudo -n``
    remote_python: str = "python3"

    def ssh(self, where: str) -> SshSettings:
        """The ssh keys checked, or ConfigError naming the key."""
        command = split_command(self.ssh_command, f"{where}.ssh_command")
        return SshSettings(
            command, self.remote_sudo, check_python(self.remote_python, f"{where}.remote_python")
        )


@dataclass
class PluginTable:
    """A ``[plugins.NAME]`` table as written. It is checked against the
    options dataclass its plugin declares once the plugins are loaded
    (:meth:`inkind.plugins.Plugins.configure`), as a source's options are."""

    where: str  # in messages: "plugins.metrics" (or "metrics", as older configs wrote it)
    table: dict[str, Any]
    base: Path  # relative paths in it are relative to the config file's directory


# Top-level tables that configs wrote before plugins owned their tables:
# ``[metrics]`` is read as ``[plugins.metrics]``.
OLDER_PLUGIN_TABLES = ("metrics",)


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str, key: str) -> int:
    """ "90m", "26h", "2d" into seconds, or ConfigError naming ``key``."""
    value, unit = text[:-1], text[-1:]
    if unit not in DURATION_UNITS or not value.isdigit():
        raise ConfigError(f"config: {key}: expected a duration like 90m, 26h or 2d, got {text!r}")
    return int(value) * DURATION_UNITS[unit]


SIZE_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def free_target(min_free: str, total_bytes: int) -> int:
    """``min_free`` ("10%", "20G", "512M") as bytes of a filesystem of
    ``total_bytes``; ConfigError naming the key when malformed."""
    text = min_free.strip().upper().removesuffix("B")
    try:
        if text.endswith("%"):
            pct = float(text[:-1])
            if not 0 <= pct <= 100:
                raise ValueError
            return int(total_bytes * pct / 100)
        if text and text[-1] in SIZE_UNITS:
            return int(float(text[:-1]) * SIZE_UNITS[text[-1]])
        return int(text)
    except ValueError:
        raise ConfigError(
            f"config: store.retention.min_free: expected a percentage or a size like 10% or 20G, got {min_free!r}"
        ) from None


@dataclass
class SourceConfig:
    """One ``[sources.NAME]`` table: host keys plus the raw plugin options."""

    name: str
    type: str
    full_probability: float
    scrub_fraction: float
    max_age: int | None  # seconds
    options: dict[str, Any]
    base: Path
    ssh: SshSettings = field(default_factory=SshSettings)
    host: str | None = None  # "[user@]name": the source is read on that host

    @property
    def remote(self) -> SshTarget | None:
        """The host this source reads, with how to reach it (None: this machine)."""
        return self.ssh.to(self.host) if self.host is not None else None


@dataclass
class Config:
    path: Path
    store: StoreConfig
    defaults: Defaults
    sources: dict[str, SourceConfig]
    plugin_tables: dict[str, PluginTable] = field(default_factory=dict)
    jobs: int = 1  # top-level ``jobs``: sources a backup runs at once (``--jobs`` wins)
    # NAME -> its plugin's options, checked: what a hook given ``config`` reads.
    plugins: dict[str, Any] = field(default_factory=dict)


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (types.UnionType, typing.Union):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is Path:
        return isinstance(value, str)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    names[Path] = "a path string"
    if typing.get_origin(hint) is list:
        return f"a list of {_describe(typing.get_args(hint)[0]).split(' ', 1)[1]}s"
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return " or ".join(_describe(h) for h in typing.get_args(hint) if h is not type(None))
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def build(cls: type, table: dict[str, Any], where: str, *, base: Path | None = None):
    """Make a ``cls`` dataclass from a TOML table, or raise ConfigError.

    ``where`` names the table in messages (``sources.home``). A relative
    value of a ``Path`` field is taken relative to ``base`` (the config
    file's directory), so a config means the same from cron's cwd.
    """
    if not isinstance(table, dict):
        raise ConfigError(f"config: {where}: must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in fields:
            known = ", ".join(sorted(fields)) or "none"
            raise ConfigError(f"config: {where}: unknown key '{key}' (known keys: {known})")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = build(hint, value, f"{where}.{key}", base=base)
            continue
        if not _type_ok(value, hint):
            raise ConfigError(
                f"config: {where}.{key}: expected {_describe(hint)}, got {type(value).__name__} {value!r}"
            )
        if hint in (Path, Path | None) and value is not None:
            try:
                value = Path(os.path.normpath((base or Path.cwd()) / Path(value).expanduser()))
            except RuntimeError:  # "~user" of a user that does not exist
                raise ConfigError(f"config: {where}.{key}: no such user's home in {value!r}") from None
        kwargs[key] = value
    for name, f in fields.items():
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if no_default and name not in kwargs:
            raise ConfigError(f"config: {where}: missing required key '{name}'")
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if check is not None:
        check(where)
    return obj


def _probability(value: float, key: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"config: {key}: must be between 0 and 1, got {value}")


def find_config(option: str | None) -> Path:
    """``-c PATH``, else ``$INKIND_CONFIG``, else /etc/inkind/inkind.toml."""
    if option:
        return Path(option)
    env = os.environ.get("INKIND_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG


def parse(text: str, path: Path) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config: {path}: {e}") from None
    known = {"jobs", "store", "defaults", "sources", "plugins", *OLDER_PLUGIN_TABLES}
    for key in data:
        if key not in known:
            raise ConfigError(f"config: unknown table or key '{key}' (known: {', '.join(sorted(known))})")
    if "store" not in data:
        raise ConfigError("config: missing required table [store]")
    base = path.parent.absolute()
    store = build(StoreConfig, data["store"], "store", base=base)
    defaults = build(Defaults, data.get("defaults", {}), "defaults")
    _probability(defaults.full_probability, "defaults.full_probability")
    _probability(defaults.scrub_fraction, "defaults.scrub_fraction")
    if defaults.max_age:
        parse_duration(defaults.max_age, "defaults.max_age")
    defaults.ssh("defaults")
    sources_table = data.get("sources", {})
    if not isinstance(sources_table, dict):
        raise ConfigError("config: sources: must be a table of [sources.NAME] tables")
    sources = {}
    for name, table in sources_table.items():
        sources[name] = _source(name, table, defaults, base)
    jobs = check_jobs(data.get("jobs", 1), "config: jobs")
    return Config(path, store, defaults, sources, plugin_tables=_plugin_tables(data, base), jobs=jobs)


def check_jobs(value: Any, where: str) -> int:
    """How many sources run at once: an integer of at least 1, or
    ConfigError naming ``where`` (the key, or the option)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{where}: expected an integer of at least 1 (sources run at once), got {value!r}")
    return value


def _plugin_tables(data: dict[str, Any], base: Path) -> dict[str, PluginTable]:
    """The ``[plugins.NAME]`` tables, and the older top-level spellings."""
    tables = data.get("plugins", {})
    if not isinstance(tables, dict):
        raise ConfigError("config: plugins: must be a table of [plugins.NAME] tables")
    written = {name: (f"plugins.{name}", table) for name, table in tables.items()}
    for name in OLDER_PLUGIN_TABLES:
        if name in data and name in written:
            raise ConfigError(f"config: [{name}] and [plugins.{name}] are one table: keep [plugins.{name}]")
        if name in data:
            written[name] = (name, data[name])
    found = {}
    for name, (where, table) in written.items():
        if not isinstance(table, dict):
            raise ConfigError(f"config: {where}: must be a table")
        found[name] = PluginTable(where, table, base)
    return found


def _source(name: str, table: Any, defaults: Defaults, base: Path) -> SourceConfig:
    where = f"sources.{name}"
    if not name or "/" in name or name.startswith(".") or name != name.strip():
        raise ConfigError(f"config: {where}: a source name must be a plain directory name")
    if not isinstance(table, dict):
        raise ConfigError(f"config: {where}: must be a table")
    if "type" not in table:
        raise ConfigError(f"config: {where}: missing required key 'type'")
    if not isinstance(table["type"], str):
        raise ConfigError(f"config: {where}.type: expected a string")
    host_keys = [f.name for f in dataclasses.fields(Defaults)]
    common = build(Defaults, {k: table[k] for k in host_keys if k in table}, where)
    merged = dataclasses.replace(defaults, **{k: getattr(common, k) for k in host_keys if k in table})
    _probability(merged.full_probability, f"{where}.full_probability")
    _probability(merged.scrub_fraction, f"{where}.scrub_fraction")
    max_age = parse_duration(merged.max_age, f"{where}.max_age") if merged.max_age else None
    host = table.get("host")
    if host is not None:
        if not isinstance(host, str):
            raise ConfigError(f"config: {where}.host: expected a string, got {type(host).__name__} {host!r}")
        check_host(host, f"config: {where}.host")
    options = {k: v for k, v in table.items() if k not in ("type", "host") and k not in host_keys}
    return SourceConfig(
        name=name,
        type=table["type"],
        full_probability=merged.full_probability,
        scrub_fraction=merged.scrub_fraction,
        max_age=max_age,
        options=options,
        base=base,
        ssh=merged.ssh(where),
        host=host,
    )


def load(option: str | None) -> Config:
    """Find, read and check the configuration."""
    path = find_config(option)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config: {path}: no such file (give one with -c or INKIND_CONFIG)") from None
    except OSError as e:
        raise ConfigError(f"config: {path}: {e.strerror}") from None
    return parse(text, path)
