"""locksmith-chaos: M simulated hosts, all needing a reboot, on a three-member etcd with max=k,
while faults are injected; an independent observer records the semaphore and the checker proves
the safety invariant on every run.

One etcd cluster serves all iterations (each uses a fresh lock group), so an iteration costs only
its hosts' start-up and their reboots. Each run's fault window is drawn between a quarter of
--fault-time and all of it, so some runs stop their faults while hosts are still mid-reboot and
the liveness bound is really exercised. About half the hosts of a run get a reboot window that opens
a few seconds after their agent starts (window.py). A failing run's history (and the hosts' logs) is kept.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from harness.chaos.checker import Report, check
from harness.chaos.faults import FaultInjector
from harness.chaos.history import History, Recorder
from harness.chaos.observer import Observer, read_key, read_revision
from harness.chaos.options import Settings, parse_args
from harness.chaos.window import window_env
from harness.devtools.etcd import EtcdCluster
from harness.devtools.simhost import Engine, FakeEngine, NullEngine, SimHost
from locksmith.cli import fail
from locksmith.logging import configure_logging
from locksmith.protocol.semaphore import SemaphoreCorrupt, decode, semaphore_key

HISTORY = "history.jsonl"
# With a lock TTL, every third run takes one holder away for good (faults.py, "holder-dies-for-good").
DEATH_EVERY = 3


@dataclass
class Totals:
    runs: int = 0
    failed_runs: int = 0
    violations: int = 0
    harness_errors: int = 0
    reboots: int = 0
    agent_restarts: int = 0
    unverified: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    killed_in_state: Counter[str] = field(default_factory=Counter)
    max_in_critical: int = 0
    slowest_finish: float = 0.0
    expired_holders: int = 0
    slowest_expiry: float = 0.0


def agent_setup(kind: str) -> tuple[list[str], Callable[[], Engine]]:
    """The agent's command line and the update engine part its hosts need."""
    if kind == "locksmithd":
        argv = [sys.executable, "-c", "import sys; from locksmith.agent.main import main; sys.exit(main())"]
        return argv, FakeEngine
    return [sys.executable, "-m", "harness.chaos.standin"], NullEngine


async def create_semaphore(client: httpx.AsyncClient, endpoints: list[str], key: str, k: int) -> None:
    value = json.dumps({"semaphore": k, "max": k, "holders": None}, separators=(",", ":"))
    b64 = base64.b64encode
    txn = {
        "compare": [{"key": b64(key.encode()).decode(), "target": "VERSION", "result": "EQUAL", "version": "0"}],
        "success": [{"request_put": {"key": b64(key.encode()).decode(), "value": b64(value.encode()).decode()}}],
    }
    for _ in range(100):
        for url in endpoints:
            with contextlib.suppress(httpx.HTTPError):
                r = await client.post(f"{url}/v3/kv/txn", json=txn, timeout=2.0)
                if r.status_code == 200:
                    return
        await asyncio.sleep(0.1)
    raise RuntimeError("could not create the semaphore: no etcd member answered")


def holders_of(value: str | None, key: str) -> set[str]:
    if value is None:
        return set()
    try:
        return set(decode(value.encode(), key).holders)
    except SemaphoreCorrupt:
        return set()


async def poll_until(predicate: Callable[[], bool], within: float) -> None:
    # Polled: the condition spans processes, the observer and the supervisors at once.
    deadline = time.monotonic() + within
    while True:
        if predicate() or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.05)


