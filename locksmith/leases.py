"""Expiring holders over a KV store (opt-in, LOCKSMITHD_LOCK_TTL): keep this host's lease alive while it
may hold, and free the slot of a holder whose lease lapsed. The rules are in protocol/holder_lease.py.

Freeing is the only write to the semaphore here, and it is exactly an admin's `unlock`: the expired ids
leave the Go-format JSON by one compare-and-swap at the revision the judgement was made at, so a holder
that renewed or locked again in between is never removed on a stale reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog

from locksmith.kv.base import Entry, ExpiringKeys, KVError, KVStore, NoTransactions
from locksmith.lockstore import LockStore, Snapshot
from locksmith.protocol import holder_lease
from locksmith.protocol.holder_lease import Judgement, Lease
from locksmith.protocol.semaphore import SemaphoreError, encode
from locksmith.safe_text import outside_text

log = structlog.get_logger(__name__)

_JUDGE_ATTEMPTS = 10
# Lease keys read in one prefix read: far more than any semaphore's holders (hosts preparing to hold included).
_PREFIX_READ_LIMIT = 1000
# An idle agent judges every half of its own TTL, at most this far apart (a fleet's reads stay cheap).
_IDLE_JUDGE_MAX_SECONDS = 30.0


class LeasesUnsupported(KVError):
    """The store has no expiring keys (the embedded store)."""


@dataclass(frozen=True, slots=True)
class Freed:
    """Holders removed because their lease lapsed, and when to look again for those that still may."""

    holders: tuple[str, ...]
    recheck_seconds: float | None


class HolderLeases:
    """The leases beside one semaphore."""

    def __init__(self, locks: LockStore) -> None:
        self.locks = locks
        self.kv: KVStore = locks.kv

    def _expiring(self) -> ExpiringKeys:
        if not isinstance(self.kv, ExpiringKeys):
            raise LeasesUnsupported(
                "LOCKSMITHD_LOCK_TTL needs etcd: the embedded store has no expiring keys; unset it, or use etcd"
            )
        return self.kv

    def _keys(self, holder: str) -> tuple[str, str]:
        lease, alive = holder_lease.lease_key(self.locks.key, holder), holder_lease.alive_key(self.locks.key, holder)
        if lease is None or alive is None:
            raise KVError(f"holder id {holder[:64]!r} cannot have a lease: use a machine id")
        return lease, alive

    # --- this host's lease -------------------------------------------------------------------

    async def declare(self, holder: str, lease: Lease) -> None:
        """Before taking a slot: the declaration, then the alive key (see the module's order)."""
        lease_key, alive_key = self._keys(holder)
        store = self._expiring()
        value = lease.encode()
        current = await self.kv.get(lease_key)
        if current is None:
            await self.kv.create(lease_key, value)
        elif current.value != value:
            await self.kv.compare_and_swap(lease_key, value, current.revision)
        await store.put_expiring(alive_key, value, lease.ttl_seconds)

    async def renew(self, holder: str, lease: Lease, *, only_if_present: bool) -> bool:
        _lease_key, alive_key = self._keys(holder)
        return await self._expiring().put_expiring(
            alive_key, lease.encode(), lease.ttl_seconds, only_if_present=only_if_present
        )

    def own_keys(self, holder: str) -> tuple[str, ...]:
        """The holder's declaration and alive key (none for an id that cannot have a lease)."""
        lease_key = holder_lease.lease_key(self.locks.key, holder)
        alive_key = holder_lease.alive_key(self.locks.key, holder)
        return () if lease_key is None or alive_key is None else (lease_key, alive_key)

    async def withdraw(self, holder: str, seen: Mapping[str, Entry | None] | None = None) -> None:
        """After leaving the semaphore (or before taking a slot with the TTL off): no declaration, no alive
        key. `seen`: both keys as just read, when they were, and nobody renews them meanwhile."""
        own = self.own_keys(holder)
        if not own:
            return
        lease_key, alive_key = own
        if (txn := self.locks.transactions()) is not None:
            with contextlib.suppress(NoTransactions):
                # Every lock and release asks this, and nearly always there is nothing: a read, not a write.
                if seen is None or not all(k in seen for k in own):
                    seen = await txn.read_together(own)
                if any(seen[k] for k in own):
                    await txn.commit({}, {}, delete=(lease_key, alive_key))  # both gone at once
                return
        # The declaration goes first: without it nobody judges us, whatever the alive key says.
        await self.kv.delete(lease_key)
        await self.kv.delete(alive_key)

    # --- judging every holder ----------------------------------------------------------------

    async def judge(self) -> tuple[Snapshot, Judgement]:
        """Read the semaphore, then the declarations, then the alive keys (the order that keeps the
        judgement sound): the semaphore as read, and the judgement at it. Two prefix reads, whatever the
        number of holders; a prefix holding more keys than we read is judged key by key instead, since an
        alive key left out of a short read would make a live holder look expired."""
        snap = await self.locks.get()
        holders = snap.semaphore.holders
        if not holders:
            return snap, holder_lease.judge(holders, {}, set())
        declarations = await self.kv.list_prefix(holder_lease.leases_prefix(self.locks.key), _PREFIX_READ_LIMIT)
        if len(declarations) < _PREFIX_READ_LIMIT:
            declared_by_key = {e.key: e.value for e in declarations}
            declared = {h: declared_by_key.get(holder_lease.lease_key(self.locks.key, h) or "") for h in holders}
            if not any(v is not None for v in declared.values()):
                return snap, holder_lease.judge(holders, declared, set())
            alive_keys = await self.kv.list_prefix(holder_lease.alive_prefix(self.locks.key), _PREFIX_READ_LIMIT)
            if len(alive_keys) < _PREFIX_READ_LIMIT:
                present = {e.key for e in alive_keys}
                alive = {h for h in holders if holder_lease.alive_key(self.locks.key, h) in present}
                return snap, holder_lease.judge(holders, declared, alive)
        return snap, await self._judge_key_by_key(holders)

    async def _judge_key_by_key(self, holders: tuple[str, ...]) -> Judgement:
        declared: dict[str, bytes | None] = {}
        alive: set[str] = set()
        for holder in holders:
            lease_key = holder_lease.lease_key(self.locks.key, holder)
            alive_key = holder_lease.alive_key(self.locks.key, holder)
            if lease_key is None or alive_key is None:
                continue
            entry = await self.kv.get(lease_key)
            declared[holder] = entry.value if entry is not None else None
            if entry is not None and await self.kv.get(alive_key) is not None:
                alive.add(holder)
        return holder_lease.judge(holders, declared, alive)

    async def free_expired(self, on_freed: Callable[[str, int], None] | None = None) -> Freed:
        """Remove every expired holder from the semaphore (one CAS at the judged revision, judged again on a
        conflict). Safe to call from any number of hosts at once: each expired id is removed once."""
        judgement = Judgement((), None)
        for _ in range(_JUDGE_ATTEMPTS):
            snap, judgement = await self.judge()
            if not judgement.expired:
                return Freed((), judgement.recheck_seconds)
            revision, remaining = snap.revision, snap.semaphore
            for holder in judgement.expired:
                remaining = remaining.unlock(holder)
            written = await self.kv.compare_and_swap(self.locks.key, encode(remaining), revision)
            if written is None:
                continue
            ttls = dict(judgement.ttls)  # the declarations as judged: no second read of each
            for holder in judgement.expired:
                log.warning(
                    "lock.expired-holder-removed",
                    key=self.locks.key,
                    holder=holder,
                    ttl_seconds=ttls[holder],
                    revision=written.revision,
                    detail="its agent stopped renewing its lease; removed as an admin's unlock would",
                )
                if on_freed is not None:
                    on_freed(holder, ttls[holder])
                with contextlib.suppress(KVError):
                    await self.withdraw(holder)
            await self.locks.record_write(revision, written.revision)
            return Freed(judgement.expired, judgement.recheck_seconds)
        return Freed((), judgement.recheck_seconds)


class LeaseKeeper:
    """Keeps this host's alive key written every TTL/3 while it may hold. Before the slot is held the key is
    rewritten whatever happens (it may have lapsed during a long wait: nobody judges a non-holder); once
    held, only while it is still there — a lapsed lease is reported, never silently revived."""

    def __init__(self, leases: HolderLeases, holder: str, lease: Lease) -> None:
        self.leases = leases
        self.holder = holder
        self.lease = lease
        self.holding = False
        self.lapsed = asyncio.Event()
        self._renewed_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Renew from now on; the caller has just written the alive key (declared or renewed it)."""
        if self._task is None or self._task.done():
            self.lapsed.clear()
            self._renewed_at = time.monotonic()
            self._task = asyncio.create_task(self._renew_forever(), name="locksmith-lease-keeper")

    def lapsed_reason(self) -> str | None:
        """Why the slot may be gone by now (the agent then does not reboot on it), or None."""
        if self.lapsed.is_set():
            return f"our lease ({self.lease.ttl_seconds} s) expired: any host may have freed our slot"
        if self._renewed_at is not None and time.monotonic() - self._renewed_at >= self.lease.ttl_seconds:
            return f"our lease could not be renewed for {self.lease.ttl_seconds} s (the store is out of reach)"
        return None

    def mark_lapsed(self) -> None:
        self.lapsed.set()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _renew_forever(self) -> None:
        interval = self.lease.renew_seconds
        while True:
            await asyncio.sleep(interval)
            try:
                renewed = await self.leases.renew(self.holder, self.lease, only_if_present=self.holding)
            except KVError as exc:
                # Two more tries before the key can lapse; try again sooner than usual.
                interval = self.lease.renew_seconds / 2
                log.warning("lock.lease.renew-failed", reason=outside_text(exc), retry_in=round(interval, 1))
                continue
            interval = self.lease.renew_seconds
            if renewed:
                self._renewed_at = time.monotonic()
            else:
                log.error(
                    "lock.lease.lapsed",
                    key=self.leases.locks.key,
                    ttl_seconds=self.lease.ttl_seconds,
                    detail="our lease expired (the store was out of reach for longer than the TTL); any host may"
                    " now remove us from the semaphore",
                )
                self.lapsed.set()
                return


async def judge_while_idle(
    leases: HolderLeases, own: Lease, on_freed: Callable[[str, int], None] | None = None
) -> None:
    """Runs for the agent's life once it has a TTL of its own. Waiting agents judge anyway; this is for
    when none waits — slots are left, so nobody needs the dead holder's — which would otherwise keep that
    slot, and show as holding, until the next rollout. Jittered, so a fleet does not judge in step."""
    interval = min(own.ttl_seconds / 2, _IDLE_JUDGE_MAX_SECONDS)
    while True:
        await asyncio.sleep(interval * random.uniform(0.75, 1.25))
        try:
            await leases.free_expired(on_freed)
        except (KVError, SemaphoreError) as exc:
            # The agent's own requests report an unreachable store or a corrupt value; no second alarm.
            log.debug("lock.judge.failed", reason=outside_text(exc))
