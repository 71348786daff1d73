"""Real `locksmithd` processes for end-to-end tests: each simulated host has its own private
system bus, a fake update engine process on it, and an agent whose reboot command appends a line
to a shared file (the "reboot")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.devtools.dbus import PrivateBus

AGENT = [sys.executable, "-m", "locksmith.agent.main"]
ENGINE = [sys.executable, "-m", "harness.devtools.fake_update_engine"]


def wait_until(predicate: Any, limit: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@dataclass
class Host:
    name: str
    tmp: Path
    endpoints: list[str]
    group: str
    reboots: Path
    strategy: str = "etcd-lock"
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dir = self.tmp / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.machine_id = (self.name.encode().hex() * 32)[:32]
        (self.dir / "machine-id").write_text(self.machine_id + "\n")
        self.bus = PrivateBus(self.dir / "bus").start()
        self.engine: subprocess.Popen[str] | None = None
        self.agent: subprocess.Popen[bytes] | None = None
        self.boots = 0

    # --- the update engine ---------------------------------------------------------------

    def start_engine(self) -> None:
        self.engine = subprocess.Popen(ENGINE, env=self.bus.env(), stdout=subprocess.PIPE, text=True)
        assert self.engine.stdout is not None
        assert self.engine.stdout.readline().strip() == "ready"

    def need_reboot(self) -> None:
        assert self.engine is not None
        self.engine.send_signal(signal.SIGUSR1)

    def idle(self) -> None:
        assert self.engine is not None
        self.engine.send_signal(signal.SIGUSR2)

    # --- the agent ---------------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        return self.dir / f"agent-{self.boots}.log"

    def env(self) -> dict[str, str]:
        env = {
            **self.bus.env(),
            "REBOOT_STRATEGY": self.strategy,
            "LOCKSMITHD_ENDPOINT": ",".join(self.endpoints),
            "LOCKSMITHD_GROUP": self.group,
            "LOCKSMITHD_MACHINE_ID_FILE": str(self.dir / "machine-id"),
            "LOCKSMITHD_REBOOT_COMMAND": f"sh -c 'echo {self.name} >> {self.reboots}'",
            "LOCKSMITHD_LOGIN_CHECK": "false",
            "LOCKSMITHD_COORDINATOR_FILE": str(self.dir / "coordinator.conf"),
            "LOCKSMITHD_LOG_FORMAT": "json",
            "LOCKSMITHD_LOG_LEVEL": "debug",
        }
        env.pop("NOTIFY_SOCKET", None)
        env.update(self.extra_env)
        return env

    def start_agent(self, *flags: str) -> None:
        self.boots += 1
        with self.log_path.open("wb") as log:
            self.agent = subprocess.Popen(
                [*AGENT, "--config", "/dev/null", "--retry-interval", "1s", "--clock-check", "100ms", *flags],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def events(self, boot: int | None = None) -> list[dict[str, Any]]:
        path = self.dir / f"agent-{boot or self.boots}.log"
        out = []
        for line in path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def states(self, boot: int | None = None) -> list[str]:
        return [e["state"] for e in self.events(boot) if e.get("event") == "state"]

    def wait_state(self, state: str, limit: float = 30.0) -> None:
        def reached() -> bool:
            if self.agent is not None and self.agent.poll() is not None:
                raise AssertionError(f"{self.name}: agent exited {self.agent.returncode}:\n{self.log_path.read_text()}")
            return state in self.states()

        wait_until(reached, limit, f"{self.name} to reach {state}")

    def stop_agent(self, sig: int = signal.SIGTERM) -> int:
        assert self.agent is not None
        self.agent.send_signal(sig)
        return self.agent.wait(15)

    def close(self) -> None:
        for proc in (self.agent, self.engine):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        self.bus.stop()


def reboot_lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def env_without_bus() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "DBUS_SYSTEM_BUS_ADDRESS"}
