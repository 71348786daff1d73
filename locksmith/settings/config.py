"""Locksmith's configuration: read once at start-up into one validated, typed, immutable `Config`.

Sources, lowest to highest precedence:
  built-in defaults → /usr/share/coreos/update.conf → /etc/coreos/update.conf → environment →
  command-line flags.
The files use the systemd EnvironmentFile format (`locksmith.settings.envfile`). A missing file is fine; a
file we cannot read or parse is an error. Flatcar keeps the same files under /usr/share/flatcar and
/etc/flatcar (`FLATCAR_PATHS`).

The agent reads `LOCKSMITHD_*` variables, the CLI `LOCKSMITHCTL_*`; both read `REBOOT_STRATEGY`,
`GROUP` (the update channel) and `SERVER`. Rules a CoreOS admin should know:
- An empty value (`LOCKSMITHD_ENDPOINT=`) means "not set": it resets the key to its default, as
  the Go tool treated empty variables.
- An endpoint list from any source *replaces* the default `http://127.0.0.1:2379` (the Go tool
  appended to it, so a host could silently talk to a local etcd it was never meant to use).
- `LOCKSMITHD_REBOOT_WINDOW_START` / `_LENGTH` fall back, key by key, to the older unprefixed
  `REBOOT_WINDOW_START` / `_LENGTH`.
- `*_REBOOT_WINDOWS` (several windows) and the START/LENGTH pair are alternatives: setting both is
  an error rather than a guess.
- Every value remembers where it came from (`Config.source_of`). When the environment holds exactly
  the value a file gave (systemd's `EnvironmentFile=` put it there), the file is named as the
  source, because that is where an admin would go to change it.

Every invalid value raises one `ConfigError` whose message is a single line naming the key, the
value, its source and the fix. Passwords are never shown.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta, tzinfo
from pathlib import Path
from types import MappingProxyType
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from locksmith.kv.base import KVOptions, parse_endpoints
from locksmith.settings.duration import format_duration, parse_duration
from locksmith.settings.envfile import EnvFileError, load_env_file
from locksmith.settings.windows import (
    RebootWindow,
    WindowSchedule,
    load_timezone,
    local_timezone,
    parse_start,
    parse_windows,
)

__all__ = [
    "AGENT_PREFIX",
    "CLI_PREFIX",
    "COREOS_PATHS",
    "DEFAULT_ENDPOINT",
    "DEFAULT_PATHS",
    "FLATCAR_PATHS",
    "AgentOptions",
    "Config",
    "ConfigError",
    "HealthGate",
    "Hooks",
    "MetricsAddress",
    "Role",
    "Source",
    "add_config_arguments",
    "flags_from_args",
    "load_config",
]

Role = Literal["agent", "cli"]
AGENT_PREFIX = "LOCKSMITHD_"
CLI_PREFIX = "LOCKSMITHCTL_"
_PREFIX: dict[str, str] = {"agent": AGENT_PREFIX, "cli": CLI_PREFIX}

COREOS_PATHS: tuple[Path, ...] = (Path("/usr/share/coreos/update.conf"), Path("/etc/coreos/update.conf"))
FLATCAR_PATHS: tuple[Path, ...] = (Path("/usr/share/flatcar/update.conf"), Path("/etc/flatcar/update.conf"))
DEFAULT_PATHS = COREOS_PATHS

DEFAULT_ENDPOINT = "http://127.0.0.1:2379"
DEFAULT_STRATEGY = "best-effort"
DEFAULT_UPDATE_GROUP = "stable"
DEFAULT_MACHINE_ID_FILE = Path("/etc/machine-id")
DEFAULT_COORDINATOR_FILE = Path("/run/update-engine/coordinator.conf")
DEFAULT_HEALTH_TIMEOUT = timedelta(minutes=10)
DEFAULT_HEALTH_INTERVAL = timedelta(seconds=5)
DEFAULT_HOOK_TIMEOUT = timedelta(minutes=5)
DEFAULT_LOGIN_DELAY = timedelta(minutes=5)

# Keys every role reads, unprefixed.
_COMMON = ("REBOOT_STRATEGY", "GROUP", "SERVER")
_LEGACY_START, _LEGACY_LENGTH = "REBOOT_WINDOW_START", "REBOOT_WINDOW_LENGTH"
# Suffixes read with the role's prefix by both the agent and the CLI.
_SHARED = (
    "ENDPOINT",
    "ETCD_CAFILE",
    "ETCD_CERTFILE",
    "ETCD_KEYFILE",
    "ETCD_USERNAME",
    "ETCD_PASSWORD",
    "GROUP",
    "REBOOT_WINDOW_START",
    "REBOOT_WINDOW_LENGTH",
    "REBOOT_WINDOWS",
    "TIMEZONE",
    "MACHINE_ID_FILE",
)
# Suffixes only the agent reads (LOCKSMITHD_ only).
_AGENT_ONLY = (
    "REBOOT_COMMAND",
    "HEALTH_COMMAND",
    "HEALTH_UNIT",
    "HEALTH_URL",
    "HEALTH_TIMEOUT",
    "HEALTH_INTERVAL",
    "PRE_REBOOT_HOOK",
    "POST_BOOT_HOOK",
    "HOOK_TIMEOUT",
    "LOGIN_CHECK",
    "LOGIN_DELAY",
    "FLEETLOCK_URL",
    "METRICS",
    "COORDINATOR_FILE",
    "LOG_FORMAT",
    "LOG_LEVEL",
)


def known_keys(role: Role) -> frozenset[str]:
    """Every variable name the given role reads."""
    prefix = _PREFIX[role]
    keys = {*_COMMON, _LEGACY_START, _LEGACY_LENGTH, *(prefix + s for s in _SHARED)}
    if role == "agent":
        keys.update(prefix + s for s in _AGENT_ONLY)
    return frozenset(keys)


_ALL_LOCKSMITH_KEYS = known_keys("agent") | known_keys("cli")


# --- Where a value came from ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Source:
    """The origin of one value: `default`, `file` (with path and line), `environment` or `flag`."""

    kind: Literal["default", "file", "environment", "flag"]
    path: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        if self.kind == "file":
            return f"{self.path} line {self.line}"
        if self.kind == "environment":
            return "the environment"
        if self.kind == "flag":
            return "the command line"
        return "the built-in default"


DEFAULT_SOURCE = Source("default")


class ConfigError(Exception):
    """An invalid configuration. str() is one line naming key, value, source and the fix."""

    def __init__(self, message: str, key: str | None = None, source: Source | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.source = source


def _is_secret(key: str) -> bool:
    return key.endswith("PASSWORD")


def _shown(key: str, value: str) -> str:
    # json.dumps quotes and escapes newlines, so the message stays one line whatever the value.
    return '"***"' if _is_secret(key) else json.dumps(value, ensure_ascii=False)


# --- The typed sections ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HealthGate:
    """Checks that must pass after boot before the lock is released; all configured ones must pass."""

    command: tuple[str, ...] | None = None
    unit: str | None = None
    url: str | None = None
    timeout: timedelta = DEFAULT_HEALTH_TIMEOUT
    interval: timedelta = DEFAULT_HEALTH_INTERVAL

    @property
    def enabled(self) -> bool:
        return bool(self.command or self.unit or self.url)


@dataclass(frozen=True, slots=True)
class Hooks:
    """Commands run before the reboot (e.g. drain) and after boot (e.g. uncordon)."""

    pre_reboot: tuple[str, ...] | None = None
    post_boot: tuple[str, ...] | None = None
    timeout: timedelta = DEFAULT_HOOK_TIMEOUT


@dataclass(frozen=True, slots=True)
class MetricsAddress:
    """Where the Prometheus endpoint listens: a loopback TCP port or a unix socket path."""

    host: str | None = None
    port: int | None = None
    path: Path | None = None

    @property
    def kind(self) -> Literal["tcp", "unix"]:
        return "unix" if self.path is not None else "tcp"

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class AgentOptions:
    """What only locksmithd needs."""

    reboot_command: tuple[str, ...] | None = None  # None: ask logind over D-Bus
    health: HealthGate = field(default_factory=HealthGate)
    hooks: Hooks = field(default_factory=Hooks)
    login_check: bool = True
    login_delay: timedelta = DEFAULT_LOGIN_DELAY
    fleetlock_url: str | None = None
    metrics: MetricsAddress | None = None
    coordinator_file: Path = DEFAULT_COORDINATOR_FILE
    log_format: Literal["logfmt", "json"] = "logfmt"
    log_level: str = "info"


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration of one process. Build it with `load_config`."""

    role: Role
    strategy: str
    update_group: str  # `GROUP`: the update channel (stable, beta, ...), not the lock group
    server: str | None  # `SERVER`: the update server URL, None for the update engine's default
    kv: KVOptions
    lock_group: str | None  # `*_GROUP`: the semaphore group, None for the global semaphore
    windows: WindowSchedule | None  # None: reboot at any time
    timezone: tzinfo
    machine_id_file: Path
    agent: AgentOptions | None  # set for role "agent" only
    sources: Mapping[str, Source] = field(default_factory=dict)
    # Each given setting as quoted text for messages and --debug; passwords already masked.
    given: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    warnings: tuple[str, ...] = ()
    paths: tuple[Path, ...] = ()

    @property
    def prefix(self) -> str:
        return _PREFIX[self.role]

    def source_of(self, key: str) -> Source:
        """Where the named variable's effective value came from (the default if nobody set it)."""
        return self.sources.get(key, DEFAULT_SOURCE)

    def describe(self) -> list[str]:
        """One `KEY="value" (from source)` line per setting that was given, for --debug output."""
        return [f"{key}={value} (from {self.sources[key]})" for key, value in sorted(self.given.items())]


