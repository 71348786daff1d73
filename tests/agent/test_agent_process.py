"""Real `locksmithd` processes: spoofed signals, crash-restart at each state, CLI behaviour."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.procs import AGENT, Host, reboot_lines, wait_until
from harness.devtools.etcd import EtcdCluster
from harness.devtools.unprivileged import status_update_as_nobody
from locksmith.kv import KVOptions, open_store, parse_endpoints
from locksmith.lockstore import LockStore
from locksmith.protocol.update1 import Operation, Status

OTHER = "f" * 32


@pytest.fixture
def host(etcd: EtcdCluster, tmp_path: Path) -> Iterator[Host]:
    h = Host("solo", tmp_path, etcd.endpoints, f"proc-{uuid.uuid4().hex[:8]}", tmp_path / "reboots")
    yield h
    h.close()


def locks(h: Host, op: str, holder: str | None = None) -> tuple[str, ...]:
    async def run() -> tuple[str, ...]:
        kv = open_store(KVOptions(endpoints=parse_endpoints(h.endpoints)))
        try:
            store = LockStore(kv, h.group)
            if op == "lock":
                await store.lock(holder)  # type: ignore[arg-type]
            elif op == "unlock":
                await store.unlock(holder)  # type: ignore[arg-type]
            return (await store.get()).semaphore.holders
        finally:
            await kv.aclose()

    return asyncio.run(run())


def test_spoofed_status_update_triggers_nothing(host: Host) -> None:
    host.start_engine()
    host.start_agent()
    host.wait_state("idle")

    spoof = Status(0, 1.0, Operation.UPDATED_NEED_REBOOT, "6.6.6", 1)
    asyncio.run(status_update_as_nobody(host.bus.address, spoof))  # neither the engine nor root
    wait_until(
        lambda: any(e.get("event") == "ignored-status-update-from-non-owner" for e in host.events()),
        what="the agent to log the spoofed signal",
    )
    assert "need-reboot" not in host.states()
    assert reboot_lines(host.reboots) == []
    host.need_reboot()  # the same signal from the real owner does lead to a reboot
    wait_until(lambda: reboot_lines(host.reboots) == ["solo"], what="the real reboot")
    assert host.stop_agent() == 0


@pytest.mark.parametrize("state", ["idle", "acquiring", "pre-reboot", "rebooting"])
def test_crash_restart_converges(host: Host, state: str) -> None:
    """SIGKILL the agent in `state`, start it again (same boot, update still pending) and check it
    ends with exactly one reboot and our single slot; then "boot" and check the lock is released."""
    once = host.dir / "hook-ran"
    host.extra_env["LOCKSMITHD_PRE_REBOOT_HOOK"] = (
        f"sh -c 'test -e {once} && exit 0; touch {once}; sleep 60'" if state == "pre-reboot" else ""
    )
    host.start_engine()
    if state == "acquiring":
        locks(host, "lock", OTHER)
    host.start_agent()
    host.wait_state("idle")
    if state != "idle":
        host.need_reboot()
        host.wait_state(state)
    if state == "pre-reboot":
        wait_until(once.exists, what="the pre-reboot hook to start")
    if state == "rebooting":
        wait_until(lambda: reboot_lines(host.reboots) == ["solo"], what="the reboot command")
    assert host.stop_agent(signal.SIGKILL) == -signal.SIGKILL

    if state == "idle":
        host.need_reboot()
    if state == "rebooting":
        host.idle()  # the reboot happened: the new boot has no pending update
    host.start_agent()
    if state == "acquiring":
        host.wait_state("acquiring")
        assert OTHER not in locks(host, "unlock", OTHER)  # (we may already hold it: the watch is fast)
    if state == "rebooting":
        host.wait_state("idle")
        assert locks(host, "get") == ()  # released after boot
        assert reboot_lines(host.reboots) == ["solo"]
        assert host.stop_agent() == 0
        return
    wait_until(lambda: len(reboot_lines(host.reboots)) >= 1, what="the reboot")
    host.wait_state("rebooting")
    assert reboot_lines(host.reboots) == ["solo"]
    assert locks(host, "get") == (host.machine_id,)
    assert host.stop_agent() == 0
    host.idle()
    host.start_agent()
    host.wait_state("idle")
    assert locks(host, "get") == ()


def test_off_strategy_exits_zero(host: Host) -> None:
    host.strategy = "off"
    host.start_engine()
    host.start_agent()
    assert host.agent is not None and host.agent.wait(20) == 0
    assert any(e.get("event") == "strategy.off" for e in host.events())


def test_help_documents_every_option() -> None:
    out = subprocess.run([*AGENT, "--help"], capture_output=True, text=True, check=True).stdout
    for flag in (
        "--reboot-strategy",
        "--endpoint",
        "--reboot-window-start",
        "--health-command",
        "--health-unit",
        "--health-url",
        "--pre-reboot-hook",
        "--post-boot-hook",
        "--login-check",
        "--reboot-command",
        "--fleetlock-url",
        "--metrics",
        "--retry-interval",
        "--reboot-grace",
        "--clock-check",
        "--config",
    ):
        assert flag in out, flag


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"REBOOT_STRATEGY": "etcdlock"}, "unknown reboot strategy 'etcdlock'"),
        ({"LOCKSMITHD_REBOOT_WINDOW_START": "25:00", "LOCKSMITHD_REBOOT_WINDOW_LENGTH": "1h"}, "WINDOW_START"),
        ({"LOCKSMITHD_MACHINE_ID_FILE": "/nonexistent/machine-id"}, "/nonexistent/machine-id"),
    ],
)
def test_bad_config_is_one_line_and_exit_1(env: dict[str, str], needle: str, tmp_path: Path) -> None:
    mid = tmp_path / "machine-id"
    mid.write_text("0123456789abcdef0123456789abcdef\n")
    full = {"PATH": "/usr/bin:/bin", "LOCKSMITHD_MACHINE_ID_FILE": str(mid), **env}
    result = subprocess.run([*AGENT, "--config", "/dev/null"], capture_output=True, text=True, env=full)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("locksmithd: ") and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_module_runs_as_console_script() -> None:
    assert Path(sys.executable).with_name("locksmithd").exists()


def test_the_agent_publishes_its_state_in_the_coordinator_file(host: Host) -> None:
    from locksmith.agent.coordinator import read_agent_state

    path = host.dir / "coordinator.conf"
    host.start_engine()
    host.start_agent()
    assert host.agent is not None
    wait_until(lambda: (s := read_agent_state(path)) is not None and s.phase == "idle", what="idle in the file")
    state = read_agent_state(path)
    assert state is not None and state.pid == host.agent.pid
    assert (state.name, state.strategy, state.state) == ("locksmithd", "etcd-lock", "running")
    assert state.since is not None and abs(state.since - time.time()) < 60
    host.need_reboot()
    wait_until(lambda: reboot_lines(host.reboots) == ["solo"], what="the reboot")
    wait_until(lambda: read_agent_state(path).phase == "rebooting", what="rebooting in the file")  # type: ignore[union-attr]
    assert read_agent_state(path).state == "rebooting"  # type: ignore[union-attr]
    assert host.stop_agent() == 0
    final = read_agent_state(path)
    assert final is not None and (final.phase, final.state) == ("stopping", "running")
