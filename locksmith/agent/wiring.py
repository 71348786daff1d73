"""Adapters between the state machine and the outside world: the bus, the update engine, systemd
notifications, the coordinator file, metrics and logged-in users. Thin on purpose: each line
hands over to the module that does the job."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from locksmith.agent.machine import Observer
from locksmith.agent.states import COORDINATOR_STATE, State
from locksmith.bus.system import LazyBus
from locksmith.settings.config import Config

log = structlog.get_logger("locksmith.agent")


def observers_for(
    config: Config, strategy: str
) -> tuple[list[Observer], Callable[[], None], list[Coroutine[Any, Any, None]]]:
    """The transition observers (systemd STATUS=, coordinator file, metrics), the READY=1 callback
    and the background jobs (watchdog pings, metrics endpoint) for this configuration."""
    from locksmith.agent import coordinator, metrics, sdnotify

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

    def write_coordinator(name: str, state: State, fields: dict[str, Any]) -> None:
        if name == "state":
            try:
                coordinator.write_coordinator(strategy, COORDINATOR_STATE[state], agent.coordinator_file)  # type: ignore[arg-type]
            except coordinator.CoordinatorFileError as exc:
                log.warning("coordinator.write-failed", reason=str(exc))

    observers.append(write_coordinator)

    if agent.metrics is not None:
        registry = metrics.Metrics(states=[s.value for s in State])
        registry.set_strategy(strategy)
        observers.append(_metrics_observer(registry))
        address = agent.metrics
        listen = metrics.ListenAddress(host=address.host, port=address.port, unix_path=address.path)
        background.append(_serve_metrics(metrics.MetricsServer(registry, listen)))

    interval = sdnotify.watchdog_interval()
    if interval is not None:
        background.append(_watchdog(interval))

    return observers, lambda: sdnotify.ready(f"started ({strategy})"), background


def _metrics_observer(registry: Any) -> Observer:
    waiting_since: list[float] = []

    def observe(name: str, state: State, fields: dict[str, Any]) -> None:
        if name == "state":
            registry.set_state(state.value)
            if waiting_since and state is not State.ACQUIRING:
                registry.add_lock_wait(time.monotonic() - waiting_since.pop())
            elif state is State.ACQUIRING and not waiting_since:
                waiting_since.append(time.monotonic())
        elif name == "lock.attempt":
            registry.lock_attempt()
        elif name == "lock.failure":
            registry.lock_failure()

    return observe


async def _serve_metrics(server: Any) -> None:
    try:
        await server.start()
    except OSError as exc:
        log.error("metrics.unavailable", address=str(server.listen), reason=str(exc))
        return
    try:
        await asyncio.Event().wait()
    finally:
        await server.close()


def _status_line(state: State, fields: dict[str, Any]) -> str:
    extra = ", ".join(f"{k}={v}" for k, v in fields.items() if k != "previous" and v is not None)
    return f"{state.value} ({extra})" if extra else state.value


async def _watchdog(interval: float) -> None:
    from locksmith.agent import sdnotify

    # Ping at half the interval systemd set, as sd_watchdog_enabled(3) recommends.
    while True:
        sdnotify.watchdog()
        await asyncio.sleep(interval / 2)


def session_checks(
    bus: LazyBus,
) -> tuple[Callable[[], Coroutine[Any, Any, list[str]]], Callable[[str], Coroutine[Any, Any, None]]]:
    """Who is logged in (logind over the bus, else utmp) and how to warn them (wall)."""
    from locksmith.agent import sessions

    async def logged_in_users() -> list[str]:
        try:
            connection = await asyncio.wait_for(bus.get(), 5.0)
        except TimeoutError:
            connection = None
        return sorted({s.user for s in await sessions.list_sessions(connection)})

    async def broadcast(message: str) -> None:
        result = await sessions.broadcast(message)
        log.info("login.warned", method=result.method, terminals=result.terminals)

    return logged_in_users, broadcast
