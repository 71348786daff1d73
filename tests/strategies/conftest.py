"""Helpers for strategy tests: a StrategyContext on the session etcd with a group of its own."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest

from locksmith.devtools.etcd import EtcdCluster
from locksmith.kv import KVOptions, parse_endpoints
from locksmith.strategy import StrategyContext


def make_ctx(endpoints: list[str], group: str, machine_id: str, **config: object) -> StrategyContext:
    options = KVOptions(endpoints=parse_endpoints(endpoints), retry_budget=2.0, request_timeout=2.0)
    wakes: list[str] = []
    ctx = StrategyContext(machine_id=machine_id, group=group, config=SimpleNamespace(kv=options, **config))
    ctx.on_wake = wakes.append
    ctx.wakes = wakes  # type: ignore[attr-defined]
    return ctx


@pytest.fixture
def group() -> str:
    return f"strategy-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def etcd_ctx(etcd: EtcdCluster, group: str):  # type: ignore[no-untyped-def]
    def factory(machine_id: str) -> StrategyContext:
        return make_ctx(etcd.endpoints, group, machine_id)

    return factory
