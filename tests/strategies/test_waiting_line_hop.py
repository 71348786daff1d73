"""A waiter far back in the line on real etcd: it watches the waiter two places ahead, and once that one
has left it follows the semaphore without reading the line again; the order holds also when the waiter
it watched gave up instead of taking a slot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
from strategy_helpers import Fleet, absent, ids, until

from locksmith import waitline
from locksmith.leases import HolderLeases
from locksmith.protocol.waiting_line import LINE_JUMP_GRACE_SECONDS, line_key
from locksmith.strategy import StrategyContext

HOLDER = "0" * 32
W1, W2, W3, W4 = ids(4)


class _Line(Fleet):
    """A holder (max=1) and four waiters that joined one by one; W4 watches W2 (two places ahead)."""

    def __init__(self, ctx: Callable[[str], StrategyContext]) -> None:
        super().__init__(ctx)
        self.tasks: dict[str, asyncio.Task[None]] = {}

    async def line_up(self) -> None:
        await self.locks.set_max(1)
        await self.acquire(HOLDER)
        for machine in (W1, W2, W3, W4):
            self.tasks[machine] = self.waiting(machine)
            await self.in_line(machine)

    async def release_until_all_served(self, waiting: list[str]) -> list[str]:
        """Release the holder, then each waiter as it gets the slot; the order they got it in."""
        order, current = [], HOLDER
        while waiting:
            await self.release(current)
            done, _ = await asyncio.wait([self.tasks[m] for m in waiting], timeout=10, return_when="FIRST_COMPLETED")
            assert len(done) == 1, "a release let exactly one waiter in"
            current = next(m for m in waiting if self.tasks[m] in done)
            self.tasks[current].result()
            waiting.remove(current)
            order.append(current)
        await self.release(current)
        return order

    async def aclose(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        await super().aclose()


@pytest.fixture
async def line(etcd_ctx) -> AsyncIterator[_Line]:  # type: ignore[no-untyped-def]
    line = _Line(etcd_ctx)
    yield line
    await line.aclose()


@pytest.fixture
def line_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every read of a waiter's place after its join (the join looks in its own round trip)."""
    reads: list[str] = []
    real = waitline.WaitingLine.place

    async def counted(self: waitline.WaitingLine, *args, **kwargs):  # type: ignore[no-untyped-def]
        reads.append(self.holder)
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(waitline.WaitingLine, "place", counted)
    return reads


async def test_a_waiter_far_back_moves_up_without_reading_the_line_again(line: _Line, line_reads: list[str]) -> None:
    await line.line_up()
    assert await line.release_until_all_served([W1, W2, W3, W4]) == [W1, W2, W3, W4]
    assert line_reads == [], "each waiter's place came with its join; W4's hop past W2 needed no read"


async def test_when_the_waiter_watched_gives_up_the_line_keeps_its_order(line: _Line) -> None:
    await line.line_up()
    line.tasks.pop(W2).cancel()  # W4 watched W2: W4 moves up while W1 and W3 still wait ahead of it
    w2_key = line_key(line.locks.key, W2) or ""
    await until(lambda: absent(line.kv, w2_key), 10, "W2 out of the line")
    assert await line.release_until_all_served([W1, W3, W4]) == [W1, W3, W4]


async def test_a_waiter_that_hopped_to_the_front_judges_lapsed_holders_without_a_hand_over(
    line: _Line, monkeypatch: pytest.MonkeyPatch
) -> None:
    """W4 hops when W2 leaves, behind W3; W1 and W3 leave too, so W4 is first and nothing will hand it a
    slot. The first in line judges holders whose lease lapsed: W4 must get to that within the grace."""
    judged: list[float] = []
    real = HolderLeases.free_expired
    w4 = line.host(W4).leases(line.ctx(W4))

    async def counted(self: HolderLeases, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self is w4:
            judged.append(time.monotonic())
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(HolderLeases, "free_expired", counted)
    await line.line_up()
    assert not judged  # three ahead of it: not its job
    for machine in (W2, W1, W3):  # W2 first: W4 watched it, and moves up behind W3
        line.tasks.pop(machine).cancel()
    for machine in (W1, W2, W3):
        key = line_key(line.locks.key, machine) or ""
        await until(lambda key=key: absent(line.kv, key), 10, f"{machine} out of the line")

    async def w4_judged() -> bool:
        return bool(judged)

    await until(w4_judged, LINE_JUMP_GRACE_SECONDS + 5, "W4, first in line, judging the holders")
    assert not line.tasks[W4].done() and (await line.locks.get()).semaphore.holders == (HOLDER,)
