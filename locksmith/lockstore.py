"""The reboot semaphore on a KV store: read, apply a pure operation, compare-and-swap.

The semaphore value stays byte-exact in the Go shape, so CoreOS/Flatcar locksmiths can share it.
When each holder took its slot is kept beside it, in `<key>-holders` (protocol/holder_ages.py), which the
Go tool never reads; an age is shown only while it is provably still true. That record is best effort: a
missing or unreadable one only means "age unknown" and never blocks a lock or an unlock. Where the store
has transactions (etcd v3) it is written in the same one as the semaphore, so it costs no round trip and
no retry of its own (and a waiter's line key is deleted in it too); elsewhere it is a second write after.
Giving slots back several at a time, and handing them to the hosts in line, is in handover.py.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from tenacity import AsyncRetrying, RetryError, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from locksmith.handover import HandOver, Planned
from locksmith.kv.base import Entry, KVError, KVStore, NoTransactions, Transactions
from locksmith.pacing_record import PacingRecord
from locksmith.protocol import holder_ages
from locksmith.protocol.holder_ages import THIS_WRITE, AgesRecord, AgesUnreadable
from locksmith.protocol.hostrecord import hosts_prefix
from locksmith.protocol.pacing import spacing_key
from locksmith.protocol.semaphore import (
    INITIAL,
    Semaphore,
    SemaphoreContention,
    SemaphoreCorrupt,
    SemaphoreError,
    decode,
    encode,
    holders_key,
    semaphore_key,
)
from locksmith.protocol.waiting_line import LINE_CONFLICT_BACKOFF_MAX, LINE_CONFLICT_JITTER, leaving_key
from locksmith.safe_text import outside_text

log = structlog.get_logger(__name__)

# A CAS conflict means someone else just wrote: retry at once, with a little jitter so that
# contenders spread out instead of colliding again in lock step. Repeated conflicts mean many
# writers: the jitter window doubles ("full jitter" back-off) up to CONFLICT_BACKOFF_MAX, so a
# crowd thins itself out instead of starving everyone — a release included — in lock step.
DEFAULT_MAX_ATTEMPTS = 100
CONFLICT_JITTER = 0.02
CONFLICT_BACKOFF_MAX = 0.5
_AGES_MAX_ATTEMPTS = 10
# The fleet view reads at most this many host records (a fleet far larger than any semaphore's max).
MAX_HOSTS = 10_000


class _Conflict(Exception):
    """Internal: the key changed between our read and our write (`current`: the keys as they are now,
    when the store said so in its answer)."""

    def __init__(self, current: dict[str, Entry | None] | None = None) -> None:
        super().__init__()
        self.current = current


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The semaphore as read at `revision`. `exists` is False when the key is absent: the value is
    then the initial one a first lock would create, and `revision` is 0 (or the deletion's)."""

    semaphore: Semaphore
    revision: int
    exists: bool = True


@dataclass(frozen=True, slots=True)
class HolderInfo:
    id: str
    since: datetime | None  # None: we never saw it lock (e.g. the Go tool locked it)

    def held_for(self, now: datetime) -> float | None:
        return None if self.since is None else max(0.0, (now - self.since).total_seconds())


@dataclass(frozen=True, slots=True)
class Status:
    key: str
    snapshot: Snapshot
    holders: tuple[HolderInfo, ...]
    ages_problem: str | None = None  # why ages are unknown, when the record could not be read

    @property
    def semaphore(self) -> Semaphore:
        return self.snapshot.semaphore


