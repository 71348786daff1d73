"""Locksmith's configuration: read once at start-up into one validated, typed, immutable `Config`.

Sources, lowest to highest precedence (`locksmith.settings.sources`):
  built-in defaults → /usr/share/coreos/update.conf → /etc/coreos/update.conf → environment →
  command-line flags.
Which keys exist, their parsers, defaults and flags are declared once in `locksmith.settings.schema`;
this module turns the winning raw values into the typed sections and applies the rules that span keys:
- An empty value (`LOCKSMITHD_ENDPOINT=`) means "not set": it resets the key to its default, as
  the Go tool treated empty variables.
- An endpoint list from any source *replaces* the default `http://127.0.0.1:2379` (the Go tool
  appended to it, so a host could silently talk to a local etcd it was never meant to use).
- `LOCKSMITHD_REBOOT_WINDOW_START` / `_LENGTH` fall back, key by key, to the older unprefixed
  `REBOOT_WINDOW_START` / `_LENGTH`.
- `*_REBOOT_WINDOWS` (several windows) and the START/LENGTH pair are alternatives: setting both is
  an error rather than a guess.
- A client certificate needs its key; a password needs a user name.

Every invalid value raises one `ConfigError` whose message is a single line naming the key, the
value, its source and the fix. Passwords are never shown.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from types import MappingProxyType
from typing import Any

from locksmith.kv.base import KVOptions, parse_endpoints
from locksmith.settings.duration import parse_duration
from locksmith.settings.flags import add_config_arguments, flags_from_args
from locksmith.settings.load import Builder, read_sources, shown_value
from locksmith.settings.schema import PREFIX, Program, known_keys, static_settings_of
from locksmith.settings.sources import DEFAULT_SOURCE, ConfigError, FlagValue, RawValues, Source
from locksmith.settings.values import MetricsAddress
from locksmith.settings.windows import RebootWindow, WindowSchedule, local_timezone, parse_start, parse_windows

__all__ = [
    "COREOS_PATHS",
    "DEFAULT_ENDPOINT",
    "DEFAULT_PATHS",
    "FLATCAR_PATHS",
    "Config",
    "ConfigError",
    "MetricsAddress",
    "Program",
    "Source",
    "add_config_arguments",
    "flags_from_args",
    "known_keys",
    "load_config",
]

COREOS_PATHS: tuple[Path, ...] = (Path("/usr/share/coreos/update.conf"), Path("/etc/coreos/update.conf"))
FLATCAR_PATHS: tuple[Path, ...] = (Path("/usr/share/flatcar/update.conf"), Path("/etc/flatcar/update.conf"))
DEFAULT_PATHS = COREOS_PATHS

_AGENT = "locksmithd"
DEFAULT_ENDPOINT = static_settings_of(_AGENT)["LOCKSMITHD_ENDPOINT"].default
_LEGACY_START, _LEGACY_LENGTH = "REBOOT_WINDOW_START", "REBOOT_WINDOW_LENGTH"


def _default(name: str) -> Any:
    static = static_settings_of(_AGENT)
    return static[name if name in static else PREFIX[_AGENT] + name].parsed_default()


# --- The typed sections ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration of one process. Build it with `load_config`."""

    program: Program
    strategy: str
    update_group: str  # `GROUP`: the update channel (stable, beta, ...), not the lock group
    server: str  # `SERVER`: the update server URL (the update engine's)
    kv: KVOptions
    lock_group: str | None  # `*_GROUP`: the semaphore group, None for the global semaphore
    windows: WindowSchedule | None  # None: reboot at any time
    timezone: tzinfo
    machine_id_file: Path
    # The configured strategy's own settings (`Strategy.settings`) by name, parsed; locksmithd only.
    strategy_options: Mapping[str, Any] = field(default_factory=dict)
    # Every setting of the program, typed, by variable name (what a section takes by name).
    values: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    sources: Mapping[str, Source] = field(default_factory=dict)
    # Each given setting as quoted text for messages and --debug; passwords already masked.
    given: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    warnings: tuple[str, ...] = ()
    paths: tuple[Path, ...] = ()

    @property
    def prefix(self) -> str:
        return PREFIX[self.program]

    def source_of(self, key: str) -> Source:
        """Where the named variable's effective value came from (the default if nobody set it)."""
        return self.sources.get(key, DEFAULT_SOURCE)

    def describe(self) -> list[str]:
        """One `KEY="value" (from source)` line per setting that was given, for --debug output."""
        return [f"{key}={value} (from {self.sources[key]})" for key, value in sorted(self.given.items())]


