"""The value parsers of the settings schema: text in, typed value out.

Each raises ValueError with "problem: fix" (the loader prefixes `KEY="value" (from source)`), so every
declaration in `locksmith.settings.schema` gets the same one-line errors, and `check()` answers with
exactly what the loader would say.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta, tzinfo
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from locksmith.kv.base import parse_endpoints
from locksmith.settings.duration import format_duration, parse_duration
from locksmith.settings.windows import load_timezone, parse_start, parse_windows


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


def parse_text(text: str) -> str:
    return text


def seconds(parse: Callable[[str], timedelta]) -> Callable[[str], float]:
    """The same duration parser, giving float seconds (what the agent's timers take)."""

    def parse_seconds(text: str) -> float:
        return parse(text).total_seconds()

    return parse_seconds


_CHANNEL = re.compile(r"[A-Za-z0-9._-]+")


def parse_channel(text: str) -> str:
    if not _CHANNEL.fullmatch(text):
        raise ValueError("not a channel name: use letters, digits, '.', '_' or '-' (e.g. stable)")
    return text


def duration_or_seconds(text: str) -> float:
    """A Go duration (`45m`), or plain seconds (`600`, as the first update.conf files had): float seconds."""
    try:
        number = float(text)
    except ValueError:
        return seconds(non_negative_duration)(text)
    if not 0 <= number < float("inf"):
        raise ValueError("must be 0 or more: use a Go duration like 45m (or seconds)")
    return number


_VERSION = re.compile(r"[0-9A-Za-z.+_-]+")


def parse_version(text: str) -> str:
    if not _VERSION.fullmatch(text):
        raise ValueError("not a version: use e.g. 1068.9.0")
    return text


def parse_endpoint_list(text: str) -> list[str]:
    urls = [u.strip() for u in text.split(",") if u.strip()]
    parse_endpoints(urls)  # raises ValueError naming the bad one
    return urls


def parse_timezone(text: str) -> tzinfo:
    return load_timezone(text)


def parse_windows_text(text: str) -> str:
    parse_windows(text)
    return text


def parse_window_start(text: str) -> str:
    parse_start(text)
    return text


_STRATEGY = re.compile(r"[a-z0-9-]+")
_UNIT = re.compile(r"[A-Za-z0-9:_.\\@-]+")


def parse_strategy(text: str) -> str:
    name = text.lower()
    if not _STRATEGY.fullmatch(name):
        raise ValueError(
            "not a strategy name: use best-effort, etcd-lock, reboot, off, fleetlock or an installed plugin's name"
        )
    return name


def parse_http_url(text: str) -> str:
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError("the port is not a number from 0 to 65535: fix the URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL: use e.g. https://host:port/path")
    return text


def parse_lock_group(text: str) -> str:
    if not text.isprintable():
        raise ValueError("the lock group contains control characters: use a plain name like prod or prod/db")
    return text


def parse_abs_path(text: str) -> Path:
    if not text.startswith("/"):
        raise ValueError("not an absolute path: give the full path starting with /")
    return Path(text)


def parse_readable_file(text: str) -> str:
    path = parse_abs_path(text) if text.startswith("/") else Path(text)
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


def parse_command(text: str) -> tuple[str, ...] | None:
    try:
        argv = tuple(shlex.split(text))
    except ValueError as exc:
        raise ValueError(f"cannot split into a command line ({exc}): fix the quoting") from None
    return argv or None


def parse_unit(text: str) -> str:
    if not _UNIT.fullmatch(text):
        raise ValueError("not a systemd unit name: use e.g. kubelet.service")
    return text if "." in text else f"{text}.service"


def positive_duration(text: str) -> timedelta:
    value = parse_duration(text)
    if value <= timedelta(0):
        raise ValueError(f"must be longer than 0 (got {format_duration(value)}): use e.g. 30s or 5m")
    return value


def non_negative_duration(text: str) -> timedelta:
    value = parse_duration(text)
    if value < timedelta(0):
        raise ValueError(f"must not be negative (got {format_duration(value)}): use 0 or e.g. 5m")
    return value


def parse_lock_ttl(text: str) -> int | None:
    """LOCKSMITHD_LOCK_TTL: a Go duration as whole seconds, None for 0 (off)."""
    from locksmith.protocol.holder_lease import check_ttl

    value = non_negative_duration(text)
    if value == timedelta(0):
        return None
    return check_ttl(value.total_seconds())


_TRUE = frozenset({"1", "yes", "y", "true", "t", "on"})
_FALSE = frozenset({"0", "no", "n", "false", "f", "off"})


def parse_bool(text: str) -> bool:
    word = text.lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError("not a boolean: use true or false (also yes/no, on/off, 1/0)")


def parse_metrics(text: str) -> MetricsAddress | None:
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


def parse_log_format(text: str) -> Literal["logfmt", "json"]:
    word = text.lower()
    if word == "logfmt":
        return "logfmt"
    if word == "json":
        return "json"
    raise ValueError("unknown log format: use logfmt or json")


_LEVELS = {"debug": "debug", "info": "info", "warn": "warning", "warning": "warning", "error": "error"}


def parse_log_level(text: str) -> str:
    try:
        return _LEVELS[text.lower()]
    except KeyError:
        raise ValueError("unknown log level: use debug, info, warning or error") from None