async def run_iteration(cluster: EtcdCluster, s: Settings, i: int, totals: Totals) -> Report:
    assert s.workdir is not None
    rng = random.Random(f"{s.seed}-{i}")
    group = f"chaos-{s.seed}-{i}"
    key = semaphore_key(group)
    run_dir = s.workdir / f"run-{i:04d}"
    recorder = Recorder(run_dir / HISTORY)
    names = [f"host-{j}" for j in range(s.agents)]
    ids = [SimHost(n, run_dir / n, NullEngine()).machine_id for n in names]
    argv, engine_type = agent_setup(s.agent)
    endpoints = cluster.endpoints
    started = time.monotonic()

    async with httpx.AsyncClient() as client:
        recorder.add(
            "meta",
            key=key,
            max=s.max,
            hosts=ids,
            names=names,
            bound=s.bound,
            seed=s.seed,
            iteration=i,
            agent=s.agent,
            lock_ttl=s.lock_ttl,
        )
        first = await read_revision(client, endpoints, key)
        if first is None:
            raise RuntimeError("etcd cluster unreachable at the start of an iteration")
        injector: FaultInjector | None = None

        def on_value(value: str | None) -> None:
            if injector is not None:
                injector.holders = holders_of(value, key)

        observer = Observer(endpoints, key, recorder, on_value=on_value)
        await observer.start(first[0] + 1)
        await create_semaphore(client, endpoints, key, s.max)

        async def on_event(host: SimHost, what: str) -> None:
            # A generous budget: an event without its stamp fails the run, a late one does not.
            stamp = await read_revision(client, endpoints, key, budget=30.0)
            recorder.add("event", host=host.machine_id, event=what, boot=host.boot, rev=stamp[0] if stamp else None)

        hosts = [
            SimHost(
                name=n,
                dir=run_dir / n,
                engine=engine_type(),
                agent_argv=argv,
                agent_env={
                    "LOCKSMITHD_ENDPOINT": ",".join(endpoints),
                    "LOCKSMITHD_GROUP": group,
                    "REBOOT_STRATEGY": "etcd-lock",
                    # A short "drain" before each reboot, so the agent can be killed in PRE_REBOOT too.
                    "LOCKSMITHD_PRE_REBOOT_HOOK": "sleep 0.2",
                    **({"LOCKSMITHD_LOCK_TTL": f"{s.lock_ttl:g}s"} if s.lock_ttl else {}),
                    **(window_env(rng) if rng.random() < 0.5 else {}),
                },
                reboot_time=s.reboot_time,
                on_event=on_event,
            )
            for n in names
        ]
        injector = FaultInjector(
            cluster, hosts, recorder, rng, freeze=s.freeze, lock_ttl=s.lock_ttl, plan_death=i % DEATH_EVERY == 2
        )

        def all_done() -> bool:
            # A host gone for good is done once the others freed its slot (the final value has no holders).
            live = [h for h in hosts if not h.dead]
            return all(h.boot >= 1 and not h.rebooting for h in live) and not holders_of(observer.last_value, key)

        stop_faults = asyncio.Event()
        faults: asyncio.Task[None] | None = None
        try:
            await asyncio.gather(*(h.start() for h in hosts))
            faults = asyncio.create_task(injector.run(stop_faults))
            await poll_until(all_done, rng.uniform(s.fault_time / 4, s.fault_time))
            stop_faults.set()
            await faults
            await injector.heal()
            recorder.add("faults_end")
            await poll_until(all_done, s.bound)
            # The end: the key's last modification, as a linearizable read sees it; the observer
            # must have seen it too (the checker fails the run otherwise).
            final = await read_key(client, endpoints, key)
            if final is None:
                raise RuntimeError("etcd cluster unreachable at the end of the run")
            await poll_until(lambda: observer.last_rev >= final.mod_revision, 10.0)
            recorder.add(
                "end",
                key_rev=final.mod_revision,
                reboots={h.machine_id: h.reboots for h in hosts},
                boots={h.machine_id: h.boot for h in hosts},
            )
        finally:
            stop_faults.set()
            if faults is not None and not faults.done():
                faults.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await faults
            try:
                await injector.heal()  # whatever happened, the next run gets a whole cluster
            finally:
                await asyncio.gather(*(h.stop() for h in hosts), return_exceptions=True)
                await observer.stop()
        problems = [e for h in hosts for e in h.errors]
        if problems:
            raise RuntimeError("; ".join(problems))

    report, kept = judge(run_dir, s)
    totals.runs += 1
    totals.reboots += report.reboots
    totals.unverified += report.unverified_events
    totals.violations += len(report.violations)
    totals.faults.update(injector.counts)
    totals.killed_in_state.update(injector.killed_in_state)
    restarts = sum(h.agent_restarts for h in hosts)
    totals.agent_restarts += restarts
    totals.max_in_critical = max(totals.max_in_critical, report.max_in_critical)
    totals.slowest_finish = max(totals.slowest_finish, report.slowest_finish_after_faults or 0.0)
    totals.expired_holders += len(report.expiries)
    totals.slowest_expiry = max([totals.slowest_expiry, *report.expiries])
    faults_text = ", ".join(f"{k} {v}" for k, v in sorted(injector.counts.items())) or "none"
    killed = ", ".join(f"{k} {v}" for k, v in sorted(injector.killed_in_state.items())) or "-"
    print(
        f"run {i + 1:>3}/{s.iterations}  k={s.max} M={s.agents}  faults: {faults_text}  killed in: {killed}  "
        f"reboots={report.reboots} restarts={restarts} max-in-section={report.max_in_critical} "
        f"revisions={report.revisions} finished={report.finished_hosts}/{s.agents - report.dead_hosts} "
        + (f"freed-dead-after={max(report.expiries):.1f}s " if report.expiries else "")
        + f"violations={len(report.violations)}  [{time.monotonic() - started:.1f}s]",
        flush=True,
    )
    for v in report.violations:
        print(f"    VIOLATION {v}", flush=True)
    if kept is not None:
        totals.failed_runs += 1
        print(f"    history kept in {kept}", flush=True)
    return report


def judge(run_dir: Path, s: Settings) -> tuple[Report, Path | None]:
    """Check a finished run's history; keep the run if it failed (returns where)."""
    report = check(History.load(run_dir / HISTORY))
    return report, keep(run_dir, s) if report.violations else None


