"""The waiting line on real etcd: arrival order, slots freed together, a stalled first waiter passed,
and Go hosts that never look at the line competing with hosts that stand in it."""

from __future__ import annotations

import asyncio
import random

import structlog
from strategy_helpers import ids, present, until

from locksmith import waitline
from locksmith.kv import KVStore, Transactions, open_store
from locksmith.lockstore import LockStore
from locksmith.protocol.semaphore import SemaphoreFull, decode, encode
from locksmith.protocol.waiting_line import line_key, line_prefix
from strategies.etcd_lock import EtcdLockStrategy

HOLDER = "0" * 32


async def test_waiters_get_the_slot_in_the_order_they_came(etcd_ctx) -> None:  # type: ignore[no-untyped-def]
    first_ctx = etcd_ctx(HOLDER)
    kv = open_store(first_ctx.kv)
    locks = LockStore(kv, first_ctx.group)
    holder = EtcdLockStrategy()
    waiters = {i: EtcdLockStrategy() for i in ids(4)}
    tasks: dict[str, asyncio.Task[None]] = {}
    try:
        await holder.acquire(first_ctx)
        for machine, strategy in waiters.items():  # one by one: each is in line before the next comes
            tasks[machine] = asyncio.create_task(strategy.acquire(etcd_ctx(machine)))
            key = line_key(locks.key, machine)
            assert key is not None
            await until(lambda key=key: present(kv, key), 10, f"{machine} in line")
        order, previous = [], (holder, first_ctx)
        for _ in waiters:
            await previous[0].release(previous[1])
            done, _pending = await asyncio.wait(tasks.values(), timeout=10, return_when=asyncio.FIRST_COMPLETED)
            assert len(done) == 1, "a release let exactly one waiter in"
            machine = next(m for m, t in tasks.items() if t in done)
            tasks.pop(machine).result()
            assert (await locks.get()).semaphore.holders == (machine,)
            order.append(machine)
            previous = (waiters[machine], etcd_ctx(machine))
        assert order == list(waiters)
        assert await kv.list_prefix(line_prefix(locks.key), 10) == []  # each left the line with its lock
        await previous[0].release(previous[1])
    finally:
        for task in tasks.values():
            task.cancel()
        for closable in (holder, *waiters.values(), kv):
            await closable.aclose()


