"""etcd-lock against the real session etcd: slots, event-driven hand-over, cancellation."""

from __future__ import annotations

import asyncio

import pytest
import structlog

from harness.devtools.unprivileged import verdict
from locksmith.kv import open_store
from locksmith.lockstore import LockStore
from locksmith.protocol.semaphore import encode
from locksmith.strategy import StrategyError
from strategies.etcd_lock import EtcdLockStrategy

A, B = "a" * 32, "b" * 32


async def test_second_host_waits_and_is_woken_by_the_watch(etcd_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx_a, ctx_b = etcd_ctx(A), etcd_ctx(B)
    first, second = EtcdLockStrategy(), EtcdLockStrategy()
    try:
        await first.acquire(ctx_a)
        assert await first.holds(ctx_a)
        await first.acquire(ctx_a)  # idempotent: still one slot
        with structlog.testing.capture_logs() as logs:
            waiting = asyncio.create_task(second.acquire(ctx_b))
            # B is parked on the watch, holding nothing, while A holds the only slot (its first attempt
            # takes a few round trips: release before it waits and it would take the slot unwoken).
            await verdict(logs, "lock.wait")
        snap = await first.lockstore(ctx_a).get()
        assert snap.semaphore.holders == (A,)
        assert not waiting.done()
        assert not await second.holds(ctx_b)
        await first.release(ctx_a)
        await asyncio.wait_for(waiting, 10)
        assert await second.holds(ctx_b)
        assert not await first.holds(ctx_a)
        assert "watch" in ctx_b.wakes  # woken by the KV watch, not by a timed re-check
        assert "recheck" not in ctx_b.wakes
    finally:
        await second.release(ctx_b)
        await first.aclose()
        await second.aclose()


async def test_release_is_idempotent(etcd_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx = etcd_ctx(A)
    strategy = EtcdLockStrategy()
    try:
        await strategy.release(ctx)
        await strategy.acquire(ctx)
        await strategy.release(ctx)
        await strategy.release(ctx)
        assert not await strategy.holds(ctx)
    finally:
        await strategy.aclose()


async def test_cancelled_wait_holds_nothing(etcd_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx_a, ctx_b = etcd_ctx(A), etcd_ctx(B)
    first, second = EtcdLockStrategy(), EtcdLockStrategy()
    try:
        await first.acquire(ctx_a)
        waiting = asyncio.create_task(second.acquire(ctx_b))
        await asyncio.sleep(0.2)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert not await second.holds(ctx_b)
        assert (await first.lockstore(ctx_a).get()).semaphore.holders == (A,)
    finally:
        await first.release(ctx_a)
        await first.aclose()
        await second.aclose()


async def test_corrupt_semaphore_refuses_and_is_left_untouched(etcd_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx = etcd_ctx(A)
    strategy = EtcdLockStrategy()
    key = strategy.lockstore(ctx).key
    kv = open_store(ctx.kv)
    try:
        await kv.create(key, b"{not json")
        with pytest.raises(StrategyError, match="not valid"):
            await strategy.acquire(ctx)
        entry = await kv.get(key)
        assert entry is not None and entry.value == b"{not json"
    finally:
        await kv.delete(key)
        await kv.aclose()
        await strategy.aclose()


async def test_max_two_lets_two_hosts_in(etcd_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx_a, ctx_b = etcd_ctx(A), etcd_ctx(B)
    kv = open_store(ctx_a.kv)
    locks = LockStore(kv, ctx_a.group)
    await locks.set_max(2)
    first, second = EtcdLockStrategy(), EtcdLockStrategy()
    try:
        await asyncio.wait_for(asyncio.gather(first.acquire(ctx_a), second.acquire(ctx_b)), 10)
        assert (await locks.get()).semaphore.holders == (A, B)
        assert encode((await locks.get()).semaphore).startswith(b'{"semaphore":0,"max":2')
    finally:
        await first.release(ctx_a)
        await second.release(ctx_b)
        for closable in (first, second, kv):
            await closable.aclose()


class _Events:
    """Stands in for the strategy's logger: records the event names it logs."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.waiting = asyncio.Event()  # set once the strategy logged that it waits for a slot

    def info(self, event: str, **_fields: object) -> None:
        self.names.append(event)
        if event == "lock.wait":
            self.waiting.set()

    warning = error = debug = info


async def test_a_change_that_leaves_no_free_slot_is_not_a_reason_to_try(etcd_ctx) -> None:  # type: ignore[no-untyped-def]
    """A waiter woken by a write that keeps the semaphore full (another host taking the slot just
    freed) keeps watching without a lock attempt; the write that frees a slot lets it in."""
    C = "c" * 32
    ctx_a, ctx_b = etcd_ctx(A), etcd_ctx(B)
    first, second = EtcdLockStrategy(), EtcdLockStrategy()
    try:
        await first.acquire(ctx_a)
        locks_b = second.lockstore(ctx_b)
        reads: list[str] = []
        real_get = locks_b.kv.get

        async def counting_get(key: str):  # type: ignore[no-untyped-def]
            reads.append(key)
            return await real_get(key)

        locks_b.kv.get = counting_get  # type: ignore[method-assign]
        events = _Events()
        ctx_b.log = events
        waiting = asyncio.create_task(second.acquire(ctx_b))
        # B tried once, found it full, and read the revision it watches from.
        await asyncio.wait_for(events.waiting.wait(), 10)
        tried = len(reads)
        # A's slot passes to C in one write: still full.
        admin = LockStore(open_store(ctx_a.kv), ctx_a.group)
        snap = await admin.get()
        full_again = encode(snap.semaphore.unlock(A).lock(C))
        assert await admin.kv.compare_and_swap(admin.key, full_again, snap.revision) is not None
        await asyncio.sleep(0.5)
        assert not waiting.done() and len(reads) == tried  # woken, but no attempt on a full semaphore
        await admin.unlock(C)
        await asyncio.wait_for(waiting, 10)
        assert await second.holds(ctx_b) and "watch" in ctx_b.wakes
        await admin.kv.aclose()
    finally:
        await second.release(ctx_b)
        await first.aclose()
        await second.aclose()


async def test_the_fleets_spacing_holds_the_next_lock_back_after_a_release(etcd_ctx) -> None:  # type: ignore[no-untyped-def]
    """locksmithctl set-spacing: after A's release, B waits out the gap before it takes the slot."""
    ctx_a, ctx_b = etcd_ctx(A), etcd_ctx(B)
    first, second = EtcdLockStrategy(), EtcdLockStrategy()
    try:
        locks = first.lockstore(ctx_a)
        assert await locks.set_spacing(1.5) == 0.0
        await first.acquire(ctx_a)  # nobody released yet: no wait
        await first.release(ctx_a)  # stamps the release
        paced, problem = await locks.read_pacing()
        assert problem is None and paced.spacing_seconds == 1.5 and paced.last_release > 0
        with structlog.testing.capture_logs() as logs:
            await asyncio.wait_for(second.acquire(ctx_b), 20)
        waits = [e["wait_seconds"] for e in logs if e["event"] == "lock.paced"]
        assert len(waits) == 1 and 0 < waits[0] <= 1.5
        assert await second.holds(ctx_b)
        assert await locks.set_spacing(0) == 1.5  # no more pacing
    finally:
        await second.release(ctx_b)
        await first.aclose()
        await second.aclose()


async def test_an_unreadable_spacing_record_is_ignored_not_fatal(etcd_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx = etcd_ctx(A)
    strategy = EtcdLockStrategy()
    try:
        locks = strategy.lockstore(ctx)
        assert await locks.kv.create(locks.spacing_key, b'{"spacing_seconds":1e999}') is not None
        with structlog.testing.capture_logs() as logs:
            await asyncio.wait_for(strategy.acquire(ctx), 20)
        assert any(e["event"] == "pacing.ignored" for e in logs)
        await strategy.release(ctx)
        entry = await locks.kv.get(locks.spacing_key)
        assert entry is not None and entry.value == b'{"spacing_seconds":1e999}'  # never overwritten by an agent
    finally:
        await strategy.aclose()
