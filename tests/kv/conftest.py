"""Fixtures for the KV tests: one way to open a store of each backend against real servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from harness.devtools.etcd import EtcdCluster
from locksmith.kv import KVOptions, KVStore, open_store, parse_endpoints

BACKENDS = ("embedded", "etcd3", "etcd2")

StoreFactory = Callable[[], KVStore]


def endpoints_for(backend: str, etcd: EtcdCluster | None, tmp_path: Path) -> list[str]:
    if backend == "embedded":
        return [f"file://{tmp_path / 'kv' / 'store.db'}"]
    assert etcd is not None
    prefix = "etcd2+" if backend == "etcd2" else ""
    return [prefix + url for url in etcd.endpoints]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def endpoints(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    # The session etcd is only started when an etcd backend is under test.
    etcd = None if backend == "embedded" else request.getfixturevalue("etcd")
    return endpoints_for(backend, etcd, tmp_path)


@pytest.fixture
async def new_store(endpoints: list[str]) -> AsyncIterator[StoreFactory]:
    """Opens independent clients of the same store (each its own connection pool / SQLite
    connection); all are closed at the end of the test."""
    opened: list[KVStore] = []

    def factory() -> KVStore:
        store = open_store(KVOptions(parse_endpoints(endpoints), retry_budget=5.0))
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.aclose()


@pytest.fixture
def store(new_store: StoreFactory) -> KVStore:
    return new_store()
