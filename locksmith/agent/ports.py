"""What the state machine needs from outside, as small typed ports, and the events it reports.

The machine (machine.py) talks to the world only through these: the update engine's statuses,
the rebooter, the health gate, logged-in sessions, the clock, and observers that receive typed
events. main.py plugs in the real adapters (wiring.py); the pure tests plug in in-memory ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from locksmith.agent.reboot import Rebooter
from locksmith.agent.states import State
from locksmith.protocol.update1 import Status

#: The update engine's statuses, in the order it reported them (the D-Bus watcher in production).
Updates = AsyncIterable[Status]


class HealthCheck(Protocol):
    """The health gate after boot; it owns whatever it needs to ask (the bus for systemd units)."""

    @property
    def timeout(self) -> float: ...

    async def wait_healthy(self, log: Any) -> bool:
        """Retry the checks until they pass (True) or `timeout` runs out (False)."""
        ...


class Sessions(Protocol):
    """Who is logged in, and how to warn them before a reboot."""

    async def users(self) -> list[str]: ...

    async def broadcast(self, message: str) -> None: ...


class Clock(Protocol):
    """Wall-clock time (reboot windows) and sleeping (pauses, back-offs, the reboot grace)."""

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        # datetime.now (not time.time) so freezegun can move it in tests.
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


# --- events: what observers (systemd STATUS=, the coordinator file, metrics) are told ---------


@dataclass(frozen=True, slots=True)
class Ready:
    """Start-up finished (systemd READY=1); sent once, before the after-boot release."""


@dataclass(frozen=True, slots=True)
class StateEntered:
    state: State
    previous: State | None
    at: datetime
    #: A few words for people (version, next_open, action, was), shown in systemd's STATUS=.
    detail: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LockAttempt:
    """The strategy was asked for permission to reboot."""


@dataclass(frozen=True, slots=True)
class LockAcquired:
    pass


@dataclass(frozen=True, slots=True)
class LockFailure:
    reason: str


@dataclass(frozen=True, slots=True)
class LockReleased:
    reason: str


@dataclass(frozen=True, slots=True)
class LockWoken:
    """A strategy waiting for another holder was woken ("watch" event or timed "retry")."""

    via: str


@dataclass(frozen=True, slots=True)
class ExpiredHolderRemoved:
    """This host freed the slot of a holder whose lease lapsed (LOCKSMITHD_LOCK_TTL)."""

    holder: str
    ttl_seconds: int


@dataclass(frozen=True, slots=True)
class LockHeldAfterBoot:
    """After boot the agent found it still holds the slot it took before the reboot (released after the gate)."""


@dataclass(frozen=True, slots=True)
class LockKept:
    """After boot the lock is kept on purpose, so no other host reboots until this one is fixed."""

    cause: Literal["health-gate", "post-boot-hook", "rolled-back"]
    reason: str


@dataclass(frozen=True, slots=True)
class HealthGateStarted:
    timeout: float


Event = (
    Ready
    | StateEntered
    | LockAttempt
    | LockAcquired
    | LockFailure
    | LockReleased
    | LockWoken
    | ExpiredHolderRemoved
    | LockHeldAfterBoot
    | LockKept
    | HealthGateStarted
)
Observer = Callable[[Event], None]


@dataclass(frozen=True)
class Ports:
    """Everything the machine is plugged into. Only `updates` and `rebooter` are required: without
    `sessions` nobody is warned, without `health` the settings' gate runs (no bus for unit checks)."""

    updates: Updates
    rebooter: Rebooter
    sessions: Sessions | None = None
    health: HealthCheck | None = None
    clock: Clock = field(default_factory=SystemClock)
    observers: Sequence[Observer] = ()
