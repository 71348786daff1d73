"""One host as the live view shows it, sampled by the supervisor: the agent's state (from the
coordinator file it publishes, through locksmith.agent.coordinator.read_agent_state — see
SimHost.agent_phase), the engine's operation (GetStatus on the host's bus), the booted slot and its
version (from the disk image), and whether the KV store lists it as a lock holder."""

from __future__ import annotations

from dataclasses import dataclass


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
