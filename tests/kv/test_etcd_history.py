"""Watching from a revision etcd no longer remembers: v3 compaction and v2's 1000-event
window. The watch must fall back to the key's current state, not fail or skip it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from harness.devtools.etcd import EtcdCluster
from locksmith.kv import Change, KVOptions, KVStore, open_store, parse_endpoints


@pytest.fixture(scope="module")
def history_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """Private: compaction would disturb other tests' watches on the session etcd."""
    with EtcdCluster(tmp_path_factory.mktemp("etcd-history"), enable_v2=True) as cluster:
        yield cluster


def open_at(prefix: str, cluster: EtcdCluster) -> KVStore:
    return open_store(KVOptions(parse_endpoints([prefix + u for u in cluster.endpoints])))


async def test_v3_watch_from_compacted_revision_reports_current_state(history_etcd: EtcdCluster) -> None:
    store = open_at("", history_etcd)
    try:
        entry = await store.create("hist/k", b"0")
        assert entry is not None
        first = entry.revision
        for i in range(1, 5):
            nxt = await store.compare_and_swap("hist/k", str(i).encode(), entry.revision)
            assert nxt is not None
            entry = nxt
        async with httpx.AsyncClient(base_url=history_etcd.endpoints[0]) as client:
            r = await client.post("/v3/kv/compaction", json={"revision": str(entry.revision)})
            r.raise_for_status()
        changes = aiter(store.watch("hist/k", first))
        async with asyncio.timeout(15):
            assert await anext(changes) == Change("hist/k", b"4", entry.revision)
            pending = asyncio.ensure_future(anext(changes))
            after = await store.compare_and_swap("hist/k", b"5", entry.revision)
            assert after is not None
            assert await pending == Change("hist/k", b"5", after.revision)
        await changes.aclose()  # type: ignore[attr-defined]
    finally:
        await store.aclose()


async def test_v2_watch_from_cleared_index_reports_current_state(history_etcd: EtcdCluster) -> None:
    store = open_at("etcd2+", history_etcd)
    try:
        entry = await store.create("hist/k", b"0")
        assert entry is not None
        first = entry.revision
        # v2 keeps the last 1000 events; push the first one out of the window.
        async with httpx.AsyncClient(base_url=history_etcd.endpoints[0]) as client:
            sem = asyncio.Semaphore(100)

            async def noise(i: int) -> None:
                async with sem:
                    (await client.put(f"/v2/keys/hist/noise{i % 10}", data={"value": str(i)})).raise_for_status()

            await asyncio.gather(*(noise(i) for i in range(1010)))
        changes = aiter(store.watch("hist/k", first - 1))
        async with asyncio.timeout(15):
            assert await anext(changes) == Change("hist/k", b"0", first)
            pending = asyncio.ensure_future(anext(changes))
            after = await store.compare_and_swap("hist/k", b"1", first)
            assert after is not None
            assert await pending == Change("hist/k", b"1", after.revision)
        await changes.aclose()  # type: ignore[attr-defined]
    finally:
        await store.aclose()