# --- Loading --------------------------------------------------------------------------------


def load_config(
    program: Program,
    flags: Mapping[str, FlagValue] | None = None,
    environ: Mapping[str, str] | None = None,
    paths: Sequence[str | Path] = DEFAULT_PATHS,
) -> Config:
    """Read every source, validate, and return the one Config; raises ConfigError.

    `flags` maps variable names (`LOCKSMITHD_ENDPOINT`, `REBOOT_STRATEGY`, ...) to what the command
    line gave; None values are ignored (`flags_from_args` builds this mapping).
    `paths` are the config files, lowest precedence first."""
    if program not in PREFIX:
        raise ValueError(f"program must be locksmithd or locksmithctl, not {program!r}")
    file_paths = tuple(Path(p) for p in paths)
    values = read_sources(program, flags or {}, os.environ if environ is None else environ, file_paths)
    return _build(program, values, file_paths)


# --- Validation -----------------------------------------------------------------------------


def _build(program: Program, values: RawValues, paths: tuple[Path, ...]) -> Config:
    b = Builder(program, values)
    warnings = list(values.warnings)

    strategy = b.get("REBOOT_STRATEGY")
    update_group = b.get("GROUP")
    server = b.get("SERVER")
    kv = _build_kv(b, warnings)
    lock_group = b.get(b.prefix + "GROUP")
    timezone = b.get("TIMEZONE") or local_timezone()
    windows = _build_windows(b, timezone)
    machine_id_file = b.get("MACHINE_ID_FILE")
    strategy_options = _build_strategy_options(b, strategy, kv) if program == _AGENT else {}
    # Every other setting by name; the old window names are read (as fallbacks) by _build_windows only.
    typed = {k: b.get(k) for k in b.settings if k not in (_LEGACY_START, _LEGACY_LENGTH)}

    return Config(
        program=program,
        strategy=strategy,
        update_group=update_group,
        server=server,
        kv=kv,
        lock_group=lock_group,
        windows=windows,
        timezone=timezone,
        machine_id_file=machine_id_file,
        strategy_options=MappingProxyType(strategy_options),
        values=MappingProxyType(typed),
        sources=MappingProxyType(dict(b.sources)),
        warnings=tuple(warnings),
        paths=paths,
        given=MappingProxyType({k: shown_value(k, values.values[k][0]) for k in b.sources}),
    )


def _build_kv(b: Builder, warnings: list[str]) -> KVOptions:
    p = b.prefix
    key = p + "ENDPOINT"
    item = b.raw(key)
    value, source = item if item is not None else (DEFAULT_ENDPOINT, DEFAULT_SOURCE)
    urls = [u.strip() for u in value.split(",") if u.strip()]
    try:
        endpoints = parse_endpoints(urls)
    except ValueError as exc:
        raise b.fail(key, value, source, str(exc)) from None

    files: dict[str, str | None] = {}
    for suffix in ("ETCD_CAFILE", "ETCD_CERTFILE", "ETCD_KEYFILE"):
        files[suffix] = b.get(suffix)
    cert, tls_key = files["ETCD_CERTFILE"], files["ETCD_KEYFILE"]
    if (cert is None) != (tls_key is None):
        have, missing = ("ETCD_CERTFILE", "ETCD_KEYFILE") if cert else ("ETCD_KEYFILE", "ETCD_CERTFILE")
        given = b.raw(p + have)
        assert given is not None
        raise ConfigError(
            f"{p}{have}={shown_value(p + have, given[0])} is set but {p}{missing} is not (from {given[1]}): "
            "a client certificate needs its key; set both or neither",
            p + have,
            given[1],
        )
    if any(files.values()) and not any(e.address.startswith("https://") for e in endpoints):
        warnings.append(
            f"{p}ETCD_CAFILE/CERTFILE/KEYFILE are set but no endpoint uses https ({value}); the TLS files are unused"
        )

    username = b.get("ETCD_USERNAME")
    pw_item = b.raw(p + "ETCD_PASSWORD")
    password = pw_item[0] if pw_item is not None else None  # passwords are used as given, unstripped
    if password is not None and username is None:
        raise ConfigError(
            f'{p}ETCD_PASSWORD="***" is set but {p}ETCD_USERNAME is not (from {pw_item[1]}): '  # type: ignore[index]
            f"set {p}ETCD_USERNAME too, or remove the password",
            p + "ETCD_PASSWORD",
            pw_item[1],  # type: ignore[index]
        )
    if username is not None and password is None:
        warnings.append(f"{p}ETCD_USERNAME is set without {p}ETCD_PASSWORD; etcd will likely refuse to authenticate")
    return KVOptions(
        endpoints=endpoints,
        ca_file=files["ETCD_CAFILE"],
        cert_file=cert,
        key_file=tls_key,
        username=username,
        password=password,
    )


