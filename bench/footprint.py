"""locksmithd footprint: idle memory, CPU and wake-ups, time from start to READY, and the latency
from the update engine's NEED_REBOOT signal to the reboot call, with strategy `reboot`.

Everything runs the real console script (`locksmithd` next to this interpreter) with
`--config /dev/null` and its settings in LOCKSMITHD_* variables, against a private dbus-daemon
(harness.devtools.dbus.PrivateBus). On that bus this process serves a fake update engine
(com.coreos.update1) and a fake logind (org.freedesktop.login1), both real D-Bus services.
NOTIFY_SOCKET points at a datagram socket this process bound, so sd_notify READY=1 and STATUS=
lines arrive here and are stamped (CLOCK_MONOTONIC, shared by all processes).

start → READY   spawn of the process → READY=1 received; also → STATUS=idle (the agent has read
                the engine's status and, for etcd-lock, checked for a lock from before the boot;
                STATUS= is sent once a burst of states settles, up to 20 ms later: agent/settle.py).
                Sampled at every agent start below.
floors          this interpreter idle after importing nothing, asyncio, and asyncio with the libraries
                the agent is built on (IMPORT_FLOORS): the memory under any agent built like ours.
idle            one agent per store (default REBOOT_STRATEGY=etcd-lock): on a private etcd 3.4
                (bus + etcd connected, issue 14's figure) and on the embedded store (the
                single-host set-up), each started, idle, settled 2 s, then sampled for
                --idle-seconds (default 30): RSS/PSS/USS/anonymous (/proc/PID/status,
                smaps_rollup), CPU (utime+stime from /proc/PID/stat), and wake-ups = voluntary
                + involuntary context switches summed over all its threads.
signal → reboot REBOOT_STRATEGY=reboot, engine IDLE at start. Once the agent is idle the fake
                engine changes to need-reboot (update1.NEED_REBOOT) and emits StatusUpdate
                (t0 = just before the signal is sent). Three paths, --trials each:
                  logind   the production path: the agent calls login1 Manager.Reboot(false)
                           on the bus; stamped when the fake logind receives the call. Login
                           check off, as this figure was measured when issue 14 set its goal;
                  logind-login-check  the same with LOCKSMITHD_LOGIN_CHECK=true (the default): one
                           ListSessions call to the fake logind, which lists nobody, so nobody
                           is warned and nothing waits;
                  command  LOCKSMITHD_REBOOT_COMMAND="sh -c 'echo reboot > FIFO'";
                           stamped when the line arrives on the FIFO this process reads.
                After each trial the agent (now waiting to be stopped by the shutdown) gets
                SIGTERM; the time to exit is recorded too.
The coordinator file is on tmpfs (/dev/shm) when there is one, as /run is on a systemd host, the
default path; --coordinator-on-disk puts it in the work directory instead (this box's /tmp is ext4).
Each figure issue 14 sets a goal for is printed beside it (bench/_issue14.py); the Go figures the issue
quotes go into the result file as a labelled reference, not as measurements.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._common import (
    RESULTS_DIR,
    console_script,
    load_average,
    now_ns,
    quiet_logs,
    run_in_workdir,
    summary_ms,
    write_result,
)
from bench._footprint_io import Fifo, NotifySocket, stamping_logind
from bench._issue14 import IDLE_ANON, IDLE_RSS, SIGNAL_TO_REBOOT, reference
from bench.procstats import import_floor, memory, sample

RESULTS = RESULTS_DIR / "footprint.json"

# What any agent built like ours pays before its own code runs: the same interpreter idle after importing
# only these. The agent also loads anyio (httpcore's asyncio backend) at its first request.
IMPORT_FLOORS = {
    "interpreter": "",
    "asyncio": "asyncio",
    "asyncio + httpx + structlog + dbus-fast": "asyncio, httpx, anyio._backends._asyncio, structlog, dbus_fast.aio",
}


# --- agents ----------------------------------------------------------------------------------


@dataclass
class Agent:
    proc: asyncio.subprocess.Process
    spawned: int
    ready_s: float = 0.0
    idle_s: float = 0.0


@dataclass
class Bench:
    work: Path
    bus_address: str
    notify: NotifySocket
    coordinator_dir: Path
    starts: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # strategy -> [(ready, idle)]
    stop_times: list[float] = field(default_factory=list)
    _n: int = 0

    def env(self, strategy: str, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCKSMITHD_", "REBOOT_STRATEGY"))}
        (self.work / "machine-id").write_text("b" * 32 + "\n")
        env.update(
            {
                "DBUS_SYSTEM_BUS_ADDRESS": self.bus_address,
                "NOTIFY_SOCKET": str(self.notify.path),
                "REBOOT_STRATEGY": strategy,
                "LOCKSMITHD_ENDPOINT": f"file://{self.work / 'kv.db'}",
                "LOCKSMITHD_MACHINE_ID_FILE": str(self.work / "machine-id"),
                "LOCKSMITHD_LOGIN_CHECK": "false",
                "LOCKSMITHD_COORDINATOR_FILE": str(self.coordinator_dir / "coordinator.conf"),
                "LOCKSMITHD_LOG_FORMAT": "json",
                **extra,
            }
        )
        env.pop("WATCHDOG_USEC", None)
        env.pop("WATCHDOG_PID", None)
        return env

    async def start(self, strategy: str, extra: dict[str, str] | None = None) -> Agent:
        self._n += 1
        log = (self.work / f"agent-{self._n}.log").open("wb")
        env = self.env(strategy, extra or {})
        argv = [console_script("locksmithd"), "--config", "/dev/null"]
        spawned = now_ns()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT
            )
        finally:
            log.close()
        agent = Agent(proc, spawned)
        ready = await self.notify.wait_for(lambda line: line == "READY=1", spawned)
        idle = await self.notify.wait_for(lambda line: line.startswith("STATUS=idle"), spawned)
        agent.ready_s, agent.idle_s = (ready - spawned) / 1e9, (idle - spawned) / 1e9
        self.starts.setdefault(strategy, []).append((agent.ready_s, agent.idle_s))
        return agent

    async def stop(self, agent: Agent) -> None:
        if agent.proc.returncode is not None:
            return
        t = time.monotonic()
        agent.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(15):
                code = await agent.proc.wait()
        except TimeoutError:
            agent.proc.kill()
            await agent.proc.wait()
            raise RuntimeError(f"locksmithd did not exit within 15 s of SIGTERM; see {self.work}") from None
        if code != 0:
            raise RuntimeError(f"locksmithd exited {code} after SIGTERM; see the logs in {self.work}")
        self.stop_times.append(time.monotonic() - t)


async def measure_idle(bench: Bench, strategy: str, seconds: float, endpoint: str | None) -> dict[str, Any]:
    agent = await bench.start(strategy, {"LOCKSMITHD_ENDPOINT": endpoint} if endpoint else None)
    try:
        await asyncio.sleep(2.0)  # let start-up garbage and lazy imports settle
        pid = agent.proc.pid
        first = sample(pid)
        peak_rss = first.rss_kib
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(1.0, left))
            peak_rss = max(peak_rss, sample(pid).rss_kib)
        last = sample(pid)
        mem = memory(pid)
    finally:
        await bench.stop(agent)
    span = last.at - first.at
    cpu = last.cpu_seconds - first.cpu_seconds
    return {
        "strategy": strategy,
        "store": "etcd3" if endpoint else "embedded",
        "seconds": round(span, 1),
        **mem,
        "rss_max_during_kib": peak_rss,
        "cpu_seconds": round(cpu, 3),
        "cpu_percent": round(100 * cpu / span, 3),
        "wakeups": last.switches - first.switches,
        "wakeups_per_second": round((last.switches - first.switches) / span, 2),
        "voluntary_switches": last.voluntary - first.voluntary,
        "threads": last.threads,
    }


async def measure_reboots(bench: Bench, engine: Any, logind: Any, fifo: Fifo, trials: int) -> dict[str, list[float]]:
    from locksmith.protocol.update1 import NEED_REBOOT, Operation

    settings = {
        "logind": {},
        "logind-login-check": {"LOCKSMITHD_LOGIN_CHECK": "true"},
        "command": {"LOCKSMITHD_REBOOT_COMMAND": f"sh -c 'echo reboot > {fifo_path(bench.work)}'"},
    }
    out: dict[str, list[float]] = {path: [] for path in settings}
    paths = list(settings)
    for trial in range(trials):
        for path in paths[trial % len(paths) :] + paths[: trial % len(paths)]:  # each path first in turn
            await engine.set_status(Operation.IDLE, emit=False)
            agent = await bench.start("reboot", settings[path])
            try:
                await asyncio.sleep(0.3)
                logind.arrived.clear()
                t0 = now_ns()
                await engine.set_status(NEED_REBOOT.current_operation)
                if path == "command":
                    called = await fifo.next()
                else:
                    async with asyncio.timeout(30):
                        await logind.arrived.wait()
                    called = logind.stamps[-1]
                out[path].append((called - t0) / 1e9)
            finally:
                await bench.stop(agent)
    return out


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from harness.devtools.dbus import PrivateBus
    from harness.devtools.etcd import EtcdCluster
    from harness.devtools.fake_update_engine import FakeUpdateEngine

    bus = PrivateBus(work / "bus")
    await asyncio.to_thread(bus.start)
    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address  # our fake services connect to it
    notify = NotifySocket(work / "notify.sock")
    fifo = Fifo(fifo_path(work))
    engine = FakeUpdateEngine()
    logind = stamping_logind()
    cluster = EtcdCluster(work / "etcd", size=1)
    coordinator_dir = coordinator_directory(work, args.coordinator_on_disk)
    try:
        await asyncio.to_thread(cluster.start, 60.0)
        await engine.start()
        await logind.start()
        bench = Bench(work, bus.address, notify, coordinator_dir)
        idle = []
        for endpoint in (cluster.endpoints[0], None):
            where = "a private etcd" if endpoint else "the embedded store"
            print(f"  idle: {args.idle_seconds:g} s of one agent ({args.idle_strategy}, {where}) …", flush=True)
            idle.append(await measure_idle(bench, args.idle_strategy, args.idle_seconds, endpoint))
        paths = "logind (login check off, then on) and command"
        print(f"  signal → reboot: {args.trials} trials each of {paths} …", flush=True)
        reboots = await measure_reboots(bench, engine, logind, fifo, args.trials)
        floors = {name: await asyncio.to_thread(import_floor, modules) for name, modules in IMPORT_FLOORS.items()}
        return {
            "import_floors": floors,
            "coordinator_file_system": "tmpfs" if coordinator_dir != work else "the work directory's (disk)",
            "idle": idle,
            "start_to_ready": {s: summary_ms(r for r, _ in v) for s, v in bench.starts.items()},
            "start_to_idle": {s: summary_ms(i for _, i in v) for s, v in bench.starts.items()},
            "signal_to_reboot": {p: summary_ms(v) for p, v in reboots.items()},
            "sigterm_to_exit": summary_ms(bench.stop_times),
        }
    finally:
        with contextlib.suppress(Exception):
            await logind.stop()
        with contextlib.suppress(Exception):
            await engine.stop()
        fifo.close()
        notify.close()
        await asyncio.to_thread(bus.stop)
        await asyncio.to_thread(cluster.stop)
        if coordinator_dir != work:
            for leftover in coordinator_dir.iterdir():
                leftover.unlink()
            coordinator_dir.rmdir()


def coordinator_directory(work: Path, on_disk: bool) -> Path:
    """A private directory on tmpfs for the coordinator file, as /run is on a host; `work` if asked or none."""
    from locksmith.agent.coordinator import on_volatile_file_system

    shm = Path("/dev/shm")
    if on_disk or not (shm.is_dir() and os.access(shm, os.W_OK) and on_volatile_file_system(shm)):
        return work
    return Path(tempfile.mkdtemp(prefix="bench-fp-run-", dir=shm))


def fifo_path(work: Path) -> Path:
    return work / "reboot.fifo"


def goals(r: dict[str, Any]) -> dict[str, Any]:
    """Issue 14's figures from this run, each beside its goal."""
    etcd = next(i for i in r["idle"] if i["store"] == "etcd3")
    return {
        IDLE_RSS.key: IDLE_RSS.verdict(etcd["rss_kib"] / 1024),
        IDLE_ANON.key: IDLE_ANON.verdict(etcd["anonymous_kib"] / 1024),
        SIGNAL_TO_REBOOT.key: SIGNAL_TO_REBOOT.verdict(r["signal_to_reboot"]["logind"]["median_ms"]),
    }


