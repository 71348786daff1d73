"""`reboot`: reboot as soon as an update is ready (inside the reboot window, if one is set).

No lock is taken, so there is nothing to hold or release.
"""

from __future__ import annotations

from locksmith.strategy import Strategy, StrategyContext


class RebootStrategy(Strategy):
    name = "reboot"

    async def acquire(self, ctx: StrategyContext) -> None:
        ctx.log.debug("strategy.permission", strategy=self.name, detail="no lock needed")

    async def release(self, ctx: StrategyContext) -> None:
        return None

    async def holds(self, ctx: StrategyContext) -> bool:
        return False
