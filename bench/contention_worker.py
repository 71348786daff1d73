"""The worker side of bench/contention.py: a process running many agents' EtcdLockStrategy code paths on
one etcd semaphore, started on a "go" from the coordinator, printing its agents' figures as one JSON line."""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bench._common import (
    InstrumentedKV,
    KVCounters,
    now_ns,
    raise_fd_limit,
)

UNAVAILABLE_BACKOFF_MAX = 60.0  # the agent's default --unavailable-backoff-max


def _count_logs(counter: Counter[str]) -> None:
    import structlog

    def count(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
        counter[str(event.get("event"))] += 1
        raise structlog.DropEvent

    structlog.configure(processors=[count])


# Why an agent had to back off, by the first words of the error (the run's JSON shows them).
BACKOFF_REASONS: Counter[str] = Counter()


async def until_done(op: Callable[[], Awaitable[None]], retry_on: type[Exception]) -> int:
    """Run `op` until it succeeds, pausing with a doubling back-off after each `retry_on`; return
    how many times it failed."""
    failures, backoff = 0, 1.0
    while True:
        try:
            await op()
            return failures
        except retry_on as exc:
            BACKOFF_REASONS[str(exc)[:90]] += 1
            failures += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, UNAVAILABLE_BACKOFF_MAX)


@dataclass
class _Agent:
    index: int
    strategy: Any
    ctx: Any
    key: str
    ages_key: str
    counters: KVCounters


async def _start_agent(index: int, endpoint: str, group: str) -> _Agent:
    """What locksmithd does on start, long before an update arrives: the strategy's start-up, then the
    after-boot question whether this host holds a slot (which also settles the store's API). Outside
    the timed window, as in a fleet."""
    from locksmith.settings.config import load_config
    from locksmith.strategy import StrategyContext, StrategyUnavailable
    from strategies.etcd_lock import EtcdLockStrategy

    env = {"LOCKSMITHD_ENDPOINT": endpoint, "LOCKSMITHD_GROUP": group, "REBOOT_STRATEGY": "etcd-lock"}
    config = load_config("locksmithd", {}, env, paths=())
    strategy = EtcdLockStrategy()
    ctx = StrategyContext(machine_id=f"{index:032x}", group=config.lock_group, kv=config.kv)
    locks = strategy.lockstore(ctx)
    counters = KVCounters()
    locks.kv = InstrumentedKV(locks.kv, counters)
    await strategy.started(ctx)

    async def held() -> None:
        if await strategy.holds(ctx):
            raise RuntimeError(f"agent {index} holds a slot before the run: the group is not fresh")

    await until_done(held, StrategyUnavailable)
    return _Agent(index, strategy, ctx, locks.key, locks.ages_key, counters)


async def _run_agent(agent: _Agent, args: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    from locksmith.strategy import StrategyError, StrategyUnavailable

    strategy, ctx, key, counters = agent.strategy, agent.ctx, agent.key, agent.counters
    waits: list[float] = []
    holds: list[float] = []
    acquire_conflicts = release_conflicts = acquire_unavailable = release_unavailable = 0
    try:
        for _ in range(args["rounds"]):
            started = now_ns()
            before = counters.conflicts.get(key, 0)
            # As the agent does (Agent._take_permission): pause with a doubling back-off, retry.
            acquire_unavailable += await until_done(lambda: strategy.acquire(ctx), StrategyUnavailable)
            acquired = now_ns()
            waits.append((acquired - started) / 1e9)
            acquire_conflicts += counters.conflicts.get(key, 0) - before
            await asyncio.sleep(rng.uniform(args["hold_min"], args["hold_max"]))
            before = counters.conflicts.get(key, 0)
            # As the agent does (Agent._give_back, then _release_when_reachable): keep the release
            # going with a doubling back-off; the slot stays taken meanwhile.
            release_unavailable += await until_done(lambda: strategy.release(ctx), StrategyError)
            holds.append((now_ns() - acquired) / 1e9)
            release_conflicts += counters.conflicts.get(key, 0) - before
        finished = now_ns()
    finally:
        await strategy.aclose()
    return {
        "agent": agent.index,
        "waits": waits,
        "holds": holds,
        "finished_ns": finished,
        "acquire_conflicts": acquire_conflicts,
        "release_conflicts": release_conflicts,
        "ages_conflicts": counters.conflicts.get(agent.ages_key, 0),
        "acquire_unavailable": acquire_unavailable,
        "release_unavailable": release_unavailable,
    }


async def _worker(endpoint: str, group: str, first: int, last: int, args: dict[str, Any]) -> int:
    logs: Counter[str] = Counter()
    _count_logs(logs)
    rng = random.Random(f"{args['seed']}-{first}")
    started = await asyncio.gather(
        *(_start_agent(i, endpoint, group) for i in range(first, last)), return_exceptions=True
    )
    up = [a for a in started if isinstance(a, _Agent)]
    failed = next((f"{type(e).__name__}: {e}" for e in started if isinstance(e, BaseException)), None)
    print("ready" if failed is None else f"an agent did not start: {failed}", flush=True)
    if failed is not None or (await asyncio.to_thread(sys.stdin.readline)).strip() != "go":
        await asyncio.gather(*(a.strategy.aclose() for a in up), return_exceptions=True)
        return 1
    results = await asyncio.gather(*(_run_agent(a, args, rng) for a in up), return_exceptions=True)
    agents = [r for r in results if isinstance(r, dict)]
    errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    own = {"cpu_seconds": usage.ru_utime + usage.ru_stime, "peak_rss_mib": usage.ru_maxrss / 1024}
    backoffs = dict(BACKOFF_REASONS)
    print(json.dumps({"agents": agents, "errors": errors, "logs": dict(logs), "backoffs": backoffs, **own}), flush=True)
    return 0


def worker_main(argv: list[str]) -> int:
    endpoint, group, first, last, params = argv
    raise_fd_limit()
    return asyncio.run(_worker(endpoint, group, int(first), int(last), json.loads(params)))
