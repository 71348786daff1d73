"""Lock handoff latency: the holder unlocks → the next waiter holds, on the embedded store, etcd v3
and etcd v2 — beside what the Go locksmith's retry schedule would have given for the same releases.

Set-up per backend: a fresh semaphore (max=1) on a private store (one etcd 3.4 with --enable-v2
serves both etcd rows; `file:///…/kv.db` for the embedded one). The holder is this process
(a LockStore); the waiter is a separate Python process running the agent's own wait code,
strategies.etcd_lock.EtcdLockStrategy.acquire: try the lock, find it full, read the revision,
block in LockStore.wait_for_change (the store's watch: etcd v3 watch stream, etcd v2 long poll,
inotify on the SQLite notify file), retry when woken.

One round: the holder takes the lock; the waiter is told to acquire; once it reports it is
waiting (its first attempt failed and it is about to watch), the holder waits a random
0.1-0.2 s (so the watch is established, as for a real waiter) and calls unlock(). Stamps are
CLOCK_MONOTONIC (time.monotonic_ns), which is one clock for all processes on the machine:
  r0     the holder calls unlock()                                  (origin of every figure)
  woke   the waiter's watch delivered the change (the strategy logs `lock.wait.woken`)
  holds  the waiter's compare-and-swap on the semaphore was acknowledged — it holds the slot
  agent  acquire() returned (after LockStore's best-effort holder-age bookkeeping), when the
         agent would go on to reboot
Handoff latency = holds - r0. Medians and p99 over the rounds (after a few warm-up rounds).

The Go baseline is computed, not slept out. Go locksmithd's lockAndReboot tries lck.Lock(),
and after a failure sleeps expBackoff(interval) starting from interval = 5 s: 10 s, 20 s, 40 s,
80 s, 160 s, then 300 s forever. So a Go waiter whose first failed attempt was at s tries again
at s + 10, 30, 70, 150, 310, 610, 910, … s. For each measured release, the Go waiter holds at
    s + A_k + c,   with A_k the first attempt offset such that s + A_k >= r0,
where c is this round's measured cost of one lock attempt on the same backend (the waiter's
woke → holds: a read plus a compare-and-swap, which is what Go's Lock() does too). Counting an
attempt that starts at r0 — before the release is even committed — as a success is generous to
the baseline. Two models of s (the waiter's start relative to the release):
  real     s = this round's real first failed attempt (0.1-0.2 s before r0 here); Go then
           waits out most of its first 10 s interval;
  uniform  r0 - s drawn uniformly from [0, H] (default H = 600 s, a waiter that queued at a
           random moment during a 10-minute hold), --model-draws draws per measured release
           (seeded, so reruns give the same figures).
Ratio = baseline / ours, for the median and for the p99.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._common import (
    RESULTS_DIR,
    InstrumentedKV,
    KVCounters,
    load_average,
    now_ns,
    percentile,
    python_child_env,
    quiet_logs,
    run_in_workdir,
    summary_ms,
    write_result,
)
from bench.go_retry import GO_MAX_INTERVAL, go_attempt_offsets, go_latency

RESULTS = RESULTS_DIR / "handoff_latency.json"
HOLDER = "0" * 31 + "1"
WAITER = "0" * 31 + "2"
BACKENDS = ("embedded", "etcd3", "etcd2")
LABELS = {"embedded": "embedded (SQLite)", "etcd3": "etcd v3", "etcd2": "etcd v2"}

# --- the waiter process ------------------------------------------------------------------


class _EventLog:
    """Stands in for the strategy's structlog logger: stamps the events the timing needs."""

    def __init__(self) -> None:
        self.stamps: dict[str, int] = {}
        self.waiting = asyncio.Event()

    def info(self, event: str, **_fields: Any) -> None:
        self.stamps.setdefault(event, now_ns())
        if event == "lock.wait":
            self.waiting.set()

    warning = error = debug = info

    def bind(self, **_fields: Any) -> _EventLog:
        return self


async def _waiter(endpoint: str, group: str) -> int:
    from locksmith.settings.config import load_config
    from locksmith.strategy import StrategyContext
    from strategies.etcd_lock import EtcdLockStrategy

    env = {"LOCKSMITHD_ENDPOINT": endpoint, "LOCKSMITHD_GROUP": group, "REBOOT_STRATEGY": "etcd-lock"}
    config = load_config("locksmithd", {}, env, paths=())
    strategy = EtcdLockStrategy()
    events = _EventLog()
    ctx = StrategyContext(machine_id=WAITER, group=config.lock_group, kv=config.kv, log=events)
    locks = strategy.lockstore(ctx)
    counters = KVCounters()
    locks.kv = InstrumentedKV(locks.kv, counters)

    def say(*words: object) -> None:
        sys.stdout.write(" ".join(str(w) for w in words) + "\n")
        sys.stdout.flush()

    say("ready")
    try:
        while (await asyncio.to_thread(sys.stdin.readline)).strip() == "go":
            events.stamps.clear()
            events.waiting.clear()
            acquire = asyncio.create_task(strategy.acquire(ctx))
            waiting = asyncio.create_task(events.waiting.wait())
            done, _ = await asyncio.wait({acquire, waiting}, return_when=asyncio.FIRST_COMPLETED)
            if acquire in done:
                waiting.cancel()
                acquire.result()
                say("error", "acquired without waiting: the holder did not hold the lock")
                return 1
            say("waiting", events.stamps["lock.wait"])
            await acquire
            acquired = now_ns()
            say(
                "held",
                events.stamps.get("lock.wait.woken", 0),
                counters.last_write_ns[locks.key],
                acquired,
            )
            await strategy.release(ctx)
            say("released")
    finally:
        await strategy.aclose()
    return 0


