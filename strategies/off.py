"""`off`: never reboot automatically.

Decision: like CoreOS's locksmithd, the agent logs that the strategy is off and exits 0 — systemd
then shows the unit as inactive (dead) with a clear last log line, and nothing holds a D-Bus
connection or a KV session for no purpose. An administrator reboots by hand; `locksmithctl` still
works. Before exiting, the agent still runs the after-boot step, so a host that switched to `off`
while holding a lock (taken under `etcd-lock`) gives it back instead of blocking the fleet.
"""

from __future__ import annotations

from locksmith.strategy import Strategy, StrategyContext, StrategyError


class OffStrategy(Strategy):
    name = "off"
    needs_window = False
    reboots = False

    async def acquire(self, ctx: StrategyContext) -> None:
        raise StrategyError("the reboot strategy is off: this host never reboots by itself")

    async def release(self, ctx: StrategyContext) -> None:
        return None

    async def holds(self, ctx: StrategyContext) -> bool:
        return False
