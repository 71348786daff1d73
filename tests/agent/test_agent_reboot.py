"""NEED_REBOOT → … → REBOOTING, and every way a reboot is abandoned giving the lock back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog

from agent.harness import IDLE, NEED_REBOOT
from locksmith.agent.ports import LockReleased
from locksmith.agent.settings import AgentSettings
from locksmith.agent.states import State
from locksmith.protocol.update1 import Operation, Status

ME, OTHER = "a" * 32, "b" * 32


async def test_need_reboot_takes_the_lock_and_reboots_then_keeps_it_on_stop(harness) -> None:  # type: ignore[no-untyped-def]
    h = harness()
    h.start()
    await h.wait_state(State.IDLE)
    h.statuses.send(NEED_REBOOT)
    await h.wait_state(State.REBOOTING)
    await h.wait_for(lambda: h.reboot_count() == 1)
    assert await h.holders() == (ME,)
    assert await h.finish() == 0
    assert await h.holders() == (ME,)  # the reboot is under way: the next boot releases it
    assert h.states()[:6] == [
        State.STARTING,
        State.RELEASING_AFTER_BOOT,
        State.IDLE,
        State.NEED_REBOOT,
        State.ACQUIRING,
        State.PRE_REBOOT,
    ]


async def test_only_need_reboot_leads_to_a_reboot(harness) -> None:  # type: ignore[no-untyped-def]
    h = harness()
    h.start()
    await h.wait_state(State.IDLE)
    others = [op for op in Operation if op is not Operation.UPDATED_NEED_REBOOT]
    for op in others:
        h.statuses.send(Status(0, 0.5, op, "2.0.0", 10))
    await h.wait_for(lambda: h.agent.status is not None and h.agent.status.current_operation == others[-1])
    assert h.agent.state is State.IDLE
    assert State.NEED_REBOOT not in h.states()
    assert h.reboot_count() == 0 and await h.holders() == ()
    h.statuses.send(NEED_REBOOT)  # and the one that does, through the same path
    await h.wait_for(lambda: h.reboot_count() == 1)
    await h.finish()


async def test_pre_reboot_hook_runs_before_the_reboot(harness, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    order = tmp_path / "order"
    h = harness(
        settings=AgentSettings(login_check=False, pre_reboot_hook=f"echo $LOCKSMITH_HOOK >> {order}"),
        reboot_command=f"echo reboot >> {order}",
    )
    h.statuses.send(NEED_REBOOT)
    h.start()
    await h.wait_for(lambda: order.exists() and len(order.read_text().split()) == 2)
    assert order.read_text() == "pre-reboot\nreboot\n"
    await h.finish()


async def test_failing_pre_reboot_hook_gives_the_lock_back_and_undoes(harness, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    undo = tmp_path / "undo"
    settings = AgentSettings(
        login_check=False, pre_reboot_hook="exit 4", post_boot_hook=f"echo x >> {undo}", retry_interval=30
    )
    h = harness(settings=settings)
    h.statuses.send(NEED_REBOOT)
    h.start()
    await h.wait_for(lambda: h.events(LockReleased))
    assert h.events(LockReleased)[-1].reason == "pre-reboot hook failed"
    assert await h.holders() == ()
    assert h.reboot_count() == 0
    assert undo.read_text() == "x\nx\n"  # once at start, once to undo the failed pre-reboot hook
    await h.finish()


async def test_pre_reboot_hook_timeout_counts_as_failure(harness) -> None:  # type: ignore[no-untyped-def]
    settings = AgentSettings(login_check=False, pre_reboot_hook="sleep 30", pre_reboot_timeout=0.2)
    h = harness(settings=settings)
    h.statuses.send(NEED_REBOOT)
    with structlog.testing.capture_logs() as logs:
        h.start()
        await h.wait_for(lambda: h.events(LockReleased))
    assert any(e["event"] == "hook.pre-reboot" and "timed out" in e["result"] for e in logs)
    assert h.reboot_count() == 0 and await h.holders() == ()
    await h.finish()


async def test_failed_reboot_call_gives_the_lock_back_and_retries(harness, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    attempts = tmp_path / "attempts"
    h = harness(
        settings=AgentSettings(login_check=False, retry_interval=0.05),
        reboot_command=f"echo try >> {attempts}; exit 1",
    )
    h.statuses.send(NEED_REBOOT)
    h.start()
    await h.wait_for(lambda: len(h.events(LockReleased)) >= 2)
    assert len(attempts.read_text().split()) >= 2
    released = [e.reason for e in h.events(LockReleased)]
    assert released[:2] == ["reboot failed", "reboot failed"]
    h.statuses.send(IDLE)  # the admin reset the update engine: the agent settles, holding nothing
    await h.wait_state(State.IDLE)
    assert await h.holders() == ()
    await h.finish()


async def test_reboot_that_never_happens_gives_the_lock_back(harness) -> None:  # type: ignore[no-untyped-def]
    h = harness(settings=AgentSettings(login_check=False, reboot_grace=0.2, retry_interval=30))
    h.statuses.send(NEED_REBOOT)
    h.start()
    await h.wait_for(lambda: h.events(LockReleased))
    assert h.events(LockReleased)[0].reason == "reboot never happened"
    assert await h.holders() == ()
    await h.finish()


async def test_stop_while_waiting_for_the_lock_holds_nothing(harness) -> None:  # type: ignore[no-untyped-def]
    h = harness()
    await h.locks.lock(OTHER)
    h.statuses.send(NEED_REBOOT)
    h.start()
    await h.wait_state(State.ACQUIRING)
    await asyncio.sleep(0.2)
    assert await h.finish() == 0
    assert await h.holders() == (OTHER,)
    assert h.states()[-1] is State.STOPPING


async def test_update_withdrawn_while_waiting_stops_waiting(harness) -> None:  # type: ignore[no-untyped-def]
    h = harness()
    await h.locks.lock(OTHER)
    h.statuses.send(NEED_REBOOT)
    h.start()
    await h.wait_state(State.ACQUIRING)
    h.statuses.send(IDLE)
    await h.wait_state(State.IDLE)
    await h.locks.unlock(OTHER)
    await asyncio.sleep(0.2)
    assert await h.holders() == ()
    assert h.reboot_count() == 0
    await h.finish()


async def test_logged_in_users_are_warned_and_waited_for(harness) -> None:  # type: ignore[no-untyped-def]
    told: list[str] = []

    class Alice:
        async def users(self) -> list[str]:
            return ["alice"]

        async def broadcast(self, message: str) -> None:
            told.append(message)

    h = harness(settings=AgentSettings(login_check=True, login_delay=0.3), sessions=Alice())
    h.statuses.send(NEED_REBOOT)
    h.start()
    await h.wait_for(lambda: h.reboot_count() == 1)
    assert len(told) == 1 and "reboot" in told[0]
    await h.finish()


async def test_a_download_s_progress_is_logged_once_at_info(harness) -> None:  # type: ignore[no-untyped-def]
    """The engine signals progress about twice a second; each operation reaches the journal once."""
    h = harness()
    downloading = [Status(0, p, Operation.DOWNLOADING, "2.0.0", 1000) for p in (0.1, 0.5, 0.9)]
    with structlog.testing.capture_logs() as logs:
        h.start()
        await h.wait_state(State.IDLE)
        for status in downloading:
            h.statuses.send(status)
        h.statuses.send(NEED_REBOOT)
        await h.wait_state(State.REBOOTING)
    shown = [e["operation"] for e in logs if e["event"] == "update-engine.status" and e["log_level"] == "info"]
    assert shown == [Operation.DOWNLOADING.value, Operation.UPDATED_NEED_REBOOT.value]
    await h.finish()