def print_table(r: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\nlocksmithd footprint (coordinator file on {r['coordinator_file_system']})")
    rows = []
    for i in r["idle"]:
        mib = {k: i[f"{k}_kib"] / 1024 for k in ("rss", "pss", "uss", "anonymous")}
        rows += [
            (
                f"idle RSS/PSS/USS/anon ({i['store']}, {i['seconds']:g} s)",
                "{rss:.1f} / {pss:.1f} / {uss:.1f} / {anonymous:.1f} MiB".format(**mib),
            ),
            (f"idle CPU, wake-ups ({i['store']})", f"{i['cpu_seconds']:.3f} s, {i['wakeups']}, {i['threads']} threads"),
        ]
    for strategy, s in r["start_to_ready"].items():
        idle = r["start_to_idle"][strategy]
        rows.append(
            (f"start → READY=1 / idle ({strategy})", f"median {s['median_ms']:.0f} / {idle['median_ms']:.0f} ms")
        )
    for path, s in r["signal_to_reboot"].items():
        label = {
            "logind": "logind Reboot call",
            "logind-login-check": "Reboot, login check on",
            "command": "reboot command ran",
        }[path]
        rows.append(
            (f"NEED_REBOOT signal → {label}", f"median {s['median_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms (n={s['n']})")
        )
    rows.append(("SIGTERM → exit", f"median {r['sigterm_to_exit']['median_ms']:.0f} ms"))
    for name, floor in r["import_floors"].items():
        rows.append(
            (
                f"floor: {name} only, RSS / anon",
                f"{floor['rss_kib'] / 1024:.1f} / {floor['anonymous_kib'] / 1024:.1f} MiB",
            )
        )
    width = max(44, *(len(label) + 2 for label, _ in rows))
    for label, value in rows:
        print(f"{label:<{width}}{value}")
    print("\nissue 14's goals")
    for goal in (IDLE_RSS, IDLE_ANON, SIGNAL_TO_REBOOT):
        print(goal.row(r["goals"][goal.key]["measured"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.footprint", description=__doc__.splitlines()[0])
    parser.add_argument("--idle-seconds", type=float, default=30.0, help="idle sampling window (default 30)")
    parser.add_argument("--idle-strategy", default="etcd-lock", help="strategy of the idle agent (default etcd-lock)")
    parser.add_argument("--trials", type=int, default=10, help="signal → reboot trials per path (default 10)")
    parser.add_argument("--coordinator-on-disk", action="store_true", help="coordinator file in the work directory")
    parser.add_argument("--workdir", type=Path, help="where sockets and logs go (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the agents' logs afterwards")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.idle_seconds <= 0 or args.trials < 1:
        parser.error("--idle-seconds must be > 0 and --trials at least 1")
    quiet_logs()
    load_before = load_average()
    # Run it only while the box is otherwise quiet: the result file says how quiet it was.
    conditions = {"load_1min_at_start": load_before[0], "quiet": load_before[0] < 1.0}
    result = run_in_workdir(
        "bench-fp-", args.workdir, lambda work: run(args, work),
        "interrupted; the agent, bus and services were stopped", keep=args.keep,
    )  # fmt: skip
    if result is None:
        return 130
    result["goals"] = goals(result)
    print_table(result, args)
    write_result(
        args.output,
        "footprint",
        "real locksmithd console script on a private dbus-daemon with a fake update engine and fake "
        "logind served by the benchmark; sd_notify on a socket the benchmark bound",
        {
            **result,
            "conditions": conditions,
            **reference(
                idle_rss_mib=8.6,
                signal_to_logind_reboot_median_ms=1.7,
                note="not measured by this benchmark; the figures the issue gives for Go locksmithd 0.6.2",
            ),
        },
        load_before,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
