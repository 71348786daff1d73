from __future__ import annotations

import pytest

from locksmith.strategy import StrategyContext, StrategyError
from strategies.off import OffStrategy
from strategies.reboot import RebootStrategy


async def test_reboot_strategy_grants_at_once_and_holds_nothing() -> None:
    ctx = StrategyContext(machine_id="a" * 32)
    strategy = RebootStrategy()
    await strategy.acquire(ctx)
    assert await strategy.holds(ctx) is False
    await strategy.release(ctx)  # nothing to give back, and no error


async def test_off_strategy_never_grants() -> None:
    ctx = StrategyContext(machine_id="a" * 32)
    strategy = OffStrategy()
    assert strategy.reboots is False
    with pytest.raises(StrategyError, match="off"):
        await strategy.acquire(ctx)
