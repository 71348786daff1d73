"""Contention at scale: 1000 agents on one real etcd semaphore (v3 API), max=50.

Each agent is an asyncio task with its own EtcdLockStrategy (so its own Etcd3Store and httpx
client, as on a real host) running the agent's code: acquire() — lock, and when the semaphore
is full, wait on the KV watch and retry when woken — then hold the slot for a random
--hold-min..--hold-max (default 50-100 ms), release(), --rounds times (default once). The
agents are spread over --processes worker processes (default 2, one per core of this box); all
start together on a "go" from this process, which owns the private etcd 3.4. Before the go each agent
starts as locksmithd does — the strategy's start-up, then the after-boot question whether it holds a
slot (which also settles which etcd API the store speaks) — since in a fleet that happens at boot, long
before an update arrives; the timed window is the update's.

Instrumented without changing product code: each agent's LockStore.kv (a public attribute) is
wrapped in bench._common.InstrumentedKV, which counts every create/compare-and-swap that answered
"changed meanwhile" — exactly the conflicts LockStore._mutate retries — on the semaphore key
(split into those during acquire and during release) and on the best-effort holder-ages key.
The product's structured log events are counted, not printed (lock.wait = went to wait on the
watch, lock.wait.woken = a watch wake-up).

An independent observer in this process watches the key (etcd v3 delivers every revision, so no
state is skipped), decodes the holder list at every revision and records the most holders ever
seen (must never exceed max) and the time-weighted mean number of holders (slot utilisation).

Reported: time to complete (go → last release), beside the ideal ceil(agents x rounds / max) x
mean hold; CAS conflicts per acquisition; wait (acquire() duration) median, p99, max;
fairness — agents that finished every round, acquisitions per agent (min/max), and Jain's index
over the agents' total wait J = (sum w)^2 / (n sum w^2): 1.0 when all waited the same. With
everyone starting at once someone must be served last, so even a perfectly fair FIFO spreads
the waits uniformly over [0, T], which scores J = 0.75; a starved agent pulls it lower and shows
as a max wait far beyond the time to complete the rest.

Reading the figures: here all agents share two cores (and etcd the same two), whereas in a fleet
each has its own CPU. Absolute times are therefore dominated by the agents' own CPU (the JSON
gives CPU seconds of etcd and of the agent processes); the conflict counts, the releases that
gave up after LockStore's 100 compare-and-swap attempts, and how long a slot stays taken beyond
its hold are the store-level signal. `python -m bench` runs 250 agents (QUICK_ARGV, written to
contention_quick.json); the defaults here, and `python -m bench --full`, run the 1000.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from bench._common import (
    RESULTS_DIR,
    load_average,
    now_ns,
    python_child_env,
    quiet_logs,
    raise_fd_limit,
    run_in_workdir,
    write_result,
)
from bench.contention_report import analyse, print_table
from bench.procstats import cpu_seconds

RESULTS = RESULTS_DIR / "contention.json"
# `python -m bench` runs this smaller size: at 1000 agents every agent's work shares the 2 cores
# (`python -m bench --full`, or this module's defaults, for 1000).
QUICK_ARGV = ["--agents", "250", "--output", str(RESULTS_DIR / "contention_quick.json")]


# --- the observer -------------------------------------------------------------------------


class HolderObserver:
    """Counts holders at every revision of the semaphore (etcd v3's watch skips none)."""

    def __init__(self, endpoint: str, group: str) -> None:
        from locksmith.kv import KVOptions, open_store, parse_endpoints
        from locksmith.lockstore import LockStore

        self.kv = open_store(KVOptions(endpoints=parse_endpoints([endpoint])))
        self.locks = LockStore(self.kv, group)
        self.max_holders = 0
        self.revisions = 0
        self.acquisitions = 0  # holder ids that appeared, revision by revision
        self.holders: frozenset[str] = frozenset()
        self.samples: list[tuple[int, int]] = []  # (ns, holders)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        snap = await self.locks.get()
        self._task = asyncio.create_task(self._follow(snap.revision))

    async def _follow(self, revision: int) -> None:
        from locksmith.protocol.semaphore import decode

        async for change in self.kv.watch(self.locks.key, revision):
            holders = frozenset() if change.value is None else frozenset(decode(change.value, self.locks.key).holders)
            self.revisions += 1
            self.acquisitions += len(holders - self.holders)
            self.holders = holders
            self.max_holders = max(self.max_holders, len(holders))
            self.samples.append((now_ns(), len(holders)))

    def mean_holders(self, t0: int, t1: int) -> float:
        area, last_t, last_h = 0.0, t0, 0
        for t, h in self.samples:
            if t < t0:
                last_h = h
                continue
            area += last_h * (min(t, t1) - last_t)
            last_t, last_h = min(t, t1), h
        area += last_h * max(0, t1 - last_t)
        return area / (t1 - t0) if t1 > t0 else math.nan

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.kv.aclose()


# --- the coordinator ----------------------------------------------------------------------


async def start_worker(endpoint: str, group: str, first: int, last: int, params: str) -> asyncio.subprocess.Process:
    code = "import sys; from bench.contention_worker import worker_main; sys.exit(worker_main(sys.argv[1:]))"
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        endpoint,
        group,
        str(first),
        str(last),
        params,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=python_child_env(),
        start_new_session=True,  # stopped by us, in order, also on Ctrl-C
        limit=1 << 26,  # the result line holds every agent's waits
    )


