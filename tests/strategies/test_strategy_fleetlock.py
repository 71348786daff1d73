"""fleetlock against the test FleetLock server (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from harness.devtools.fleetlock_server import FleetLockServer
from locksmith.strategy import StrategyContext, StrategyUnavailable
from strategies.fleetlock import FleetLockStrategy

A, B = "a" * 32, "b" * 32


@pytest.fixture
def server() -> Iterator[FleetLockServer]:
    with FleetLockServer(max_slots=1) as s:
        yield s


def ctx_for(server: FleetLockServer, machine_id: str) -> StrategyContext:
    wakes: list[str] = []
    ctx = StrategyContext(machine_id=machine_id, group=None, options={"FLEETLOCK_URL": server.url})
    ctx.on_wake = wakes.append
    return ctx


async def test_one_slot_handed_over_on_steady_state(server: FleetLockServer) -> None:
    first, second = FleetLockStrategy(), FleetLockStrategy(retry_initial=0.05, retry_max=0.1)
    ctx_a, ctx_b = ctx_for(server, A), ctx_for(server, B)
    try:
        await first.acquire(ctx_a)
        await first.acquire(ctx_a)  # idempotent
        assert server.holders() == [A]
        waiting = asyncio.create_task(second.acquire(ctx_b))
        await asyncio.sleep(0.3)
        assert not waiting.done() and server.holders() == [A]
        assert await first.holds(ctx_a)  # the protocol cannot be asked: "may hold"
        await first.release(ctx_a)
        await asyncio.wait_for(waiting, 10)
        assert server.holders() == [B]
        await second.release(ctx_b)
        await second.release(ctx_b)  # idempotent
        assert server.holders() == []
    finally:
        await first.aclose()
        await second.aclose()


async def test_unreachable_server_is_unavailable(server: FleetLockServer) -> None:
    ctx = ctx_for(server, A)
    server.stop()
    strategy = FleetLockStrategy()
    try:
        with pytest.raises(StrategyUnavailable):
            await asyncio.wait_for(strategy.release(ctx), 60)
    finally:
        await strategy.aclose()
