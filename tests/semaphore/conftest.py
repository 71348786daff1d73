"""A `backend` fixture: the same LockStore tests on the embedded store, etcd v3 and etcd v2."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from locksmith.kv import KVOptions, KVStore, open_store, parse_endpoints
from locksmith.lockstore import LockStore

BACKENDS = ["embedded", "etcd3", "etcd2"]


@dataclass
class Backend:
    name: str
    options: KVOptions
    group: str
    _stores: list[KVStore] = field(default_factory=list)

    def open(self) -> KVStore:
        """A fresh client (own connection) on the same store, closed after the test."""
        store = open_store(self.options)
        self._stores.append(store)
        return store

    def lockstore(self, **kwargs: Any) -> LockStore:
        return LockStore(self.open(), self.group, **kwargs)


def endpoints_for(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    if name == "embedded":
        return [f"file://{tmp_path}/kv.db"]
    if name == "etcd2" and importlib.util.find_spec("locksmith.kv.etcd2") is None:
        pytest.skip("the etcd v2 backend has not landed yet")
    etcd = request.getfixturevalue("etcd")
    prefix = "etcd2+" if name == "etcd2" else ""
    return [prefix + url for url in etcd.endpoints]


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    endpoints = endpoints_for(request.param, request, tmp_path)
    options = KVOptions(endpoints=parse_endpoints(endpoints), retry_budget=5.0)
    b = Backend(request.param, options, group=f"test {uuid.uuid4().hex[:10]}/x")
    yield b
    for store in b._stores:
        await store.aclose()