def waiter_main(argv: list[str]) -> int:
    quiet_logs()
    return asyncio.run(_waiter(argv[0], argv[1]))


# --- the holder (this process) -----------------------------------------------------------


@dataclass
class Round:
    waited_s: float  # r0 - the waiter's first failed attempt
    release_ack_s: float  # holder's own CAS acknowledged, from r0
    woke_s: float
    holds_s: float
    agent_s: float
    attempt_cost_s: float  # woke → holds


class WaiterProcess:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, endpoint: str, group: str) -> WaiterProcess:
        code = "import sys; from bench.handoff_latency import waiter_main; sys.exit(waiter_main(sys.argv[1:]))"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            code,
            endpoint,
            group,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=python_child_env(),
            start_new_session=True,  # our Ctrl-C handling stops it, in order
        )
        waiter = cls(proc)
        await waiter.expect("ready")
        return waiter

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def expect(self, word: str) -> list[str]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(60):
            raw = await self.proc.stdout.readline()
        parts = raw.decode().split()
        if not parts or parts[0] != word:
            raise RuntimeError(f"waiter process said {raw.decode().strip()!r}, expected {word!r}")
        return parts[1:]

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, BrokenPipeError, ConnectionResetError):
                if self.proc.stdin is not None:
                    self.proc.stdin.close()
                self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def measure(endpoint: str, rounds: int, warmup: int, rng: random.Random) -> list[Round]:
    from locksmith.kv import KVOptions, open_store, parse_endpoints
    from locksmith.lockstore import LockStore

    group = f"bench-handoff-{uuid.uuid4().hex[:8]}"
    kv = open_store(KVOptions(endpoints=parse_endpoints([endpoint])))
    locks = LockStore(kv, group)
    counters = KVCounters()
    locks.kv = InstrumentedKV(kv, counters)
    waiter = await WaiterProcess.start(endpoint, group)
    out: list[Round] = []
    try:
        for i in range(warmup + rounds):
            await locks.lock(HOLDER)
            await waiter.send("go")
            (wait_start,) = map(int, await waiter.expect("waiting"))
            await asyncio.sleep(rng.uniform(0.1, 0.2))
            r0 = now_ns()
            await locks.unlock(HOLDER)
            release_ack = counters.last_write_ns[locks.key]
            woke, holds, agent = map(int, await waiter.expect("held"))
            await waiter.expect("released")
            if i < warmup:
                continue
            out.append(
                Round(
                    waited_s=(r0 - wait_start) / 1e9,
                    release_ack_s=(release_ack - r0) / 1e9,
                    woke_s=(woke - r0) / 1e9,
                    holds_s=(holds - r0) / 1e9,
                    agent_s=(agent - r0) / 1e9,
                    attempt_cost_s=(holds - woke) / 1e9,
                )
            )
    finally:
        await waiter.stop()
        await kv.aclose()
    return out


def go_models(rounds: list[Round], horizon: float, draws: int, seed: int) -> tuple[list[float], list[float]]:
    offsets = go_attempt_offsets(horizon + GO_MAX_INTERVAL)
    real = [go_latency(r.waited_s, r.attempt_cost_s, offsets) for r in rounds]
    rng = random.Random(seed)
    uniform = [go_latency(rng.uniform(0, horizon), r.attempt_cost_s, offsets) for r in rounds for _ in range(draws)]
    return real, uniform


