"""This host's place in the semaphore's waiting line (rules and keys in protocol/waiting_line.py).

`WaitingLine.join` writes our key on a short store lease and keeps the lease alive while we wait (a
keep-alive writes nothing, so nobody watching our key is woken by it), so a host that dies while waiting
leaves the line by itself. `wait_for_turn` returns when the rules say we may try the semaphore (far back
in the line it watches one key ahead, near the front it follows the semaphore), or when a releasing host
handed us its slot: `confirm` then takes it by deleting our key, and a slot handed to a host ahead that
never takes it is taken back. A free slot is taken by compare-and-swap, whose transaction deletes our key.
Stores without creation-ordered keys (the embedded store, etcd v2) have no line: `join` says so and
waiters race for the compare-and-swap as they always did, each woken by `wait_for_a_free_slot`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from locksmith.kv.base import Entry, InLine, KVError, LineLook, NoTransactions, Place, Transactions
from locksmith.leases import Freed
from locksmith.lockstore import LockStore, Snapshot
from locksmith.protocol.waiting_line import (
    LINE_JUMP_GRACE_SECONDS,
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


@dataclass(frozen=True, slots=True)
class Handed:
    """Our id is among the holders while we are in line: a releasing host handed us its slot
    (protocol/waiting_line.py's `settle`), or we held one before we queued. `WaitingLine.confirm` takes it."""

    snapshot: Snapshot


def follow_semaphore(locks: LockStore) -> AsyncIterator[Snapshot]:
    """`LockStore.follow`, the one way a waiter follows the semaphore (tests count the waiters doing so)."""
    return locks.follow()


async def wait_for_a_free_slot(locks: LockStore, seen: Snapshot, me: str) -> Snapshot:
    """Follow the key until a change shows a free slot (or us holding one). A change that leaves
    it full — another waiter winning the slot just freed — is no reason to try: every waiter
    trying then only makes compare-and-swap conflicts for the writers that matter. Where the store
    can, the watch starts from now with the current state first: etcd serves a watch from a past
    revision only on its 100 ms catch-up loop, which would delay every hand-over by that much."""

    def free(snap: Snapshot) -> bool:
        return not snap.exists or snap.semaphore.available > 0 or snap.semaphore.holds(me)

    if locks.transactions() is not None:
        with contextlib.suppress(NoTransactions):
            async with aclosing(follow_semaphore(locks)) as states:
                async for snap in states:
                    if free(snap):
                        return snap
    while True:
        seen = await locks.wait_for_change(seen.revision)
        if free(seen):
            return seen


class WaitingLine:
    def __init__(self, locks: LockStore, holder: str, ttl_seconds: int = LINE_TTL_SECONDS) -> None:
        self.locks = locks
        self.holder = holder
        self.key = line_key(locks.key, holder)
        self.prefix = line_prefix(locks.key)
        self.ttl_seconds = ttl_seconds
        self._joined: InLine | None = None
        self._renewing: asyncio.Task[None] | None = None
        self._unconfirmed: dict[str, float] = {}  # line keys ahead of hosts handed a slot, since when seen so
        self._held_at_first_look: bool | None = None
        self._fresh: Place | None = None  # the look that came with our (re)join, not acted on yet

    def _store(self) -> Transactions | None:
        return self.locks.transactions() if self.key is not None else None

    async def join(self) -> bool:
        """Take our place (kept if our key is still there from before), and look at the line in the same
        round trip (the first `_look` uses it); False when the store has no line."""
        store = self._store()
        if store is None or self.key is None:
            return False
        look = LineLook(self.prefix, self.locks.turn_keys, WINDOW + 1)
        try:
            self._joined = await store.join_line(self.key, joined_value(datetime.now(UTC)), self.ttl_seconds, look)
        except NoTransactions:
            return False
        self._fresh = self._joined.place
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
            self._fresh = None
        return await store.place_in_line(self.prefix, self._joined.created, read, ahead)

    async def wait_for_turn(
        self, ctx: StrategyContext, judge: Callable[[], Awaitable[Freed]], recheck_seconds: float
    ) -> Seen | Handed:
        """Wait until the line's rules let us try the semaphore; return the semaphore, its ages record and
        the spacing as read then (`LockStore.turn_keys`, for `lock(seen=…)`), or Handed when a releasing
        host gave us its slot meanwhile. Each wait is bounded by `recheck_seconds`; `judge` frees holders
        whose lease lapsed, asked by the first in line only."""
        said = False
        while True:
            look = await self._look()
            if look.snap.semaphore.holds(self.holder):
                return Handed(look.snap)
            if not said and not look.may_try:
                said = True
                ctx.log.info(
                    "lock.wait",
                    **self.locks.log_fields(look.snap),
                    waiting_ahead=len(look.waiting) if look.far_behind is None else f"over {len(look.ahead) - 1}",
                )
            if look.far_behind is not None:
                if await self._until_gone(ctx, look.far_behind, look.place.revision, recheck_seconds):
                    # Near the front now, if the line moved in order: follow the semaphore without a read,
                    # behind the waiters between us and the one that left.
                    nearer = look.place.ahead[: WINDOW - 1]
                    seen = await self._follow_slots(ctx, None, recheck_seconds, "recheck", after_hop=nearer)
                    if seen is not None:
                        return seen
            elif look.may_try:
                return look.place.entries
            else:
                bound = recheck_seconds
                if look.unconfirmed and not look.waiting:  # next after hosts handed a slot they have not taken
                    grace_left = await self._take_back_stalled(ctx, look.unconfirmed)
                    if grace_left is None:
                        continue
                    bound = min(bound, grace_left)
                elif not look.ahead:  # first in line and the semaphore is full: has a holder's lease lapsed?
                    freed = await judge()
                    if freed.holders:
                        continue
                    bound = min(recheck_seconds, freed.recheck_seconds or recheck_seconds)
                why = "lease-check" if bound < recheck_seconds else "recheck"
                seen = await self._follow_slots(ctx, look, bound, why)
                if seen is not None:
                    return seen

    async def _take_back_stalled(self, ctx: StrategyContext, unconfirmed: Sequence[str]) -> float | None:
        """Hosts ahead were handed a slot and still have not taken it (their line keys, `unconfirmed`): once
        one has left it so for a grace period, take its slot back (None: done, look again); else the time
        left until the first grace period ends. A live host takes its slot within milliseconds."""
        now = time.monotonic()
        self._unconfirmed = {k: self._unconfirmed.get(k, now) for k in unconfirmed}
        first = min(self._unconfirmed.values())
        if now - first < LINE_JUMP_GRACE_SECONDS:
            return LINE_JUMP_GRACE_SECONDS - (now - first)
        store = self._store()
        assert store is not None
        stalled = [k for k, since in self._unconfirmed.items() if now - since >= LINE_JUMP_GRACE_SECONDS]
        seen = await store.read_together([*self.locks.turn_keys, *stalled])
        keys = {holder_of(k): e for k in stalled if (e := seen.get(k)) is not None}
        if keys:
            snap = await self.locks.take_back(keys, seen=seen)
            ctx.log.warning(
                "lock.line.taken-back",
                key=self.locks.key,
                hosts=sorted(keys),
                holders=list(snap.semaphore.holders),
                detail=f"handed a slot, they left it untaken for {LINE_JUMP_GRACE_SECONDS:g} s",
            )
        for k in stalled:
            self._unconfirmed.pop(k, None)
        return None

    async def confirm(self) -> bool:
        """Take the slot a releasing host handed us (or one we held before we queued): delete our line key
        while it is unchanged, which is what makes a handed slot ours (`LockStore.take_back` compares the
        same key). False when it was taken back first; we are then in line again, at the back."""
        store = self._store()
        assert store is not None and self._joined is not None and self.key is not None, "join() first"
        done = await store.commit({self.key: self._joined.revision}, {}, delete=(self.key,))
        if done.revision is not None:
            return True
        if (await self.locks.get()).semaphore.holds(self.holder):
            return True  # our key lapsed, not taken: without it nobody can take the slot back
        await self.join()
        return False

    async def _look(self) -> _Look:
        """Read our place (far enough ahead to tell whether we are near the front) and the turn keys; right
        after a (re)join, as the join saw them."""
        place, self._fresh = self._fresh, None
        if place is None:
            place = await self.place(read=self.locks.turn_keys, ahead=WINDOW + 1)
        look = _Look(self.holder, place, self.locks.snapshot_of(place.entries.get(self.locks.key)), self.locks.key)
        if self._held_at_first_look is None:
            self._held_at_first_look = look.snap.semaphore.holds(self.holder)
        return look

    async def _until_gone(self, ctx: StrategyContext, key: str, after: int, bound: float) -> bool:
        """Until `key` (a waiter ahead, there at revision `after`) leaves the line (True), or `bound` seconds
        (False). The watch starts from `after`, so it needs no read of its own; etcd may deliver a change
        made before it was in place up to 100 ms late (its catch-up loop), which a waiter this far back can
        afford."""
        ctx.log.debug("lock.line.wait", key=self.locks.key, behind=holder_of(key))
        try:
            async with asyncio.timeout(bound), aclosing(self.locks.kv.watch(key, after)) as changes:
                async for change in changes:
                    if change.value is None:
                        return True
        except TimeoutError:
            ctx.woke("recheck", after_seconds=bound)
        return False

    async def _follow_slots(
        self, ctx: StrategyContext, look: _Look | None, bound: float, why: str, *, after_hop: Sequence[str] = ()
    ) -> Seen | Handed | None:
        """Near the front: follow the semaphore until a slot is free and every host ahead has taken its
        own, or a free slot stays untaken (they are stalled), or a releasing host hands us its slot. The
        turn keys as they stand then (or Handed), or None to look at the line again (our place changed,
        or `bound` passed). `look` None: right after the waiter we watched left, knowing only the keys
        `after_hop` ahead of us (the watch's first state is the semaphore; no read). The line moves in
        order, so those are all that can still wait, unless a waiter further ahead died or gave up; such a
        look only waits for a hand-over, and sends us to read the line before trying a slot or jumping, or
        when no hand-over came within LINE_JUMP_GRACE_SECONDS (the first in line has holders to judge)."""
        provisional = look is None
        ctx.log.debug("lock.line.wait", key=self.locks.key, ahead=len(after_hop) if look is None else len(look.ahead))
        try:
            async with asyncio.timeout(bound), aclosing(follow_semaphore(self.locks)) as states:
                first = await anext(states)
                if look is None:
                    look = _Look(self.holder, Place(tuple(after_hop), first.revision), first, self.locks.key)
                    if look.snap.semaphore.holds(self.holder):
                        return Handed(look.snap)
                elif first.revision != look.snap.revision:
                    # Written between our read and the watch: a host ahead may have taken a slot and given
                    # it back unseen. Read again; from now on the watch misses nothing.
                    look = await self._look()
                    if look.snap.semaphore.holds(self.holder):
                        return Handed(look.snap)
                    if look.may_try:
                        return look.place.entries
                    if look.far_behind is not None:
                        return None
                snap, waiting = look.snap, look.waiting
                while not may_try(self.holder, len(waiting), snap.semaphore):
                    grace = jump_after(len(waiting), snap.semaphore)
                    # Hosts ahead handed a slot since our look: if one never takes it, look again to take it back.
                    # After a hop, also look before long if no hand-over comes: if we are first, the first in
                    # line judges holders whose lease lapsed, and that needs a look at the line.
                    handed_ahead = any(snap.semaphore.holds(h) for h in look.ahead)
                    try:
                        async with asyncio.timeout(
                            LINE_JUMP_GRACE_SECONDS if grace is None and (handed_ahead or provisional) else grace
                        ):
                            changed = await anext(states)
                    except TimeoutError:
                        if grace is None or provisional:
                            return None
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
                if snap.semaphore.holds(self.holder):
                    return Handed(snap)  # we did not hold at our look and wrote nothing since
                if provisional:
                    return None
        except TimeoutError:
            ctx.woke(why, after_seconds=bound)
            return None
        store = self._store()
        assert store is not None
        return await store.read_together(self.locks.turn_keys)

    async def leave(self) -> bool:
        """Stop renewing, and delete our key unless taking a slot already did (best effort: it lapses by
        itself within the TTL). True when we may hold a slot we did not take: we left while in line, and
        did not hold one when we first looked (a releasing host may have handed us one; once our key is
        gone no host can hand us another). The caller looks, and gives it back."""
        task, self._renewing = self._renewing, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._joined is None or self.key is None:
            return False
        self._joined = None
        with contextlib.suppress(KVError):
            await self.locks.kv.delete(self.key)
        return not self._held_at_first_look

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

    def __init__(self, holder: str, place: Place, snap: Snapshot, semaphore_key: str) -> None:
        self.place, self.snap = place, snap
        # Further back than the window: watch the key WINDOW places ahead (each leaver wakes one waiter).
        self.far_behind = place.ahead[WINDOW - 1] if len(place.ahead) > WINDOW else None
        self.ahead = [holder_of(k) for k in place.ahead]
        self.waiting = still_waiting(self.ahead, snap.semaphore)
        self.may_try = self.far_behind is None and may_try(holder, len(self.waiting), snap.semaphore)
        # Hosts ahead that hold a slot yet are still in line: handed one, not taken yet (or stalled). Only
        # keys that are exactly a host's line key: the store's contents are not trusted.
        self.unconfirmed = [
            k for k in place.ahead if snap.semaphore.holds(h := holder_of(k)) and line_key(semaphore_key, h) == k
        ]