# --- Loading --------------------------------------------------------------------------------


class _Values:
    """The merged raw settings: for each key its winning value and source."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[str, Source]] = {}
        self.warnings: list[str] = []
        self._warned: set[str] = set()

    def set(self, key: str, value: str, source: Source) -> None:
        self.values[key] = (value, source)

    def get(self, key: str) -> tuple[str, Source] | None:
        """The value if set to something non-empty (empty means: back to the default)."""
        item = self.values.get(key)
        if item is None or item[0] == "":
            return None
        return item

    def warn_unknown(self, key: str, source: Source) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        self.warnings.append(
            f"{key} (from {source}) is not a setting this version of locksmith knows; ignored "
            "(check the spelling, or it is meant for a newer version)"
        )


def _is_locksmith_key(key: str) -> bool:
    return key.startswith((AGENT_PREFIX, CLI_PREFIX))


def _read_files(values: _Values, paths: Sequence[Path], known: frozenset[str]) -> None:
    for path in paths:
        try:
            entries = load_env_file(path)
        except FileNotFoundError:
            continue  # optional, like systemd's EnvironmentFile=-/path
        except EnvFileError as exc:
            raise ConfigError(f"{exc}", source=Source("file", str(path), exc.line)) from None
        except IsADirectoryError:
            raise ConfigError(f"config file {path} is a directory: remove it or point to a file") from None
        except PermissionError:
            raise ConfigError(
                f"config file {path} is not readable by uid {os.geteuid()}: fix its permissions (chmod 644)"
            ) from None
        except OSError as exc:
            raise ConfigError(f"config file {path} cannot be read ({exc.strerror}): fix or remove it") from None
        for entry in entries:
            source = Source("file", str(path), entry.line)
            if entry.key in known:
                values.set(entry.key, entry.value, source)
            elif _is_locksmith_key(entry.key) and entry.key not in _ALL_LOCKSMITH_KEYS:
                values.warn_unknown(entry.key, source)


def _read_environ(values: _Values, environ: Mapping[str, str], known: frozenset[str]) -> None:
    for key, value in environ.items():
        if key in known:
            previous = values.values.get(key)
            if previous is not None and previous[0] == value and previous[1].kind == "file":
                continue  # the same value systemd loaded from that file: keep naming the file
            values.set(key, value, Source("environment"))
        elif _is_locksmith_key(key) and key not in _ALL_LOCKSMITH_KEYS:
            values.warn_unknown(key, Source("environment"))


FlagValue = str | bool | int | Sequence[str] | None


def _read_flags(values: _Values, flags: Mapping[str, FlagValue], known: frozenset[str]) -> None:
    for key, value in flags.items():
        if key not in known:
            raise ConfigError(f"unknown configuration key {key!r} given as a flag: use one of {sorted(known)}")
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str | int):
            text = str(value)
        else:
            text = ",".join(value)
        values.set(key, text, Source("flag"))


def load_config(
    role: Role,
    flags: Mapping[str, FlagValue] | None = None,
    environ: Mapping[str, str] | None = None,
    paths: Sequence[str | Path] = DEFAULT_PATHS,
) -> Config:
    """Read every source, validate, and return the one Config; raises ConfigError.

    `flags` maps canonical variable names (`LOCKSMITHD_ENDPOINT`, `REBOOT_STRATEGY`, ...) to what
    the command line gave; None values are ignored (`flags_from_args` builds this mapping).
    `paths` are the config files, lowest precedence first."""
    if role not in _PREFIX:
        raise ValueError(f"role must be 'agent' or 'cli', not {role!r}")
    known = known_keys(role)
    file_paths = tuple(Path(p) for p in paths)
    values = _Values()
    _read_files(values, file_paths, known)
    _read_environ(values, os.environ if environ is None else environ, known)
    _read_flags(values, flags or {}, known)
    return _build(role, values, file_paths)


# --- Validation -----------------------------------------------------------------------------


_T = TypeVar("_T")
_D = TypeVar("_D")


class _Builder:
    def __init__(self, role: Role, values: _Values) -> None:
        self.role = role
        self.prefix = _PREFIX[role]
        self.values = values
        self.sources: dict[str, Source] = {}

    def raw(self, key: str) -> tuple[str, Source] | None:
        item = self.values.get(key)
        if item is not None:
            self.sources[key] = item[1]
        return item

    def fail(self, key: str, value: str, source: Source, problem: str) -> ConfigError:
        return ConfigError(f"{key}={_shown(key, value)} (from {source}): {problem}", key, source)

    def text(self, key: str, default: str | None = None) -> str | None:
        item = self.raw(key)
        return default if item is None else item[0].strip() or default

    def parsed(self, key: str, parse: Callable[[str], _T], default: _D) -> _T | _D:
        item = self.raw(key)
        if item is None:
            return default
        value, source = item
        try:
            return parse(value.strip())
        except ValueError as exc:
            raise self.fail(key, value, source, str(exc)) from None


def _build(role: Role, values: _Values, paths: tuple[Path, ...]) -> Config:
    b = _Builder(role, values)
    p = b.prefix
    warnings = list(values.warnings)

    strategy = b.parsed("REBOOT_STRATEGY", _parse_strategy, DEFAULT_STRATEGY)
    update_group = b.text("GROUP", DEFAULT_UPDATE_GROUP) or DEFAULT_UPDATE_GROUP
    server = b.parsed("SERVER", _parse_http_url, None)
    kv = _build_kv(b, warnings)
    lock_group = b.parsed(p + "GROUP", _parse_lock_group, None)
    timezone = b.parsed(p + "TIMEZONE", load_timezone, None) or local_timezone()
    windows = _build_windows(b, timezone)
    machine_id_file = b.parsed(p + "MACHINE_ID_FILE", _parse_abs_path, DEFAULT_MACHINE_ID_FILE)
    agent = _build_agent(b, strategy) if role == "agent" else None

    return Config(
        role=role,
        strategy=strategy,
        update_group=update_group,
        server=server,
        kv=kv,
        lock_group=lock_group,
        windows=windows,
        timezone=timezone,
        machine_id_file=machine_id_file,
        agent=agent,
        sources=MappingProxyType(dict(b.sources)),
        warnings=tuple(warnings),
        paths=paths,
        given=MappingProxyType({k: _shown(k, values.values[k][0]) for k in b.sources}),
    )


def _build_kv(b: _Builder, warnings: list[str]) -> KVOptions:
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
        files[suffix] = b.parsed(p + suffix, _parse_readable_file, None)
    cert, tls_key = files["ETCD_CERTFILE"], files["ETCD_KEYFILE"]
    if (cert is None) != (tls_key is None):
        have, missing = ("ETCD_CERTFILE", "ETCD_KEYFILE") if cert else ("ETCD_KEYFILE", "ETCD_CERTFILE")
        given = b.raw(p + have)
        assert given is not None
        raise ConfigError(
            f"{p}{have}={_shown(p + have, given[0])} is set but {p}{missing} is not (from {given[1]}): "
            "a client certificate needs its key; set both or neither",
            p + have,
            given[1],
        )
    if any(files.values()) and not any(e.address.startswith("https://") for e in endpoints):
        warnings.append(
            f"{p}ETCD_CAFILE/CERTFILE/KEYFILE are set but no endpoint uses https ({value}); the TLS files are unused"
        )

    username = b.text(p + "ETCD_USERNAME")
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


def _build_windows(b: _Builder, timezone: tzinfo) -> WindowSchedule | None:
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
                f"{many_key}={_shown(many_key, many[0])} (from {many[1]}) and {other_key}="
                f"{_shown(other_key, other_value)} (from {other_source}) are both set: use one way to give windows",
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
            f"{have_key}={_shown(have_key, have_value)} is set but {missing} is not (from {have_source}): "
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


def _build_agent(b: _Builder, strategy: str) -> AgentOptions:
    p = AGENT_PREFIX
    health = HealthGate(
        command=b.parsed(p + "HEALTH_COMMAND", _parse_command, None),
        unit=b.parsed(p + "HEALTH_UNIT", _parse_unit, None),
        url=b.parsed(p + "HEALTH_URL", _parse_http_url, None),
        timeout=b.parsed(p + "HEALTH_TIMEOUT", _positive_duration, DEFAULT_HEALTH_TIMEOUT),
        interval=b.parsed(p + "HEALTH_INTERVAL", _positive_duration, DEFAULT_HEALTH_INTERVAL),
    )
    hooks = Hooks(
        pre_reboot=b.parsed(p + "PRE_REBOOT_HOOK", _parse_command, None),
        post_boot=b.parsed(p + "POST_BOOT_HOOK", _parse_command, None),
        timeout=b.parsed(p + "HOOK_TIMEOUT", _positive_duration, DEFAULT_HOOK_TIMEOUT),
    )
    fleetlock_url = b.parsed(p + "FLEETLOCK_URL", _parse_http_url, None)
    if strategy == "fleetlock" and fleetlock_url is None:
        item = b.raw("REBOOT_STRATEGY")
        source = item[1] if item else DEFAULT_SOURCE
        raise ConfigError(
            f'REBOOT_STRATEGY="fleetlock" (from {source}) needs {p}FLEETLOCK_URL: '
            "set it to the FleetLock server's base URL, e.g. https://fleetlock.example:8080",
            "REBOOT_STRATEGY",
            source,
        )
    return AgentOptions(
        reboot_command=b.parsed(p + "REBOOT_COMMAND", _parse_command, None),
        health=health,
        hooks=hooks,
        login_check=b.parsed(p + "LOGIN_CHECK", _parse_bool, True),
        login_delay=b.parsed(p + "LOGIN_DELAY", _non_negative_duration, DEFAULT_LOGIN_DELAY),
        fleetlock_url=fleetlock_url,
        metrics=b.parsed(p + "METRICS", _parse_metrics, None),
        coordinator_file=b.parsed(p + "COORDINATOR_FILE", _parse_abs_path, DEFAULT_COORDINATOR_FILE),
        log_format=b.parsed(p + "LOG_FORMAT", _parse_log_format, "logfmt"),
        log_level=b.parsed(p + "LOG_LEVEL", _parse_log_level, "info"),
    )


# --- Value parsers: each raises ValueError with "problem: fix" ------------------------------

_STRATEGY = re.compile(r"[a-z0-9-]+")
_UNIT = re.compile(r"[A-Za-z0-9:_.\\@-]+")


def _parse_strategy(text: str) -> str:
    name = text.lower()
    if not _STRATEGY.fullmatch(name):
        raise ValueError(
            "not a strategy name: use best-effort, etcd-lock, reboot, off, fleetlock or an installed plugin's name"
        )
    return name


def _parse_http_url(text: str) -> str:
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError("the port is not a number from 0 to 65535: fix the URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL: use e.g. https://host:port/path")
    return text


def _parse_lock_group(text: str) -> str:
    if not text.isprintable():
        raise ValueError("the lock group contains control characters: use a plain name like prod or prod/db")
    return text


def _parse_abs_path(text: str) -> Path:
    if not text.startswith("/"):
        raise ValueError("not an absolute path: give the full path starting with /")
    return Path(text)


def _parse_readable_file(text: str) -> str:
    path = _parse_abs_path(text) if text.startswith("/") else Path(text)
    try:
        with path.open("rb") as f:
            f.read(1)
    except FileNotFoundError:
        raise ValueError("the file does not exist: fix the path") from None
    except IsADirectoryError:
        raise ValueError("is a directory, not a file: point to the PEM file") from None
    except PermissionError:
        raise ValueError(f"the file is not readable by uid {os.geteuid()}: fix its permissions") from None
    except OSError as exc:
        raise ValueError(f"the file cannot be read ({exc.strerror}): fix the path or the file") from None
    return str(path)


def _parse_command(text: str) -> tuple[str, ...] | None:
    try:
        argv = tuple(shlex.split(text))
    except ValueError as exc:
        raise ValueError(f"cannot split into a command line ({exc}): fix the quoting") from None
    return argv or None


def _parse_unit(text: str) -> str:
    if not _UNIT.fullmatch(text):
        raise ValueError("not a systemd unit name: use e.g. kubelet.service")
    return text if "." in text else f"{text}.service"


def _positive_duration(text: str) -> timedelta:
    value = parse_duration(text)
    if value <= timedelta(0):
        raise ValueError(f"must be longer than 0 (got {format_duration(value)}): use e.g. 30s or 5m")
    return value


def _non_negative_duration(text: str) -> timedelta:
    value = parse_duration(text)
    if value < timedelta(0):
        raise ValueError(f"must not be negative (got {format_duration(value)}): use 0 or e.g. 5m")
    return value


_TRUE = frozenset({"1", "yes", "y", "true", "t", "on"})
_FALSE = frozenset({"0", "no", "n", "false", "f", "off"})


def _parse_bool(text: str) -> bool:
    word = text.lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError("not a boolean: use true or false (also yes/no, on/off, 1/0)")


def _parse_metrics(text: str) -> MetricsAddress | None:
    if text.lower() in ("off", "false", "no", "0", "none"):
        return None
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path.startswith("/"):
            raise ValueError("the unix socket path must be absolute: use unix:/run/locksmith/metrics.sock")
        return MetricsAddress(path=Path(path))
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not (0 <= int(port_text) <= 65535):
        raise ValueError("use 127.0.0.1:PORT (loopback only), [::1]:PORT or unix:/PATH, or off")
    host = host.strip("[]")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"{host or 'an empty host'} is not a loopback address: metrics listen only on 127.0.0.1, ::1 or a unix "
            "socket (put a proxy in front to publish them)"
        )
    return MetricsAddress(host=host, port=int(port_text))


def _parse_log_format(text: str) -> Literal["logfmt", "json"]:
    word = text.lower()
    if word == "logfmt":
        return "logfmt"
    if word == "json":
        return "json"
    raise ValueError("unknown log format: use logfmt or json")


_LEVELS = {"debug": "debug", "info": "info", "warn": "warning", "warning": "warning", "error": "error"}


def _parse_log_level(text: str) -> str:
    try:
        return _LEVELS[text.lower()]
    except KeyError:
        raise ValueError("unknown log level: use debug, info, warning or error") from None


# --- Command-line options shared by locksmithd and locksmithctl -----------------------------

# (suffix or full key, flag, metavar, help). Suffixes get the role's prefix; the Go locksmithctl
# flag names are kept as they were.
_FLAG_SPECS: tuple[tuple[str, str, str | None, str], ...] = (
    ("ENDPOINT", "--endpoint", "URL", "KV store endpoint; repeat or comma-separate; replaces the default"),
    ("ETCD_CAFILE", "--etcd-cafile", "PATH", "CA bundle to verify etcd's certificate"),
    ("ETCD_CERTFILE", "--etcd-certfile", "PATH", "client certificate for etcd (needs --etcd-keyfile)"),
    ("ETCD_KEYFILE", "--etcd-keyfile", "PATH", "client key for etcd (needs --etcd-certfile)"),
    ("ETCD_USERNAME", "--etcd-username", "NAME", "etcd user name"),
    ("ETCD_PASSWORD", "--etcd-password", "PASSWORD", "etcd password (prefer the variable: flags show in ps)"),
    ("GROUP", "--group", "GROUP", "lock group (default: the global semaphore)"),
    ("MACHINE_ID_FILE", "--machine-id-file", "PATH", "file holding this host's id"),
    ("REBOOT_WINDOW_START", "--reboot-window-start", "START", "window start: 'HH:MM', 'Thu 04:00', 'Mon-Fri 02:00'"),
    ("REBOOT_WINDOW_LENGTH", "--reboot-window-length", "DURATION", "window length, e.g. 1h30m"),
    ("REBOOT_WINDOWS", "--reboot-windows", "WINDOWS", "several windows: 'Mon-Fri 02:00 1h; Sat,Sun 04:00 3h'"),
    ("TIMEZONE", "--timezone", "ZONE", "IANA time zone of the windows (default: the machine's)"),
)
_AGENT_FLAG_SPECS: tuple[tuple[str, str, str | None, str], ...] = (
    ("REBOOT_STRATEGY", "--reboot-strategy", "NAME", "best-effort (default), etcd-lock, reboot, off, fleetlock"),
    ("REBOOT_COMMAND", "--reboot-command", "CMD", "run this to reboot instead of asking logind over D-Bus"),
    ("HEALTH_COMMAND", "--health-command", "CMD", "after boot, release the lock only once this exits 0"),
    ("HEALTH_UNIT", "--health-unit", "UNIT", "after boot, release the lock only once this unit is active"),
    ("HEALTH_URL", "--health-url", "URL", "after boot, release the lock only once this URL answers 2xx"),
    ("HEALTH_TIMEOUT", "--health-timeout", "DURATION", "give up the health gate (keep the lock) after this; 10m"),
    ("HEALTH_INTERVAL", "--health-interval", "DURATION", "time between health checks; 5s"),
    ("PRE_REBOOT_HOOK", "--pre-reboot-hook", "CMD", "run before rebooting (e.g. drain)"),
    ("POST_BOOT_HOOK", "--post-boot-hook", "CMD", "run after boot before releasing (e.g. uncordon)"),
    ("HOOK_TIMEOUT", "--hook-timeout", "DURATION", "time limit of each hook; 5m"),
    ("LOGIN_CHECK", "--login-check", None, "warn logged-in users and delay the reboot (default on)"),
    ("LOGIN_DELAY", "--login-delay", "DURATION", "delay when users are logged in; 5m"),
    ("FLEETLOCK_URL", "--fleetlock-url", "URL", "FleetLock server base URL (fleetlock strategy)"),
    ("METRICS", "--metrics", "ADDR", "Prometheus endpoint: 127.0.0.1:PORT or unix:/PATH (default off)"),
    ("COORDINATOR_FILE", "--coordinator-file", "PATH", "where to write the coordinator state"),
    ("LOG_FORMAT", "--log-format", "FORMAT", "logfmt (default) or json"),
    ("LOG_LEVEL", "--log-level", "LEVEL", "debug, info (default), warning, error"),
)


def _flag_key(role: Role, name: str) -> str:
    # Only the strategy is unprefixed among the flags; `--group` is the *lock* group.
    return name if name == "REBOOT_STRATEGY" else _PREFIX[role] + name


def _dest(key: str) -> str:
    return "config_" + key.lower()


def add_config_arguments(parser: argparse.ArgumentParser, role: Role) -> None:
    """Add the configuration flags of `role` to `parser` (as an argument group). Read them back with
    `flags_from_args`; flags left out stay None so files and environment apply."""
    group = parser.add_argument_group("configuration (flags override the environment and update.conf)")
    specs = _FLAG_SPECS + (_AGENT_FLAG_SPECS if role == "agent" else ())
    for name, flag, metavar, text in specs:
        key = _flag_key(role, name)
        help_text = f"{text} [{key}]"
        if name == "ENDPOINT":
            help_text = f"{text} (default {DEFAULT_ENDPOINT}) [{key}]"
            group.add_argument(flag, dest=_dest(key), action="append", metavar=metavar, help=help_text)
        elif metavar is None:
            group.add_argument(flag, dest=_dest(key), action=argparse.BooleanOptionalAction, help=help_text)
        else:
            group.add_argument(flag, dest=_dest(key), metavar=metavar, help=help_text)


def flags_from_args(args: argparse.Namespace, role: Role) -> dict[str, FlagValue]:
    """The flags `add_config_arguments` added, as the mapping `load_config` takes."""
    specs = _FLAG_SPECS + (_AGENT_FLAG_SPECS if role == "agent" else ())
    out: dict[str, FlagValue] = {}
    for name, _flag, _metavar, _text in specs:
        key = _flag_key(role, name)
        value = getattr(args, _dest(key), None)
        if value is not None:
            out[key] = value
    return out
