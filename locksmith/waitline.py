"""This host's place in the semaphore's waiting line (rules and keys in protocol/waiting_line.py).

`WaitingLine.join` writes our key on a short store lease and keeps the lease alive while we wait (a
keep-alive writes nothing, so nobody watching our key is woken by it), so a host that dies while waiting
leaves the line by itself. `wait_for_turn` returns when the rules say we may try the semaphore: far back
in the line it watches one key ahead, near the front it follows the semaphore. The slot itself is then
taken by compare-and-swap as before, and the same transaction deletes our key.
Stores without creation-ordered keys (the embedded store, etcd v2) have no line: `join` says so and
waiters race for the compare-and-swap as they always did.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from datetime import UTC, datetime

import structlog

from locksmith.kv.base import Entry, InLine, KVError, NoTransactions, Place, Transactions
from locksmith.leases import Freed
from locksmith.lockstore import LockStore, Snapshot
from locksmith.protocol.semaphore import SemaphoreError
from locksmith.protocol.waiting_line import (
    LINE_TTL_SECONDS,
    WINDOW,
    holder_of,
    joined_value,
    jump_after,
    line_key,
    line_prefix,
    may_try,
    still_waiting,
)
from locksmith.safe_text import outside_text
from locksmith.strategy import StrategyContext

log = structlog.get_logger(__name__)

Seen = Mapping[str, Entry | None]


async def follow_semaphore(locks: LockStore) -> AsyncIterator[Snapshot]:
    """The semaphore from now on, where the store has transactions: its state once the watch is in place,
    then every change. Unlike `LockStore.wait_for_change` it never starts from a past revision, which etcd
    serves only on its 100 ms catch-up loop (a delay on every hand-over). NoTransactions elsewhere."""
    txn = locks.transactions()
    if txn is None:
        raise NoTransactions(f"{locks.key!r}: this store cannot watch from now; use wait_for_change")
    async with aclosing(txn.follow(locks.key)) as changes:
        async for change in changes:
            yield locks.snapshot_at(change.value, change.revision)
    raise SemaphoreError(f"the watch on {locks.key!r} ended unexpectedly")


class WaitingLine:
    def __init__(self, locks: LockStore, holder: str, ttl_seconds: int = LINE_TTL_SECONDS) -> None:
        self.locks = locks
        self.holder = holder
        self.key = line_key(locks.key, holder)
        self.prefix = line_prefix(locks.key)
        self.ttl_seconds = ttl_seconds
        self._joined: InLine | None = None
        self._renewing: asyncio.Task[None] | None = None

    def _store(self) -> Transactions | None:
        return self.locks.transactions() if self.key is not None else None

    async def join(self) -> bool:
        """Take our place (kept if our key is still there from before); False when the store has no line."""
        store = self._store()
        if store is None or self.key is None:
            return False
        try:
            self._joined = await store.join_line(self.key, joined_value(datetime.now(UTC)), self.ttl_seconds)
        except NoTransactions:
            return False
        if self._renewing is None or self._renewing.done():
            self._renewing = asyncio.create_task(self._renew_forever(store), name="locksmith-line-renew")
        return True

    async def place(self, read: Sequence[str] = (), ahead: int = 1) -> Place:
        """Where we stand now (up to `ahead` keys before ours), with the keys of `read` as they are at the
        same revision; rejoining (at the back) first if our lease lapsed meanwhile."""
        store = self._store()
        assert store is not None and self._joined is not None, "join() first"
        if self._renewing is None or self._renewing.done():
            await self.join()
            assert self._joined is not None
        return await store.place_in_line(self.prefix, self._joined.created, read, ahead)

    async def wait_for_turn(
        self, ctx: StrategyContext, judge: Callable[[], Awaitable[Freed]], recheck_seconds: float
    ) -> Seen:
        """Wait until the line's rules let us try the semaphore; return the semaphore, its ages record and
        the spacing as read then (`LockStore.turn_keys`, for `lock(seen=…)`). Each wait is bounded by
        `recheck_seconds`; `judge` frees holders whose lease lapsed, asked by the first in line only."""
        said = False
        while True:
            look = await self._look()
            if not said and not look.may_try:
                said = True
                ctx.log.info(
                    "lock.wait",
                    **self.locks.log_fields(look.snap),
                    waiting_ahead=len(look.waiting) if look.far_behind is None else f"over {len(look.ahead) - 1}",
                )
            if look.far_behind is not None:
                await self._until_gone(ctx, look.far_behind, recheck_seconds)
            elif look.may_try:
                return look.place.entries
            else:
                bound = recheck_seconds
                if not look.ahead:  # first in line and the semaphore is full: has a holder's lease lapsed?
                    freed = await judge()
                    if freed.holders:
                        continue
                    bound = min(recheck_seconds, freed.recheck_seconds or recheck_seconds)
                why = "lease-check" if bound < recheck_seconds else "recheck"
                seen = await self._follow_slots(ctx, look, bound, why)
                if seen is not None:
                    return seen

    async def _look(self) -> _Look:
        """Read our place (far enough ahead to tell whether we are near the front) and the turn keys."""
        place = await self.place(read=self.locks.turn_keys, ahead=WINDOW + 1)
        return _Look(self.holder, place, self.locks.snapshot_of(place.entries.get(self.locks.key)))

    async def _until_gone(self, ctx: StrategyContext, key: str, bound: float) -> None:
        """Until `key` (a waiter ahead) leaves the line, or `bound` seconds."""
        store = self._store()
        assert store is not None
        ctx.log.debug("lock.line.wait", key=self.locks.key, behind=holder_of(key))
        try:
            async with asyncio.timeout(bound), aclosing(store.follow(key)) as changes:
                async for change in changes:
                    if change.value is None:
                        return
        except TimeoutError:
            ctx.woke("recheck", after_seconds=bound)

    async def _follow_slots(self, ctx: StrategyContext, look: _Look, bound: float, why: str) -> Seen | None:
        """Near the front: follow the semaphore until a slot is free and every host ahead has taken its
        own, or a free slot stays untaken (they are stalled). The turn keys as they stand then, or None
        to look at the line again (our place changed, or `bound` passed)."""
        ctx.log.debug("lock.line.wait", key=self.locks.key, ahead=len(look.ahead))
        try:
            async with asyncio.timeout(bound), aclosing(follow_semaphore(self.locks)) as states:
                if (await anext(states)).revision != look.snap.revision:
                    # Written between our read and the watch: a host ahead may have taken a slot and given
                    # it back unseen. Read again; from now on the watch misses nothing.
                    look = await self._look()
                    if look.may_try:
                        return look.place.entries
                    if look.far_behind is not None:
                        return None
                snap, waiting = look.snap, look.waiting
                while not may_try(self.holder, len(waiting), snap.semaphore):
                    grace = jump_after(len(waiting), snap.semaphore)
                    try:
                        async with asyncio.timeout(grace):
                            changed = await anext(states)
                    except TimeoutError:
                        ctx.log.warning(
                            "lock.line.jump",
                            key=self.locks.key,
                            waiting_ahead=len(waiting),
                            detail=f"a free slot stayed untaken for {grace:g} s by the hosts ahead",
                        )
                        break
                    if changed.revision > snap.revision:
                        snap, waiting = changed, still_waiting(waiting, changed.semaphore)
                ctx.woke("watch", revision=snap.revision, holders=list(snap.semaphore.holders))
        except TimeoutError:
            ctx.woke(why, after_seconds=bound)
            return None
        store = self._store()
        assert store is not None
        return await store.read_together(self.locks.turn_keys)

    async def leave(self) -> None:
        """Stop renewing, and delete our key unless the lock's transaction already did (best effort: it
        lapses by itself within the TTL)."""
        task, self._renewing = self._renewing, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._joined is not None and self.key is not None:
            self._joined = None
            with contextlib.suppress(KVError):
                await self.locks.kv.delete(self.key)

    def left_by_lock(self) -> None:
        """Our key went in the transaction that took the slot: only the renewal is left to stop."""
        self._joined = None
        if self._renewing is not None:
            self._renewing.cancel()
            self._renewing = None

    async def _renew_forever(self, store: Transactions) -> None:
        """Keep our lease alive every third of its TTL. When it lapsed anyway (we were cut off for
        longer), end: the next `place` rejoins, at the back, as a newcomer."""
        interval = self.ttl_seconds / 3
        while self._joined is not None:
            await asyncio.sleep(interval)
            try:
                alive = await store.stay_in_line(self._joined.lease)
            except KVError as exc:
                interval = self.ttl_seconds / 6
                log.warning("lock.line.renew-failed", key=self.key, reason=outside_text(exc))
                continue
            interval = self.ttl_seconds / 3
            if not alive:
                log.warning("lock.line.lapsed", key=self.key, detail="our place in line expired; back of the line")
                return


class _Look:
    """One reading of the line and the semaphore, and what the rules make of it for `holder`."""

    def __init__(self, holder: str, place: Place, snap: Snapshot) -> None:
        self.place, self.snap = place, snap
        # Further back than the window: watch the key WINDOW places ahead (each leaver wakes one waiter).
        self.far_behind = place.ahead[WINDOW - 1] if len(place.ahead) > WINDOW else None
        self.ahead = [holder_of(k) for k in place.ahead]
        self.waiting = still_waiting(self.ahead, snap.semaphore)
        self.may_try = self.far_behind is None and may_try(holder, len(self.waiting), snap.semaphore)
