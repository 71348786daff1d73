"""No split brain on one etcd (issue 10 §1): a plain http:// endpoint means the API that holds the semaphore.

The Go locksmith keeps its semaphore in etcd's v2 keyspace under the same URL; these tests put one there
(raw v2 writes, as a Go host would) and check that our tools work on that very semaphore, refuse when two
exist, and that etcd2+/etcd3+ force one API.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import structlog

from harness.devtools.etcd import EtcdCluster
from locksmith.kv import KVOptions, KVStore, open_store, parse_endpoints
from locksmith.kv.choose import SplitSemaphore
from locksmith.lockstore import LockStore
from locksmith.protocol.semaphore import SemaphoreFull, semaphore_key

GO_FULL = b'{"semaphore":0,"max":1,"holders":["gohost"]}'
GO_FREE = b'{"semaphore":1,"max":1,"holders":[]}'


@pytest.fixture
def group() -> str:
    return f"split-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def raw(etcd: EtcdCluster) -> AsyncIterator[dict[str, KVStore]]:
    """Each keyspace on its own, as the Go tool (v2) and a v3 client see them."""
    stores = {api: open_store(KVOptions(parse_endpoints([f"{api}+{etcd.endpoints[0]}"]))) for api in ("etcd2", "etcd3")}
    yield stores
    for store in stores.values():
        await store.aclose()


def ours(etcd: EtcdCluster, group: str, prefix: str = "") -> LockStore:
    kv = open_store(KVOptions(parse_endpoints([prefix + etcd.endpoints[0]])), semaphore_key(group))
    return LockStore(kv, group)


async def test_a_go_fleets_v2_semaphore_is_the_one_we_use(
    etcd: EtcdCluster, raw: dict[str, KVStore], group: str
) -> None:
    key = semaphore_key(group)
    held = await raw["etcd2"].create(key, GO_FULL)
    assert held is not None
    locks = ours(etcd, group)
    try:
        with structlog.testing.capture_logs() as logs, pytest.raises(SemaphoreFull, match="held by gohost"):
            await locks.lock("a" * 32)
        assert any(e["event"] == "etcd-api-chosen" and e["api"] == "v2" for e in logs)
        assert await raw["etcd3"].get(key) is None  # never a second semaphore in v3
        freed = await raw["etcd2"].compare_and_swap(key, GO_FREE, held.revision)  # the Go host unlocks
        assert freed is not None
        await locks.lock("a" * 32)
        entry = await raw["etcd2"].get(key)
        assert entry is not None and entry.value == b'{"semaphore":0,"max":1,"holders":["' + b"a" * 32 + b'"]}'
        assert await raw["etcd3"].get(key) is None
    finally:
        await locks.kv.aclose()


async def test_two_semaphores_on_one_etcd_are_refused_in_one_line(
    etcd: EtcdCluster, raw: dict[str, KVStore], group: str, tmp_path: Path
) -> None:
    key = semaphore_key(group)
    assert await raw["etcd2"].create(key, GO_FULL) is not None
    assert await raw["etcd3"].create(key, GO_FREE) is not None
    locks = ours(etcd, group)
    try:
        with pytest.raises(SplitSemaphore, match="both the etcd v2 and v3 keyspaces") as info:
            await locks.lock("a" * 32)
        assert "\n" not in str(info.value)
    finally:
        await locks.kv.aclose()
    ctl = Path(sys.executable).with_name("locksmithctl")
    argv = [str(ctl), "--endpoint", etcd.endpoints[0], "--group", group, "lock", "b" * 32]
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "etcd2+http:// or etcd3+http://" in done.stderr
    for api, expected in (("etcd2", GO_FULL), ("etcd3", GO_FREE)):
        entry = await raw[api].get(key)
        assert entry is not None and entry.value == expected  # nothing written to either


async def test_naming_the_api_forces_it(etcd: EtcdCluster, raw: dict[str, KVStore], group: str) -> None:
    key = semaphore_key(group)
    assert await raw["etcd2"].create(key, GO_FULL) is not None
    locks = ours(etcd, group, prefix="etcd3+")
    try:
        await locks.lock("a" * 32)  # v3 on purpose: the v2 semaphore is not ours to share
    finally:
        await locks.kv.aclose()
    entry = await raw["etcd2"].get(key)
    assert entry is not None and entry.value == GO_FULL
    assert await raw["etcd3"].get(key) is not None


async def test_a_fresh_etcd_serving_v2_gets_v3_with_a_warning(
    etcd: EtcdCluster, raw: dict[str, KVStore], group: str
) -> None:
    locks = ours(etcd, group)
    try:
        with structlog.testing.capture_logs() as logs:
            await locks.lock("a" * 32)
    finally:
        await locks.kv.aclose()
    chosen = [e for e in logs if e["event"] == "etcd-api-chosen"]
    assert chosen and chosen[0]["api"] == "v3" and "etcd2+http(s)://" in chosen[0]["fix"]
    assert await raw["etcd3"].get(semaphore_key(group)) is not None
    assert await raw["etcd2"].get(semaphore_key(group)) is None
