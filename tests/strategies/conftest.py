"""Fixtures for strategy tests: a StrategyContext on the session etcd with a group of its own."""

from __future__ import annotations

import uuid

import pytest
from strategy_helpers import make_ctx

from harness.devtools.etcd import EtcdCluster
from locksmith.strategy import StrategyContext


@pytest.fixture
def group() -> str:
    return f"strategy-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def etcd_ctx(etcd: EtcdCluster, group: str):  # type: ignore[no-untyped-def]
    def factory(machine_id: str) -> StrategyContext:
        return make_ctx(etcd.endpoints, group, machine_id)

    return factory
