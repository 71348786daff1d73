"""The reboot semaphore on a KV store: read, apply a pure operation, compare-and-swap.

The semaphore value stays byte-exact in the Go shape, so CoreOS/Flatcar locksmiths can share it.
When each holder took its slot is kept beside it, in `<key>-holders` (JSON `{"<id>":"<RFC3339 UTC>"}`),
which the Go tool never reads. That record is best effort: a missing or unreadable one only means
"age unknown" and never blocks a lock or an unlock.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from tenacity import AsyncRetrying, RetryError, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from locksmith.kv.base import KVError, KVStore
from locksmith.logging import outside_text
from locksmith.protocol.semaphore import (
    INITIAL,
    MAX_VALUE_BYTES,
    Semaphore,
    SemaphoreCorrupt,
    SemaphoreError,
    decode,
    encode,
    holder_problem,
    holders_key,
    semaphore_key,
)

log = structlog.get_logger(__name__)

# A CAS conflict means someone else just wrote: retry at once, with a little jitter so that
# contenders spread out instead of colliding again in lock step. Repeated conflicts mean many
# writers: the jitter window doubles ("full jitter" back-off) up to CONFLICT_BACKOFF_MAX, so a
# crowd thins itself out instead of starving everyone — a release included — in lock step.
DEFAULT_MAX_ATTEMPTS = 100
CONFLICT_JITTER = 0.02
CONFLICT_BACKOFF_MAX = 0.5
_AGES_MAX_ATTEMPTS = 10


class SemaphoreContention(SemaphoreError):
    """Every attempt lost the compare-and-swap race; nothing was changed by us."""


class _Conflict(Exception):
    """Internal: the key changed between our read and our write."""


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


class LockStore:
    """The semaphore of one lock group on one KV store."""

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
        self._max_attempts = max_attempts
        self._clock = clock

    # --- reading ---------------------------------------------------------------------------

    async def get(self) -> Snapshot:
        """The current value and its revision. Never writes: an absent key reads as INITIAL."""
        entry = await self.kv.get(self.key)
        if entry is None:
            return Snapshot(INITIAL, 0, exists=False)
        return Snapshot(decode(entry.value, self.key), entry.revision)

    async def status(self) -> Status:
        snap = await self.get()
        ages, problem = await self._read_ages()
        holders = tuple(HolderInfo(h, ages.get(h)) for h in snap.semaphore.holders)
        return Status(self.key, snap, holders, problem)

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
                if change.value is None:
                    return Snapshot(INITIAL, change.revision, exists=False)
                return Snapshot(decode(change.value, self.key), change.revision)
        raise SemaphoreError(f"the watch on {self.key!r} ended unexpectedly")

    # --- changing --------------------------------------------------------------------------

    async def lock(self, holder: str) -> Snapshot:
        """Take a slot for `holder` (idempotent). SemaphoreFull when none is free."""
        before, after = await self._mutate(lambda sem: sem.lock(holder))
        if before.semaphore != after.semaphore:
            await self._record_ages(holder, acquired=True)
        return after

    async def unlock(self, holder: str) -> Snapshot:
        """Give back `holder`'s slot. NotHeld when it holds none."""
        _before, after = await self._mutate(lambda sem: sem.unlock(holder))
        await self._record_ages(holder, acquired=False)
        return after

    async def set_max(self, new_max: int) -> tuple[int, int]:
        """Set the number of slots; returns (old max, new max)."""
        before, after = await self._mutate(lambda sem: sem.set_max(new_max))
        return before.semaphore.max, after.semaphore.max

    async def _mutate(self, op: Callable[[Semaphore], Semaphore]) -> tuple[Snapshot, Snapshot]:
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._max_attempts),
                wait=wait_random_exponential(multiplier=CONFLICT_JITTER, max=CONFLICT_BACKOFF_MAX),
                retry=retry_if_exception_type(_Conflict),
            ):
                with attempt:
                    return await self._mutate_once(op)
        except RetryError:
            raise SemaphoreContention(
                f"gave up on {self.key!r} after {self._max_attempts} attempts: "
                "other writers changed it every time; try again"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _mutate_once(self, op: Callable[[Semaphore], Semaphore]) -> tuple[Snapshot, Snapshot]:
        entry = await self.kv.get(self.key)
        if entry is None:
            before = Snapshot(INITIAL, 0, exists=False)
            new = op(INITIAL)
            # Create the operated value directly: the same result as Go's Init-then-update, in one write.
            created = await self.kv.create(self.key, encode(new))
            if created is None:
                raise _Conflict
            return before, Snapshot(new, created.revision)
        # A value that does not decode raises SemaphoreCorrupt here, before any write.
        before = Snapshot(decode(entry.value, self.key), entry.revision)
        new = op(before.semaphore)
        if new == before.semaphore:
            return before, before
        written = await self.kv.compare_and_swap(self.key, encode(new), entry.revision)
        if written is None:
            raise _Conflict
        return before, Snapshot(new, written.revision)

    # --- holder ages (best effort) ---------------------------------------------------------

    async def _read_ages(self) -> tuple[dict[str, datetime], str | None]:
        try:
            entry = await self.kv.get(self.ages_key)
        except KVError as exc:
            return {}, f"cannot read {self.ages_key!r}: {outside_text(exc)}"
        if entry is None:
            return {}, None
        try:
            return _decode_ages(entry.value), None
        except AgesUnreadable as exc:
            # Reported once, through Status.ages_problem (locksmithctl prints it as a warning).
            return {}, f"{self.ages_key!r} is not valid ({outside_text(exc)}); left unchanged"

    async def _record_ages(self, holder: str, *, acquired: bool) -> None:
        """Note `holder` taking (or giving back) its slot, and drop ids that no longer hold one."""
        try:
            for _ in range(_AGES_MAX_ATTEMPTS):
                if await self._record_ages_once(holder, acquired=acquired):
                    return
                await asyncio.sleep(random.uniform(0, CONFLICT_JITTER))
            log.warning("holder ages not updated: too many concurrent writers", key=self.ages_key)
        except (KVError, SemaphoreError) as exc:
            # The semaphore itself is already written: its caller's result must not depend on this.
            log.warning("holder ages not updated", key=self.ages_key, error=outside_text(exc))

    async def _record_ages_once(self, holder: str, *, acquired: bool) -> bool:
        holders = set((await self.get()).semaphore.holders)
        entry = await self.kv.get(self.ages_key)
        old: dict[str, datetime] = {}
        if entry is not None:
            try:
                old = _decode_ages(entry.value)
            except AgesUnreadable as exc:
                # Never overwrite what we cannot parse, even our own bookkeeping.
                log.warning("holder ages record unreadable; left unchanged", key=self.ages_key, error=outside_text(exc))
                return True
        new = {h: t for h, t in old.items() if h in holders}
        if acquired and holder in holders:
            new[holder] = self._clock().astimezone(UTC).replace(microsecond=0)
        else:
            new.pop(holder, None)
        if entry is None:
            return not new or await self.kv.create(self.ages_key, _encode_ages(new)) is not None
        if new == old:
            return True
        return await self.kv.compare_and_swap(self.ages_key, _encode_ages(new), entry.revision) is not None


def _encode_ages(ages: dict[str, datetime]) -> bytes:
    return json.dumps(
        {h: t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for h, t in sorted(ages.items())},
        separators=(",", ":"),
    ).encode()


class AgesUnreadable(ValueError):
    """The holder-ages record is not what we write; it is ignored (and left as it is)."""


def _decode_ages(raw: bytes) -> dict[str, datetime]:
    """Parse the side record. Anyone with write access to the store may have put anything there,
    so every failure — size, encoding, nesting depth, a date out of range — is AgesUnreadable."""
    if len(raw) > MAX_VALUE_BYTES:
        raise AgesUnreadable(f"{len(raw)} bytes long, far more than a record of holder ages")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise AgesUnreadable(f"not JSON: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise AgesUnreadable("expected a JSON object")
    ages: dict[str, datetime] = {}
    for index, (holder, stamp) in enumerate(data.items()):
        # Neither the id nor the stamp is repeated in the message: they are not ours to print.
        if holder_problem(holder):
            raise AgesUnreadable(f"entry #{index + 1} is not keyed by a valid holder id")
        if not isinstance(stamp, str) or len(stamp) > 64:
            raise AgesUnreadable(f"the time of entry #{index + 1} is not a short string")
        try:
            when = datetime.fromisoformat(stamp)
            # Near datetime.min/max, converting to UTC overflows.
            utc = when.astimezone(UTC) if when.tzinfo is not None else None
        except (ValueError, OverflowError):
            raise AgesUnreadable(f"the time of entry #{index + 1} is not an RFC 3339 time in range") from None
        if utc is None:
            raise AgesUnreadable(f"the time of entry #{index + 1} has no time zone")
        ages[holder] = utc
    return ages


__all__ = [
    "AgesUnreadable",
    "HolderInfo",
    "LockStore",
    "SemaphoreContention",
    "SemaphoreCorrupt",
    "Snapshot",
    "Status",
]
