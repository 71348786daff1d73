"""One host as the live view shows it, sampled by the supervisor: the agent's state (from its JSON
log), the engine's operation (GetStatus on the host's bus), the booted slot and its version (from
the disk image), and whether the KV store lists it as a lock holder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass
class HostState:
    name: str
    machine_id: str
    state: str = "starting"  # the agent's state, "rebooting" or "down"
    engine: str = "-"  # the engine's operation, e.g. "idle", "downloading"
    progress: float = 0.0
    version: str = "?"  # of the booted slot
    slot: str = "?"
    committed: bool = False  # booted slot marked successful
    lock: bool = False  # a holder in the KV store's semaphore
    boot: int = 0

    def line(self, new_version: str) -> str:
        engine = self.engine
        if engine == "downloading":
            engine = f"downloading {self.progress:4.0%}"
        slot = f"{self.slot}{'' if self.committed else '*'}"
        lock = "HELD" if self.lock else "-"
        return f"{self.name:<8} {self.state:<20} v{self.version:<8} {slot:<7} {engine:<18} lock {lock}"

    def steps(self, new_version: str) -> int:
        """Progress of this host's update: 1 downloaded, 2 booted the new version, 3 committed."""
        if self.version == new_version:
            return 3 if self.committed and not self.lock and self.state not in ("rebooting", "down") else 2
        # Rebooting into it, the engine is down but the update is as downloaded as it was a moment ago.
        return 1 if self.engine == "updated-need-reboot" or self.state == "rebooting" else 0


class AgentLogTail:
    """The agent's latest state from its JSON log lines (`"event": "state"`), read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""
        self.state: str | None = None

    def poll(self) -> str | None:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return self.state
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for raw in lines:
            if raw.startswith(b"---"):
                self.state = None  # the supervisor's "--- boot N agent start ---": a new agent, no state yet
                continue
            if not raw.startswith(b"{"):
                continue  # stray output
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("event") == "state" and isinstance(record.get("state"), str):
                self.state = record["state"]
        return self.state
