"""For strategy tests: a StrategyContext (KV options for the given endpoints, wake-ups recorded in
`wakes`), machine ids, waiting for a condition with a deadline, and a fleet of etcd-lock hosts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from locksmith.kv import KVOptions, KVStore, open_store, parse_endpoints
from locksmith.lockstore import LockStore
from locksmith.protocol.waiting_line import line_key
from locksmith.strategy import StrategyContext
from strategies.etcd_lock import EtcdLockStrategy


def make_ctx(endpoints: list[str], group: str | None, machine_id: str) -> StrategyContext:
    options = KVOptions(endpoints=parse_endpoints(endpoints), retry_budget=2.0, request_timeout=2.0)
    wakes: list[str] = []
    ctx = StrategyContext(machine_id=machine_id, group=group, kv=options)
    ctx.on_wake = wakes.append
    ctx.wakes = wakes  # type: ignore[attr-defined]
    return ctx


def ids(n: int) -> list[str]:
    return [f"{i + 1:032x}" for i in range(n)]


async def until(condition: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        await asyncio.sleep(0.02)


async def present(kv: KVStore, key: str) -> bool:
    return await kv.get(key) is not None


async def absent(kv: KVStore, key: str) -> bool:
    return await kv.get(key) is None


class Fleet:
    """etcd-lock hosts by machine id on one group (`ctx` gives each its context, as the `etcd_ctx`
    fixture does), and a store of our own to look at the semaphore with; `aclose` closes them all."""

    def __init__(self, ctx: Callable[[str], StrategyContext]) -> None:
        self.ctx = ctx
        ours = ctx("observer")
        self.kv = open_store(ours.kv)
        self.locks = LockStore(self.kv, ours.group)
        self.hosts: dict[str, EtcdLockStrategy] = {}

    def host(self, machine: str) -> EtcdLockStrategy:
        return self.hosts.setdefault(machine, EtcdLockStrategy())

    async def acquire(self, machine: str) -> None:
        await self.host(machine).acquire(self.ctx(machine))

    async def release(self, machine: str) -> None:
        await self.host(machine).release(self.ctx(machine))

    def waiting(self, machine: str) -> asyncio.Task[None]:
        return asyncio.create_task(self.acquire(machine))

    async def in_line(self, machine: str) -> None:
        key = line_key(self.locks.key, machine)
        assert key is not None
        await until(lambda: present(self.kv, key), 10, f"{machine} in line")

    async def holders(self) -> tuple[str, ...]:
        return (await self.locks.get()).semaphore.holders

    async def aclose(self) -> None:
        for strategy in self.hosts.values():
            await strategy.aclose()
        await self.kv.aclose()
