"""Adapters between the state machine and the outside world: the bus, the update engine, systemd
notifications, the coordinator file, metrics and logged-in users. Thin on purpose: each line
hands over to the module that does the job."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import structlog
from dbus_fast.aio import MessageBus

from locksmith.agent.machine import Observer
from locksmith.agent.states import COORDINATOR_STATE, State
from locksmith.config import Config
from locksmith.dbus.bus import BusUnavailableError, connect_system_bus
from locksmith.dbus.updateengine import UpdateEngineWatcher, UpdateStatus

log = structlog.get_logger("locksmith.agent")

BUS_RETRY_MAX = 30.0


class LazyBus:
    """One system-bus connection, made on first use and remade if it drops; waits (with a capped
    back-off) while the bus is absent instead of crash-looping."""

    def __init__(self) -> None:
        self._bus: MessageBus | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> MessageBus:
        async with self._lock:
            if self._bus is not None and self._bus.connected:
                return self._bus
            delay = 0.5
            while True:
                try:
                    self._bus = await connect_system_bus()
                    return self._bus
                except BusUnavailableError as exc:
                    log.warning("bus.unavailable", reason=str(exc), retry_in=delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, BUS_RETRY_MAX)

    async def close(self) -> None:
        if self._bus is not None:
            self._bus.disconnect()
            with contextlib.suppress(Exception):
                await self._bus.wait_for_disconnect()
            self._bus = None


async def update_statuses(bus: LazyBus) -> AsyncIterator[UpdateStatus]:
    """Every status the update engine reports (the watcher trusts only the name's owner, and
    re-asks GetStatus whenever the engine (re)appears). Reconnects if the bus drops."""
    while True:
        connection = await bus.get()
        watcher = UpdateEngineWatcher(connection)
        try:
            await watcher.start()
            async for status in watcher:
                yield status
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()
        log.warning("update-engine.watch-ended", detail="reconnecting to the bus")
        await asyncio.sleep(1.0)


def observers_for(
    config: Config, strategy: str
) -> tuple[list[Observer], Callable[[], None], list[Coroutine[Any, Any, None]]]:
    """The transition observers (systemd STATUS=, coordinator file, metrics), the READY=1 callback
    and the background jobs (watchdog pings, metrics endpoint) for this configuration."""
    from locksmith import coordinator, sdnotify

    agent = config.agent
    assert agent is not None
    observers: list[Observer] = []
    background: list[Coroutine[Any, Any, None]] = []

    def publish_status(name: str, state: State, fields: dict[str, Any]) -> None:
        if name == "state":
            sdnotify.status(_status_line(state, fields))
            if state is State.STOPPING:
                sdnotify.stopping()

    observers.append(publish_status)

    coordinator_file = coordinator.CoordinatorFile(agent.coordinator_file, strategy=strategy)

    def write_coordinator(name: str, state: State, fields: dict[str, Any]) -> None:
        if name == "state":
            coordinator_file.write(COORDINATOR_STATE[state])

    observers.append(write_coordinator)

    if agent.metrics is not None:
        from locksmith import metrics

        registry = metrics.AgentMetrics(strategy=strategy)
        observers.append(registry.observe)
        background.append(metrics.serve(registry, agent.metrics))

    interval = sdnotify.watchdog_interval()
    if interval is not None:
        background.append(_watchdog(interval))

    return observers, lambda: sdnotify.ready(f"started ({strategy})"), background


def _status_line(state: State, fields: dict[str, Any]) -> str:
    extra = ", ".join(f"{k}={v}" for k, v in fields.items() if k != "previous" and v is not None)
    return f"{state.value} ({extra})" if extra else state.value


async def _watchdog(interval: float) -> None:
    from locksmith import sdnotify

    # Ping at half the interval systemd set, as sd_watchdog_enabled(3) recommends.
    while True:
        sdnotify.watchdog()
        await asyncio.sleep(interval / 2)


async def logged_in_users() -> list[str]:
    from locksmith import sessions

    return await sessions.logged_in_users()


async def broadcast(message: str) -> None:
    from locksmith import sessions

    await sessions.broadcast(message)
