"""locksmithctl and expiring holders (LOCKSMITHD_LOCK_TTL) on real etcd, v3 and v2: `status` shows a lapsed
lease without touching the store; the writing commands free it first, as a live agent would; an admin's
own lock never expires."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness.devtools.etcd import EtcdCluster
from locksmith.kv import KVStore, open_store
from locksmith.leases import HolderLeases
from locksmith.lockstore import LockStore
from locksmith.protocol import holder_lease
from locksmith.protocol.holder_lease import Lease

from .test_locksmithctl import MACHINE_ID, Ctl, clean_env

TTL = 2
DEAD, LIVE = "d" * 32, "e" * 32


@pytest.fixture(params=["etcd3", "etcd2"])
async def setup(
    request: pytest.FixtureRequest, etcd: EtcdCluster, tmp_path: Path
) -> AsyncIterator[tuple[Ctl, LockStore]]:
    prefix = "etcd2+" if request.param == "etcd2" else ""
    endpoints = [prefix + u for u in etcd.endpoints]
    env = clean_env(tmp_path)
    env["LOCKSMITHCTL_ENDPOINT"] = ",".join(endpoints)
    group = f"ttl-{os.urandom(4).hex()}"
    env["LOCKSMITHCTL_GROUP"] = group
    ctl = Ctl(endpoints, env)
    kv: KVStore = open_store(ctl.kv_options())
    yield ctl, LockStore(kv, group)
    await kv.aclose()


async def _holder_that_dies(locks: LockStore, holder: str) -> None:
    """`holder` declares a lease and locks, then never renews: wait (bounded) until the store expired it."""
    await HolderLeases(locks).declare(holder, Lease(TTL))
    await locks.lock(holder)
    alive = holder_lease.alive_key(locks.key, holder) or ""
    deadline = time.monotonic() + TTL + 10
    while await locks.kv.get(alive) is not None:
        assert time.monotonic() < deadline, f"{alive} never expired"
        await asyncio.sleep(0.05)


async def _run(ctl: Ctl, *args: str):  # type: ignore[no-untyped-def]
    return await asyncio.to_thread(ctl, *args)


async def test_status_shows_a_lapsed_lease_and_changes_nothing(setup: tuple[Ctl, LockStore]) -> None:
    ctl, locks = setup
    await locks.set_max(2)
    await _holder_that_dies(locks, DEAD)
    await HolderLeases(locks).declare(LIVE, Lease(600))
    await locks.lock(LIVE)
    before = await locks.kv.get(locks.key)

    r = await _run(ctl, "status")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:2] == ["Available: 0", "Max: 2"]  # the Go tool's lines, unchanged
    assert f"Warning: holder {DEAD} has an expired lease (TTL 2s)" in r.stderr
    assert LIVE not in r.stderr
    r = await _run(ctl, "status", "--json")
    holders = {h["id"]: h for h in json.loads(r.stdout)["holders"]}
    assert (holders[DEAD]["lease_ttl_seconds"], holders[DEAD]["lease_expired"]) == (2, True)
    assert (holders[LIVE]["lease_ttl_seconds"], holders[LIVE]["lease_expired"]) == (600, False)
    assert await locks.kv.get(locks.key) == before  # status only reads


async def test_lock_frees_an_expired_holder_first_and_its_own_lock_never_expires(
    setup: tuple[Ctl, LockStore],
) -> None:
    ctl, locks = setup
    await _holder_that_dies(locks, DEAD)  # max 1: the dead host blocks everyone
    # A declaration left over for this machine from an earlier agent run must not make the admin's lock expire.
    await HolderLeases(locks).declare(MACHINE_ID, Lease(TTL))

    r = await _run(ctl, "lock")
    assert r.returncode == 0, r.stderr
    assert f"Removed expired holder {DEAD}" in r.stderr
    assert (await locks.get()).semaphore.holders == (MACHINE_ID,)
    raw = (await locks.kv.get(locks.key)).value  # type: ignore[union-attr]
    assert raw == f'{{"semaphore":0,"max":1,"holders":["{MACHINE_ID}"]}}'.encode()
    assert await locks.kv.get(holder_lease.lease_key(locks.key, MACHINE_ID) or "") is None
    assert (await HolderLeases(locks).free_expired()).holders == ()  # nothing left to judge: never expires


async def test_unlock_of_an_expired_holder_succeeds_once_and_set_max_frees_too(setup: tuple[Ctl, LockStore]) -> None:
    ctl, locks = setup
    await locks.set_max(2)
    await _holder_that_dies(locks, DEAD)
    r = await _run(ctl, "unlock", DEAD)
    assert (r.returncode, r.stdout) == (0, ""), r.stderr
    assert f"Removed expired holder {DEAD}" in r.stderr
    assert (await locks.get()).semaphore.holders == ()
    r = await _run(ctl, "unlock", DEAD)  # now it holds nothing: the Go tool's error, exit 1
    assert r.returncode == 1 and r.stderr.startswith("Error unlocking: ")

    await _holder_that_dies(locks, LIVE)
    r = await _run(ctl, "set-max", "3")
    assert (r.returncode, r.stdout) == (0, "Old-Max: 2\nMax: 3\n"), r.stderr
    assert f"Removed expired holder {LIVE}" in r.stderr
    sem = (await locks.get()).semaphore
    assert (sem.semaphore, sem.max, sem.holders) == (3, 3, ())