async def test_slots_freed_together_go_to_the_first_in_line_and_only_the_front_follows_the_semaphore(
    etcd_ctx, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    holders, queued = ids(2), [f"{0xA0 + i:032x}" for i in range(7)]
    ctx = etcd_ctx(holders[0])
    kv = open_store(ctx.kv)
    locks = LockStore(kv, ctx.group)
    await locks.set_max(2)
    following, most_following = 0, 0
    real_follow = waitline.follow_semaphore

    async def counted(store: LockStore):  # type: ignore[no-untyped-def]
        nonlocal following, most_following
        following += 1
        most_following = max(most_following, following)
        try:
            async for snap in real_follow(store):
                yield snap
        finally:
            following -= 1

    monkeypatch.setattr(waitline, "follow_semaphore", counted)
    strategies = {m: EtcdLockStrategy() for m in holders + queued}
    tasks: dict[str, asyncio.Task[None]] = {}
    try:
        for machine in holders:
            await strategies[machine].acquire(etcd_ctx(machine))
        for machine in queued:  # one by one: each is in line before the next comes
            tasks[machine] = asyncio.create_task(strategies[machine].acquire(etcd_ctx(machine)))
            key = line_key(locks.key, machine)
            assert key is not None
            await until(lambda key=key: present(kv, key), 10, f"{machine} in line")
        await asyncio.gather(*(strategies[m].release(etcd_ctx(m)) for m in holders))
        await asyncio.wait_for(asyncio.gather(tasks[queued[0]], tasks[queued[1]]), 10)
        assert set((await locks.get()).semaphore.holders) == set(queued[:2])
        assert not any(tasks[m].done() for m in queued[2:]), "nobody passed the first two in line"
        # Seven in line, but only the front ones follow the semaphore: a release wakes a few, not all.
        assert most_following <= 3, f"{most_following} of {len(queued)} waiters followed the semaphore at once"
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        for closable in (*strategies.values(), kv):
            await closable.aclose()


async def test_a_stalled_first_in_line_is_passed_once_it_leaves_a_free_slot_unused(etcd_ctx) -> None:  # type: ignore[no-untyped-def]
    stalled, alive = ids(2)
    ctx = etcd_ctx(alive)
    kv = open_store(ctx.kv)
    locks = LockStore(kv, ctx.group)
    assert isinstance(kv, Transactions)
    stalled_key = line_key(locks.key, stalled)
    assert stalled_key is not None
    await kv.join_line(stalled_key, b"then", 60)  # first in line, and then frozen: its lease outlives the test
    strategy = EtcdLockStrategy()
    try:
        with structlog.testing.capture_logs() as logs:
            await asyncio.wait_for(strategy.acquire(ctx), 15)
        assert (await locks.get()).semaphore.holders == (alive,)
        assert [e["event"] for e in logs if e["event"].startswith("lock.line.")] == ["lock.line.wait", "lock.line.jump"]
        assert await kv.get(stalled_key) is not None  # passed, not waited out
        await strategy.release(ctx)
    finally:
        await kv.delete(stalled_key)
        await strategy.aclose()
        await kv.aclose()


class _GoStyleHost:
    """What a Go locksmith does: read the JSON, compare-and-swap it, retry after a pause — no line."""

    def __init__(self, kv: KVStore, key: str, machine: str) -> None:
        self.kv, self.key, self.machine = kv, key, machine

    async def _swap(self, change) -> bool:  # type: ignore[no-untyped-def]
        entry = await self.kv.get(self.key)
        assert entry is not None
        try:
            new = change(decode(entry.value, self.key))
        except SemaphoreFull:
            return False
        return await self.kv.compare_and_swap(self.key, encode(new), entry.revision) is not None

    async def reboot_once(self, rng: random.Random) -> None:
        while not await self._swap(lambda s: s.lock(self.machine)):  # noqa: ASYNC110 - the Go tool polls
            await asyncio.sleep(rng.uniform(0.01, 0.05))
        await asyncio.sleep(rng.uniform(0.02, 0.06))
        while not await self._swap(lambda s: s.unlock(self.machine)):  # noqa: ASYNC110 - as above
            await asyncio.sleep(rng.uniform(0.0, 0.01))


async def test_go_hosts_that_ignore_the_line_share_the_semaphore_safely(etcd_ctx) -> None:  # type: ignore[no-untyped-def]
    queued, go_hosts = ids(6), [f"{0xF0 + i:032x}" for i in range(3)]
    ctx = etcd_ctx(HOLDER)
    kv = open_store(ctx.kv)
    locks = LockStore(kv, ctx.group)
    await locks.set_max(2)
    start = await locks.get()
    seen_max, acquisitions = 0, set()

    async def observe() -> None:
        nonlocal seen_max
        async for change in kv.watch(locks.key, start.revision):
            if change.value is not None:
                holders = decode(change.value, locks.key).holders
                seen_max = max(seen_max, len(holders))
                acquisitions.update(holders)

    async def queued_host(machine: str, rng: random.Random) -> None:
        strategy, machine_ctx = EtcdLockStrategy(), etcd_ctx(machine)
        try:
            for _ in range(2):
                await strategy.acquire(machine_ctx)
                await asyncio.sleep(rng.uniform(0.02, 0.06))
                await strategy.release(machine_ctx)
        finally:
            await strategy.aclose()

    async def go_host(machine: str, rng: random.Random) -> None:
        host = _GoStyleHost(open_store(ctx.kv), locks.key, machine)
        try:
            for _ in range(2):
                await host.reboot_once(rng)
        finally:
            await host.kv.aclose()

    watcher = asyncio.create_task(observe())
    rng = random.Random(7)
    try:
        runs = [queued_host(m, random.Random(rng.random())) for m in queued]
        runs += [go_host(m, random.Random(rng.random())) for m in go_hosts]
        await asyncio.wait_for(asyncio.gather(*runs), 60)  # nobody starves: every host rebooted twice
        assert seen_max <= 2, f"{seen_max} holders at once with max=2"
        assert acquisitions == set(queued) | set(go_hosts)
        assert (await locks.get()).semaphore.holders == ()
    finally:
        watcher.cancel()
        await kv.aclose()
