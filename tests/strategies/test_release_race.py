"""A release that loses its race on real etcd (locksmith/handover.py): its request to leave is stored in
the same round trip, and while other hosts hold slots it waits for one of their releases to settle it
instead of retrying; when none does in time, or nobody else holds a slot, it tries again itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from strategy_helpers import Fleet, ids, present, until

from locksmith.protocol.waiting_line import leaving_key
from locksmith.strategy import StrategyContext

A, B, C = ids(3)


class _Race(Fleet):
    """Hosts on one group. `lose_first_release(A, to=B)`: A's first release transaction goes to the store
    only after B's whole release, so A's compare-and-swap loses; its calls are counted."""

    def __init__(self, ctx: Callable[[str], StrategyContext]) -> None:
        super().__init__(ctx)
        self.commits = 0
        self.follows = 0

    async def hold(self, *machines: str) -> None:
        await self.locks.set_max(len(machines))
        for m in machines:
            await self.acquire(m)

    def lose_first_release(self, machine: str, to: str) -> None:
        store = self.host(machine).lockstore(self.ctx(machine)).kv
        commit_or_queue, follow = store.commit_or_queue, store.follow  # type: ignore[attr-defined]

        async def late_commit(*args: Any, **kwargs: Any) -> Any:
            self.commits += 1
            if self.commits == 1:
                await self.release(to)
            return await commit_or_queue(*args, **kwargs)

        def counted_follow(key: str) -> Any:
            self.follows += 1
            return follow(key)

        store.commit_or_queue = late_commit  # type: ignore[attr-defined]
        store.follow = counted_follow  # type: ignore[attr-defined]


@pytest.fixture
async def race(etcd_ctx) -> AsyncIterator[_Race]:  # type: ignore[no-untyped-def]
    race = _Race(etcd_ctx)
    yield race
    await race.aclose()


async def test_a_release_that_lost_its_race_is_settled_by_the_next_release_without_retrying(race: _Race) -> None:
    await race.hold(A, B, C)
    race.lose_first_release(A, to=B)
    asked = leaving_key(race.locks.key, A)
    assert asked is not None
    task = asyncio.create_task(race.release(A))
    await until(lambda: present(race.kv, asked), 10, "A's request to leave stored")
    assert not task.done() and await race.holders() == (A, C)
    await race.release(C)  # reads A's request and gives back both slots in one write
    await asyncio.wait_for(task, 10)
    assert await race.holders() == ()
    assert (race.commits, race.follows) == (1, 1), "A waited for C's release and wrote nothing more"
    assert not await present(race.kv, asked)


async def test_a_release_that_nobody_settles_tries_again_itself(race: _Race) -> None:
    await race.hold(A, B, C)  # C keeps its slot: it is rebooting
    race.lose_first_release(A, to=B)
    await race.release(A)
    assert await race.holders() == (C,)
    assert (race.commits, race.follows) == (2, 1)
    assert not await present(race.kv, leaving_key(race.locks.key, A) or "")
    await race.release(C)


async def test_the_last_holder_that_lost_its_race_retries_at_once(race: _Race) -> None:
    await race.hold(A, B)
    race.lose_first_release(A, to=B)
    await race.release(A)
    assert await race.holders() == ()
    assert (race.commits, race.follows) == (2, 0), "no other holder could settle A: no wait"
