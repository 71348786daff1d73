"""In-memory ports and strategy for the pure tests of the state machine: no etcd, no D-Bus, no
subprocess. Every fake pokes one `Changes` when something happens, so a test waits on a
condition (bounded) instead of sleeping; the clock only moves when the test moves it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ClassVar

from locksmith.agent.machine import Agent
from locksmith.agent.ports import Event, Ports, StateEntered
from locksmith.agent.reboot import RebootFailed
from locksmith.agent.settings import AgentSettings
from locksmith.agent.states import State
from locksmith.protocol.update1 import Status
from locksmith.strategy import Strategy, StrategyContext, StrategyUnavailable


class Changes:
    """Something changed: wake whoever waits for a condition."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def poke(self) -> None:
        self._event.set()

    async def until(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while True:
                self._event.clear()  # before the check: a poke after it is not lost
                if predicate():
                    return
                await self._event.wait()


class ManualClock:
    """Wall-clock time and sleeping that move only when the test says so."""

    def __init__(self, now: datetime, changes: Changes) -> None:
        self._now = now
        self.changes = changes
        self.sleepers: list[tuple[datetime, float, asyncio.Future[None]]] = []
        self.slept: list[float] = []  # every sleep asked for, in order

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float) -> None:
        wake = asyncio.get_running_loop().create_future()
        entry = (self._now + timedelta(seconds=seconds), seconds, wake)
        self.sleepers.append(entry)
        self.slept.append(seconds)
        self.changes.poke()
        try:
            await wake
        finally:
            self.sleepers.remove(entry)

    def asleep(self, seconds: float | None = None) -> bool:
        return any(seconds is None or s == seconds for _, s, f in self.sleepers if not f.done())

    def set(self, now: datetime) -> None:
        self._now = now
        for deadline, _, wake in self.sleepers:
            if deadline <= now and not wake.done():
                wake.set_result(None)

    def advance(self, seconds: float) -> None:
        self.set(self._now + timedelta(seconds=seconds))


class MemoryStrategy(Strategy):
    """A one-slot lock in memory. `grant` gates acquire; with `take_then_wait` the slot is taken
    before acquire returns (as a KV semaphore records us before the call completes)."""

    name: ClassVar[str] = "memory"

    def __init__(self, changes: Changes, *, held: bool = False) -> None:
        self.changes = changes
        self.held = held
        self.grant = asyncio.Event()
        self.grant.set()
        self.take_then_wait = False
        self.unavailable = 0  # this many next acquire calls fail as unreachable
        self.acquires = 0
        self.releases = 0

    async def acquire(self, ctx: StrategyContext) -> None:
        self.acquires += 1
        self.changes.poke()
        if self.unavailable:
            self.unavailable -= 1
            raise StrategyUnavailable("memory store unreachable")
        if self.take_then_wait:
            self.held = True
        await self.grant.wait()
        self.held = True
        self.changes.poke()

    async def release(self, ctx: StrategyContext) -> None:
        self.held = False
        self.releases += 1
        self.changes.poke()

    async def holds(self, ctx: StrategyContext) -> bool:
        return self.held


class MemoryRebooter:
    description = "memory"

    def __init__(self, changes: Changes) -> None:
        self.changes = changes
        self.calls = 0
        self.refuse = 0  # this many next calls fail

    async def reboot(self) -> None:
        self.calls += 1
        self.changes.poke()
        if self.refuse:
            self.refuse -= 1
            raise RebootFailed("memory rebooter refused")


@dataclass
class MemoryHealth:
    healthy: bool
    timeout: float = 5.0
    asked: int = 0

    async def wait_healthy(self, log: object) -> bool:
        self.asked += 1
        return self.healthy


class Statuses:
    def __init__(self, changes: Changes) -> None:
        self.changes = changes
        self.queue: asyncio.Queue[Status] = asyncio.Queue()

    def send(self, status: Status) -> None:
        self.queue.put_nowait(status)

    async def __aiter__(self) -> AsyncIterator[Status]:
        while True:
            yield await self.queue.get()
            self.changes.poke()  # the machine asks for the next one: it handled this one


@dataclass
class World:
    """One machine plugged into in-memory ports."""

    now: datetime
    settings: AgentSettings = field(default_factory=lambda: AgentSettings(login_check=False))
    held: bool = False
    health: MemoryHealth | None = None
    seen: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.changes = Changes()
        self.clock = ManualClock(self.now, self.changes)
        self.strategy = MemoryStrategy(self.changes, held=self.held)
        self.rebooter = MemoryRebooter(self.changes)
        self.statuses = Statuses(self.changes)
        ports = Ports(
            updates=self.statuses,
            rebooter=self.rebooter,
            health=self.health,
            clock=self.clock,
            observers=[self._observe],
        )
        self.agent = Agent(self.settings, self.strategy, StrategyContext("a" * 32, None), ports)
        self.stop = asyncio.Event()
        self.task: asyncio.Task[int] | None = None

    def _observe(self, event: Event) -> None:
        self.seen.append(event)
        self.changes.poke()

    def states(self) -> list[State]:
        return [e.state for e in self.seen if isinstance(e, StateEntered)]

    def of(self, kind: type[object]) -> list[object]:
        return [e for e in self.seen if isinstance(e, kind)]

    async def until(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        def check() -> bool:
            if self.task is not None and self.task.done():
                self.task.result()  # the machine died: show why
                raise AssertionError("the agent ended while we waited")
            return predicate()

        await self.changes.until(check, within)

    async def reach(self, state: State, within: float = 5.0) -> None:
        await self.until(lambda: self.agent.state is state, within)

    def start(self) -> None:
        self.task = asyncio.create_task(self.agent.run(self.stop))

    async def finish(self) -> int:
        self.stop.set()
        assert self.task is not None
        return await asyncio.wait_for(self.task, 5.0)

    async def close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
