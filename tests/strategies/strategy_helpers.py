"""A StrategyContext for tests: KV options for the given endpoints, wake-ups recorded in `wakes`."""

from __future__ import annotations

from locksmith.kv import KVOptions, parse_endpoints
from locksmith.strategy import StrategyContext


def make_ctx(endpoints: list[str], group: str | None, machine_id: str) -> StrategyContext:
    options = KVOptions(endpoints=parse_endpoints(endpoints), retry_budget=2.0, request_timeout=2.0)
    wakes: list[str] = []
    ctx = StrategyContext(machine_id=machine_id, group=group, kv=options)
    ctx.on_wake = wakes.append
    ctx.wakes = wakes  # type: ignore[attr-defined]
    return ctx
