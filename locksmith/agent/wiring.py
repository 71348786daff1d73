"""Adapters between the state machine's ports (ports.py) and the outside world: the bus, the
update engine, systemd notifications, the coordinator file, metrics, the health gate and logged-in
users. Observers dispatch on event types. Thin on purpose: each line hands over to the module that
does the job."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import structlog

from locksmith.agent import sdnotify
from locksmith.agent.coordinator import CoordinatorFile, CoordinatorFileError
from locksmith.agent.health import HealthGate
from locksmith.agent.ports import (
    Event,
    ExpiredHolderRemoved,
    LockAttempt,
    LockFailure,
    LockKept,
    LockReleased,
    Observer,
    Ready,
    StateEntered,
)
from locksmith.agent.settings import AgentSettings
from locksmith.agent.settle import Settling
from locksmith.agent.states import COORDINATOR_STATE, State
from locksmith.bus.system import LazyBus

log = structlog.get_logger("locksmith.agent")


def observers_for(settings: AgentSettings, strategy: str) -> tuple[list[Observer], list[Coroutine[Any, Any, None]]]:
    """The event observers (systemd READY=1 and STATUS=, the coordinator file, metrics) and the
    background jobs (watchdog pings, metrics endpoint) for this configuration."""
    systemd, coordinator = SystemdStatus(strategy), CoordinatorPublisher(settings.coordinator_file, strategy)
    observers: list[Observer] = [systemd, coordinator, freeze_start_up_objects_when_idle()]
    background: list[Coroutine[Any, Any, None]] = [
        systemd.settling.flush_at_exit(),
        coordinator.settling.flush_at_exit(),
    ]
    if settings.metrics is not None:
        # Only with an endpoint configured: the registry and its server stay resident (~0.7 MiB).
        from locksmith.agent import metrics

        registry = metrics.Metrics(states=[s.value for s in State])
        registry.set_strategy(strategy)
        observers.append(metrics_observer(registry))
        address = settings.metrics
        listen = metrics.ListenAddress(host=address.host, port=address.port, unix_path=address.path)
        background.append(_serve_metrics(metrics.MetricsServer(registry, listen)))

    interval = sdnotify.watchdog_interval()
    if interval is not None:
        background.append(_watchdog(interval))
    return observers, background


def freeze_start_up_objects_when_idle() -> Observer:
    """Once the agent first waits idle: one full garbage collection, then gc.freeze().

    Start-up (imports, config, the first bus and store calls) leaves the young generation nearly full,
    so the next burst of work, the update engine's signal, used to trigger a collection of its own in
    front of the reboot call (~0.1 ms here). Collected while idle instead, and what survives start-up
    lives as long as the process: frozen, later full collections no longer walk it."""
    done = False

    def observe(event: Event) -> None:
        nonlocal done
        if done or not isinstance(event, StateEntered) or event.state is not State.IDLE:
            return
        done = True
        try:
            asyncio.get_running_loop().call_soon(_collect_and_freeze)  # after this state is entered, not in it
        except RuntimeError:  # no event loop: not the agent (a test of the observers)
            return

    return observe


def _collect_and_freeze() -> None:
    gc.collect()
    gc.freeze()


class SystemdStatus:
    """Observer telling systemd READY=1 (at once), STATUS= with the newest state (settled: settle.py)
    and, on STOPPING, STATUS= and STOPPING=1 at once. Run `settling.flush_at_exit()` as a background job."""

    def __init__(self, strategy: str) -> None:
        self.strategy = strategy
        self.settling = Settling(self._send_status)
        self._status: str | None = None

    def __call__(self, event: Event) -> None:
        match event:
            case Ready():
                sdnotify.ready(f"started ({self.strategy})")
            case StateEntered(state=State.STOPPING):
                self._status = status_line(event)
                self.settling.write_now()
                sdnotify.stopping()
            case StateEntered():
                self._status = status_line(event)
                self.settling.changed()

    def _send_status(self) -> None:
        if self._status is not None:
            sdnotify.status(self._status)


class CoordinatorPublisher:
    """Observer writing the coordinator file: the Go words, our state since it was entered (a
    re-entry, e.g. ACQUIRING after a back-off, keeps its time and rewrites nothing), and whether a
    lock is kept on purpose after boot (until it is released or taken again for a new reboot).
    Written once a burst of changes settles (settle.py), at once from STOPPING on; run
    `settling.flush_at_exit()` as a background job."""

    def __init__(self, path: Path, strategy: str) -> None:
        self.file = CoordinatorFile(path, strategy)
        self.settling = Settling(self._write)
        self.state: State | None = None
        self.since = 0.0
        self.lock_kept: str | None = None

    def __call__(self, event: Event) -> None:
        match event:
            case StateEntered(state=state, at=at):
                if state is State.ACQUIRING:
                    self.lock_kept = None
                if state is not self.state:
                    self.state, self.since = state, at.timestamp()
            case LockKept(cause=cause):
                self.lock_kept = cause
            case LockReleased():
                self.lock_kept = None
            case _:
                return
        if self.state is None:
            return
        if self.state is State.STOPPING:  # the process may end any moment now
            self.settling.write_now()
        else:
            self.settling.changed()

    def _write(self) -> None:
        if self.state is None:
            return
        try:
            self.file.publish(
                COORDINATOR_STATE[self.state], phase=self.state.value, since=self.since, lock_kept=self.lock_kept
            )
        except CoordinatorFileError as exc:
            log.warning("coordinator.write-failed", reason=str(exc))


def metrics_observer(registry: Any) -> Observer:
    waiting_since: list[float] = []

    def observe(event: Event) -> None:
        match event:
            case StateEntered(state=state):
                registry.set_state(state.value)
                if waiting_since and state is not State.ACQUIRING:
                    registry.add_lock_wait(time.monotonic() - waiting_since.pop())
                elif state is State.ACQUIRING and not waiting_since:
                    waiting_since.append(time.monotonic())
            case LockAttempt():
                registry.lock_attempt()
            case LockFailure():
                registry.lock_failure()
            case ExpiredHolderRemoved():
                registry.expired_holder_removed()

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


def status_line(event: StateEntered) -> str:
    """systemd's STATUS=: the state and its details, e.g. "waiting-for-window (next_open=…)"."""
    extra = ", ".join(f"{k}={v}" for k, v in event.detail.items())
    return f"{event.state.value} ({extra})" if extra else event.state.value


