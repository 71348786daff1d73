"""For strategy tests: a StrategyContext (KV options for the given endpoints, wake-ups recorded in
`wakes`), machine ids, and waiting for a condition with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from locksmith.kv import KVOptions, KVStore, parse_endpoints
from locksmith.strategy import StrategyContext


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
