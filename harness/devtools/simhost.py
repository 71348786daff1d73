"""A simulated host: its own private system bus, an update engine, and a `locksmithd` subprocess.

The host cannot really reboot, so its reboot command (``python -S -I simhost_reboot.py SOCKET``,
also ``python -m harness.devtools.simhost reboot SOCKET``) asks the supervisor — this object, in the
harness's event loop — to "reboot" it: stop the agent and the engine (SIGTERM, then SIGKILL: as a
shutdown would), wait the simulated reboot time, and start both again as the next boot. An agent
that dies on its own is restarted after a short pause, as systemd's Restart=on-failure would.

As systemd kills what is left of a service's cgroup before restarting it, a reboot command left
over from an agent that died (it runs in its own session, so a signal to the agent's process group
misses it) is refused once the next agent was started: each agent start is a new generation, and
the command says which generation ran it.

The update engine is a part (`Engine`): the chaos harness uses the fake one that reports a
pending update on the first boot and IDLE after; the demo plugs in the real engine with its disk
image, whose next boot comes from the bootloader.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

# This module is also the reboot command's entry point: keep its imports light so a "reboot"
# costs one small interpreter start (the coordinator module needs only the standard library).
from locksmith.agent.coordinator import read_agent_state

REBOOT_SCRIPT = Path(__file__).with_name("simhost_reboot.py")


class Engine(Protocol):
    """The update engine of a simulated host. `start` runs it for boot number `boot` (0 = the
    first boot) on the bus at `bus_address`; `stop` ends it as a shutdown would."""

    async def start(self, host: SimHost, boot: int) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class ProcessSpec:
    argv: list[str]
    env: dict[str, str]
    log: Path


async def start_process(spec: ProcessSpec) -> asyncio.subprocess.Process:
    with spec.log.open("ab") as log:
        return await asyncio.create_subprocess_exec(
            *spec.argv,
            env=spec.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C to the harness must not reach it behind our back
        )


async def stop_process(proc: asyncio.subprocess.Process | None, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `grace` (a stopped process gets SIGCONT so it can die)."""
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGCONT)
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


class FakeEngine:
    """The test update engine (harness.devtools.fake_update_engine) in its own process: an
    installed update (need reboot) on boot 0, IDLE afterwards. The status is set before the engine takes its
    bus name, so the agent's first GetStatus already sees it (no signal to race with)."""

    def __init__(self, new_version: str = "2.0.0") -> None:
        self.new_version = new_version
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, host: SimHost, boot: int) -> None:
        from locksmith.protocol.update1 import NEED_REBOOT, NO_VERSION, Operation

        status = NEED_REBOOT.current_operation if boot == 0 else Operation.IDLE
        version = self.new_version if boot == 0 else NO_VERSION
        argv = [sys.executable, "-m", "harness.devtools.fake_update_engine", "--status", status.value]
        env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": host.bus_address}
        self.proc = await start_process(ProcessSpec([*argv, "--new-version", version], env, host.dir / "engine.log"))
        await host.wait_for_engine(self.proc)

    async def stop(self) -> None:
        await stop_process(self.proc)
        self.proc = None


class NullEngine:
    """No update engine at all, for agents that do not use D-Bus (the chaos stand-in agent)."""

    async def start(self, host: SimHost, boot: int) -> None:
        return None

    async def stop(self) -> None:
        return None


EventHook = Callable[["SimHost", str], Awaitable[None]]


