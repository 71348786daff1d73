"""An in-process agent on the real session etcd, fed update-engine statuses through a queue.

The machine's contract with the update engine is "an async iterable of statuses"; the D-Bus side
(which statuses are trusted) is tested end to end with real locksmithd processes elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from locksmith.agent.machine import Agent
from locksmith.agent.ports import Event, Ports, StateEntered, SystemClock
from locksmith.agent.reboot import CommandRebooter
from locksmith.agent.settings import AgentSettings
from locksmith.agent.states import State
from locksmith.kv import KVOptions, open_store, parse_endpoints
from locksmith.lockstore import LockStore
from locksmith.protocol.update1 import Operation, Status
from locksmith.strategy import Strategy, StrategyContext

E = TypeVar("E")

IDLE = Status(0, 0.0, Operation.IDLE, "0.0.0.0", 0)
NEED_REBOOT = Status(0, 1.0, Operation.UPDATED_NEED_REBOOT, "2.0.0", 1000)


class Statuses:
    """What the update engine watcher would yield."""

    def __init__(self, *initial: Status) -> None:
        self.queue: asyncio.Queue[Status] = asyncio.Queue()
        for status in initial:
            self.queue.put_nowait(status)

    def send(self, status: Status) -> None:
        self.queue.put_nowait(status)

    async def __aiter__(self) -> AsyncIterator[Status]:
        while True:
            yield await self.queue.get()


class FakeClock(SystemClock):
    """An injected wall clock that really sleeps (the agent also works under freezegun; see test_windows)."""

    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now

    def set(self, now: datetime) -> None:
        self._now = now

    def advance(self, delta: timedelta) -> None:
        self._now += delta


@dataclass
class Harness:
    tmp: Path
    endpoints: list[str]
    strategy: Strategy
    machine_id: str = "a" * 32
    group: str = field(default_factory=lambda: f"agent-{uuid.uuid4().hex[:8]}")
    settings: AgentSettings = field(default_factory=lambda: AgentSettings(login_check=False, retry_interval=30))
    clock: Any = None
    seen: list[Event] = field(default_factory=list)
    reboot_command: str | None = None
    sessions: Any = None

    def __post_init__(self) -> None:
        # The rollback record is the host's (/var/lib/locksmith): each test keeps its own.
        self.settings = dataclasses.replace(self.settings, rollback_file=self.tmp / "rolled-back.json")
        self.options = KVOptions(endpoints=parse_endpoints(self.endpoints), retry_budget=2.0, request_timeout=2.0)
        self.reboots = self.tmp / "reboots"
        self.kv = open_store(self.options)
        self.locks = LockStore(self.kv, self.group)
        self.statuses = Statuses()
        self.stop = asyncio.Event()
        self.task: asyncio.Task[int] | None = None

    def make_agent(self) -> Agent:
        ctx = StrategyContext(machine_id=self.machine_id, group=self.group, kv=self.options)
        command = self.reboot_command or f"echo {self.machine_id} >> {self.reboots}"
        ports = Ports(
            updates=self.statuses,
            rebooter=CommandRebooter(command),
            sessions=self.sessions,
            clock=self.clock or SystemClock(),
            observers=[self.seen.append],
        )
        self.agent = Agent(self.settings, self.strategy, ctx, ports)
        return self.agent

    def start(self) -> None:
        self.task = asyncio.create_task(self.make_agent().run(self.stop))

    async def finish(self) -> int:
        self.stop.set()
        assert self.task is not None
        return await asyncio.wait_for(self.task, 15)

    def states(self) -> list[State]:
        return [e.state for e in self.seen if isinstance(e, StateEntered)]

    def events(self, kind: type[E]) -> list[E]:
        return [e for e in self.seen if isinstance(e, kind)]

    async def wait_state(self, state: State, limit: float = 15.0) -> None:
        async with asyncio.timeout(limit):
            while self.agent.state is not state:
                if self.task is not None and self.task.done():
                    self.task.result()
                    raise AssertionError(f"agent ended before reaching {state}")
                await asyncio.sleep(0.01)

    async def wait_for(self, predicate: Any, limit: float = 15.0) -> None:
        async with asyncio.timeout(limit):
            while not predicate():  # noqa: ASYNC110 - polls files and a remote store, no event to wait on
                await asyncio.sleep(0.01)

    def reboot_count(self) -> int:
        return len(self.reboots.read_text().split()) if self.reboots.exists() else 0

    async def holders(self) -> tuple[str, ...]:
        return (await self.locks.get()).semaphore.holders

    async def close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
        with contextlib.suppress(Exception):
            snap = await self.locks.get()
            for holder in snap.semaphore.holders:
                await self.locks.unlock(holder)
        await self.kv.aclose()


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)
