"""locksmithd footprint: idle memory, CPU and wake-ups, time from start to READY, and the latency
from the update engine's NEED_REBOOT signal to the reboot call, with strategy `reboot`.

Everything runs the real console script (`locksmithd` next to this interpreter) with
`--config /dev/null` and its settings in LOCKSMITHD_* variables, against a private dbus-daemon
(harness.devtools.dbus.PrivateBus). On that bus this process serves a fake update engine
(com.coreos.update1) and a fake logind (org.freedesktop.login1), both real D-Bus services.
NOTIFY_SOCKET points at a datagram socket this process bound, so sd_notify READY=1 and STATUS=
lines arrive here and are stamped (CLOCK_MONOTONIC, shared by all processes).

start → READY   spawn of the process → READY=1 received; also → STATUS=idle (the agent has read
                the engine's status and, for etcd-lock, checked for a lock from before the boot).
                Sampled at every agent start below.
idle            one agent (default REBOOT_STRATEGY=etcd-lock on the embedded store, the
                single-host set-up) is started, reaches idle, settles 2 s, then is sampled for
                --idle-seconds (default 60): RSS/PSS/USS (/proc/PID/status, smaps_rollup), CPU
                (utime+stime from /proc/PID/stat), and wake-ups = voluntary + involuntary
                context switches summed over all its threads (/proc/PID/task/*/status).
signal → reboot REBOOT_STRATEGY=reboot, engine IDLE at start. Once the agent is idle the fake
                engine changes to need-reboot (update1.NEED_REBOOT) and emits StatusUpdate
                (t0 = just before the signal is sent). Two reboot actions, --trials each:
                  logind   the production path: the agent calls login1 Manager.Reboot(false)
                           on the bus; stamped when the fake logind receives the call;
                  command  LOCKSMITHD_REBOOT_COMMAND="sh -c 'echo reboot > FIFO'";
                           stamped when the line arrives on the FIFO this process reads.
                After each trial the agent (now waiting to be stopped by the shutdown) gets
                SIGTERM; the time to exit is recorded too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
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
from bench.procstats import memory, sample

RESULTS = RESULTS_DIR / "footprint.json"


# --- what this process serves: notify socket, engine, logind, FIFO -----------------------------


class NotifySocket:
    """The sd_notify datagram socket; stamps READY=1 and every STATUS= line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[tuple[int, str]] = []
        self._changed = asyncio.Event()
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        stamp = now_ns()
        with contextlib.suppress(BlockingIOError):
            while True:
                data = self.sock.recv(4096)
                for line in data.decode(errors="replace").splitlines():
                    self.messages.append((stamp, line))
        self._changed.set()

    async def wait_for(self, predicate: Any, since: int, within: float = 60.0) -> int:
        """The stamp of the first message after `since` matching `predicate`."""
        async with asyncio.timeout(within):
            while True:
                for stamp, line in self.messages:
                    if stamp >= since and predicate(line):
                        return stamp
                self._changed.clear()
                await self._changed.wait()

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()


