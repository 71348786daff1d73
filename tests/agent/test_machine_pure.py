"""The state machine's main paths over in-memory ports (tests/agent/memory.py): no etcd, no D-Bus,
no subprocess, and a clock that moves only when the test moves it. The real-etcd tests beside
this file are the integration tests of the same paths."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta

import pytest

from agent.memory import MemoryHealth, World
from locksmith.agent.ports import HealthGateStarted, LockFailure, LockKept, LockReleased, Ready, StateEntered
from locksmith.agent.settings import AgentSettings
from locksmith.agent.states import INITIAL, TRANSITIONS, IllegalTransition, State, check_transition
from locksmith.protocol.update1 import NEED_REBOOT, Status
from locksmith.settings.windows import RebootWindow, WindowSchedule

NOON = datetime(2024, 1, 10, 12, 0, tzinfo=UTC)
IDLE = Status()
GRACE = 900.0


@pytest.fixture
async def world() -> AsyncIterator[list[World]]:
    made: list[World] = []
    yield made
    for w in made:
        await w.close()


def make(made: list[World], **kwargs: object) -> World:
    kwargs.setdefault("settings", AgentSettings(login_check=False, retry_interval=60, reboot_grace=GRACE))
    w = World(now=NOON, **kwargs)  # type: ignore[arg-type]
    made.append(w)
    return w


def reasons(w: World) -> list[str]:
    return [e.reason for e in w.of(LockReleased)]  # type: ignore[attr-defined]


# --- RELEASING_AFTER_BOOT --------------------------------------------------------------------


async def test_boot_with_a_held_lock_passes_the_gate_then_releases(world: list[World]) -> None:
    w = make(world, held=True, health=MemoryHealth(healthy=True))
    w.start()
    await w.reach(State.IDLE)
    assert not w.strategy.held and reasons(w) == ["after boot"]
    assert w.states() == [State.STARTING, State.RELEASING_AFTER_BOOT, State.IDLE]
    kinds = [type(e) for e in w.seen]
    assert kinds.index(Ready) < kinds.index(HealthGateStarted) < kinds.index(LockReleased)
    assert w.rebooter.calls == 0
    assert await w.finish() == 0


async def test_a_failing_gate_keeps_the_lock(world: list[World]) -> None:
    w = make(world, held=True, health=MemoryHealth(healthy=False))
    w.start()
    await w.reach(State.IDLE)
    assert w.strategy.held and w.strategy.releases == 0
    assert [e.cause for e in w.of(LockKept)] == ["health-gate"]  # type: ignore[attr-defined]
    assert await w.finish() == 0
    assert w.strategy.held  # stopping in IDLE gives nothing back


async def test_not_holding_after_boot_releases_nothing(world: list[World]) -> None:
    w = make(world, health=MemoryHealth(healthy=True))
    w.start()
    await w.reach(State.IDLE)
    assert w.strategy.releases == 0 and w.health is not None and w.health.asked == 0
    await w.finish()


# --- NEED_REBOOT → … → REBOOTING ------------------------------------------------------------


async def test_need_reboot_acquires_and_reboots_once(world: list[World]) -> None:
    w = make(world)
    w.start()
    await w.reach(State.IDLE)
    w.statuses.send(NEED_REBOOT)
    await w.reach(State.REBOOTING)
    await w.until(lambda: w.clock.asleep(GRACE))  # accepted: waiting to be stopped by the shutdown
    assert w.rebooter.calls == 1 and w.strategy.held
    assert w.states() == [
        State.STARTING,
        State.RELEASING_AFTER_BOOT,
        State.IDLE,
        State.NEED_REBOOT,
        State.ACQUIRING,
        State.PRE_REBOOT,
        State.REBOOTING,
    ]
    assert await w.finish() == 0
    assert w.strategy.held and w.states()[-1] is State.STOPPING  # the next boot releases it


async def test_a_reboot_that_never_comes_gives_the_lock_back_and_tries_again(world: list[World]) -> None:
    w = make(world)
    w.statuses.send(NEED_REBOOT)
    w.start()
    await w.until(lambda: w.clock.asleep(GRACE))
    w.clock.advance(GRACE)
    await w.until(lambda: reasons(w) == ["reboot never happened"])
    assert not w.strategy.held
    await w.until(lambda: w.clock.asleep(60))  # the retry interval
    w.clock.advance(60)
    await w.until(lambda: w.rebooter.calls == 2)
    await w.finish()


async def test_other_statuses_never_lead_to_a_reboot(world: list[World]) -> None:
    w = make(world)
    w.start()
    await w.reach(State.IDLE)
    from locksmith.protocol.update1 import Operation

    for op in Operation:
        if op is not Operation.UPDATED_NEED_REBOOT:
            w.statuses.send(Status(0, 0.5, op, "2.0.0", 1))
    await w.until(lambda: w.agent.status is not None and w.agent.status.current_operation is op)
    assert w.agent.state is State.IDLE and State.NEED_REBOOT not in w.states()
    assert w.strategy.acquires == 0
    await w.finish()


async def test_a_closed_window_is_waited_for_then_the_reboot_proceeds(world: list[World]) -> None:
    window = WindowSchedule((RebootWindow(None, time(3, 0), timedelta(hours=1)),), tz=UTC)
    w = make(world, settings=AgentSettings(login_check=False, window=window, clock_check=30))
    w.statuses.send(NEED_REBOOT)
    w.start()
    await w.reach(State.WAITING_FOR_WINDOW)
    await w.until(lambda: w.clock.asleep(30))  # re-reads the clock in slices
    assert w.strategy.acquires == 0  # the window is waited for before taking the lock
    entered = [e for e in w.of(StateEntered) if e.state is State.WAITING_FOR_WINDOW]  # type: ignore[attr-defined]
    assert entered[0].detail["next_open"] == "2024-01-11T03:00:00+00:00"  # type: ignore[attr-defined]
    w.clock.set(datetime(2024, 1, 11, 3, 0, 5, tzinfo=UTC))
    await w.until(lambda: w.rebooter.calls == 1)
    assert w.strategy.acquires == 1
    await w.finish()


async def test_the_window_closing_while_acquiring_gives_the_lock_back(world: list[World]) -> None:
    window = WindowSchedule((RebootWindow(None, time(12, 0), timedelta(hours=1)),), tz=UTC)
    w = make(world, settings=AgentSettings(login_check=False, window=window, clock_check=30))
    w.strategy.grant.clear()
    w.strategy.take_then_wait = True
    w.statuses.send(NEED_REBOOT)
    w.start()
    await w.reach(State.ACQUIRING)
    w.clock.set(NOON + timedelta(hours=1, minutes=1))
    await w.reach(State.WAITING_FOR_WINDOW)
    assert reasons(w) == ["window-closed"] and not w.strategy.held
    assert w.rebooter.calls == 0
    await w.finish()


async def test_an_update_withdrawn_while_acquiring_gives_the_lock_back(world: list[World]) -> None:
    w = make(world)
    w.strategy.grant.clear()
    w.strategy.take_then_wait = True
    w.statuses.send(NEED_REBOOT)
    w.start()
    await w.reach(State.ACQUIRING)
    w.statuses.send(IDLE)
    await w.reach(State.IDLE)
    assert reasons(w) == ["dropped"] and not w.strategy.held
    w.strategy.grant.set()
    assert w.rebooter.calls == 0
    await w.finish()


async def test_a_refused_reboot_gives_the_lock_back_and_is_retried(world: list[World]) -> None:
    w = make(world)
    w.rebooter.refuse = 1
    w.statuses.send(NEED_REBOOT)
    w.start()
    await w.until(lambda: reasons(w) == ["reboot failed"])
    assert not w.strategy.held and w.rebooter.calls == 1
    await w.until(lambda: w.clock.asleep(60))
    w.clock.advance(60)
    await w.until(lambda: w.rebooter.calls == 2)
    assert w.strategy.held and w.agent.state is State.REBOOTING
    await w.finish()


async def test_an_unavailable_strategy_is_retried_with_a_growing_back_off(world: list[World]) -> None:
    w = make(world)
    w.strategy.unavailable = 2
    w.statuses.send(NEED_REBOOT)
    w.start()
    for n, pause in ((1, 1.0), (2, 2.0)):
        await w.until(lambda n=n, pause=pause: len(w.of(LockFailure)) == n and w.clock.asleep(pause))
        w.clock.advance(pause)
    await w.until(lambda: w.rebooter.calls == 1)
    assert w.strategy.acquires == 3
    assert w.states().count(State.ACQUIRING) == 3  # re-entered after each back-off
    await w.finish()


# --- STOPPING --------------------------------------------------------------------------------


async def test_sigterm_while_acquiring_gives_back_what_may_be_held(world: list[World]) -> None:
    w = make(world)
    w.strategy.grant.clear()
    w.strategy.take_then_wait = True
    w.statuses.send(NEED_REBOOT)
    w.start()
    await w.reach(State.ACQUIRING)
    assert await w.finish() == 0
    assert not w.strategy.held and reasons(w) == ["stopped before rebooting"]
    assert w.states()[-1] is State.STOPPING


async def test_sigterm_while_rebooting_keeps_the_lock(world: list[World]) -> None:
    w = make(world)
    w.statuses.send(NEED_REBOOT)
    w.start()
    await w.until(lambda: w.clock.asleep(GRACE))
    assert await w.finish() == 0
    assert w.strategy.held and reasons(w) == []


# --- the transitions table -------------------------------------------------------------------


async def test_the_machine_refuses_a_move_not_in_its_table(world: list[World]) -> None:
    w = make(world)
    w.start()
    await w.reach(State.IDLE)
    with pytest.raises(IllegalTransition, match="idle → rebooting is not allowed"):
        w.agent._enter(State.REBOOTING)
    assert w.agent.state is State.IDLE  # refused before anything changed or was reported
    assert State.REBOOTING not in w.states()
    await w.finish()


def test_the_table_starts_at_starting_and_every_state_can_stop() -> None:
    check_transition(None, INITIAL)
    with pytest.raises(IllegalTransition):
        check_transition(None, State.IDLE)
    assert set(TRANSITIONS) == set(State)
    for state, nexts in TRANSITIONS.items():
        assert (State.STOPPING in nexts) is (state is not State.STOPPING), state
    assert TRANSITIONS[State.STOPPING] == frozenset()
    with pytest.raises(IllegalTransition):
        check_transition(State.IDLE, State.ACQUIRING)  # always through NEED_REBOOT


def test_every_state_is_reachable_from_the_start() -> None:
    seen, todo = {INITIAL}, [INITIAL]
    while todo:
        for nxt in TRANSITIONS[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    assert seen == set(State)
