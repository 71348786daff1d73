"""Acceptance: 50 concurrent lockers on max=5 never exceed 5 holders, on every backend.

Two independent checkers:
- each locker, between its lock() returning and its unlock() being called (a sub-interval of the
  time it really holds a slot), counts itself in a shared set — more than 5 there means more than
  5 real holders at once;
- a watcher on its own client decodes every value it observes and checks the invariant.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

from locksmith.lockstore import LockStore, Snapshot
from locksmith.protocol.semaphore import Semaphore, SemaphoreFull

from .conftest import Backend

LOCKERS = 50
MAX = 5


async def test_fifty_lockers_never_exceed_max(backend: Backend) -> None:
    admin = backend.lockstore()
    assert await admin.set_max(MAX) == (1, MAX)

    inside: set[str] = set()
    peak = 0
    full_hits = 0
    observed: list[Semaphore] = []

    async def watcher() -> None:
        ls = backend.lockstore()
        snap = await ls.get()
        while True:
            snap = await ls.wait_for_change(snap.revision)  # raises if a value does not decode
            observed.append(snap.semaphore)

    async def locker(i: int) -> None:
        nonlocal peak, full_hits
        me = f"machine-{i:02d}"
        ls = LockStore(backend.open(), backend.group)
        rng = random.Random(i)
        while True:
            try:
                await ls.lock(me)
                break
            except SemaphoreFull:
                full_hits += 1
            current: Snapshot = await ls.get()
            if current.semaphore.available <= 0:
                try:
                    async with asyncio.timeout(5):
                        await ls.wait_for_change(current.revision)
                except TimeoutError:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise  # the test's own deadline, not our 5 s re-check
                    # otherwise a lost wake-up only costs time here; the retry re-reads
        inside.add(me)
        peak = max(peak, len(inside))
        assert len(inside) <= MAX, f"{len(inside)} holders at once: {sorted(inside)}"
        await asyncio.sleep(rng.uniform(0.005, 0.03))
        inside.discard(me)
        await ls.unlock(me)

    watch_task = asyncio.create_task(watcher())
    await asyncio.sleep(0.1)
    async with asyncio.timeout(100):
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