def _build_windows(b: Builder, timezone: tzinfo) -> WindowSchedule | None:
    p = b.prefix
    start_key, length_key = p + "REBOOT_WINDOW_START", p + "REBOOT_WINDOW_LENGTH"
    start = b.raw(start_key)
    if start is None and (start := b.raw(_LEGACY_START)) is not None:
        start_key = _LEGACY_START
    length = b.raw(length_key)
    if length is None and (length := b.raw(_LEGACY_LENGTH)) is not None:
        length_key = _LEGACY_LENGTH
    many_key = p + "REBOOT_WINDOWS"
    many = b.raw(many_key)

    if many is not None:
        if start is not None or length is not None:
            other_key, (other_value, other_source) = (start_key, start) if start is not None else (length_key, length)  # type: ignore[misc]
            raise ConfigError(
                f"{many_key}={shown_value(many_key, many[0])} (from {many[1]}) and {other_key}="
                f"{shown_value(other_key, other_value)} (from {other_source}) are both set: "
                "use one way to give windows",
                many_key,
                many[1],
            )
        try:
            return WindowSchedule(parse_windows(many[0]), timezone)
        except ValueError as exc:
            raise b.fail(many_key, many[0], many[1], str(exc)) from None

    if start is None and length is None:
        return None
    if start is None or length is None:
        if start is not None:
            have_key, (have_value, have_source) = start_key, start
            missing = start_key.replace("START", "LENGTH")
        else:
            assert length is not None
            have_key, (have_value, have_source) = length_key, length
            missing = length_key.replace("LENGTH", "START")
        raise ConfigError(
            f"{have_key}={shown_value(have_key, have_value)} is set but {missing} is not (from {have_source}): "
            "set both or neither",
            have_key,
            have_source,
        )
    try:
        days, at = parse_start(start[0])
    except ValueError as exc:
        raise b.fail(start_key, start[0], start[1], str(exc)) from None
    try:
        span = parse_duration(length[0].strip())
    except ValueError as exc:
        raise b.fail(length_key, length[0], length[1], str(exc)) from None
    try:
        window = RebootWindow(days, at, span)
    except ValueError as exc:
        raise b.fail(length_key, length[0], length[1], str(exc)) from None
    return WindowSchedule((window,), timezone)


def _build_strategy_options(b: Builder, strategy: str, kv: KVOptions) -> dict[str, Any]:
    """The configured strategy validates its own settings here, through the same parsers and messages."""
    from locksmith.strategy import StrategyError, declared_settings, installed_settings, strategy_class  # lazy

    for other in installed_settings():
        b.get(other.name)  # a bad value is an error even for a strategy not in use (yet)
    options: dict[str, Any] = {}
    for setting in declared_settings(strategy):
        value = b.get(setting.name)
        if value is None and setting.required:
            item = b.raw("REBOOT_STRATEGY")
            source = item[1] if item else DEFAULT_SOURCE
            key = setting.key(b.program)
            raise ConfigError(
                f'REBOOT_STRATEGY="{strategy}" (from {source}) needs {key}: set it ({setting.help})',
                "REBOOT_STRATEGY",
                source,
            )
        options[setting.name] = value
    try:
        problem = strategy_class(strategy).check_options(options, kv)
    except StrategyError:
        problem = None  # an unknown or broken strategy is reported when the agent loads it
    if problem:
        item = b.raw("REBOOT_STRATEGY")
        raise ConfigError(f'REBOOT_STRATEGY="{strategy}": {problem}', "REBOOT_STRATEGY", item[1] if item else None)
    return options
