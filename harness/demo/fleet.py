"""The demo's fleet: the update server, the KV store, N simulated hosts (each its own bus, update
engine with a GPT disk image, and `locksmithd`), and the sampling that turns them into host states
and timeline spans. `main.py` drives it; this module owns starting and stopping every part.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from dbus_fast.aio import MessageBus

from harness.demo.engine import DiskEngine, EngineTiming
from harness.demo.hoststate import HostState
from harness.demo.release import Releases, prepare
from harness.demo.semwatch import SemaphoreWatch
from harness.demo.tracks import (
    HEALTHY_NEW,
    HEALTHY_OLD,
    LOCK,
    REBOOTING,
    TRIAL,
    UPDATING,
    WAITING,
    HostTrack,
)
from harness.devtools.omaha_server import DevServer
from harness.devtools.simhost import SimHost
from locksmith.agent.coordinator import read_agent_state
from locksmith.bus.system import BusUnavailableError, CallError, connect_system_bus, disconnect
from locksmith.bus.update_engine import UpdateEngineWatcher
from locksmith.disk.layout import make_coreos_disk
from locksmith.disk.slots import read_slots
from locksmith.kv import KVError, KVOptions, open_store, parse_endpoints
from locksmith.kv.base import KVStore
from locksmith.lockstore import LockStore
from locksmith.protocol.semaphore import NotHeld, SemaphoreError
from locksmith.protocol.update1 import Status

if TYPE_CHECKING:  # started only when asked for
    from harness.devtools.etcd import EtcdCluster
    from harness.devtools.fleetlock_server import FleetLockServer

# USR partitions of the demo's disks: the images are ~1-2 MiB; the files are sparse anyway.
USR_SIZE_MIB = 8
ENGINE_BUSY = ("update-available", "downloading", "verifying", "finalizing")
# The agent's LOCKSMITHD_LOCK_KEPT= causes, as the summary says them.
KEPT_BECAUSE = {
    "health-gate": "failed its health gate and kept its lock",
    "post-boot-hook": "failed its post-boot hook and kept its lock",
}
AGENT_WAITING = ("need-reboot", "waiting-for-window", "acquiring", "pre-reboot")


@dataclass(frozen=True)
class FleetOptions:
    hosts: int
    max: int
    strategy: str
    kv: str  # an endpoint URL; "" for the embedded store in the work dir, "etcd" for a private etcd
    group: str | None
    windows: str | None
    reboot_time: float
    health_timeout: str  # a Go duration, passed to the agents
    broken_version: bool  # the new release fails the health gate: shows the rollout stopping


class Fleet:
    def __init__(self, options: FleetOptions, workdir: Path) -> None:
        self.options = options
        self.workdir = workdir
        self.releases: Releases | None = None
        self.server: DevServer | None = None
        self._server_log: TextIO | None = None
        self.fleetlock: FleetLockServer | None = None  # when the strategy is fleetlock
        self.etcd: EtcdCluster | None = None  # when --kv etcd
        self.endpoint = ""
        self.kv: KVStore | None = None
        self.store: LockStore | None = None
        self.semwatch: SemaphoreWatch | None = None
        self.hosts: list[SimHost] = []
        self.engines: list[DiskEngine] = []
        self.states: list[HostState] = []
        self.tracks: list[HostTrack] = []
        # Per host: a bus connection and the watcher following its engine (the live view's source).
        self._watchers: dict[str, tuple[MessageBus, UpdateEngineWatcher]] = {}

    @property
    def new_version(self) -> str:
        assert self.releases is not None
        return self.releases.new_version

    @property
    def old_version(self) -> str:
        assert self.releases is not None
        return self.releases.old_version

    # --- start -----------------------------------------------------------------------------

    async def prepare(self, say: Callable[[str], None]) -> None:
        """Everything before the hosts boot: releases, update server, KV store and semaphore, disks."""
        o = self.options
        hosts_dir = self.workdir / "hosts"
        shutil.rmtree(hosts_dir, ignore_errors=True)
        shutil.rmtree(self.workdir / "release", ignore_errors=True)
        (self.workdir / "kv.db").unlink(missing_ok=True)
        self.workdir.mkdir(parents=True, exist_ok=True)

        self.releases = await asyncio.to_thread(prepare, self.workdir, "stable")
        say(f"releases packed and signed: v{self.old_version} (installed) and v{self.new_version} (staged)")
        self._server_log = (self.workdir / "update-server.log").open("a")
        self.server = DevServer(self.releases.root, log=self._server_log).start()
        say(f"update server on {self.server.update_url} (channel stable)")

        self.endpoint = await self._start_kv()
        self.kv = open_store(KVOptions(parse_endpoints([self.endpoint]), retry_budget=5.0))
        self.store = LockStore(self.kv, o.group)
        if o.strategy != "fleetlock":
            old, new = await self.store.set_max(o.max)
            say(f"KV store {self.endpoint}: semaphore {self.store.key} max {old} -> {new}")
        if o.strategy == "fleetlock":
            from harness.devtools.fleetlock_server import FleetLockServer

            self.fleetlock = server = FleetLockServer(max_slots=o.max).start()
            say(f"FleetLock server on {server.url} with {o.max} slot(s)")

        disks = [hosts_dir / f"host-{i + 1}" / "disk.img" for i in range(o.hosts)]
        for disk in disks:
            disk.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.gather(
            *(
                asyncio.to_thread(
                    make_coreos_disk, d, usr_size_mib=USR_SIZE_MIB, small=True, initial_image=self.releases.old_image
                )
                for d in disks
            )
        )
        say(f"{o.hosts} GPT disk images (CoreOS layout), v{self.old_version} in USR-A")
        for i, disk in enumerate(disks):
            self._add_host(f"host-{i + 1}", disk)

    async def _start_kv(self) -> str:
        if self.options.kv == "etcd":
            from harness.devtools.etcd import EtcdCluster

            cluster = EtcdCluster(self.workdir / "etcd", size=1)
            self.etcd = cluster
            await asyncio.to_thread(cluster.start)
            return cluster.endpoints[0]
        return self.options.kv or f"file://{(self.workdir / 'kv.db').resolve()}"

    def _add_host(self, name: str, disk: Path) -> None:
        assert self.releases is not None and self.server is not None
        o = self.options
        host_dir = disk.parent
        engine = DiskEngine(disk, self.server.update_url, "stable", self.releases.public_key, EngineTiming())
        health = f"{sys.executable} -m harness.demo.health --disk {disk}"
        if o.broken_version:
            health += f" --broken-version {self.new_version}"
        env = {
            "REBOOT_STRATEGY": o.strategy,
            "LOCKSMITHD_ENDPOINT": self.endpoint,
            "LOCKSMITHD_HEALTH_COMMAND": health,
            "LOCKSMITHD_HEALTH_INTERVAL": "500ms",
            "LOCKSMITHD_HEALTH_TIMEOUT": o.health_timeout,
        }
        if o.strategy == "reboot":
            # No lock, so no health gate before a release: commit the boot from the post-boot hook
            # instead (on CoreOS the update engine marks a good boot by itself).
            env["LOCKSMITHD_POST_BOOT_HOOK"] = health
        if o.group:
            env["LOCKSMITHD_GROUP"] = o.group
        if o.windows:
            env["LOCKSMITHD_REBOOT_WINDOWS"] = o.windows
        if self.fleetlock is not None:
            env["LOCKSMITHD_FLEETLOCK_URL"] = self.fleetlock.url
        root = host_dir / "root"
        # The host's own config files (written by its engine at boot), never the machine's /etc/coreos.
        argv = [
            sys.executable, "-m", "locksmith.agent.main",
            "--config", str(root / "usr/share/coreos/update.conf"), "--config", str(root / "etc/coreos/update.conf"),
        ]  # fmt: skip
        host = SimHost(name, host_dir, engine, env, argv, reboot_time=self.options.reboot_time)
        self.hosts.append(host)
        self.engines.append(engine)
        self.states.append(HostState(name, host.machine_id))
        self.tracks.append(HostTrack(name))

    async def boot(self) -> None:
        assert self.store is not None
        self.semwatch = SemaphoreWatch(self.store)
        await self.semwatch.start()
        # Booted one after another: each start runs the bootloader and waits for two services, and
        # five at once on two cores only makes every one of them slow.
        for host in self.hosts:
            await host.start()

    def publish(self) -> Path:
        assert self.releases is not None
        return self.releases.publish()

    # --- sampling --------------------------------------------------------------------------

    async def sample(self, now: float) -> None:
        """Refresh every host's state and extend the timeline at `now`."""
        holders = set(self.semwatch.holders if self.semwatch else ())
        if self.fleetlock is not None:
            holders = set(self.fleetlock.holders(self.options.group or "default"))
        await asyncio.gather(*(self._sample_host(i, holders) for i in range(len(self.hosts))))
        for state, track in zip(self.states, self.tracks, strict=True):
            self._extend(state, track, now)

    async def _sample_host(self, i: int, holders: set[str]) -> None:
        host, engine, state = self.hosts[i], self.engines[i], self.states[i]
        state.boot = host.boot
        state.lock = state.machine_id in holders
        if host.rebooting or host.agent is None:
            state.state, state.engine = "rebooting", "-"
            return
        state.state = host.agent_phase()
        if engine.slot is not None:
            state.version = engine.version or "?"
            state.slot = engine.slot.name
            with contextlib.suppress(Exception):  # a disk being rewritten right now: keep the last reading
                slots = await asyncio.to_thread(read_slots, engine.disk)
                state.committed = next(s for s in slots if s.number == engine.slot.number).successful
        status = await self._engine_status(host)
        if status is None:
            state.engine = "down"
        else:
            state.engine, state.progress = status.current_operation.short, status.progress

    async def _engine_status(self, host: SimHost) -> Status | None:
        """The host engine's latest status as the watcher saw it; None while no engine owns the name."""
        entry = self._watchers.get(host.name)
        if entry is None or not entry[0].connected:
            try:
                bus = await connect_system_bus(host.bus_address)
            except BusUnavailableError:
                return None
            watcher = UpdateEngineWatcher(bus)
            try:
                await watcher.start()
            except (CallError, TimeoutError):
                await disconnect(bus)
                return None
            entry = self._watchers[host.name] = (bus, watcher)
        _bus, watcher = entry
        return watcher.latest if watcher.owner is not None else None

    def _extend(self, s: HostState, t: HostTrack, now: float) -> None:
        rebooting = s.state in ("rebooting", "down")
        t.set(REBOOTING, rebooting, now)
        t.set(LOCK, s.lock, now)
        t.set(UPDATING, not rebooting and s.engine in ENGINE_BUSY, now)
        t.set(WAITING, not rebooting and s.state in AGENT_WAITING, now)
        on_new = not rebooting and s.version == self.new_version
        t.set(TRIAL, on_new and not s.committed, now)
        t.set(HEALTHY_NEW, on_new and s.committed, now)
        t.set(HEALTHY_OLD, not rebooting and s.version == self.old_version, now)

    def done(self) -> bool:
        """Every host runs the new release, committed, idle, and holds no lock."""
        return all(s.steps(self.new_version) == 3 and s.state == "idle" for s in self.states)

    def halted(self) -> str | None:
        """Why the rollout can go no further, if it cannot: a host that booted the new release but
        whose health gate gave up keeps its lock (by design), so nobody else may reboot."""
        for h in self.hosts:
            published = read_agent_state(h.coordinator_file)
            if published is not None and published.lock_kept is not None:
                why = KEPT_BECAUSE.get(published.lock_kept, f"kept its lock ({published.lock_kept})")
                return f"{h.name} {why}: the rollout stops there (by design)"
        return None

    # --- stop ------------------------------------------------------------------------------

    async def stop(self) -> list[str]:
        """Stop everything started; give back any lock a demo host still holds. Returns what it freed."""
        for bus, watcher in self._watchers.values():
            with contextlib.suppress(Exception):
                await watcher.stop()
            await disconnect(bus)
        self._watchers.clear()
        await asyncio.gather(*(h.stop() for h in self.hosts), return_exceptions=True)
        freed = await self._free_locks()
        if self.semwatch is not None:
            await self.semwatch.stop()
        if self.kv is not None:
            with contextlib.suppress(Exception):
                await self.kv.aclose()
        if self.server is not None:
            self.server.stop()
        if self._server_log is not None:
            self._server_log.close()
        if self.fleetlock is not None:
            self.fleetlock.stop()
        if self.etcd is not None:
            await asyncio.to_thread(self.etcd.stop)
        return freed

    async def _free_locks(self) -> list[str]:
        # Stopped mid-rollout, a host may hold a slot it would have released after its next boot —
        # which will never come. The demo owns these hosts, so it gives their slots back.
        if self.store is None:
            return []
        freed = []
        for host in self.hosts:
            with contextlib.suppress(NotHeld, KVError, SemaphoreError):
                await self.store.unlock(host.machine_id)
                freed.append(host.name)
        return freed
