"""Giving slots back several at a time, and handing them to the hosts in line (the rules and keys are in
protocol/waiting_line.py: `settle`, requests to leave, a handed slot taken back from a host that never
took it). LockStore carries these; they are here to keep one job per module. Each is one transaction on
the semaphore that compares every key it acts on, retried as LockStore retries its own."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from locksmith.kv.base import Entry, Heads, KVError, NoTransactions, Transactions
from locksmith.protocol import waiting_line
from locksmith.protocol.semaphore import NotHeld, Semaphore, SemaphoreContention, SemaphoreError, encode
from locksmith.protocol.waiting_line import (
    LINE_CONFLICT_BACKOFF_MAX,
    LINE_CONFLICT_JITTER,
    holder_of,
    joined_value,
    leaving_key,
    leaving_prefix,
    line_key,
    line_prefix,
)

if TYPE_CHECKING:
    from locksmith.lockstore import Snapshot

# How many hosts at the front of the line, and how many holders asking to leave, a release reads: slots
# freed beyond the hosts read are taken by the waiters themselves, and requests beyond wait for the next.
HAND_OVER_READ = 32
LEAVING_READ = 64
# A release that lost its race to another write has its request to leave stored by then, and while other
# hosts hold slots the next of their releases settles it in its own write, within milliseconds when a
# crowd is releasing. Following the semaphore that long costs one watch; retrying at once cost a
# transaction per lost race, each losing again about half the time (measured with 1000 hosts). Past it
# (nobody else released: they are rebooting, or none are left) we try again ourselves.
SETTLED_BY_ANOTHER_WITHIN = 0.25


@dataclass(frozen=True, slots=True)
class Planned:
    """One transaction's change: the semaphore after it, the holders it adds (their ages start now),
    other keys it needs unchanged (key → mod revision) and keys it deletes."""

    semaphore: Semaphore
    added: frozenset[str]
    expect: Mapping[str, int]
    delete: tuple[str, ...]


def unchanged(entry: Entry, current: Mapping[str, Entry | None]) -> bool:
    """`entry` as read before is still what `current` says (a key `current` does not mention counts as unchanged)."""
    if entry.key not in current:
        return True
    now = current[entry.key]
    return now is not None and now.revision == entry.revision


class HandOver:
    """What LockStore provides for it: the keys, its transactions, snapshots, its retried commit of a
    planned change, the ages record written with it, its attempts and its clock."""

    key: str
    ages_key: str
    _max_attempts: int
    _clock: Callable[[], datetime]
    _single_key_only: bool

    if TYPE_CHECKING:

        @property
        def turn_keys(self) -> tuple[str, str, str]: ...
        def transactions(self) -> Transactions | None: ...
        def snapshot_of(self, entry: Entry | None) -> Snapshot: ...
        def snapshot_at(self, value: bytes | None, revision: int) -> Snapshot: ...
        def _ages_after(
            self, entry: Entry | None, before: int, new: Semaphore, added: frozenset[str]
        ) -> bytes | None: ...
        async def _retrying(
            self,
            once: Callable[[Mapping[str, Entry | None] | None], Awaitable[tuple[Snapshot, Snapshot]]],
            first: Mapping[str, Entry | None] | None = None,
            jitter: tuple[float, float] = ...,
        ) -> tuple[Snapshot, Snapshot]: ...
        async def _commit_planned(
            self,
            txn: Transactions,
            plan: Callable[[Semaphore, Mapping[str, Entry | None]], Planned],
            seen: Mapping[str, Entry | None] | None,
        ) -> tuple[Snapshot, Snapshot]: ...

    async def follow(self) -> AsyncIterator[Snapshot]:
        """The semaphore from now on (its state once the watch is in place, then every change), where the store
        has transactions, else NoTransactions. Unlike LockStore's `wait_for_change` it never starts from a
        past revision, which etcd serves only on its 100 ms catch-up loop (a delay on every hand-over)."""
        txn = self.transactions()
        if txn is None:
            raise NoTransactions(f"{self.key!r}: this store cannot watch from now; use wait_for_change")
        async with aclosing(txn.follow(self.key)) as changes:
            async for change in changes:
                yield self.snapshot_at(change.value, change.revision)
        raise SemaphoreError(f"the watch on {self.key!r} ended unexpectedly")

    def _writes(
        self, before: Snapshot, ages_entry: Entry | None, planned: Planned
    ) -> tuple[dict[str, int], dict[str, bytes]]:
        """What a transaction carrying `planned` compares and puts: the semaphore at the revision read,
        the keys `planned` needs unchanged, and the ages record with it (unless it cannot be read)."""
        expect = {self.key: before.revision, **planned.expect}
        put = {self.key: encode(planned.semaphore)}
        ages = self._ages_after(ages_entry, before.revision, planned.semaphore, planned.added)
        if ages is not None:
            expect[self.ages_key] = ages_entry.revision if ages_entry is not None else 0
            put[self.ages_key] = ages
        return expect, put

    async def read_for_release(self, keys: Sequence[str]) -> Heads | None:
        """The turn keys and `keys`, the first hosts of the waiting line and the holders asking to leave, at
        one revision, for `give_back`; None where the store has no transactions (release with `unlock`)."""
        if (txn := self.transactions()) is None:
            return None
        try:
            return await txn.heads(self._release_counts, [*self.turn_keys, *keys])
        except NoTransactions:
            self._single_key_only = True
            return None

    async def give_back(self, holder: str, *, state: Heads, hand_over: bool) -> tuple[Snapshot, tuple[str, ...]]:
        """Give back `holder`'s slot, settling every other holder that asked to leave, and when `hand_over`
        hand the slots then free to the first hosts in line (protocol/waiting_line.py's `settle`); the
        semaphore after, and who got a slot. `state`: `read_for_release`. When another write came first,
        the same round trip asks to leave and reads again; while others hold slots we then give one of their
        releases a moment to settle ours (`_settled_by_another`) before trying again.
        NotHeld when `holder` holds none to begin with. Needs transactions (`read_for_release` said so)."""
        txn = self.transactions()
        assert txn is not None, "read_for_release() first"
        asking = leaving_key(self.key, holder)
        stamp = joined_value(self._clock())
        for attempt in range(self._max_attempts):
            before = self.snapshot_of(state.entries.get(self.key))
            if not before.semaphore.holds(holder):
                if attempt == 0:
                    raise NotHeld(holder)
                return before, ()  # a release written after our request settled ours
            leaving = self._keys_of(state, leaving_prefix(self.key), leaving_key)
            waiting = self._keys_of(state, line_prefix(self.key), line_key) if hand_over else {}
            after, _left, granted = waiting_line.settle(before.semaphore, [holder, *leaving], list(waiting))
            unchanged_keys = {e.key: e.revision for e in leaving.values()}
            unchanged_keys |= {waiting[h].key: waiting[h].revision for h in granted}
            # A granted host's line key stays: it deletes the key itself to take the slot (see `take_back`).
            delete = [e.key for e in leaving.values()]
            delete += [k for h in (holder, *granted) if (k := leaving_key(self.key, h)) and k not in delete]
            planned = Planned(after, frozenset(granted), unchanged_keys, tuple(delete))
            expect, put = self._writes(before, state.entries.get(self.ages_key), planned)
            answer = await txn.commit_or_queue(
                expect,
                put,
                planned.delete,
                # Once our request is stored, writing it again would change it under every other releaser's compare.
                otherwise_put={asking: stamp} if asking and holder not in leaving else {},
                counts=self._release_counts,
                read=(self.key, self.ages_key),
            )
            if isinstance(answer, int):
                return replace(before, semaphore=after, revision=answer, exists=True), granted
            state = answer
            now = self.snapshot_of(state.entries.get(self.key))
            if asking and now.semaphore.holds(holder) and len(now.semaphore.holders) > 1:
                if (settled := await self._settled_by_another(holder)) is not None:
                    return settled, ()
                state = await txn.heads(self._release_counts, [self.key, self.ages_key])
                continue
            await asyncio.sleep(random.uniform(0, min(LINE_CONFLICT_BACKOFF_MAX, LINE_CONFLICT_JITTER * 2**attempt)))
        raise SemaphoreContention(
            f"gave up on {self.key!r} after {self._max_attempts} attempts: other writers changed it every time;"
            " our request to leave stays for the next release to settle"
        )

    async def _settled_by_another(self, holder: str) -> Snapshot | None:
        """Follow the semaphore for up to SETTLED_BY_ANOTHER_WITHIN: the first state without `holder` (a
        release by another host settled our stored request to leave), or None (look and try again)."""
        try:
            async with asyncio.timeout(SETTLED_BY_ANOTHER_WITHIN), aclosing(self.follow()) as states:
                async for snap in states:
                    if not snap.semaphore.holds(holder):
                        return snap
        except (TimeoutError, KVError):  # the read that follows fails the same way if the store is gone
            return None
        return None

    async def take_back(self, unconfirmed: Mapping[str, Entry], *, seen: Mapping[str, Entry | None]) -> Snapshot:
        """Take back the slots handed to hosts that never took them: `unconfirmed` maps each host to its line
        key as read once it had stood a grace period after the hand-over. One transaction frees their
        slots and deletes their keys while those keys are still unchanged, so a host that takes its slot
        meanwhile (deleting its key) keeps it; a host taken back finds its key gone and queues again."""
        txn = self.transactions()
        assert txn is not None, "only a store with a line hands slots over"

        def plan(sem: Semaphore, current: Mapping[str, Entry | None]) -> Planned:
            stalled = [h for h, e in unconfirmed.items() if sem.holds(h) and unchanged(e, current)]
            after = sem
            for host in stalled:
                after = after.unlock(host)
            keys = {unconfirmed[h].key: unconfirmed[h].revision for h in stalled}
            return Planned(after, frozenset(), keys, tuple(keys))

        return (
            await self._retrying(
                lambda current: self._commit_planned(txn, plan, current),
                first=seen,
                jitter=(LINE_CONFLICT_JITTER, LINE_CONFLICT_BACKOFF_MAX),
            )
        )[1]

    @property
    def _release_counts(self) -> dict[str, int]:
        return {line_prefix(self.key): HAND_OVER_READ, leaving_prefix(self.key): LEAVING_READ}

    def _keys_of(self, state: Heads, prefix: str, key_for: Callable[[str, str], str | None]) -> dict[str, Entry]:
        """The hosts whose keys `state` read under `prefix`, oldest first (a key that is not exactly a
        host's key, `key_for(semaphore key, id)`, is skipped: the store's contents are not trusted)."""
        first = state.first.get(prefix, ())
        return {holder_of(e.key): e for e in first if key_for(self.key, holder_of(e.key)) == e.key}