def keep(run_dir: Path, s: Settings) -> Path:
    """Keep a failing run's history and the hosts' logs where they survive the work dir."""
    if s.keep_history is not None:  # every run is written there already
        return run_dir
    target = (s.failures_dir / f"seed-{s.seed}" / run_dir.name).resolve()
    shutil.rmtree(target, ignore_errors=True)
    # Sockets are the only files copytree cannot copy; a partial copy still beats none.
    with contextlib.suppress(shutil.Error):
        shutil.copytree(run_dir, target, ignore=shutil.ignore_patterns("*.sock"))
    return target


async def run(s: Settings) -> Totals:
    assert s.workdir is not None
    totals = Totals()
    cluster = EtcdCluster(s.workdir / "etcd", size=3)
    await asyncio.to_thread(cluster.start, 60.0)
    try:
        for i in range(s.iterations):
            try:
                await run_iteration(cluster, s, i, totals)
            except Exception as exc:  # a harness failure is a failed run, never a pass
                totals.runs += 1
                totals.failed_runs += 1
                totals.harness_errors += 1
                print(f"run {i + 1:>3}/{s.iterations}  HARNESS ERROR {type(exc).__name__}: {exc}", flush=True)
                print(f"    history kept in {keep(s.workdir / f'run-{i:04d}', s)}", flush=True)
            if s.keep_history is None:
                shutil.rmtree(s.workdir / f"run-{i:04d}", ignore_errors=True)
    finally:
        await asyncio.to_thread(cluster.stop)
    return totals


def summary(s: Settings, t: Totals, elapsed: float) -> str:
    lines = [
        "",
        f"chaos: {t.runs} runs, agent {s.agent}, {s.agents} hosts each, max={s.max}, seed {s.seed}, {elapsed:.0f}s",
        f"  reboots checked      {t.reboots}  (unverified events: {t.unverified})",
        f"  faults injected      {sum(t.faults.values())}: "
        + (", ".join(f"{k} {v}" for k, v in sorted(t.faults.items())) or "none"),
        "  agents killed in     " + (", ".join(f"{k} {v}" for k, v in sorted(t.killed_in_state.items())) or "-"),
        f"  agent restarts       {t.agent_restarts}",
        f"  max hosts in section {t.max_in_critical} (allowed {s.max})",
        f"  slowest finish after faults stopped {t.slowest_finish:.1f}s (bound {s.bound:.0f}s)",
        f"  holders dead for good {t.expired_holders}, freed by lease expiry after at most {t.slowest_expiry:.1f}s"
        + (f" (LOCKSMITHD_LOCK_TTL {s.lock_ttl:g}s)" if s.lock_ttl else " (LOCKSMITHD_LOCK_TTL off)"),
        f"  harness errors       {t.harness_errors}",
        f"  violations           {t.violations} in {t.failed_runs} failed run(s)",
    ]
    return "\n".join(lines)


def _workdir(keep: Path | None) -> Path:
    if keep is None:
        return Path(tempfile.mkdtemp(prefix="locksmith-chaos-"))
    keep.mkdir(parents=True, exist_ok=True)
    return keep


async def run_until_signalled(s: Settings) -> Totals | None:
    """`run`, stopped by SIGTERM (a timeout, pkill) or SIGINT as by Ctrl-C: None then. The first signal
    cancels the run, so everything started is stopped at an await, where asyncio stops a process it was
    still starting too (a KeyboardInterrupt raised at any byte code could leave one running). A later
    signal must not cut that clean-up short, or the hosts' agents, each in a session of its own, live on."""
    loop = asyncio.get_running_loop()
    this = asyncio.current_task()
    assert this is not None
    signalled: list[int] = []

    def on_signal(signum: int) -> None:
        if signalled:
            print("locksmith-chaos: stopping everything started; this takes a few seconds", file=sys.stderr, flush=True)
            return
        signalled.append(signum)
        this.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        return await run(s)
    except asyncio.CancelledError:
        if signalled:
            return None
        raise
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def main(argv: list[str] | None = None) -> int:
    s = parse_args(argv, __doc__)
    configure_logging(level="warning")  # the run's own report is printed; libraries only warn
    s.workdir = _workdir(s.keep_history)
    print(f"locksmith-chaos: seed {s.seed}, agent {s.agent}, work dir {s.workdir}", flush=True)
    started = time.monotonic()
    try:
        totals = asyncio.run(run_until_signalled(s))
    except KeyboardInterrupt:  # before the run could take the signals over: nothing was started yet
        totals = None
    except RuntimeError as exc:
        return fail("locksmith-chaos", str(exc), 1)
    finally:
        if s.keep_history is None:
            shutil.rmtree(s.workdir, ignore_errors=True)  # failing runs were copied out already
    if totals is None:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    print(summary(s, totals, time.monotonic() - started), flush=True)
    return 1 if totals.violations or totals.harness_errors or totals.runs < s.iterations else 0


if __name__ == "__main__":
    sys.exit(main())
