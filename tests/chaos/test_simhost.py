"""The simulated host the chaos harness (and the demo) runs agents in: its reboot command, the
refusal of a reboot asked for by an agent that was already replaced, and the agent's state."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from harness.devtools.simhost import NullEngine, SimHost

# An "agent" that publishes one state through the coordinator file as locksmithd does, then waits.
AGENT = (
    "import os, time\n"
    "from pathlib import Path\n"
    "from locksmith.agent.coordinator import CoordinatorFile\n"
    "file = CoordinatorFile(Path(os.environ['LOCKSMITHD_COORDINATOR_FILE']), 'etcd-lock')\n"
    "file.publish('reboot-planned', phase='acquiring', since=time.time())\n"
    "time.sleep(600)\n"
)


async def _until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _reboot_command(host: SimHost, generation: int) -> tuple[int, str]:
    """Run the host's reboot command as an agent of `generation` would (it inherits the variable)."""
    env = {**os.environ, "LOCKSMITH_SIMHOST_AGENT": str(generation)}
    proc = await asyncio.create_subprocess_shell(
        host.reboot_command(), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_a_reboot_asked_for_by_a_replaced_agent_is_refused(tmp_path: Path) -> None:
    """A killed agent's reboot command can outlive it (it runs in its own session); once the next
    agent started — and may have given the slot back — that command must not reboot the host."""
    events: list[tuple[str, int]] = []

    async def on_event(host: SimHost, what: str) -> None:
        events.append((what, host.boot))

    host = SimHost(
        "h", tmp_path / "h", NullEngine(), agent_argv=[sys.executable, "-c", AGENT], reboot_time=0.05, on_event=on_event
    )
    await host.start()
    try:
        await _until(lambda: host.agent_phase() == "acquiring")
        first = host.agent_generation
        assert host.signal_agent(signal.SIGKILL)
        await _until(lambda: host.agent_generation == first + 1 and host.agent_phase() == "acquiring")

        code, out = await _reboot_command(host, first)
        assert code != 0 and "stale" in out
        assert host.boot == 0 and host.reboots == 0 and not host.rebooting and events == []

        code, out = await _reboot_command(host, host.agent_generation)
        assert code == 0, out
        await _until(lambda: host.boot == 1 and not host.rebooting)
        assert host.reboots == 1 and events == [("rebooting", 0), ("booted", 1)]
        assert host.agent_generation == first + 2  # the next boot's agent
    finally:
        await host.stop()
    assert host.agent_phase() == "down" and host.errors == []


async def test_an_event_hook_failure_is_kept_and_the_reboot_goes_on(tmp_path: Path) -> None:
    async def on_event(host: SimHost, what: str) -> None:
        raise OSError("disk full")

    host = SimHost(
        "h", tmp_path / "h", NullEngine(), agent_argv=[sys.executable, "-c", AGENT], reboot_time=0.05, on_event=on_event
    )
    await host.start()
    try:
        code, out = await _reboot_command(host, host.agent_generation)
        assert code == 0, out
        await _until(lambda: host.boot == 1 and not host.rebooting)
    finally:
        await host.stop()
    assert len(host.errors) == 2 and all("disk full" in e for e in host.errors)


def test_agent_phase_reads_the_coordinator_file_and_ignores_the_previous_agents(tmp_path: Path) -> None:
    """What the demo's view and the chaos faults see: the agent's own state word, never the last
    word of the agent before it (the file outlives its writer across a restart or a reboot)."""
    import time
    from types import SimpleNamespace

    from locksmith.agent.coordinator import CoordinatorFile, write_coordinator

    host = SimHost("h", tmp_path, NullEngine())
    tmp_path.mkdir(exist_ok=True)
    assert host.agent_phase() == "down"  # no agent running
    host.agent = SimpleNamespace(pid=os.getpid(), returncode=None)  # type: ignore[assignment]
    assert host.agent_phase() == "starting"  # nothing published yet
    CoordinatorFile(host.coordinator_file, "etcd-lock").publish("reboot-planned", phase="pre-reboot", since=1.0)
    assert host.agent_phase() == "pre-reboot"
    host.agent = SimpleNamespace(pid=os.getpid() + 1, returncode=None)  # type: ignore[assignment]
    assert host.agent_phase() == "starting"  # the file is the previous process's
    # A writer without our lines (the stand-in, a Go agent): its STATE word, if written since it started.
    write_coordinator("etcd-lock", "rebooting", host.coordinator_file)
    host._agent_started_at = time.time() + 60
    assert host.agent_phase() == "starting"
    host._agent_started_at = 0.0
    assert host.agent_phase() == "rebooting"
    host.agent = SimpleNamespace(pid=os.getpid(), returncode=0)  # type: ignore[assignment]
    assert host.agent_phase() == "down"