async def _watchdog(interval: float) -> None:
    # Ping at half the interval systemd set, as sd_watchdog_enabled(3) recommends.
    while True:
        sdnotify.watchdog()
        await asyncio.sleep(interval / 2)


class BusHealthGate:
    """The configured health gate with the agent's bus for its systemd-unit check."""

    def __init__(self, gate: HealthGate, bus: LazyBus) -> None:
        self.gate = gate
        self.bus = bus

    @property
    def timeout(self) -> float:
        return self.gate.timeout

    async def wait_healthy(self, log: Any) -> bool:
        return await self.gate.wait_healthy(log, self.bus.get)


class LoginSessions:
    """Who is logged in (logind over the bus, else utmp) and how to warn them (wall). Made only when
    the login check is on; its module is loaded here, at start-up: loaded at first use, its import
    (~2.5 ms) sat between the update engine's signal and the reboot call."""

    def __init__(self, bus: LazyBus) -> None:
        from locksmith.agent import sessions

        self.bus = bus
        self._sessions = sessions

    async def users(self) -> list[str]:
        try:
            async with asyncio.timeout(5.0):
                connection = await self.bus.get()
        except TimeoutError:
            connection = None
        return sorted({s.user for s in await self._sessions.list_sessions(connection)})

    async def broadcast(self, message: str) -> None:
        result = await self._sessions.broadcast(message)
        log.info("login.warned", method=result.method, terminals=result.terminals)
