"""`best-effort` (the default): behave as `etcd-lock` when the KV store answers, else as `reboot`.

Decided afresh for every reboot attempt (not once at start as the Go agent did), and logged, so a
host whose store comes back uses the lock again. After boot it gives back a lock it may have taken
whenever the store can be reached; if it cannot, the agent keeps retrying that release.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from locksmith.kv import KVOptions
from locksmith.strategy import Strategy, StrategyContext, StrategyUnavailable
from strategies.etcd_lock import LOCK_TTL, EtcdLockStrategy
from strategies.reboot import RebootStrategy


class BestEffortStrategy(Strategy):
    name = "best-effort"
    uses_kv_store = True
    settings = (LOCK_TTL,)

    def __init__(self) -> None:
        self.lock = EtcdLockStrategy()
        self.plain = RebootStrategy()
        #: Which strategy the last attempt used ("etcd-lock" or "reboot"); None before the first.
        self.chosen: str | None = None

    @classmethod
    def check_options(cls, options: Mapping[str, Any], kv: KVOptions) -> str | None:
        return EtcdLockStrategy.check_options(options, kv)

    async def started(self, ctx: StrategyContext) -> None:
        await self.lock.started(ctx)

    def permission_lapsed(self) -> str | None:
        return self.lock.permission_lapsed() if self.chosen == self.lock.name else None

    async def acquire(self, ctx: StrategyContext) -> None:
        try:
            await self.lock.ping(ctx)
        except StrategyUnavailable as exc:
            self.chosen = self.plain.name
            ctx.log.warning("best-effort.choice", use=self.chosen, reason=f"KV store unreachable: {exc}")
            await self.plain.acquire(ctx)
            return
        self.chosen = self.lock.name
        ctx.log.info("best-effort.choice", use=self.chosen, reason="KV store reachable")
        await self.lock.acquire(ctx)

    async def release(self, ctx: StrategyContext) -> None:
        await self.lock.release(ctx)

    async def holds(self, ctx: StrategyContext) -> bool:
        return await self.lock.holds(ctx)

    async def aclose(self) -> None:
        await self.lock.aclose()
