"""A boot under the lock that fails its health gate on an A/B host (LOCKSMITHD_HEALTHY_TARGET set): the
agent records a rollback, keeps the lock and reboots, so the bootloader goes back to the old slot; the
rollback's boot keeps the lock (the rollout stops at this host) however healthy it is, never rolls back
twice, and goes on as usual once someone gave the lock back (locksmithctl unlock)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import structlog

from agent.harness import IDLE, NEED_REBOOT
from locksmith.agent.health import HealthGate
from locksmith.agent.ports import Event, LockKept, LockReleased, SystemClock
from locksmith.agent.release import Releaser
from locksmith.agent.rollback import RollbackRecord
from locksmith.agent.settings import AgentSettings
from locksmith.agent.states import State
from locksmith.strategy import StrategyContext, StrategyUnavailable

ME = "a" * 32
FAILING = HealthGate(command="exit 3", interval=0.05, timeout=0.3)
PASSING = HealthGate(command="true", interval=0.05, timeout=5)


def _ab_host(gate: HealthGate) -> AgentSettings:
    # The target's start fails here (no systemd in the test), which only logs: what matters is that it is set.
    return AgentSettings(
        login_check=False, health=gate, healthy_target="locksmith-test-healthy.target", reboot_grace=60
    )


async def test_a_failed_gate_under_the_lock_reboots_into_the_old_slot_keeping_the_lock(harness) -> None:  # type: ignore[no-untyped-def]
    h = harness(settings=_ab_host(FAILING))
    await h.locks.lock(ME)
    h.statuses.send(IDLE)
    h.start()
    await h.wait_for(lambda: h.reboot_count() == 1)
    assert h.agent.state is State.REBOOTING
    assert await h.holders() == (ME,)  # kept through the rollback: nobody else reboots
    assert [e.cause for e in h.events(LockKept)] == ["health-gate"]
    record = json.loads(h.settings.rollback_file.read_text())
    assert "health gate" in record["reason"] and record["at"]
    assert h.events(LockReleased) == []
    await h.finish()
    assert await h.holders() == (ME,)  # stopped by the shutdown while rebooting: still held


async def test_the_rollbacks_boot_keeps_the_lock_however_healthy(harness) -> None:  # type: ignore[no-untyped-def]
    h = harness(settings=_ab_host(PASSING))
    RollbackRecord(h.settings.rollback_file).write("the health gate did not pass within 600s")
    await h.locks.lock(ME)
    h.statuses.send(IDLE)
    with structlog.testing.capture_logs() as logs:
        h.start()
        await h.wait_state(State.IDLE)
    assert await h.holders() == (ME,)
    assert [e.cause for e in h.events(LockKept)] == ["rolled-back"]
    kept = next(e for e in logs if e["event"] == "after-boot.keeping-lock")
    assert "previous OS" in kept["reason"] and f"locksmithctl unlock {ME}" in kept["detail"]
    assert h.reboot_count() == 0
    await h.finish()


async def test_never_rolls_back_twice(harness) -> None:  # type: ignore[no-untyped-def]
    h = harness(settings=_ab_host(FAILING))
    RollbackRecord(h.settings.rollback_file).write("the health gate did not pass within 600s")
    await h.locks.lock(ME)
    h.statuses.send(IDLE)
    h.start()
    await h.wait_state(State.IDLE)
    assert h.reboot_count() == 0  # the old OS is unhealthy too: stay up, keep the lock, say why
    assert await h.holders() == (ME,)
    assert [e.cause for e in h.events(LockKept)] == ["rolled-back"]
    await h.finish()


async def test_after_an_unlock_the_record_goes_and_life_goes_on(harness) -> None:  # type: ignore[no-untyped-def]
    h = harness(settings=_ab_host(PASSING))
    RollbackRecord(h.settings.rollback_file).write("the health gate did not pass within 600s")
    h.statuses.send(IDLE)  # the admin ran locksmithctl unlock: we hold nothing
    with structlog.testing.capture_logs() as logs:
        h.start()
        await h.wait_state(State.IDLE)
    assert not h.settings.rollback_file.exists()
    assert any(e["event"] == "rollback.acknowledged" for e in logs)
    assert h.events(LockKept) == [] and h.reboot_count() == 0
    await h.finish()


async def test_without_ab_slots_a_failed_gate_keeps_the_lock_and_stays(harness) -> None:  # type: ignore[no-untyped-def]
    h = harness(settings=AgentSettings(login_check=False, health=FAILING))  # no healthy target: nothing to roll back
    await h.locks.lock(ME)
    h.statuses.send(IDLE)
    h.start()
    await h.wait_state(State.IDLE)
    assert h.reboot_count() == 0 and await h.holders() == (ME,)
    assert not h.settings.rollback_file.exists()
    await h.finish()


async def test_taking_the_lock_for_a_new_update_forgets_the_rollback(harness) -> None:  # type: ignore[no-untyped-def]
    # An admin asked for the update again (update_engine_client -check_for_update) without an unlock: the
    # host still holds its slot, takes it again (idempotent) and reboots; that boot is judged afresh.
    h = harness(settings=_ab_host(PASSING))
    RollbackRecord(h.settings.rollback_file).write("the health gate did not pass within 600s")
    await h.locks.lock(ME)
    h.statuses.send(IDLE)
    h.start()
    await h.wait_state(State.IDLE)
    h.statuses.send(NEED_REBOOT)
    await h.wait_for(lambda: h.reboot_count() == 1)
    assert not h.settings.rollback_file.exists()
    await h.finish()


class _StoreDownAtBoot:
    """A strategy whose store does not answer at first (the deferred after-boot path), then says we hold."""

    name = "etcd-lock"

    def __init__(self) -> None:
        self.asked = 0
        self.released = 0

    async def holds(self, ctx: StrategyContext) -> bool:
        self.asked += 1
        if self.asked == 1:
            raise StrategyUnavailable("etcd: connection refused")
        return True

    async def release(self, ctx: StrategyContext) -> None:
        self.released += 1


def _releaser(tmp_path: Path, strategy: _StoreDownAtBoot, events: list[Event], **settings: object) -> Releaser:
    return Releaser(
        AgentSettings(login_check=False, rollback_file=tmp_path / "rolled-back.json", **settings),  # type: ignore[arg-type]
        strategy,  # type: ignore[arg-type]
        StrategyContext(machine_id=ME),
        health=None,
        clock=SystemClock(),
        emit=events.append,
        log=structlog.get_logger("test"),
        update_pending=lambda: False,
    )


async def test_the_rollbacks_boot_keeps_the_lock_also_when_the_store_answers_late(tmp_path: Path) -> None:
    strategy, events = _StoreDownAtBoot(), []
    releaser = _releaser(tmp_path, strategy, events)
    RollbackRecord(releaser.settings.rollback_file).write("the health gate did not pass within 600s")
    assert await releaser.after_boot() == "done"
    async with asyncio.timeout(10):
        while not any(isinstance(e, LockKept | LockReleased) for e in events):  # noqa: ASYNC110 - a task of its own
            await asyncio.sleep(0.01)
    assert strategy.released == 0
    assert [e.cause for e in events if isinstance(e, LockKept)] == ["rolled-back"]
    await releaser.aclose()


async def test_a_failed_post_boot_hook_keeps_the_lock_also_when_the_store_answers_late(tmp_path: Path) -> None:
    strategy, events = _StoreDownAtBoot(), []
    releaser = _releaser(tmp_path, strategy, events, post_boot_hook="exit 1")
    assert await releaser.after_boot() == "done"
    async with asyncio.timeout(10):
        while not any(isinstance(e, LockKept) for e in events):  # noqa: ASYNC110 - as above
            await asyncio.sleep(0.01)
    assert strategy.released == 0
    assert [e.cause for e in events if isinstance(e, LockKept)] == ["post-boot-hook"]
    await releaser.aclose()
