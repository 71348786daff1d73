"""`etcd-lock`: take a slot of the reboot semaphore in the KV store before rebooting, give it back
once the host is up again — so at most `max` hosts of a lock group reboot at a time.

Waiting for a slot is event-driven: after finding the semaphore full we watch its key from the
revision we read, and retry the moment any holder gives a slot back (the Go agent slept 10 s to
5 min between attempts). A long safety re-check covers a watch that silently stops delivering.
"""

from __future__ import annotations

import asyncio
import time

from locksmith.kv import KVAuthError, KVError, KVStore, KVUnavailable, open_store
from locksmith.lockstore import LockStore, SemaphoreContention, Snapshot
from locksmith.protocol.pacing import wait_before_acquire
from locksmith.protocol.semaphore import NotHeld, SemaphoreCorrupt, SemaphoreError, SemaphoreFull, semaphore_key
from locksmith.strategy import Strategy, StrategyContext, StrategyError, StrategyUnavailable

# Re-read the semaphore at least this often while waiting, even without a watch event.
SAFETY_RECHECK_SECONDS = 300.0


class EtcdLockStrategy(Strategy):
    name = "etcd-lock"
    uses_kv_store = True

    def __init__(self, safety_recheck: float = SAFETY_RECHECK_SECONDS) -> None:
        self._kv: KVStore | None = None
        self._locks: LockStore | None = None
        self._safety_recheck = safety_recheck

    def lockstore(self, ctx: StrategyContext) -> LockStore:
        if self._locks is None:
            if ctx.kv is None:
                raise StrategyError("the etcd-lock strategy needs a KV store: set LOCKSMITHD_ENDPOINT")
            self._kv = open_store(ctx.kv, semaphore_key(ctx.group))
            self._locks = LockStore(self._kv, ctx.group)
        return self._locks

    async def ping(self, ctx: StrategyContext) -> None:
        """Raise StrategyUnavailable if the KV store cannot serve requests now."""
        self.lockstore(ctx)
        assert self._kv is not None
        with _translated():
            await self._kv.ping()

    async def acquire(self, ctx: StrategyContext) -> None:
        locks = self.lockstore(ctx)
        with _translated():
            while True:
                await self._paced(locks, ctx)
                try:
                    snap = await locks.lock(ctx.machine_id)
                except SemaphoreFull:
                    pass
                else:
                    ctx.log.info(
                        "lock.acquired",
                        key=locks.key,
                        holders=list(snap.semaphore.holders),
                        max=snap.semaphore.max,
                        revision=snap.revision,
                    )
                    return
                # Read the state we will watch from: anything written after it wakes us.
                current = await locks.get()
                if current.semaphore.holds(ctx.machine_id) or current.semaphore.available > 0:
                    continue  # freed (or taken for us) between the lock attempt and the read
                ctx.log.info(
                    "lock.wait",
                    key=locks.key,
                    holders=list(current.semaphore.holders),
                    max=current.semaphore.max,
                    revision=current.revision,
                )
                try:
                    async with asyncio.timeout(self._safety_recheck):
                        changed = await self._wait_for_a_free_slot(locks, current, ctx.machine_id)
                except TimeoutError:
                    ctx.woke("recheck", after_seconds=self._safety_recheck)
                    continue
                ctx.woke("watch", revision=changed.revision, holders=list(changed.semaphore.holders))

    @staticmethod
    async def _paced(locks: LockStore, ctx: StrategyContext) -> None:
        """Honour the fleet's spacing (locksmithctl set-spacing) before taking a slot we do not hold yet."""
        if (await locks.get()).semaphore.holds(ctx.machine_id):
            return
        paced, problem = await locks.read_pacing()
        if problem:
            ctx.log.warning("pacing.ignored", reason=problem)
        wait = wait_before_acquire(paced, time.time())
        if wait > 0:
            ctx.log.info("lock.paced", wait_seconds=round(wait, 1), spacing_seconds=paced.spacing_seconds)
            await asyncio.sleep(wait)

    @staticmethod
    async def _wait_for_a_free_slot(locks: LockStore, seen: Snapshot, me: str) -> Snapshot:
        """Follow the key until a change shows a free slot (or us holding one). A change that leaves
        it full — another waiter winning the slot just freed — is no reason to try: every waiter
        trying then only makes compare-and-swap conflicts for the writers that matter."""
        while True:
            seen = await locks.wait_for_change(seen.revision)
            if not seen.exists or seen.semaphore.available > 0 or seen.semaphore.holds(me):
                return seen

    async def release(self, ctx: StrategyContext) -> None:
        locks = self.lockstore(ctx)
        with _translated():
            try:
                snap = await locks.unlock(ctx.machine_id)
            except NotHeld:
                ctx.log.info("lock.release.not-held", key=locks.key)
                return
            await locks.note_release()
        ctx.log.info("lock.released", key=locks.key, holders=list(snap.semaphore.holders), revision=snap.revision)

    async def holds(self, ctx: StrategyContext) -> bool:
        locks = self.lockstore(ctx)
        with _translated():
            return (await locks.get()).semaphore.holds(ctx.machine_id)

    async def aclose(self) -> None:
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
