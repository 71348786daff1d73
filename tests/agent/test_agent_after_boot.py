"""RELEASING_AFTER_BOOT: the lock held from before a reboot is given back — after the post-boot
hook and the health gate — also when an update is already pending again (Flatcar#408)."""

from __future__ import annotations

import asyncio
from datetime import time, timedelta
from pathlib import Path

import structlog

from agent.harness import IDLE, NEED_REBOOT, FakeClock, utc
from locksmith.agent.health import HealthGate
from locksmith.agent.ports import LockReleased
from locksmith.agent.settings import AgentSettings
from locksmith.agent.states import State
from locksmith.settings.windows import RebootWindow, WindowSchedule

ME, OTHER = "a" * 32, "b" * 32


async def test_holder_releases_after_boot(harness) -> None:  # type: ignore[no-untyped-def]
    h = harness()
    await h.locks.lock(ME)
    h.statuses.send(IDLE)
    h.start()
    await h.wait_state(State.IDLE)
    assert await h.holders() == ()
    assert [e.reason for e in h.events(LockReleased)] == ["after boot"]
    assert await h.finish() == 0
    assert h.reboot_count() == 0


async def test_releases_even_with_an_update_already_pending(harness) -> None:  # type: ignore[no-untyped-def]
    # A window that is closed "now" (injected clock at 12:00, window 03:00-04:00), so the agent
    # cannot immediately take the lock again: what we see is the release itself.
    window = WindowSchedule((RebootWindow(None, time(3, 0), timedelta(hours=1)),), tz=utc(2024, 1, 1).tzinfo)
    clock = FakeClock(utc(2024, 1, 10, 12, 0))
    h = harness(settings=AgentSettings(login_check=False, window=window), clock=clock)
    await h.locks.lock(ME)
    await h.locks.set_max(2)
    await h.locks.lock(OTHER)
    h.statuses.send(NEED_REBOOT)
    h.start()
    await h.wait_state(State.WAITING_FOR_WINDOW)
    assert await h.holders() == (OTHER,)  # ours given back, the other host's untouched
    assert h.reboot_count() == 0
    assert await h.finish() == 0


async def test_not_holding_touches_nothing(harness) -> None:  # type: ignore[no-untyped-def]
    h = harness()
    await h.locks.lock(OTHER)
    h.statuses.send(IDLE)
    h.start()
    await h.wait_state(State.IDLE)
    assert await h.holders() == (OTHER,)
    assert h.events(LockReleased) == []
    await h.finish()


async def test_health_gate_waits_until_healthy(harness, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ready = tmp_path / "healthy"
    gate = HealthGate(command=f"test -e {ready}", interval=0.05, timeout=30)
    h = harness(settings=AgentSettings(login_check=False, health=gate))
    await h.locks.lock(ME)
    h.statuses.send(IDLE)
    with structlog.testing.capture_logs() as logs:
        h.start()
        await h.wait_for(lambda: any(e["event"] == "health.failing" for e in logs))
        assert h.agent.state is State.RELEASING_AFTER_BOOT
        assert await h.holders() == (ME,)  # unhealthy: still held
        ready.touch()
        await h.wait_state(State.IDLE)
    assert await h.holders() == ()
    await h.finish()


async def test_health_gate_timeout_keeps_the_lock(harness) -> None:  # type: ignore[no-untyped-def]
    gate = HealthGate(command="exit 3", interval=0.05, timeout=0.3)
    h = harness(settings=AgentSettings(login_check=False, health=gate))
    await h.locks.lock(ME)
    h.statuses.send(IDLE)
    with structlog.testing.capture_logs() as logs:
        h.start()
        await h.wait_state(State.IDLE)
    assert await h.holders() == (ME,)
    kept = [e for e in logs if e["event"] == "after-boot.keeping-lock"]
    assert kept and "health gate" in kept[0]["reason"]
    assert any("exit 3" in p for e in logs if e["event"] == "health.failing" for p in e["problems"])
    await h.finish()


async def test_health_gate_url(harness, unused_http_server) -> None:  # type: ignore[no-untyped-def]
    url, set_code = unused_http_server
    set_code(503)
    gate = HealthGate(url=url, interval=0.05, timeout=30)
    h = harness(settings=AgentSettings(login_check=False, health=gate))
    await h.locks.lock(ME)
    h.statuses.send(IDLE)
    with structlog.testing.capture_logs() as logs:
        h.start()
        await h.wait_for(lambda: any("503" in str(e.get("problems")) for e in logs))
        assert await h.holders() == (ME,)
        set_code(204)
        await h.wait_state(State.IDLE)
    assert await h.holders() == ()
    await h.finish()


async def test_post_boot_hook_runs_before_release_and_failure_keeps_lock(harness, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    order = tmp_path / "order"
    ok = harness(settings=AgentSettings(login_check=False, post_boot_hook=f"echo hook-$LOCKSMITH_HOOK >> {order}"))
    await ok.locks.lock(ME)
    ok.statuses.send(IDLE)
    ok.start()
    await ok.wait_state(State.IDLE)
    assert order.read_text() == "hook-post-boot\n"
    assert await ok.holders() == ()
    await ok.finish()

    failing = harness(settings=AgentSettings(login_check=False, post_boot_hook="exit 1"), group=ok.group)
    await failing.locks.lock(ME)
    failing.statuses.send(IDLE)
    failing.start()
    await failing.wait_state(State.IDLE)
    assert await failing.holders() == (ME,)
    await failing.finish()


async def test_after_boot_does_not_wait_for_the_update_engine(harness) -> None:  # type: ignore[no-untyped-def]
    h = harness()
    await h.locks.lock(ME)
    h.start()  # no status at all: the engine is absent
    await h.wait_state(State.IDLE)
    assert await h.holders() == ()
    await asyncio.sleep(0)
    await h.finish()
