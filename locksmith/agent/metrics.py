"""An optional Prometheus text-format endpoint for locksmithd: GET /metrics, on loopback or a unix socket.

Tiny on purpose (a handful of gauges and counters, one asyncio server) rather than
prometheus_client: we need no registry, no multiprocess mode and no default process collectors,
and the text format is a few lines. Nothing listens beyond loopback: to scrape from elsewhere,
put a proxy in front (or point the scraper at the unix socket through a local agent).

Metrics:
  locksmith_state{state="…"}                   1 for the current state, 0 for the others seen/declared
  locksmith_strategy_info{strategy="…"}        1
  locksmith_lock_attempts_total                 attempts to take the reboot lock
  locksmith_lock_failures_total                 attempts that failed (busy semaphore, errors)
  locksmith_lock_wait_seconds_total             time spent waiting for the lock
  locksmith_expired_holders_removed_total       holders this host freed because their lease lapsed (LOCK_TTL)
  locksmith_last_transition_timestamp_seconds   Unix time of the last state change
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import structlog

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_MAX_REQUEST_HEAD = 8192
_REQUEST_TIMEOUT = 10.0
_log = structlog.get_logger("locksmith.agent.metrics")


class Metrics:
    """The agent's numbers; every method is cheap and never raises. Not thread-safe (asyncio only)."""

    def __init__(self, states: Iterable[str] = ()) -> None:
        self._states: dict[str, None] = dict.fromkeys(states)  # ordered set: stable output
        self.state: str | None = None
        self.strategy: str | None = None
        self.lock_attempts = 0
        self.lock_failures = 0
        self.lock_wait_seconds = 0.0
        self.expired_holders_removed = 0
        self.last_transition: float | None = None

    def set_state(self, state: str, *, now: float | None = None) -> None:
        """Record a transition to `state` (timestamped now, Unix seconds, unless given)."""
        self._states.setdefault(state)
        self.state = state
        self.last_transition = time.time() if now is None else now

    def set_strategy(self, strategy: str) -> None:
        self.strategy = strategy

    def lock_attempt(self) -> None:
        self.lock_attempts += 1

    def lock_failure(self) -> None:
        self.lock_failures += 1

    def expired_holder_removed(self) -> None:
        self.expired_holders_removed += 1

    def add_lock_wait(self, seconds: float) -> None:
        if seconds > 0:
            self.lock_wait_seconds += seconds

    def render(self) -> str:
        """The Prometheus text exposition format (0.0.4)."""
        out: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(f"{name}{labels} {_number(value)}" for labels, value in samples)

        metric(
            "locksmith_state",
            "gauge",
            "1 for the agent's current state.",
            [(f'{{state="{_label(s)}"}}', 1.0 if s == self.state else 0.0) for s in self._states],
        )
        if self.strategy is not None:
            metric(
                "locksmith_strategy_info",
                "gauge",
                "The configured reboot strategy.",
                [(f'{{strategy="{_label(self.strategy)}"}}', 1.0)],
            )
        metric(
            "locksmith_lock_attempts_total", "counter", "Attempts to take the reboot lock.", [("", self.lock_attempts)]
        )
        metric(
            "locksmith_lock_failures_total", "counter", "Failed attempts to take the lock.", [("", self.lock_failures)]
        )
        metric(
            "locksmith_lock_wait_seconds_total",
            "counter",
            "Seconds spent waiting for the reboot lock.",
            [("", self.lock_wait_seconds)],
        )
        metric(
            "locksmith_expired_holders_removed_total",
            "counter",
            "Holders this host removed from the semaphore because their lease lapsed.",
            [("", self.expired_holders_removed)],
        )
        if self.last_transition is not None:
            metric(
                "locksmith_last_transition_timestamp_seconds",
                "gauge",
                "Unix time of the last state transition.",
                [("", self.last_transition)],
            )
        return "\n".join(out) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(float(value))


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """Where the endpoint listens: a loopback host and port, or a unix socket path."""

    host: str | None = None
    port: int | None = None
    unix_path: Path | None = None

    def __str__(self) -> str:
        if self.unix_path is not None:
            return f"unix:{self.unix_path}"
        return f"[{self.host}]:{self.port}" if self.host and ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(spec: str) -> ListenAddress:
    """ "9100", "127.0.0.1:9100", "[::1]:9100", "localhost:9100" or an absolute socket path.

    Raises ValueError with one line naming the value and the accepted forms."""
    text = spec.strip()
    hint = "use PORT, 127.0.0.1:PORT, [::1]:PORT or an absolute unix socket path"
    if text.startswith("/"):
        return ListenAddress(unix_path=Path(text))
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    if host == "localhost":
        host = "127.0.0.1"
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"metrics address {spec!r}: bad port; {hint}")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"metrics address {spec!r}: only loopback is allowed (nothing listens beyond it); {hint}")
    return ListenAddress(host=host, port=int(port_text))


class MetricsServer:
    """Serves `metrics` at GET /metrics on `listen` until close()."""

    def __init__(self, metrics: Metrics, listen: ListenAddress) -> None:
        self.metrics = metrics
        self.listen = listen
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int | None:
        """The bound TCP port (useful with port 0), or None for a unix socket."""
        if self._server is None or self.listen.unix_path is not None:
            return None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> MetricsServer:
        """Bind and serve. Raises OSError (port in use, no such directory) for the caller to report."""
        path = self.listen.unix_path
        if path is not None:
            # A socket left behind by a killed agent would make bind fail; anything else is not ours.
            if path.exists() and stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()
            self._server = await asyncio.start_unix_server(self._handle, path=str(path))
        else:
            self._server = await asyncio.start_server(self._handle, host=self.listen.host, port=self.listen.port)
        _log.info("metrics-listening", address=str(self.listen) if path else f"{self.listen.host}:{self.port}")
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            if self.listen.unix_path is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.listen.unix_path)

    async def __aenter__(self) -> MetricsServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            method, target = _request_line(head)
            if method not in ("GET", "HEAD"):
                status, body = "405 Method Not Allowed", "only GET /metrics\n"
            elif target.split("?", 1)[0] != "/metrics":
                status, body = "404 Not Found", "see /metrics\n"
            else:
                status, body = "200 OK", self.metrics.render()
            payload = body.encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {len(payload)}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            if method != "HEAD":
                writer.write(payload)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass  # a broken or slow client gets nothing; the agent carries on
        finally:
            writer.close()


def _request_line(head: bytes) -> tuple[str, str]:
    if len(head) > _MAX_REQUEST_HEAD:
        raise ValueError("request head too large")
    parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
    if len(parts) != 3:
        raise ValueError("bad request line")
    return parts[0], parts[1]
