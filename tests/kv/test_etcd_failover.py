"""Failover across the endpoint list and bounded retries, for both etcd backends."""

from __future__ import annotations

import asyncio

import pytest

from harness.devtools.etcd import EtcdCluster, free_port
from locksmith.kv import Change, KVOptions, KVStore, KVUnavailable, open_store, parse_endpoints

PREFIX = {"etcd3": "", "etcd2": "etcd2+"}


def open_at(backend: str, urls: list[str], budget: float = 5.0) -> KVStore:
    return open_store(KVOptions(parse_endpoints([PREFIX[backend] + u for u in urls]), retry_budget=budget))


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


@pytest.mark.parametrize("backend", ["etcd3", "etcd2"])
async def test_dead_first_endpoint_fails_over_and_is_remembered(
    backend: str, etcd: EtcdCluster, unique_key: str
) -> None:
    live = etcd.endpoints[0]
    store = open_at(backend, [dead_url(), live])
    try:
        created = await store.create(f"{unique_key}/k", b"v")
        assert created is not None
        assert await store.get(f"{unique_key}/k") == created
        # The endpoint that answered is tried first from now on.
        assert store._http.current == live  # type: ignore[attr-defined]
    finally:
        await store.aclose()


@pytest.mark.parametrize("backend", ["etcd3", "etcd2"])
async def test_unreachable_endpoints_raise_kvunavailable_naming_them(backend: str) -> None:
    urls = [dead_url(), dead_url()]
    store = open_at(backend, urls, budget=0.5)
    try:
        with pytest.raises(KVUnavailable) as info:
            await store.get("k")
        message = str(info.value)
        assert all(u in message for u in urls) and "\n" not in message
        with pytest.raises(KVUnavailable):
            await store.compare_and_swap("k", b"v", 3)
        with pytest.raises(KVUnavailable):
            async with asyncio.timeout(30):
                async for _ in store.watch("k", 0):
                    pass
    finally:
        await store.aclose()


async def test_writes_and_watches_survive_losing_a_member(etcd_cluster3: EtcdCluster, unique_key: str) -> None:
    """Kill the member each store talks to: writes go to the others and watches reconnect."""
    urls = etcd_cluster3.endpoints
    stores = {b: open_at(b, urls, budget=15.0) for b in ("etcd3", "etcd2")}
    try:
        key = f"{unique_key}/sem"
        entries = {b: await s.create(key, b"0") for b, s in stores.items()}
        watches = {}
        for b, s in stores.items():
            entry = entries[b]
            assert entry is not None
            assert s._http.current == urls[0]  # type: ignore[attr-defined]
            watches[b] = aiter(s.watch(key, entry.revision))
        pending = {b: asyncio.ensure_future(anext(w)) for b, w in watches.items()}
        await asyncio.sleep(0.2)
        etcd_cluster3.members[0].kill()
        for b, s in stores.items():
            entry = entries[b]
            assert entry is not None
            updated = await s.compare_and_swap(key, b"1", entry.revision)
            assert updated is not None
            async with asyncio.timeout(30):
                assert await pending[b] == Change(key, b"1", updated.revision)
            assert s._http.current != urls[0]  # type: ignore[attr-defined]
        for w in watches.values():
            await w.aclose()  # type: ignore[attr-defined]
    finally:
        for s in stores.values():
            await s.aclose()
