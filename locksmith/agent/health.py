"""The health gate: before giving back the reboot lock after boot, make sure this host works.

Up to three checks, all of which must pass: a command exiting 0, a systemd unit being active
(asked over D-Bus, org.freedesktop.systemd1), an HTTP(S) URL answering 2xx. They are retried every
`interval` until they pass or `timeout` runs out; the caller then keeps the lock and says so —
so a broken update stops at the first host instead of rolling through the fleet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from dbus_fast.aio import MessageBus

from locksmith.agent.hooks import run_command
from locksmith.bus.system import CallError, call
from locksmith.settings.schema import default_seconds

SYSTEMD = "org.freedesktop.systemd1"
SYSTEMD_PATH = "/org/freedesktop/systemd1"
SYSTEMD_MANAGER = "org.freedesktop.systemd1.Manager"
SYSTEMD_UNIT = "org.freedesktop.systemd1.Unit"


@dataclass(frozen=True)
class HealthGate:
    command: str | None = None
    unit: str | None = None
    url: str | None = None
    # The schema's defaults, so a gate built without them waits as a host without the variables does.
    interval: float = default_seconds("locksmithd", "LOCKSMITHD_HEALTH_INTERVAL")
    timeout: float = default_seconds("locksmithd", "LOCKSMITHD_HEALTH_TIMEOUT")
    check_timeout: float = 10.0

    @property
    def enabled(self) -> bool:
        return bool(self.command or self.unit or self.url)

    async def failures(self, bus: Callable[[], Awaitable[MessageBus]] | None = None) -> list[str]:
        """Run every configured check once; one line per failing check (empty: healthy)."""
        problems: list[str] = []
        if self.command:
            result = await run_command(self.command, self.check_timeout, env={"LOCKSMITH_HOOK": "health"})
            if not result.ok:
                problems.append(f"health command {result.detail}")
        if self.unit:
            if bus is None:
                problems.append(f"unit {self.unit}: no D-Bus connection to ask systemd")
            else:
                state = await unit_active_state(await bus(), self.unit, self.check_timeout)
                if state != "active":
                    problems.append(f"unit {self.unit} is {state}")
        if self.url:
            problem = await _check_url(self.url, self.check_timeout)
            if problem:
                problems.append(problem)
        return problems

    async def wait_healthy(self, log: Any, bus: Callable[[], Awaitable[MessageBus]] | None = None) -> bool:
        """Retry the checks until they all pass (True) or the timeout runs out (False)."""
        deadline = time.monotonic() + self.timeout
        attempt = 0
        while True:
            attempt += 1
            problems = await self.failures(bus)
            if not problems:
                log.info("health.ok", attempt=attempt)
                return True
            left = deadline - time.monotonic()
            log.warning("health.failing", attempt=attempt, problems=problems, seconds_left=round(max(left, 0), 1))
            if left <= 0:
                return False
            await asyncio.sleep(min(self.interval, left))


async def unit_active_state(bus: MessageBus, unit: str, limit: float) -> str:
    """systemd's ActiveState of `unit` ("active", "failed", …), or a short reason it is unknown."""
    try:
        async with asyncio.timeout(limit):
            unit_path = (await call(bus, SYSTEMD, SYSTEMD_PATH, SYSTEMD_MANAGER, "GetUnit", "s", [unit])).body[0]
            reply = await call(
                bus, SYSTEMD, unit_path, "org.freedesktop.DBus.Properties", "Get", "ss", [SYSTEMD_UNIT, "ActiveState"]
            )
    except TimeoutError:
        return f"unknown (systemd did not answer in {limit:g}s)"
    except CallError as exc:
        if exc.error_name == f"{SYSTEMD}.NoSuchUnit":
            return "not loaded"
        return f"unknown ({exc.error_name or exc.detail or 'no reply'})"
    value = reply.body[0].value if reply.body else None
    return value if isinstance(value, str) else "unknown (bad ActiveState)"


async def _check_url(url: str, limit: float) -> str | None:
    # Here, not at the top: only a gate with a URL needs the HTTP stack (~5 MiB of an idle agent).
    import httpx

    try:
        async with httpx.AsyncClient(timeout=limit, follow_redirects=True) as client:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        return f"health URL {url}: {type(exc).__name__}: {exc}"
    if not 200 <= response.status_code < 300:
        return f"health URL {url} answered {response.status_code}"
    return None
