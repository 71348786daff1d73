"""locksmith-chaos's command line: the settings of a campaign and their defaults per mode (the
module docstring of main.py is the --help text)."""

from __future__ import annotations

import argparse
import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Settings:
    iterations: int
    agents: int
    max: int
    seed: int
    fault_time: float
    bound: float
    agent: str
    reboot_time: float
    freeze: tuple[float, float] | None
    lock_ttl: float | None
    keep_history: Path | None
    workdir: Path | None
    failures_dir: Path = Path("chaos-failures")


def default_agent() -> str:
    """The real agent once it is installed with its update engine double; the stand-in until then."""
    for module in ("locksmith.agent.main", "harness.devtools.fake_update_engine"):
        if importlib.util.find_spec(module) is None:
            return "standin"
    return "locksmithd"


def parse_args(argv: list[str] | None, description: str | None = None) -> Settings:
    p = argparse.ArgumentParser(prog="locksmith-chaos", description=description)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--short", action="store_true", help="CI length: 20 iterations, 3 hosts (default)")
    mode.add_argument("--long", action="store_true", help="100 iterations, 5 hosts, longer fault windows")
    p.add_argument("--iterations", type=int, help="number of runs (short 20, long 100)")
    p.add_argument("--agents", type=int, help="hosts per run (short 3, long 5)")
    p.add_argument("--max", type=int, default=None, help="semaphore max k (short 1, long 2)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock; printed)")
    p.add_argument("--fault-time", type=float, help="longest fault window per run, seconds (short 4, long 10)")
    p.add_argument("--bound", type=float, default=60.0, help="liveness bound after faults stop, seconds")
    p.add_argument("--agent", choices=("locksmithd", "standin"), help="agent to run (default: locksmithd if present)")
    p.add_argument("--reboot-time", type=float, default=0.3, help="simulated reboot duration, seconds")
    p.add_argument(
        "--lock-ttl",
        type=float,
        help="the agents' LOCKSMITHD_LOCK_TTL in seconds, which enables the holder-dies-for-good fault; "
        "0: off (short 8, long 20; off for the stand-in, which keeps no lease)",
    )
    p.add_argument("--keep-history", type=Path, help="keep every run's history here (failing runs are always kept)")
    p.add_argument(
        "--failures-dir",
        type=Path,
        default=Path("chaos-failures"),
        help="where a failing run's history and logs are kept (default ./chaos-failures/seed-SEED/)",
    )
    a = p.parse_args(argv)
    long = bool(a.long)
    for name in ("iterations", "agents", "max"):
        value = getattr(a, name)
        if value is not None and value < 1:
            p.error(f"--{name} must be at least 1, got {value}")
    seed = a.seed if a.seed is not None else int(time.time()) % 100000
    return Settings(
        iterations=a.iterations or (100 if long else 20),
        agents=a.agents or (5 if long else 3),
        max=a.max or (2 if long else 1),
        seed=seed,
        fault_time=a.fault_time if a.fault_time is not None else (10.0 if long else 4.0),
        bound=a.bound,
        agent=a.agent or default_agent(),
        reboot_time=a.reboot_time,
        # Long enough to outlast a request's deadline and a watch's idle bound (5 s, 15 s); long mode only.
        freeze=(6.0, 20.0) if long else None,
        # Far above a stall, a member's restart and a simulated reboot, so only a dead host's lease lapses.
        lock_ttl=_lock_ttl(a.lock_ttl, long, a.agent or default_agent(), p),
        keep_history=a.keep_history,
        workdir=a.keep_history,  # None: a temporary directory, made by main() and removed after
        failures_dir=a.failures_dir,
    )


def _lock_ttl(given: float | None, long: bool, agent: str, p: argparse.ArgumentParser) -> float | None:
    if given is not None and given != 0 and not 2 <= given <= 3600:
        p.error(f"--lock-ttl must be 0 (off) or between 2 and 3600 seconds, got {given:g}")
    if agent == "standin":
        if given:
            p.error("--lock-ttl needs the real agent: the stand-in keeps no lease")
        return None
    if given is None:
        return 20.0 if long else 8.0
    return given or None