class Fifo:
    """A FIFO the reboot command writes a line to. Opened read-write so it never reports a hang-up."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        self.stamps: list[int] = []
        self._arrived = asyncio.Event()
        asyncio.get_running_loop().add_reader(self.fd, self._on_readable)

    def _on_readable(self) -> None:
        stamp = now_ns()
        with contextlib.suppress(BlockingIOError):
            if os.read(self.fd, 4096):
                self.stamps.append(stamp)
                self._arrived.set()

    async def next(self, within: float = 30.0) -> int:
        async with asyncio.timeout(within):
            await self._arrived.wait()
        self._arrived.clear()
        return self.stamps[-1]

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.fd)
        os.close(self.fd)


def stamping_logind() -> Any:
    from harness.devtools.fake_logind import FakeLogind

    class StampingLogind(FakeLogind):
        """The fake logind, stamping each Reboot call as it arrives."""

        def __init__(self) -> None:
            super().__init__()
            self.stamps: list[int] = []
            self.arrived = asyncio.Event()

        def _reboot(self, msg: Any) -> Any:
            stamp = now_ns()
            reply = super()._reboot(msg)
            if len(self.calls) > len(self.stamps):
                self.stamps.append(stamp)
                self.arrived.set()
            return reply

    return StampingLogind()


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
                "LOCKSMITHD_COORDINATOR_FILE": str(self.work / "coordinator.conf"),
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


async def measure_idle(bench: Bench, strategy: str, seconds: float) -> dict[str, Any]:
    agent = await bench.start(strategy)
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

    out: dict[str, list[float]] = {"logind": [], "command": []}
    commands = {
        "logind": {},
        "command": {"LOCKSMITHD_REBOOT_COMMAND": f"sh -c 'echo reboot > {fifo_path(bench.work)}'"},
    }
    for trial in range(trials):
        for path in ("logind", "command") if trial % 2 == 0 else ("command", "logind"):
            await engine.set_status(Operation.IDLE, emit=False)
            agent = await bench.start("reboot", commands[path])
            try:
                await asyncio.sleep(0.3)
                logind.arrived.clear()
                t0 = now_ns()
                await engine.set_status(NEED_REBOOT.current_operation)
                if path == "logind":
                    async with asyncio.timeout(30):
                        await logind.arrived.wait()
                    called = logind.stamps[-1]
                else:
                    called = await fifo.next()
                out[path].append((called - t0) / 1e9)
            finally:
                await bench.stop(agent)
    return out


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from harness.devtools.dbus import PrivateBus
    from harness.devtools.fake_update_engine import FakeUpdateEngine

    bus = PrivateBus(work / "bus")
    await asyncio.to_thread(bus.start)
    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address  # our fake services connect to it
    notify = NotifySocket(work / "notify.sock")
    fifo = Fifo(fifo_path(work))
    engine = FakeUpdateEngine()
    logind = stamping_logind()
    try:
        await engine.start()
        await logind.start()
        bench = Bench(work, bus.address, notify)
        print(f"  idle: {args.idle_seconds:g} s of one agent ({args.idle_strategy}) …", flush=True)
        idle = await measure_idle(bench, args.idle_strategy, args.idle_seconds)
        print(f"  signal → reboot: {args.trials} trials each of logind and command …", flush=True)
        reboots = await measure_reboots(bench, engine, logind, fifo, args.trials)
        return {
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


def fifo_path(work: Path) -> Path:
    return work / "reboot.fifo"


def print_table(r: dict[str, Any], args: argparse.Namespace) -> None:
    i = r["idle"]
    print(f"\nlocksmithd footprint (idle: {i['strategy']} on the embedded store, {i['seconds']:g} s)")
    rows = [
        (
            "idle RSS / PSS / USS",
            f"{i['rss_kib'] / 1024:.1f} / {i['pss_kib'] / 1024:.1f} / {i['uss_kib'] / 1024:.1f} MiB",
        ),
        ("idle CPU", f"{i['cpu_seconds']:.3f} s in {i['seconds']:g} s ({i['cpu_percent']:.3f} %)"),
        (
            "idle wake-ups (context switches)",
            f"{i['wakeups']} ({i['wakeups_per_second']:.2f}/s), {i['threads']} threads",
        ),
    ]
    for strategy, s in r["start_to_ready"].items():
        idle = r["start_to_idle"][strategy]
        rows.append(
            (f"start → READY=1 ({strategy})", f"median {s['median_ms']:.0f} ms, max {s['max_ms']:.0f} ms (n={s['n']})")
        )
        rows.append((f"start → STATUS=idle ({strategy})", f"median {idle['median_ms']:.0f} ms"))
    for path, s in r["signal_to_reboot"].items():
        label = "logind Reboot call" if path == "logind" else "reboot command ran"
        rows.append(
            (f"NEED_REBOOT signal → {label}", f"median {s['median_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms (n={s['n']})")
        )
    rows.append(("SIGTERM → exit", f"median {r['sigterm_to_exit']['median_ms']:.0f} ms"))
    for label, value in rows:
        print(f"{label:<40}{value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.footprint", description=__doc__.splitlines()[0])
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="idle sampling window (default 60)")
    parser.add_argument("--idle-strategy", default="etcd-lock", help="strategy of the idle agent (default etcd-lock)")
    parser.add_argument("--trials", type=int, default=10, help="signal → reboot trials per path (default 10)")
    parser.add_argument("--workdir", type=Path, help="where sockets and logs go (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the agents' logs afterwards")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.idle_seconds <= 0 or args.trials < 1:
        parser.error("--idle-seconds must be > 0 and --trials at least 1")
    quiet_logs()
    load_before = load_average()
    result = run_in_workdir(
        "bench-fp-", args.workdir, lambda work: run(args, work),
        "interrupted; the agent, bus and services were stopped", keep=args.keep,
    )  # fmt: skip
    if result is None:
        return 130
    print_table(result, args)
    write_result(
        args.output,
        "footprint",
        "real locksmithd console script on a private dbus-daemon with a fake update engine and fake "
        "logind served by the benchmark; sd_notify on a socket the benchmark bound",
        result,
        load_before,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
