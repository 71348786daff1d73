"""The VM fleet seen from outside: the serial consoles (boots, slots, versions), the semaphore in the
fleet's etcd (an independent watch: who holds a slot, the most holders at once) and the update server's
event log (downloads, installs, completed updates). Nothing here takes an agent's word for anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from harness.demo.semwatch import SemaphoreWatch
from harness.devtools.omaha_server import DevServer
from harness.vmfleet.console import ConsoleWatch
from harness.vmfleet.machines import Machine
from locksmith.protocol.omaha import EventResult, EventType


@dataclass
class LockSpan:
    start: float
    end: float | None = None


@dataclass
class HostView:
    machine: Machine
    console: ConsoleWatch
    machine_id: str | None = None
    locks: list[LockSpan] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.machine.name

    def holding(self) -> bool:
        return bool(self.locks) and self.locks[-1].end is None


class Observer:
    def __init__(self, machines: list[Machine], server: DevServer) -> None:
        self.hosts = [HostView(m, ConsoleWatch(m.serial_log)) for m in machines]
        self.events = server.events  # the update server's lists, appended to by its threads
        self.downloads = server.downloads
        self.watch: SemaphoreWatch | None = None
        self.holder_changes: list[tuple[float, tuple[str, ...]]] = []

    def poll(self) -> None:
        for host in self.hosts:
            host.console.poll()

    def on_holders(self, holders: tuple[str, ...]) -> None:
        """SemaphoreWatch's callback: open and close each host's lock spans."""
        now = time.time()
        self.holder_changes.append((now, holders))
        for host in self.hosts:
            held = host.machine_id is not None and host.machine_id in holders
            if held and not host.holding():
                host.locks.append(LockSpan(now))
            elif not held and host.holding():
                host.locks[-1].end = now

    def host_events(self, host: HostView, kind: int | None = None) -> list[dict[str, object]]:
        if host.machine_id is None:
            return []
        mine = [e for e in list(self.events) if e["machineid"] == host.machine_id]
        return [e for e in mine if kind is None or e["eventtype"] == kind]

    def download_started(self, host: HostView) -> float | None:
        """When the host first fetched the payload (the server saw its address ask for it)."""
        address = str(host.machine.host.address.ip)
        times = [float(d["time"]) for d in list(self.downloads) if d["client"] == address]
        return min(times) if times else None

    def installed(self, host: HostView) -> float | None:
        """When the host reported the update written and waiting for a reboot (event 3, result 1, after
        its download; the same event before it is the engine's report of its first boot)."""
        started = self.download_started(host)
        if started is None:
            return None
        reports = self.host_events(host, EventType.UPDATE_COMPLETE)
        reports = [e for e in reports if e["eventresult"] == EventResult.SUCCESS]
        done = [t for e in reports if (t := float(str(e["time"]))) >= started]
        return min(done) if done else None

    def update_phase(self, host: HostView) -> str:
        """The latest thing the update server saw of the host: its download, its events."""
        seen = self.host_events(host)
        if seen and seen[-1]["eventresult"] == EventResult.ERROR:
            return f"failed ({seen[-1]['errorcode']})"
        if seen and seen[-1]["eventresult"] == EventResult.SUCCESS_REBOOT:
            return "updated"
        if self.installed(host) is not None:
            return "installed"
        return "downloading" if self.download_started(host) is not None else "-"

    def line(self, host: HostView) -> str:
        boot = host.console.current
        slot = boot.slot if boot else "-"
        version = (boot.version if boot else None) or "?"
        lock = "LOCK" if host.holding() else "    "
        state = host.console.state
        return (
            f"{host.name:<5} {state:<9} {version:<8} {slot:<5} {lock} update: {self.update_phase(host):<12}"
            f" reboots {host.console.reboots}"
        )

    @property
    def max_holders(self) -> int:
        return self.watch.max_holders if self.watch else 0
