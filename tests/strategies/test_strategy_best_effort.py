"""best-effort against a private etcd we stop and restart: etcd-lock while it answers, reboot
while it does not, decided afresh for each attempt."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from strategy_helpers import make_ctx

from harness.devtools.etcd import EtcdCluster
from locksmith.strategy import StrategyUnavailable
from strategies.best_effort import BestEffortStrategy

ME = "a" * 32


@pytest.fixture
def private_etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path / "etcd", size=1)
    cluster.start()
    yield cluster
    cluster.stop()


async def test_switches_with_the_store(private_etcd: EtcdCluster) -> None:
    ctx = make_ctx(private_etcd.endpoints, "best-effort", ME)
    strategy = BestEffortStrategy()
    try:
        with structlog.testing.capture_logs() as logs:
            await strategy.acquire(ctx)
        assert strategy.chosen == "etcd-lock"
        assert await strategy.holds(ctx)
        await strategy.release(ctx)
        assert [e["use"] for e in logs if e["event"] == "best-effort.choice"] == ["etcd-lock"]

        private_etcd.members[0].stop()
        with structlog.testing.capture_logs() as logs:
            await strategy.acquire(ctx)  # no store: permission without a lock
        assert strategy.chosen == "reboot"
        choice = [e for e in logs if e["event"] == "best-effort.choice"]
        assert choice[0]["use"] == "reboot" and "unreachable" in choice[0]["reason"]
        with pytest.raises(StrategyUnavailable):
            await strategy.release(ctx)  # the agent retries this until the store is back

        private_etcd.start()
        await strategy.acquire(ctx)
        assert strategy.chosen == "etcd-lock"
        assert await strategy.holds(ctx)
        await strategy.release(ctx)
        assert not await strategy.holds(ctx)
    finally:
        await strategy.aclose()
