"""etcd-lock with LOCKSMITHD_LOCK_TTL off, on real etcd: a holder-lease declaration of ours left from a time
with a TTL would let other hosts judge us, so it is withdrawn — at start, in the background, where no host
waits on it; by the first wait for a slot when start-up could not; never while we hold a slot (the release
withdraws it)."""

from __future__ import annotations

from strategy_helpers import ids, until

from locksmith.leases import HolderLeases
from locksmith.lockstore import LockStore
from locksmith.protocol.holder_lease import Lease
from strategies.etcd_lock import EtcdLockStrategy

(A,) = ids(1)


async def _declared(locks: LockStore) -> bool:
    return any([await locks.kv.get(k) is not None for k in HolderLeases(locks).own_keys(A)])


async def _withdrawn(locks: LockStore) -> bool:
    return not await _declared(locks)


async def _leave_a_declaration(strategy: EtcdLockStrategy, ctx) -> LockStore:  # type: ignore[no-untyped-def]
    """What an agent of this host that ran with a TTL left behind: its declaration and alive key."""
    locks = strategy.lockstore(ctx)
    await HolderLeases(locks).declare(A, Lease(600))
    assert await _declared(locks)
    return locks


async def test_start_withdraws_a_declaration_left_from_a_ttl_era(etcd_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx, strategy = etcd_ctx(A), EtcdLockStrategy()
    try:
        locks = await _leave_a_declaration(strategy, ctx)
        await strategy.started(ctx)
        await until(lambda: _withdrawn(locks), 10, "the declaration withdrawn after start")
        await strategy.acquire(ctx)
        assert await strategy.holds(ctx)
        assert not await _declared(locks)
    finally:
        await strategy.release(ctx)
        await strategy.aclose()


async def test_without_start_the_first_wait_for_a_slot_withdraws_it(etcd_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx, strategy = etcd_ctx(A), EtcdLockStrategy()
    try:
        locks = await _leave_a_declaration(strategy, ctx)
        await strategy.acquire(ctx)
        assert await strategy.holds(ctx)
        assert not await _declared(locks)
    finally:
        await strategy.release(ctx)
        await strategy.aclose()


async def _back_from_a_reboot_holding(ctx) -> EtcdLockStrategy:  # type: ignore[no-untyped-def]
    """A host that rebooted holding a slot, a declaration left beside it, started again: its tidy is done."""
    before_reboot = EtcdLockStrategy()
    await (await _leave_a_declaration(before_reboot, ctx)).lock(A)
    await before_reboot.aclose()
    after_reboot = EtcdLockStrategy()
    try:
        await after_reboot.started(ctx)
        assert after_reboot._tidying is not None
        await after_reboot._tidying  # no outward sign when it leaves the keys: wait for the task itself
    except BaseException:
        await after_reboot.aclose()
        raise
    return after_reboot


async def test_a_holder_keeps_it_until_its_release(etcd_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx = etcd_ctx(A)
    after_reboot = await _back_from_a_reboot_holding(ctx)
    locks = after_reboot.lockstore(ctx)
    try:
        assert await _declared(locks)
        await after_reboot.release(ctx)
        assert not await after_reboot.holds(ctx)
        assert not await _declared(locks)
    finally:
        await after_reboot.aclose()


async def test_a_slot_given_back_another_way_leaves_it_to_the_next_wait(etcd_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx = etcd_ctx(A)
    after_reboot = await _back_from_a_reboot_holding(ctx)
    locks = after_reboot.lockstore(ctx)
    try:
        await locks.unlock(A)  # e.g. `locksmithctl unlock`: the release's own clean-up never ran
        assert await _declared(locks)
        await after_reboot.acquire(ctx)
        assert await after_reboot.holds(ctx)
        assert not await _declared(locks)
    finally:
        await after_reboot.release(ctx)
        await after_reboot.aclose()