def ratio(a: float, b: float) -> float:
    return round(a / b, 1) if b > 0 else float("inf")


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from harness.devtools.etcd import EtcdCluster

    rng = random.Random(args.seed)
    results: dict[str, Any] = {}
    cluster: EtcdCluster | None = None
    try:
        if any(b != "embedded" for b in args.backends):
            cluster = EtcdCluster(work / "etcd", size=1, enable_v2=True)
            await asyncio.to_thread(cluster.start, 60.0)
        for backend in args.backends:
            if backend == "embedded":
                endpoint = f"file://{work / 'kv.db'}"
            else:
                assert cluster is not None
                url = cluster.endpoints[0]
                endpoint = url if backend == "etcd3" else url.replace("http://", "etcd2+http://", 1)
            print(f"  {LABELS[backend]}: {args.rounds} rounds …", flush=True)
            started = time.monotonic()
            rounds = await measure(endpoint, args.rounds, args.warmup, rng)
            real, uniform = go_models(rounds, args.model_horizon, args.model_draws, args.seed)
            ours = [r.holds_s for r in rounds]
            results[backend] = {
                "endpoint_kind": endpoint.split("://", 1)[0],
                "rounds": len(rounds),
                "seconds": round(time.monotonic() - started, 1),
                "ours_holds": summary_ms(ours),
                "ours_woke": summary_ms(r.woke_s for r in rounds),
                "ours_agent_proceeds": summary_ms(r.agent_s for r in rounds),
                "holder_release_ack": summary_ms(r.release_ack_s for r in rounds),
                "lock_attempt_cost": summary_ms(r.attempt_cost_s for r in rounds),
                "waiter_waited_before_release": summary_ms(r.waited_s for r in rounds),
                "go_real": summary_ms(real),
                "go_uniform": summary_ms(uniform),
                "ratio_go_real_to_ours_median": ratio(percentile(real, 50), percentile(ours, 50)),
                "ratio_go_real_to_ours_p99": ratio(percentile(real, 99), percentile(ours, 99)),
                "ratio_go_uniform_to_ours_median": ratio(percentile(uniform, 50), percentile(ours, 50)),
                "ratio_go_uniform_to_ours_p99": ratio(percentile(uniform, 99), percentile(ours, 99)),
            }
    finally:
        if cluster is not None:
            await asyncio.to_thread(cluster.stop)
    return results


def print_table(results: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\nhandoff latency, unlock() called → waiter holds; {args.rounds} rounds per backend (ms; Go in s)")
    head = (
        f"{'backend':<19}{'median':>9}{'p99':>9}{'woke':>8}{'agent':>8}"
        f"{'Go real':>10}{'p99':>8}{'x med':>8}{'x p99':>8}"
        f"{'Go unif':>10}{'p99':>8}{'x med':>8}{'x p99':>8}"
    )
    print(head)
    for backend, r in results.items():
        o, gr, gu = r["ours_holds"], r["go_real"], r["go_uniform"]
        print(
            f"{LABELS[backend]:<19}{o['median_ms']:>9.1f}{o['p99_ms']:>9.1f}"
            f"{r['ours_woke']['median_ms']:>8.1f}{r['ours_agent_proceeds']['median_ms']:>8.1f}"
            f"{gr['median_ms'] / 1000:>10.2f}{gr['p99_ms'] / 1000:>8.2f}"
            f"{r['ratio_go_real_to_ours_median']:>8.0f}{r['ratio_go_real_to_ours_p99']:>8.0f}"
            f"{gu['median_ms'] / 1000:>10.1f}{gu['p99_ms'] / 1000:>8.1f}"
            f"{r['ratio_go_uniform_to_ours_median']:>8.0f}{r['ratio_go_uniform_to_ours_p99']:>8.0f}"
        )
    print(
        "woke/agent: medians of watch delivered / acquire() returned.  Go real: the Go retry schedule "
        "(10 s doubling to 5 min) from the waiter's real start;\nGo unif: its start drawn uniformly from "
        f"[0, {args.model_horizon:g}] s before the release; x: ratio baseline/ours. Computed, not slept "
        "(see the module docstring)."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.handoff_latency", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100, help="measured handoffs per backend (default 100)")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured handoffs first (default 5)")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS), help="default: all three")
    parser.add_argument(
        "--model-horizon", type=float, default=600.0, help="H of the uniform Go start model, seconds (default 600)"
    )
    parser.add_argument("--model-draws", type=int, default=200, help="draws per release, uniform model (default 200)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, help="where the stores go (default: a temporary directory)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.warmup < 0 or args.model_draws < 1 or args.model_horizon <= 0:
        parser.error("--rounds and --model-draws must be at least 1, --warmup >= 0, --model-horizon > 0")
    quiet_logs()
    load_before = load_average()
    results = run_in_workdir(
        "bench-handoff-", args.workdir, lambda work: run(args, work), "interrupted; everything started was stopped"
    )
    if results is None:
        return 130
    print_table(results, args)
    write_result(
        args.output,
        "handoff_latency",
        "unlock() called by the holder → the waiter's semaphore compare-and-swap acknowledged "
        "(it holds); the waiter is a separate process waiting with EtcdLockStrategy.acquire (KV watch)",
        {
            "rounds_per_backend": args.rounds,
            "warmup_rounds": args.warmup,
            "backends": results,
            "go_baseline": {
                "schedule": "attempt at s, then after sleeps of 10, 20, 40, 80, 160, 300, 300, … s "
                "(Go: initialInterval 5 s, expBackoff doubles before each sleep, maxInterval 5 min)",
                "holds_at": "s + first offset A with s + A >= r0 (generous: an attempt at r0 counts as success), "
                "plus this round's measured lock attempt cost (woke → holds) on the same backend",
                "model_real": "s = the waiter's real first failed attempt in this round",
                "model_uniform": f"r0 - s ~ Uniform[0, {args.model_horizon:g}] s, {args.model_draws} seeded draws "
                f"per measured release (seed {args.seed})",
                "computed_not_slept": True,
            },
        },
        # Other work on the machine skews our side; the Go side is dominated by its schedule.
        load_before,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