async def stop_worker(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def report_progress(observer: HolderObserver, args: argparse.Namespace, t0: int) -> None:
    total = args.agents * args.rounds
    while True:
        await asyncio.sleep(args.progress)
        elapsed = (now_ns() - t0) / 1e9
        print(
            f"  {elapsed:6.0f} s: {observer.acquisitions}/{total} acquisitions seen, "
            f"{len(observer.holders)} holding, max seen {observer.max_holders}",
            flush=True,
        )


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from harness.devtools.etcd import EtcdCluster
    from locksmith.kv import KVOptions, open_store, parse_endpoints
    from locksmith.lockstore import LockStore

    cluster = EtcdCluster(work / "etcd", size=1)
    workers: list[asyncio.subprocess.Process] = []
    observer: HolderObserver | None = None
    try:
        await asyncio.to_thread(cluster.start, 60.0)
        endpoint = cluster.endpoints[0]
        group = f"bench-contention-{uuid.uuid4().hex[:8]}"
        kv = open_store(KVOptions(endpoints=parse_endpoints([endpoint])))
        try:
            await LockStore(kv, group).set_max(args.max)
        finally:
            await kv.aclose()
        observer = HolderObserver(endpoint, group)
        await observer.start()

        params = json.dumps(
            {"rounds": args.rounds, "hold_min": args.hold_min, "hold_max": args.hold_max, "seed": args.seed}
        )
        bounds = [round(i * args.agents / args.processes) for i in range(args.processes + 1)]
        print(f"  {args.agents} agents in {args.processes} processes, max={args.max} …", flush=True)
        for first, last in itertools.pairwise(bounds):
            workers.append(await start_worker(endpoint, group, first, last, params))
        for w in workers:
            assert w.stdout is not None
            async with asyncio.timeout(120):
                line = await w.stdout.readline()
            if line.strip() != b"ready":
                raise RuntimeError(f"a worker did not start: {line.decode().strip()!r}")
        load_at_go = load_average()
        t0 = now_ns()
        for w in workers:
            assert w.stdin is not None
            w.stdin.write(b"go\n")
            await w.stdin.drain()
        etcd_pid = cluster.members[0].process.pid  # type: ignore[union-attr]
        etcd_cpu_at_go = cpu_seconds(etcd_pid)
        progress = asyncio.create_task(report_progress(observer, args, t0))
        outputs = []
        try:
            async with asyncio.timeout(args.timeout):
                for w in workers:
                    assert w.stdout is not None
                    outputs.append(json.loads(await w.stdout.readline()))
                    await w.wait()
        finally:
            progress.cancel()
        etcd_cpu = cpu_seconds(etcd_pid) - etcd_cpu_at_go
        await asyncio.sleep(0.5)  # let the observer see the last release
        agents = [a for o in outputs for a in o["agents"]]
        errors = [e for o in outputs for e in o["errors"]]
        logs: Counter[str] = Counter()
        for o in outputs:
            logs.update(o["logs"])
        t_end = max((a["finished_ns"] for a in agents), default=t0)
        result = analyse(args, agents, errors, logs, observer, t0, t_end, load_at_go)
        result["cpu_seconds"] = {
            "etcd_during_run": round(etcd_cpu, 1),
            "workers_total_including_setup": round(sum(o["cpu_seconds"] for o in outputs), 1),
        }
        result["worker_peak_rss_mib"] = [round(o["peak_rss_mib"], 1) for o in outputs]
        backoffs: Counter[str] = Counter()
        for o in outputs:
            backoffs.update(o.get("backoffs", {}))
        result["backoff_reasons"] = dict(backoffs.most_common(5))
        return result
    finally:
        if observer is not None:
            await observer.stop()
        await asyncio.gather(*(stop_worker(w) for w in workers), return_exceptions=True)
        await asyncio.to_thread(cluster.stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.contention", description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000, help="agents (default 1000)")
    parser.add_argument("--max", type=int, default=50, help="semaphore slots (default 50)")
    parser.add_argument("--rounds", type=int, default=1, help="acquisitions per agent (default 1)")
    parser.add_argument("--hold-min", type=float, default=0.05, help="shortest hold, seconds (default 0.05)")
    parser.add_argument("--hold-max", type=float, default=0.1, help="longest hold, seconds (default 0.1)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--timeout", type=float, default=7200.0, help="give up after this many seconds")
    parser.add_argument("--progress", type=float, default=30.0, help="print progress every N seconds (default 30)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, help="where etcd's data goes (default: a temporary directory)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if min(args.agents, args.max, args.rounds, args.processes) < 1 or not 0 <= args.hold_min <= args.hold_max:
        parser.error("--agents, --max, --rounds, --processes must be at least 1; 0 <= --hold-min <= --hold-max")
    quiet_logs()
    raise_fd_limit()  # etcd and the workers inherit it: two sockets per agent
    load_before = load_average()
    started = time.monotonic()
    result = run_in_workdir(
        "bench-contention-", args.workdir, lambda work: run(args, work), "interrupted; workers and etcd stopped"
    )
    if result is None:
        return 130
    print_table(result, args)
    write_result(
        args.output,
        "contention",
        "agents running EtcdLockStrategy.acquire/release on one etcd v3 semaphore; wait = "
        "acquire() duration; conflicts = create/CAS answered 'changed' (LockStore retries them)",
        {
            "agents": args.agents,
            "max": args.max,
            "rounds": args.rounds,
            "hold_seconds": [args.hold_min, args.hold_max],
            "processes": args.processes,
            **result,
            "wall_seconds_including_setup": round(time.monotonic() - started, 1),
        },
        load_before,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
