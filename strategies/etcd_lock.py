"""`etcd-lock`: take a slot of the reboot semaphore in the KV store before rebooting, give it back
once the host is up again — so at most `max` hosts of a lock group reboot at a time.

Waiting for a slot is event-driven: after finding the semaphore full we watch its key from the
revision we read, and retry the moment any holder gives a slot back (the Go agent slept 10 s to
5 min between attempts). A long safety re-check covers a watch that silently stops delivering.

On etcd v3 waiters also stand in a line (locksmith/waitline.py), in the order they came: only the front
few follow the semaphore, while those further back each watch one key ahead of them. A release hands its
slot to the first in line in its own write and settles releases that collided with it
(locksmith/handover.py), so the semaphore is written about once per acquisition and a crowd no longer
spends its time in compare-and-swap conflicts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from locksmith.kv import (
    BACKEND_EMBEDDED,
    Entry,
    KVAuthError,
    KVError,
    KVOptions,
    KVStore,
    KVUnavailable,
    open_store,
)
from locksmith.leases import HolderLeases, LeaseKeeper, judge_while_idle
from locksmith.lockstore import LockStore, SemaphoreContention
from locksmith.protocol.holder_lease import Lease
from locksmith.protocol.pacing import wait_before_acquire
from locksmith.protocol.semaphore import (
    NotHeld,
    SemaphoreCorrupt,
    SemaphoreError,
    SemaphoreFull,
    semaphore_key,
)
from locksmith.safe_text import outside_text
from locksmith.settings.schema import Setting
from locksmith.settings.values import parse_lock_ttl
from locksmith.strategy import Strategy, StrategyContext, StrategyError, StrategyUnavailable
from locksmith.waitline import Handed, WaitingLine, wait_for_a_free_slot

# Re-read the semaphore at least this often while waiting, even without a watch event.
SAFETY_RECHECK_SECONDS = 300.0

LOCK_TTL = Setting(
    "LOCK_TTL",
    "free the slot of a holder whose agent stopped for this long (etcd only; 0: off, a dead holder blocks the"
    " fleet until an admin unlocks it). Longer than a reboot: the lease must outlive it",
    parse_lock_ttl,
    default="0",
    flag="--lock-ttl",
    metavar="DURATION",
)


class EtcdLockStrategy(Strategy):
    name = "etcd-lock"
    uses_kv_store = True
    settings = (LOCK_TTL,)

    def __init__(self, safety_recheck: float = SAFETY_RECHECK_SECONDS) -> None:
        self._kv: KVStore | None = None
        self._locks: LockStore | None = None
        self._leases: HolderLeases | None = None
        self._keeper: LeaseKeeper | None = None
        self._resuming: asyncio.Task[None] | None = None
        self._judging: asyncio.Task[None] | None = None
        self._tidying: asyncio.Task[None] | None = None
        self._tidied = False  # no declaration of ours is left from a time with a TTL (nothing here writes one)
        self._safety_recheck = safety_recheck

    @classmethod
    def check_options(cls, options: Mapping[str, Any], kv: KVOptions) -> str | None:
        if options.get(LOCK_TTL.name) and kv.backend == BACKEND_EMBEDDED:
            return (
                "LOCKSMITHD_LOCK_TTL needs etcd, and the endpoint is the embedded store (no expiring keys):"
                " unset LOCKSMITHD_LOCK_TTL, or point LOCKSMITHD_ENDPOINT at etcd"
            )
        return None

    def lockstore(self, ctx: StrategyContext) -> LockStore:
        if self._locks is None:
            if ctx.kv is None:
                raise StrategyError("the etcd-lock strategy needs a KV store: set LOCKSMITHD_ENDPOINT")
            self._kv = open_store(ctx.kv, semaphore_key(ctx.group))
            self._locks = LockStore(self._kv, ctx.group)
            self._leases = HolderLeases(self._locks)
            ttl = ctx.options.get(LOCK_TTL.name)
            if ttl:
                self._keeper = LeaseKeeper(self._leases, ctx.machine_id, Lease(ttl))
        return self._locks

    def leases(self, ctx: StrategyContext) -> HolderLeases:
        self.lockstore(ctx)
        assert self._leases is not None
        return self._leases

    async def started(self, ctx: StrategyContext) -> None:
        """Back from a reboot (or a restart) holding a slot: keep its lease alive again, at once. When the
        store cannot be asked yet, keep asking in the background until the lease would have lapsed anyway.
        Without a TTL: tidy away a declaration left from a time with one, in the background, so that neither
        this start nor a later wait for a slot spends a request on it."""
        self.lockstore(ctx)
        if self._keeper is None:
            if self._tidying is None:
                self._tidying = asyncio.create_task(self._tidy_quietly(ctx), name="locksmith-lease-tidy")
            return
        if self._judging is None:
            self._judging = asyncio.create_task(
                judge_while_idle(self.leases(ctx), self._keeper.lease, ctx.on_expired_holder), name="locksmith-judge"
            )
        try:
            await self._resume_lease(ctx)
        except StrategyError as exc:
            ctx.log.warning("lock.lease.resume-deferred", reason=str(exc), detail="retrying in the background")
            self._resuming = asyncio.create_task(self._resume_lease_later(ctx), name="locksmith-lease-resume")

    async def _resume_lease_later(self, ctx: StrategyContext) -> None:
        assert self._keeper is not None
        lease = self._keeper.lease
        deadline = time.monotonic() + lease.ttl_seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(lease.recheck_seconds)
            try:
                await self._resume_lease(ctx)
                return
            except StrategyError as exc:
                ctx.log.warning("lock.lease.resume-deferred", reason=str(exc))
        self._keeper.holding = True  # unsure whether we still hold: never reboot on it without asking again
        self._keeper.mark_lapsed()

    async def _resume_lease(self, ctx: StrategyContext) -> None:
        keeper = self._keeper
        assert keeper is not None
        with _translated():
            if not (await self.lockstore(ctx).get()).semaphore.holds(ctx.machine_id):
                return
            renewed = await keeper.leases.renew(ctx.machine_id, keeper.lease, only_if_present=True)
        keeper.holding = True
        if renewed:
            ctx.log.info("lock.lease.resumed", ttl_seconds=keeper.lease.ttl_seconds)
            keeper.start()
            return
        keeper.mark_lapsed()
        ctx.log.error(
            "lock.lease.lapsed",
            ttl_seconds=keeper.lease.ttl_seconds,
            detail="the lease expired while this host was down (the reboot took longer than LOCKSMITHD_LOCK_TTL):"
            " any host may now free our slot",
        )

    def permission_lapsed(self) -> str | None:
        return self._keeper.lapsed_reason() if self._keeper is not None and self._keeper.holding else None

    async def ping(self, ctx: StrategyContext) -> None:
        """Raise StrategyUnavailable if the KV store cannot serve requests now."""
        self.lockstore(ctx)
        assert self._kv is not None
        with _translated():
            await self._kv.ping()

    async def acquire(self, ctx: StrategyContext) -> None:
        locks = self.lockstore(ctx)
        keeper = self._keeper
        try:
            with _translated():
                await self._prepare_lease(ctx)
                await self._acquire(ctx, locks)
        except BaseException:
            if keeper is not None and not keeper.holding:
                await keeper.stop()  # the alive key lapses by itself: nobody judges a non-holder
            raise
        if keeper is not None:
            keeper.holding = True

    async def _prepare_lease(self, ctx: StrategyContext) -> None:
        """With a TTL: declare it and start renewing before taking a slot (protocol/holder_lease.py's order).
        Without: make sure no declaration of ours is left from a time with one, or we could be judged."""
        keeper = self._keeper
        if keeper is None:
            if self._tidying is not None and not self._tidying.done():
                await asyncio.shield(self._tidying)
            if not self._tidied:
                await self._tidy(ctx)
            return
        if keeper.holding:
            return  # already holding (a lock taken before a cancelled reboot): the keeper runs
        await self.leases(ctx).declare(ctx.machine_id, keeper.lease)
        keeper.start()

    async def _tidy(self, ctx: StrategyContext) -> None:
        """Withdraw a declaration of ours left from a time with a TTL, unless we hold a slot (its release
        withdraws it; a slot given back otherwise leaves it to the next wait for a slot). Once done, never
        again in this process: without a TTL nothing of ours writes one."""
        leases, locks = self.leases(ctx), self.lockstore(ctx)
        seen = await locks.read_with(leases.own_keys(ctx.machine_id))
        snap = locks.snapshot_of(seen[locks.key]) if seen is not None else await locks.get()
        if not snap.semaphore.holds(ctx.machine_id):
            await leases.withdraw(ctx.machine_id, seen)
            self._tidied = True

    async def _tidy_quietly(self, ctx: StrategyContext) -> None:
        try:
            await self._tidy(ctx)
        except (KVError, SemaphoreError) as exc:  # the first wait for a slot tidies instead
            ctx.log.debug("lock.lease.tidy-deferred", reason=outside_text(exc))

    async def _acquire(self, ctx: StrategyContext, locks: LockStore) -> None:
        line = WaitingLine(locks, ctx.machine_id)
        try:
            await self._acquire_in_line(ctx, locks, line)
        except BaseException:
            if await line.leave():
                await self._give_back_unwanted(ctx, locks)
            raise
        await line.leave()

    @staticmethod
    async def _give_back_unwanted(ctx: StrategyContext, locks: LockStore) -> None:
        """We left the line without taking a slot, after a releasing host may have handed us one. We
        stopped wanting it, so give it back."""
        try:
            if (await locks.get()).semaphore.holds(ctx.machine_id):
                snap = await locks.unlock(ctx.machine_id)
                ctx.log.info(
                    "lock.released",
                    key=locks.key,
                    holders=list(snap.semaphore.holders),
                    detail="handed over while leaving the line",
                )
        except (KVError, SemaphoreError) as exc:
            ctx.log.warning(
                "lock.release.deferred",
                key=locks.key,
                reason=outside_text(exc),
                detail="a slot handed to us as we stopped waiting stays taken until this host releases it",
            )

    async def _acquire_in_line(self, ctx: StrategyContext, locks: LockStore, line: WaitingLine) -> None:
        in_line = await line.join()  # already holding: the lock below is a no-op that takes us out again
        while True:
            seen = None
            if in_line:
                turn = await line.wait_for_turn(
                    ctx, lambda: self.leases(ctx).free_expired(ctx.on_expired_holder), self._safety_recheck
                )
                if isinstance(turn, Handed):
                    if await line.confirm():
                        line.left_by_lock()
                        ctx.log.info("lock.acquired", **locks.log_fields(turn.snapshot), handed_over=True)
                        return
                    ctx.log.warning("lock.handed.taken-back", key=locks.key, detail="we took too long; back in line")
                    continue
                seen = turn
            if await self._paced(locks, ctx, seen):
                seen = None  # we slept: read afresh
            try:
                snap = await locks.lock(ctx.machine_id, leave_line=line.key if in_line else None, seen=seen)
            except SemaphoreFull:
                if in_line:
                    continue  # another host was quicker: back to our place in line
            else:
                line.left_by_lock()
                ctx.log.info("lock.acquired", **locks.log_fields(snap))
                return
            await self._wait_without_line(ctx, locks)

    async def _wait_without_line(self, ctx: StrategyContext, locks: LockStore) -> None:
        """No line on this store (or for this id): free lapsed holders, else wait for any free slot."""
        freed = await self.leases(ctx).free_expired(ctx.on_expired_holder)
        if freed.holders:
            return
        # Read the state we will watch from: anything written after it wakes us.
        current = await locks.get()
        if current.semaphore.holds(ctx.machine_id) or current.semaphore.available > 0:
            return  # freed (or taken for us) between the lock attempt and the read
        ctx.log.info("lock.wait", **locks.log_fields(current))
        # A holder with a lease is looked at again well within its TTL; the others only change by writing.
        bound = min(self._safety_recheck, freed.recheck_seconds or self._safety_recheck)
        try:
            async with asyncio.timeout(bound):
                changed = await wait_for_a_free_slot(locks, current, ctx.machine_id)
        except TimeoutError:
            ctx.woke("lease-check" if bound < self._safety_recheck else "recheck", after_seconds=bound)
            return
        ctx.woke("watch", revision=changed.revision, holders=list(changed.semaphore.holders))

    @staticmethod
    async def _paced(locks: LockStore, ctx: StrategyContext, seen: Mapping[str, Entry | None] | None) -> bool:
        """Honour the fleet's spacing (locksmithctl set-spacing) before taking a slot we do not hold yet;
        True if we waited for it. `seen`: the semaphore and spacing just read, when they were."""
        if seen is None:
            snap, (paced, problem) = await locks.get(), await locks.read_pacing()
        else:
            snap, (paced, problem) = (
                locks.snapshot_of(seen.get(locks.key)),
                locks.pacing_of(seen.get(locks.spacing_key)),
            )
        if snap.semaphore.holds(ctx.machine_id):
            return False
        if problem:
            ctx.log.warning("pacing.ignored", reason=problem)
        wait = wait_before_acquire(paced, time.time())
        if wait > 0:
            ctx.log.info("lock.paced", wait_seconds=round(wait, 1), spacing_seconds=paced.spacing_seconds)
            await asyncio.sleep(wait)
            return True
        return False

    async def release(self, ctx: StrategyContext) -> None:
        locks = self.lockstore(ctx)
        with _translated():
            own_keys = self.leases(ctx).own_keys(ctx.machine_id)
            state = await locks.read_for_release(own_keys)
            seen = dict(state.entries) if state is not None else None
            handed: tuple[str, ...] = ()
            try:
                if state is not None and seen is not None:
                    hand_over = not locks.paced(seen)
                    snap, handed = await locks.give_back(ctx.machine_id, state=state, hand_over=hand_over)
                else:
                    snap = await locks.unlock(ctx.machine_id)
            except NotHeld:
                ctx.log.info("lock.release.not-held", key=locks.key)
                await self._end_lease(ctx, seen)
                return
            await locks.note_release(seen)
            await self._end_lease(ctx, seen)
        ctx.log.info(
            "lock.released",
            key=locks.key,
            holders=list(snap.semaphore.holders),
            revision=snap.revision,
            **({"handed_to": list(handed)} if handed else {}),
        )

    async def _end_lease(self, ctx: StrategyContext, seen: Mapping[str, Entry | None] | None) -> None:
        """Only once out of the semaphore: stop renewing and remove both keys (any left over from a TTL era).
        `seen`: the keys as read before the release; our keeper may have renewed them since, if we have one."""
        if self._keeper is not None:
            await self._keeper.stop()
            self._keeper.holding = False
            seen = None
        await self.leases(ctx).withdraw(ctx.machine_id, seen)

    async def holds(self, ctx: StrategyContext) -> bool:
        locks = self.lockstore(ctx)
        with _translated():
            return (await locks.get()).semaphore.holds(ctx.machine_id)

    async def aclose(self) -> None:
        for task in (self._resuming, self._judging, self._tidying):
            if task is not None:
                task.cancel()
        if self._keeper is not None:
            await self._keeper.stop()
        if self._kv is not None:
            kv, self._kv, self._locks = self._kv, None, None
            await kv.aclose()


class _translated:
    """Map KV and semaphore errors to the two the agent acts on, keeping their one-line messages."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        if exc is None or isinstance(exc, StrategyError):
            return False
        if isinstance(exc, KVUnavailable | SemaphoreContention):
            raise StrategyUnavailable(str(exc)) from exc
        if isinstance(exc, KVAuthError | SemaphoreCorrupt | KVError | SemaphoreError):
            raise StrategyError(str(exc)) from exc
        return False
