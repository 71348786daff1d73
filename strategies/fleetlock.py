"""`fleetlock`: ask a FleetLock server (Fedora CoreOS / Zincati protocol) for a reboot slot.

`POST {base}/v1/pre-reboot` takes a slot, `POST {base}/v1/steady-state` gives it back; both are
idempotent. The protocol has no way to ask "do I hold a slot?", so `holds` answers True (we *may*
hold one) and the agent's after-boot step always sends steady-state — harmless when nothing is held.
The protocol has no watch either: a refused pre-reboot is retried with a jittered back-off.
The lock group is LOCKSMITHD_GROUP (FleetLock's `default` when unset).
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

from locksmith.settings.schema import Setting
from locksmith.settings.values import parse_http_url
from locksmith.strategy import Strategy, StrategyContext, StrategyError, StrategyUnavailable

if TYPE_CHECKING:
    from locksmith.fleetlock import FleetLockClient

# locksmith.fleetlock (httpx, tenacity) is imported only once the strategy is used: every locksmithd
# loads every installed strategy at start to check its settings, and most hosts never use this one.

DEFAULT_GROUP = "default"

FLEETLOCK_URL = Setting(
    "FLEETLOCK_URL",
    "FleetLock server base URL (fleetlock strategy), e.g. https://fleetlock.example:8080",
    parse_http_url,
    flag="--fleetlock-url",
    metavar="URL",
    required=True,
)


class FleetLockStrategy(Strategy):
    name = "fleetlock"
    settings = (FLEETLOCK_URL,)

    def __init__(self, retry_initial: float = 1.0, retry_max: float = 60.0) -> None:
        self._client: FleetLockClient | None = None
        self.retry_initial = retry_initial
        self.retry_max = retry_max

    def client(self, ctx: StrategyContext) -> FleetLockClient:
        if self._client is None:
            url = ctx.options.get(FLEETLOCK_URL.name)
            if not url:
                raise StrategyError("the fleetlock strategy needs LOCKSMITHD_FLEETLOCK_URL (the server's base URL)")
            from locksmith.fleetlock import FleetLockClient

            try:
                self._client = FleetLockClient(url, node_id=ctx.machine_id, group=ctx.group or DEFAULT_GROUP)
            except ValueError as exc:
                raise StrategyError(str(exc)) from None
        return self._client

    async def acquire(self, ctx: StrategyContext) -> None:
        from locksmith.fleetlock import FleetLockError, FleetLockUnavailableError

        client = self.client(ctx)
        delay = self.retry_initial
        while True:
            try:
                await client.pre_reboot()
            except FleetLockError as exc:  # refused: slots full (or a server-side problem): ask again later
                ctx.log.info("fleetlock.wait", reason=str(exc), kind=exc.kind, retry_in=round(delay, 2))
            except FleetLockUnavailableError as exc:
                raise StrategyUnavailable(str(exc)) from exc
            else:
                ctx.log.info("lock.acquired", via="fleetlock pre-reboot")
                return
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            ctx.woke("retry")
            delay = min(delay * 2, self.retry_max)

    async def release(self, ctx: StrategyContext) -> None:
        from locksmith.fleetlock import FleetLockError, FleetLockUnavailableError

        try:
            await self.client(ctx).steady_state()
        except FleetLockUnavailableError as exc:
            raise StrategyUnavailable(str(exc)) from exc
        except FleetLockError as exc:
            raise StrategyError(str(exc)) from exc
        ctx.log.info("lock.released", via="fleetlock steady-state")

    async def holds(self, ctx: StrategyContext) -> bool:
        self.client(ctx)  # a missing URL is reported here, at start, not at the first reboot
        return True

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