@dataclass
class SimHost:
    """One simulated host. `agent_env` adds LOCKSMITHD_* settings (endpoint, group, strategy)."""

    name: str
    dir: Path
    engine: Engine
    agent_env: Mapping[str, str] = field(default_factory=dict)
    agent_argv: Sequence[str] = ("locksmithd",)
    reboot_time: float = 0.2
    restart_delay: float = 0.2
    #: Called with "rebooting" when the reboot command ran and "booted" before the next boot's
    #: agent starts (the chaos harness stamps these with an etcd revision).
    on_event: EventHook | None = None

    boot: int = 0
    agent: asyncio.subprocess.Process | None = None
    agent_restarts: int = 0
    rebooting: bool = False
    #: Reboot requests accepted (each is followed by a "rebooting" event, then a boot).
    reboots: int = 0
    #: Failures of `on_event` (a reboot goes on regardless; whoever records events must look here).
    errors: list[str] = field(default_factory=list)
    #: Bumped at every agent start: a reboot command of an earlier agent is refused.
    agent_generation: int = 0
    #: Gone for good (the chaos fault "holder-dies-for-good"): no agent restart, no next boot.
    dead: bool = False
    _bus: object | None = None
    _server: asyncio.AbstractServer | None = None
    _supervisor: asyncio.Task[None] | None = None
    _reboot_task: asyncio.Task[None] | None = None
    _stopping: bool = False
    _agent_started_at: float = 0.0

    @property
    def socket_path(self) -> Path:
        return self.dir / "reboot.sock"

    @property
    def bus_address(self) -> str:
        assert self._bus is not None, "host not started"
        return self._bus.address  # type: ignore[attr-defined,no-any-return]

    @property
    def machine_id(self) -> str:
        """A stable machine id (32 lowercase hex, like /etc/machine-id) derived from the name."""
        import hashlib

        return hashlib.md5(self.name.encode()).hexdigest()

    @property
    def coordinator_file(self) -> Path:
        return self.dir / "coordinator.conf"

    def agent_phase(self) -> str:
        """The agent's own state (idle, acquiring, …) from its coordinator file, by the agent's one reader;
        "starting" while the file is still the previous agent's, "down" when none runs."""
        if self.agent is None or self.agent.returncode is not None:
            return "down"
        if (published := read_agent_state(self.coordinator_file)) is None:
            return "starting"
        if published.pid is not None:
            return published.phase if published.pid == self.agent.pid else "starting"
        # No pid (the stand-in writes STATE= only): when the file was written tells whose it is.
        fresh = self.coordinator_file.stat().st_mtime >= self._agent_started_at
        return published.phase if fresh else "starting"

    def reboot_command(self) -> str:
        # A bare interpreter on a stdlib-only script: the simulated reboot should cost what logind's
        # Reboot call does (next to nothing), not a harness import.
        return f"{sys.executable} -S -I {REBOOT_SCRIPT} {self.socket_path}"

    async def start(self) -> None:
        from harness.devtools.dbus import PrivateBus

        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "machine-id").write_text(self.machine_id + "\n")
        bus = PrivateBus(self.dir / "dbus")
        await asyncio.to_thread(bus.start)
        self._bus = bus
        self._server = await asyncio.start_unix_server(self._on_reboot_request, path=str(self.socket_path))
        await self._start_agent()
        await self.engine.start(self, self.boot)
        self._supervisor = asyncio.create_task(self._supervise())

    async def stop(self) -> None:
        self._stopping = True
        for task in (self._supervisor, self._reboot_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await stop_process(self.agent, grace=3.0)
        await self.engine.stop()
        if self._server:
            self._server.close()
        if self._bus is not None:
            await asyncio.to_thread(self._bus.stop)  # type: ignore[attr-defined]

    # --- fault hooks (the chaos injector's handles) ----------------------------------------

    def die_for_good(self) -> bool:
        """The host is gone (powered off, deleted): its agent is killed and nothing starts again, not even
        after a reboot in progress. False if it was dead already."""
        if self.dead:
            return False
        self.dead = True  # before the kill: the supervisor must not restart what it sees die
        self.signal_agent(signal.SIGKILL)
        return True

    def signal_agent(self, sig: int) -> bool:
        if self.agent is None or self.agent.returncode is not None:
            return False
        try:
            os.killpg(self.agent.pid, sig)  # the agent and whatever command it is running
        except ProcessLookupError:
            return False
        return True

    # --- internals -------------------------------------------------------------------------

    def _agent_spec(self) -> ProcessSpec:
        env = {
            **os.environ,
            "DBUS_SYSTEM_BUS_ADDRESS": self.bus_address,
            "LOCKSMITHD_MACHINE_ID_FILE": str(self.dir / "machine-id"),
            "LOCKSMITHD_REBOOT_COMMAND": self.reboot_command(),
            "LOCKSMITHD_LOGIN_CHECK": "false",
            "LOCKSMITHD_COORDINATOR_FILE": str(self.coordinator_file),
            "LOCKSMITHD_LOG_FORMAT": "json",
            # Only the stand-in agent reads it; a real agent learns the boot from its engine.
            "LOCKSMITH_SIMHOST_BOOT": str(self.boot),
            # Inherited by the reboot command, which hands it to the supervisor.
            "LOCKSMITH_SIMHOST_AGENT": str(self.agent_generation),
            **self.agent_env,
        }
        env.pop("NOTIFY_SOCKET", None)
        return ProcessSpec(list(self.agent_argv), env, self.dir / "agent.log")

    async def _start_agent(self) -> None:
        self.agent_generation += 1  # before any await: from now on the old agent's reboot is refused
        self._agent_started_at = time.time()
        with (self.dir / "agent.log").open("a") as log:
            log.write(f"--- {self.name} boot {self.boot} agent start ---\n")
        self.agent = await start_process(self._agent_spec())

    async def _supervise(self) -> None:
        """Restart an agent that died while the host was up (not one stopped by a reboot)."""
        while not self._stopping:
            agent = self.agent
            if agent is None:
                await asyncio.sleep(0.05)
                continue
            await agent.wait()
            if self._stopping or self.dead or self.rebooting or agent is not self.agent:
                await asyncio.sleep(0.05)
                continue
            await asyncio.sleep(self.restart_delay)
            if not self.rebooting and agent is self.agent and not self._stopping and not self.dead:
                self.agent_restarts += 1
                await self._start_agent()

    async def _on_reboot_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            words = (await reader.readline()).decode("ascii", "replace").split()
            generation = words[1] if len(words) > 1 else None
            if self.rebooting or self._stopping or self.dead:
                answer = "busy"
            elif generation is not None and generation != str(self.agent_generation):
                answer = "stale"  # its agent died and was replaced: systemd would have killed it
            else:
                answer = "ok"
                # Decided here, before any await: from now on the supervisor restarts no agent.
                self.rebooting = True
                self.reboots += 1
                self._reboot_task = asyncio.create_task(self._reboot())
            writer.write(f"{answer}\n".encode())
            with contextlib.suppress(OSError):  # the asker may be gone; an accepted reboot goes on
                await writer.drain()
        finally:
            writer.close()

    async def _event(self, what: str) -> None:
        if self.on_event is None:
            return
        try:
            await self.on_event(self, what)
        except Exception as exc:
            self.errors.append(f"{self.name}: on_event({what!r}) failed: {type(exc).__name__}: {exc}")

    async def _reboot(self) -> None:
        try:
            await self._event("rebooting")
            await stop_process(self.agent)
            await self.engine.stop()
            await asyncio.sleep(self.reboot_time)
            if self.dead:
                return  # it never comes back: no boot, no agent
            self.boot += 1
            await self._event("booted")
            if self._stopping or self.dead:
                return
            # As systemd starts them (locksmithd.service is not ordered after the engine): side by side.
            await self._start_agent()
            await self.engine.start(self, self.boot)
        finally:
            self.rebooting = False

    async def wait_for_engine(self, proc: asyncio.subprocess.Process | None) -> None:
        """Wait until the update engine owns its name on this host's bus."""
        from locksmith.protocol import update1

        await self.wait_for_name(update1.SERVICE, proc)

    async def wait_for_name(self, name: str, proc: asyncio.subprocess.Process | None, within: float = 15.0) -> None:
        """Wait until `name` has an owner on this host's bus (a service finished starting)."""
        from locksmith.bus.system import connect_system_bus, disconnect, name_has_owner

        bus = await connect_system_bus(self.bus_address)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + within
            while not await name_has_owner(bus, name):
                if proc is not None and proc.returncode is not None:
                    raise RuntimeError(f"{self.name}: the service for {name} exited; see its log in {self.dir}")
                if loop.time() > deadline:
                    raise RuntimeError(f"{self.name}: {name} did not appear on the bus within {within}s")
                await asyncio.sleep(0.05)
        finally:
            await disconnect(bus)


def _reboot_main(socket_path: str) -> int:
    """The host's reboot command: ask the supervisor to reboot; exit 0 once it accepted."""
    from harness.devtools import simhost_reboot

    return simhost_reboot.main([socket_path])


USAGE = "usage: python -m harness.devtools.simhost reboot SOCKET"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "reboot":
        return _reboot_main(args[1])
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
