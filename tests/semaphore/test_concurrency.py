"""Acceptance: 50 concurrent lockers on max=5 never exceed 5 holders, on every backend.

Two independent checkers:
- each locker, between its lock() returning and its unlock() being called (a sub-interval of the
  time it really holds a slot), counts itself in a shared set — more than 5 there means more than
  5 real holders at once;
- a watcher on its own client decodes every value it observes and checks the invariant.

Contention is guaranteed, not hoped for: the first lockers in hold their slots until MAX are inside
at once, another locker has been turned away and the watcher has seen several holders (a barrier, with
the test's deadline), so a slow machine cannot serialise the run into one holder at a time. Like the
agent, a locker retries when the store is briefly unavailable or too contended (a slow CPU makes a 5 s
connect time-out or a run of lost compare-and-swaps plausible); neither weakens the checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from locksmith.kv.base import KVUnavailable
from locksmith.lockstore import LockStore, SemaphoreContention, Snapshot
from locksmith.protocol.semaphore import NotHeld, Semaphore, SemaphoreFull

from .conftest import Backend

LOCKERS = 50
MAX = 5
DEADLINE = 100.0  # the whole run; pytest's own timeout is 120 s
T = TypeVar("T")


async def retried(op: Callable[[], Awaitable[T]]) -> T:
    """`op` again after a short random pause while the store is unavailable or contended, as the agent does."""
    rng = random.Random()
    while True:
        try:
            return await op()
        except (KVUnavailable, SemaphoreContention):
            await asyncio.sleep(rng.uniform(0.05, 0.5))


async def test_fifty_lockers_never_exceed_max(backend: Backend) -> None:
    admin = backend.lockstore()
    assert await admin.set_max(MAX) == (1, MAX)

    inside: set[str] = set()
    peak = 0
    full_hits = 0
    observed: list[Semaphore] = []
    progress = asyncio.Condition()
    wave_done = False

    def contended() -> bool:
        return peak >= MAX and full_hits > 0 and max((len(s.holders) for s in observed), default=0) >= 2

    async def changed() -> None:
        async with progress:
            progress.notify_all()

    async def watcher() -> None:
        ls = backend.lockstore()
        snap = await retried(ls.get)
        while True:
            snap = await retried(functools.partial(ls.wait_for_change, snap.revision))  # raises if it does not decode
            observed.append(snap.semaphore)
            await changed()

    async def locker(i: int) -> None:
        nonlocal peak, full_hits, wave_done
        me = f"machine-{i:02d}"
        ls = LockStore(backend.open(), backend.group)
        rng = random.Random(i)
        while True:
            try:
                await retried(lambda: ls.lock(me))
                break
            except SemaphoreFull:
                full_hits += 1
                await changed()
            current: Snapshot = await retried(ls.get)
            if current.semaphore.available <= 0:
                try:
                    async with asyncio.timeout(5):
                        await ls.wait_for_change(current.revision)
                except (TimeoutError, KVUnavailable):
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise  # the test's own deadline, not our 5 s re-check
                    # otherwise a lost wake-up only costs time here; the retry re-reads
        inside.add(me)
        peak = max(peak, len(inside))
        assert len(inside) <= MAX, f"{len(inside)} holders at once: {sorted(inside)}"
        await changed()
        if not wave_done:  # the first ones in hold on until the run is provably contended
            async with progress:
                await progress.wait_for(contended)
            wave_done = True
        await asyncio.sleep(rng.uniform(0.005, 0.03))
        inside.discard(me)
        retrying = False
        while True:
            try:
                await ls.unlock(me)
                break
            except NotHeld:
                if not retrying:
                    raise
                break  # the attempt that timed out had given the slot back already
            except (KVUnavailable, SemaphoreContention):
                retrying = True
                await asyncio.sleep(rng.uniform(0.05, 0.5))

    watch_task = asyncio.create_task(watcher())
    await asyncio.sleep(0.1)
    async with asyncio.timeout(DEADLINE):
        await asyncio.gather(*(locker(i) for i in range(LOCKERS)))
    watch_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watch_task  # re-raises whatever made the watcher fail

    for sem in observed:
        assert len(sem.holders) <= sem.max == MAX
        assert sem.semaphore == sem.max - len(sem.holders)
    final = (await admin.get()).semaphore
    assert final == Semaphore(MAX, MAX, ())
    # The run really was contended (otherwise the checks above prove nothing).
    assert full_hits > 0
    assert peak >= 2
    assert max(len(s.holders) for s in observed) >= 2
