"""Expiring holders (LOCKSMITHD_LOCK_TTL) on real etcd, v3 and v2: who is freed, who never is, and races.

The pure rules (protocol/holder_lease.py) are fuzzed at the end; nothing here sleeps for an outcome: an
expiry is waited for by polling the store with a deadline.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from locksmith.kv import ExpiringKeys, KVError, KVOptions, open_store, parse_endpoints
from locksmith.leases import HolderLeases, LeasesUnsupported
from locksmith.lockstore import LockStore
from locksmith.protocol import holder_lease
from locksmith.protocol.holder_lease import Lease, check_ttl, judge
from locksmith.protocol.semaphore import decode, encode
from semaphore.conftest import Backend, endpoints_for

TTL = 2
ME, OTHER, GO_HOST = "a" * 32, "b" * 32, "c" * 32


@pytest.fixture(params=["etcd3", "etcd2"])
async def etcd_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """The two etcd APIs only: the embedded store has no expiring keys (tested on its own below)."""
    endpoints = endpoints_for(request.param, request, tmp_path)
    b = Backend(request.param, KVOptions(parse_endpoints(endpoints), retry_budget=5.0), f"ttl {uuid.uuid4().hex[:10]}")
    yield b
    for store in b._stores:
        await store.aclose()


async def _wait_gone(b: Backend, key: str, limit: float) -> float:
    """Seconds until `key` is absent (the store expired it), failing after `limit`."""
    kv, start = b.open(), time.monotonic()
    while await kv.get(key) is not None:
        if time.monotonic() - start > limit:
            raise AssertionError(f"{key} still there after {limit} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def test_put_expiring_expires_and_a_renewal_never_revives(etcd_backend: Backend) -> None:
    kv = etcd_backend.open()
    assert isinstance(kv, ExpiringKeys)
    key = f"{etcd_backend.group}/alive"
    assert await kv.put_expiring(key, b"x", TTL)
    assert await kv.put_expiring(key, b"y", TTL, only_if_present=True)  # a renewal of a live key
    assert (await kv.get(key)).value == b"y"  # type: ignore[union-attr]
    await _wait_gone(etcd_backend, key, TTL + 5)
    assert not await kv.put_expiring(key, b"z", TTL, only_if_present=True)
    assert await kv.get(key) is None


async def test_an_expired_holder_is_freed_and_a_live_or_undeclared_one_never(etcd_backend: Backend) -> None:
    locks = etcd_backend.lockstore()
    await locks.set_max(3)
    leases = HolderLeases(locks)
    # ME and OTHER declare a lease and lock; GO_HOST locks as the Go tool would (no declaration).
    for holder in (ME, OTHER):
        await leases.declare(holder, Lease(TTL))
    for holder in (ME, OTHER, GO_HOST):
        await locks.lock(holder)
    freed: list[tuple[str, int]] = []
    assert (await leases.free_expired(lambda h, t: freed.append((h, t)))).holders == ()

    # OTHER keeps renewing; ME stops (its agent died).
    alive_me = holder_lease.alive_key(locks.key, ME)
    assert alive_me is not None
    renewing = asyncio.create_task(_renew(leases, OTHER))
    try:
        await _wait_gone(etcd_backend, alive_me, TTL + 5)
        result = await leases.free_expired(lambda h, t: freed.append((h, t)))
    finally:
        renewing.cancel()
    assert result.holders == (ME,)
    assert result.recheck_seconds == Lease(TTL).recheck_seconds  # OTHER may still expire: look again
    assert freed == [(ME, TTL)]
    snap = await locks.get()
    assert snap.semaphore.holders == tuple(sorted((OTHER, GO_HOST)))
    raw = (await locks.kv.get(locks.key)).value  # type: ignore[union-attr]
    assert encode(decode(raw, locks.key)) == raw  # still the Go tool's exact bytes
    # ME's keys are gone with it; a second judge finds nothing more to do.
    assert await locks.kv.get(holder_lease.lease_key(locks.key, ME) or "") is None
    assert (await leases.free_expired()).holders == ()


async def _renew(leases: HolderLeases, holder: str) -> None:
    while True:
        await asyncio.sleep(Lease(TTL).renew_seconds / 2)
        await leases.renew(holder, Lease(TTL), only_if_present=True)


async def test_a_stale_judgement_never_removes_a_holder_that_locked_again(etcd_backend: Backend) -> None:
    locks = etcd_backend.lockstore()
    leases = HolderLeases(locks)
    await leases.declare(ME, Lease(TTL))
    await locks.lock(ME)
    await _wait_gone(etcd_backend, holder_lease.alive_key(locks.key, ME) or "", TTL + 5)
    snap, judgement = await leases.judge()
    assert judgement.expired == (ME,)
    # Before the judge writes, ME is back: it declares again and its lock rewrites the semaphore.
    await leases.declare(ME, Lease(TTL))
    await locks.unlock(ME)
    await locks.lock(ME)
    stale = snap.semaphore.unlock(ME)
    assert await locks.kv.compare_and_swap(locks.key, encode(stale), snap.revision) is None
    assert (await leases.free_expired()).holders == ()  # judged afresh: ME is alive
    assert (await locks.get()).semaphore.holds(ME)


async def test_many_judges_at_once_free_each_expired_holder_once(etcd_backend: Backend) -> None:
    locks = etcd_backend.lockstore()
    await locks.set_max(2)
    leases = HolderLeases(locks)
    for holder in (ME, OTHER):
        await leases.declare(holder, Lease(TTL))
        await locks.lock(holder)
    await _wait_gone(etcd_backend, holder_lease.alive_key(locks.key, OTHER) or "", TTL + 5)
    await _wait_gone(etcd_backend, holder_lease.alive_key(locks.key, ME) or "", 2)
    judges = [HolderLeases(etcd_backend.lockstore()) for _ in range(5)]
    results = await asyncio.gather(*(j.free_expired() for j in judges))
    freed = sorted(h for r in results for h in r.holders)
    assert freed == sorted((ME, OTHER))
    assert (await locks.get()).semaphore.holders == ()


async def test_a_bad_declaration_counts_as_none(etcd_backend: Backend) -> None:
    locks = etcd_backend.lockstore()
    leases = HolderLeases(locks)
    await locks.lock(ME)
    key = holder_lease.lease_key(locks.key, ME)
    assert key is not None
    await locks.kv.create(key, b'{"ttl_seconds": 1e999}')  # written by hand: not ours to judge by
    assert (await leases.free_expired()).holders == ()
    assert (await locks.get()).semaphore.holds(ME)


async def test_the_embedded_store_has_no_leases(tmp_path: Path) -> None:
    kv = open_store(KVOptions(parse_endpoints([f"file://{tmp_path}/kv.db"])))
    try:
        leases = HolderLeases(LockStore(kv, None))
        with pytest.raises(LeasesUnsupported, match="LOCKSMITHD_LOCK_TTL needs etcd"):
            await leases.declare(ME, Lease(TTL))
        assert (await leases.free_expired()).holders == ()  # judging is harmless: nobody declares there
    finally:
        await kv.aclose()


async def test_an_id_unfit_for_a_key_cannot_declare(etcd_backend: Backend) -> None:
    leases = HolderLeases(etcd_backend.lockstore())
    with pytest.raises(KVError, match="cannot have a lease"):
        await leases.declare("a/b", Lease(TTL))


# --- the pure rules ---------------------------------------------------------------------------


@given(st.binary(max_size=300))
def test_decode_never_raises(raw: bytes) -> None:
    lease = holder_lease.decode(raw)
    assert lease is None or holder_lease.MIN_TTL_SECONDS <= lease.ttl_seconds <= holder_lease.MAX_TTL_SECONDS


@given(st.integers(min_value=2, max_value=holder_lease.MAX_TTL_SECONDS))
def test_encode_decode_round_trip(ttl: int) -> None:
    assert holder_lease.decode(Lease(ttl).encode()) == Lease(ttl)


@given(
    st.lists(st.sampled_from([ME, OTHER, GO_HOST, "d" * 32]), unique=True),
    st.dictionaries(st.sampled_from([ME, OTHER, GO_HOST]), st.one_of(st.none(), st.binary(max_size=40))),
    st.sets(st.sampled_from([ME, OTHER, GO_HOST])),
)
def test_only_declared_holders_without_alive_keys_expire(holders, declared, alive) -> None:  # type: ignore[no-untyped-def]
    result = judge(tuple(holders), declared, alive)
    for holder in result.expired:
        assert holder in holders and holder not in alive
        assert holder_lease.decode(declared[holder] or b"") is not None


def test_ttl_bounds() -> None:
    assert check_ttl(2) == 2 and check_ttl(2.1) == 3
    for bad in (0.5, 1, 8 * 24 * 3600):
        with pytest.raises(ValueError, match="between 2s and 168h"):
            check_ttl(bad)
    assert holder_lease.lease_key("k", "a\nb") is None