class LockStore(PacingRecord, HandOver):
    """The semaphore of one lock group on one KV store (and its pacing record: pacing_record.py)."""

    def __init__(
        self,
        kv: KVStore,
        group: str | None = None,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.kv = kv
        self.key = semaphore_key(group)
        self.ages_key = holders_key(self.key)
        self.spacing_key = spacing_key(self.key)
        self._max_attempts = max_attempts
        self._clock = clock
        self._single_key_only = False  # a plain-URL store settled on etcd v2
        self._transactions_for: object = None
        self._has_transactions = False

    # --- reading ---------------------------------------------------------------------------

    async def get(self) -> Snapshot:
        """The current value and its revision. Never writes: an absent key reads as INITIAL."""
        return self.snapshot_of(await self.kv.get(self.key))

    def snapshot_of(self, entry: Entry | None) -> Snapshot:
        """The semaphore as stored in `entry` (None: absent, read as INITIAL at revision 0)."""
        return self.snapshot_at(None, 0) if entry is None else self.snapshot_at(entry.value, entry.revision)

    def snapshot_at(self, value: bytes | None, revision: int) -> Snapshot:
        """The semaphore as a watch reports it (value None: deleted)."""
        if value is None:
            return Snapshot(INITIAL, revision, exists=False)
        return Snapshot(decode(value, self.key), revision)

    def log_fields(self, snap: Snapshot) -> dict[str, object]:
        """The semaphore as a log line shows it."""
        return {
            "key": self.key,
            "holders": list(snap.semaphore.holders),
            "max": snap.semaphore.max,
            "revision": snap.revision,
        }

    async def status(self) -> Status:
        snap = await self.get()
        ages, problem = await self._read_ages(snap.revision)
        holders = tuple(HolderInfo(h, ages.get(h)) for h in snap.semaphore.holders)
        return Status(self.key, snap, holders, problem)

    async def host_records(self, limit: int = MAX_HOSTS) -> dict[str, bytes]:
        """The fleet view's stored records, by machine id (raw: protocol/hostrecord.py decodes them)."""
        prefix = hosts_prefix(self.key)
        return {e.key[len(prefix) :]: e.value for e in await self.kv.list_prefix(prefix, limit)}

    async def wait_for_change(self, after_revision: int) -> Snapshot:
        """Block until the key changes after `after_revision` (no polling: the store's watch), and
        return the new state. Wrap in asyncio.timeout() to bound the wait."""
        async with aclosing(self.kv.watch(self.key, after_revision)) as changes:
            async for change in changes:
                if change.revision <= after_revision:
                    continue
                if after_revision == 0:
                    # We last saw the key absent: a store replaying old history from revision 1
                    # must not hand us a stale value, so confirm against the current state.
                    current = await self.get()
                    if current.exists:
                        return current
                    continue
                return self.snapshot_at(change.value, change.revision)
        raise SemaphoreError(f"the watch on {self.key!r} ended unexpectedly")

    # --- changing --------------------------------------------------------------------------

    def transactions(self) -> Transactions | None:
        """The store's multi-key transactions, when it has them (`kv` is public: a swapped store is looked
        at again; a runtime protocol check on every call was a measurable share of a waiter's CPU)."""
        if self._transactions_for is not self.kv:
            self._transactions_for, self._has_transactions = self.kv, isinstance(self.kv, Transactions)
        return self.kv if self._has_transactions and not self._single_key_only else None  # type: ignore[return-value]

    @property
    def turn_keys(self) -> tuple[str, str, str]:
        """What a waiter reads when its turn comes, so that `lock(seen=…)` needs no read of its own."""
        return self.key, self.ages_key, self.spacing_key

    async def lock(
        self, holder: str, *, leave_line: str | None = None, seen: Mapping[str, Entry | None] | None = None
    ) -> Snapshot:
        """Take a slot for `holder` (idempotent). SemaphoreFull when none is free. `leave_line`: the
        holder's waiting-line key, deleted in the same transaction that takes the slot. `seen`: the
        semaphore and its ages record just read together (`turn_keys`), where the store has transactions."""
        op = lambda sem: sem.lock(holder)  # noqa: E731
        return (await self._mutate(op, added=holder, leave_line=leave_line, seen=seen))[1]

    def _stale_keys(self, holder: str | None, leave_line: str | None) -> tuple[str, ...]:
        """What a lock by `holder` deletes beside the semaphore write: its line key, and any request of its
        own to leave left from an earlier hold, so that it never releases this one."""
        asking = leaving_key(self.key, holder) if holder else None
        return tuple(k for k in (leave_line, asking) if k)

    async def unlock(self, holder: str, *, seen: Mapping[str, Entry | None] | None = None) -> Snapshot:
        """Give back `holder`'s slot. NotHeld when it holds none. `seen`: as for `lock`."""
        return (await self._mutate(lambda sem: sem.unlock(holder), seen=seen))[1]

    async def read_with(self, keys: Sequence[str]) -> dict[str, Entry | None] | None:
        """The turn keys and `keys` at one revision, where the store has transactions (else None): one
        read where a release, its pacing stamp and its lease clean-up would each make their own."""
        if (txn := self.transactions()) is None:
            return None
        try:
            return await txn.read_together([*self.turn_keys, *keys])
        except NoTransactions:
            self._single_key_only = True
            return None

    async def set_max(self, new_max: int) -> tuple[int, int]:
        """Set the number of slots; returns (old max, new max)."""
        before, after = await self._mutate(lambda sem: sem.set_max(new_max))
        return before.semaphore.max, after.semaphore.max

    async def record_write(self, before: int, after: int) -> None:
        """Note a semaphore write made outside `_mutate` (expired holders freed by leases.py)."""
        await self._record_ages(before, after)

    async def _mutate(
        self,
        op: Callable[[Semaphore], Semaphore],
        *,
        added: str | None = None,
        leave_line: str | None = None,
        seen: Mapping[str, Entry | None] | None = None,
    ) -> tuple[Snapshot, Snapshot]:
        """Apply `op` by compare-and-swap, retrying conflicts; the holder ages follow (folded into the
        write where the store has transactions)."""
        if (txn := self.transactions()) is not None:
            try:
                return await self._retrying(
                    lambda current: self._commit_once(txn, op, added, leave_line, current),
                    first=seen,
                    jitter=(LINE_CONFLICT_JITTER, LINE_CONFLICT_BACKOFF_MAX),
                )
            except NoTransactions:
                self._single_key_only = True
        # Without transactions there is no waiting line either (waitline.py), so no line key to delete.
        before, after = await self._retrying(lambda _seen: self._mutate_once(op))
        if after.revision != before.revision:
            await self._record_ages(before.revision, after.revision, added=added)
        return before, after

    async def _retrying(
        self,
        once: Callable[[Mapping[str, Entry | None] | None], Awaitable[tuple[Snapshot, Snapshot]]],
        first: Mapping[str, Entry | None] | None = None,
        jitter: tuple[float, float] = (CONFLICT_JITTER, CONFLICT_BACKOFF_MAX),
    ) -> tuple[Snapshot, Snapshot]:
        seen = first
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._max_attempts),
                wait=wait_random_exponential(multiplier=jitter[0], max=jitter[1]),
                retry=retry_if_exception_type(_Conflict),
            ):
                with attempt:
                    try:
                        return await once(seen)
                    except _Conflict as conflict:
                        seen = conflict.current
                        raise
        except RetryError:
            raise SemaphoreContention(
                f"gave up on {self.key!r} after {self._max_attempts} attempts: "
                "other writers changed it every time; try again"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _commit_once(
        self,
        txn: Transactions,
        op: Callable[[Semaphore], Semaphore],
        added: str | None,
        leave_line: str | None,
        seen: Mapping[str, Entry | None] | None,
    ) -> tuple[Snapshot, Snapshot]:
        """One read (or the values the last conflict answered with) and one transaction writing the
        semaphore, the ages record and, for a lock, deleting the waiter's line key and leaving key."""

        def plan(sem: Semaphore, _current: Mapping[str, Entry | None]) -> Planned:
            adds = frozenset({added}) if added else frozenset()
            return Planned(op(sem), adds, {}, self._stale_keys(added, leave_line))

        return await self._commit_planned(txn, plan, seen)

    async def _commit_planned(
        self,
        txn: Transactions,
        plan: Callable[[Semaphore, Mapping[str, Entry | None]], Planned],
        seen: Mapping[str, Entry | None] | None,
    ) -> tuple[Snapshot, Snapshot]:
        current = seen if seen is not None else await txn.read_together([self.key, self.ages_key])
        entry, ages_entry = current.get(self.key), current.get(self.ages_key)
        before = self.snapshot_of(entry)
        planned = plan(before.semaphore, current)
        if planned.semaphore == before.semaphore:
            if planned.delete:  # already holding: only its line and leaving keys go
                await txn.commit({}, {}, delete=planned.delete)
            return before, before
        expect, put = self._writes(before, ages_entry, planned)
        committed = await txn.commit(expect, put, delete=planned.delete)
        if committed.revision is None:
            raise _Conflict(dict(committed.current))
        return before, Snapshot(planned.semaphore, committed.revision)

    def _ages_after(self, entry: Entry | None, before: int, new: Semaphore, added: frozenset[str]) -> bytes | None:
        """The ages record to write with the semaphore (None: leave it, we cannot read it)."""
        old = self._stored_ages(entry)
        if old is None:
            return None
        return holder_ages.encode(old.after_write(before, THIS_WRITE, frozenset(new.holders), added, self._clock()))

    def _stored_ages(self, entry: Entry | None) -> AgesRecord | None:
        """The ages record as stored (empty when absent); None when unreadable, which we never overwrite,
        even our own bookkeeping."""
        if entry is None:
            return AgesRecord()
        try:
            return holder_ages.decode(entry.value, entry.revision)
        except AgesUnreadable as exc:
            log.warning("holder ages record unreadable; left unchanged", key=self.ages_key, error=outside_text(exc))
            return None

    async def _mutate_once(self, op: Callable[[Semaphore], Semaphore]) -> tuple[Snapshot, Snapshot]:
        entry = await self.kv.get(self.key)
        # A value that does not decode raises SemaphoreCorrupt here, before any write.
        before = self.snapshot_of(entry)
        new = op(before.semaphore)
        if entry is None:
            # Create the operated value directly: the same result as Go's Init-then-update, in one write.
            created = await self.kv.create(self.key, encode(new))
            if created is None:
                raise _Conflict
            return before, Snapshot(new, created.revision)
        if new == before.semaphore:
            return before, before
        written = await self.kv.compare_and_swap(self.key, encode(new), entry.revision)
        if written is None:
            raise _Conflict
        return before, Snapshot(new, written.revision)

    # --- holder ages (best effort) ---------------------------------------------------------

    async def _read_ages(self, revision: int) -> tuple[dict[str, datetime], str | None]:
        """The ages still true at the semaphore's `revision`, and why there are none if the record is bad."""
        try:
            entry = await self.kv.get(self.ages_key)
        except KVError as exc:
            return {}, f"cannot read {self.ages_key!r}: {outside_text(exc)}"
        if entry is None:
            return {}, None
        try:
            return holder_ages.decode(entry.value, entry.revision).true_ages(revision), None
        except AgesUnreadable as exc:
            # Reported once, through Status.ages_problem (locksmithctl prints it as a warning).
            return {}, f"{self.ages_key!r} is not valid ({outside_text(exc)}); left unchanged"

    async def _record_ages(self, before: int, after: int, *, added: str | None = None) -> None:
        """Note our semaphore write `before` → `after` (and the holder it added), dropping ids that left."""
        try:
            for _ in range(_AGES_MAX_ATTEMPTS):
                if await self._record_ages_once(before, after, added):
                    return
                await asyncio.sleep(random.uniform(0, CONFLICT_JITTER))
            log.warning("holder ages not updated: too many concurrent writers", key=self.ages_key)
        except (KVError, SemaphoreError) as exc:
            # The semaphore itself is already written: its caller's result must not depend on this.
            log.warning("holder ages not updated", key=self.ages_key, error=outside_text(exc))

    async def _record_ages_once(self, before: int, after: int, added: str | None) -> bool:
        holders = frozenset((await self.get()).semaphore.holders)
        entry = await self.kv.get(self.ages_key)
        old = self._stored_ages(entry)
        if old is None:
            return True
        new = old.after_write(before, after, holders, frozenset({added}) if added else frozenset(), self._clock())
        value = holder_ages.encode(new)
        if entry is None:
            return await self.kv.create(self.ages_key, value) is not None
        if value == entry.value:
            return True
        return await self.kv.compare_and_swap(self.ages_key, value, entry.revision) is not None


__all__ = ["AgesUnreadable", "HolderInfo", "LockStore", "SemaphoreContention", "SemaphoreCorrupt", "Snapshot", "Status"]
