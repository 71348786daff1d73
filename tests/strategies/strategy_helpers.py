"""A StrategyContext for tests: KV options for the given endpoints, wake-ups recorded in `wakes`."""

from __future__ import annotations

from types import SimpleNamespace

from locksmith.kv import KVOptions, parse_endpoints
from locksmith.strategy import StrategyContext


def make_ctx(endpoints: list[str], group: str, machine_id: str, **config: object) -> StrategyContext:
    options = KVOptions(endpoints=parse_endpoints(endpoints), retry_budget=2.0, request_timeout=2.0)
    wakes: list[str] = []
    ctx = StrategyContext(machine_id=machine_id, group=group, config=SimpleNamespace(kv=options, **config))
    ctx.on_wake = wakes.append
    ctx.wakes = wakes  # type: ignore[attr-defined]
    return ctx
