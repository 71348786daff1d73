"""This host's place in the semaphore's waiting line (rules and keys in protocol/waiting_line.py).

`WaitingLine.join` writes our key on a short store lease and keeps the lease alive while we wait (a
keep-alive writes nothing, so the host behind us is not woken by it), so a host that dies while waiting
leaves the line by itself; `place` says who is just ahead of us, and `wait_behind` returns once that
waiter has left. The slot itself is then taken as before, and the same transaction deletes our key.
Stores without creation-ordered keys (the embedded store, etcd v2) have no line: `join` says so and
waiters race for the compare-and-swap as they always did.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from datetime import UTC, datetime

import structlog

from locksmith.kv.base import InLine, KVError, NoTransactions, Place, Transactions
from locksmith.lockstore import LockStore, Snapshot
from locksmith.logging import outside_text
from locksmith.protocol.semaphore import SemaphoreError
from locksmith.protocol.waiting_line import LINE_TTL_SECONDS, joined_value, line_key, line_prefix

log = structlog.get_logger(__name__)


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

    async def place(self, read: Sequence[str] = ()) -> Place:
        """Where we stand now, with the keys of `read` as they are at the same revision; rejoining (at
        the back) first if our lease lapsed meanwhile."""
        store = self._store()
        assert store is not None and self._joined is not None, "join() first"
        if self._renewing is None or self._renewing.done():
            await self.join()
            assert self._joined is not None
        return await store.place_in_line(self.prefix, self._joined.created, read)

    async def wait_behind(self, place: Place) -> None:
        """Until the key ahead of us (as of `place`) is gone: that waiter took its slot or left."""
        store = self._store()
        assert place.predecessor is not None and store is not None
        async with aclosing(store.follow(place.predecessor)) as changes:
            async for change in changes:
                if change.value is None:
                    return

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
