"""The agent's use of reboot windows: wait before taking the lock, and stop waiting for the lock
when the window closes (coreos bugs#1886). The window arithmetic itself is tested with config."""

from __future__ import annotations

import asyncio
from datetime import time, timedelta
from zoneinfo import ZoneInfo

from freezegun import freeze_time

from agent.harness import NEED_REBOOT, FakeClock, utc
from locksmith.agent.ports import LockReleased
from locksmith.agent.settings import AgentSettings
from locksmith.agent.states import State
from locksmith.settings.windows import RebootWindow, WindowSchedule, parse_windows

ME, OTHER = "a" * 32, "b" * 32
FAST = {"login_check": False, "clock_check": 0.02}


def daily(at: time, length: timedelta, tz: object) -> WindowSchedule:
    return WindowSchedule((RebootWindow(None, at, length),), tz)  # type: ignore[arg-type]


async def test_waits_for_the_window_across_midnight_before_locking(harness) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock(utc(2024, 1, 10, 23, 0))
    window = daily(time(23, 30), timedelta(hours=1), ZoneInfo("UTC"))  # 23:30 - 00:30
    h = harness(settings=AgentSettings(window=window, **FAST), clock=clock)
    h.statuses.send(NEED_REBOOT)
    h.start()
    await h.wait_state(State.WAITING_FOR_WINDOW)
    assert await h.holders() == ()  # no lock taken outside the window
    clock.set(utc(2024, 1, 11, 0, 10))  # after midnight, still inside
    await h.wait_for(lambda: h.reboot_count() == 1)
    assert await h.holders() == (ME,)
    await h.finish()


async def test_window_closing_while_waiting_for_the_lock(harness) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock(utc(2024, 1, 10, 3, 10))
    window = daily(time(3, 0), timedelta(hours=1), ZoneInfo("UTC"))
    h = harness(settings=AgentSettings(window=window, **FAST), clock=clock)
    await h.locks.lock(OTHER)
    h.statuses.send(NEED_REBOOT)
    h.start()
    await h.wait_state(State.ACQUIRING)
    clock.set(utc(2024, 1, 10, 4, 5))  # the window closed while we waited for OTHER
    await h.wait_state(State.WAITING_FOR_WINDOW)
    await h.locks.unlock(OTHER)  # the slot frees up outside our window…
    await asyncio.sleep(0.3)
    assert await h.holders() == ()  # …and we do not take it
    assert h.reboot_count() == 0
    assert [e.reason for e in h.events(LockReleased)] == []
    clock.set(utc(2024, 1, 11, 3, 1))  # next day's window
    await h.wait_for(lambda: h.reboot_count() == 1)
    assert await h.holders() == (ME,)
    await h.finish()


async def test_weekly_window_wraps_the_week(harness) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock(utc(2024, 1, 13, 12, 0))  # Saturday
    window = WindowSchedule(parse_windows("Sun 23:00 2h"), ZoneInfo("UTC"))  # Sun 23:00 → Mon 01:00
    h = harness(settings=AgentSettings(window=window, **FAST), clock=clock)
    h.statuses.send(NEED_REBOOT)
    h.start()
    await h.wait_state(State.WAITING_FOR_WINDOW)
    clock.set(utc(2024, 1, 15, 0, 30))  # Monday 00:30: inside Sunday's window
    await h.wait_for(lambda: h.reboot_count() == 1)
    await h.finish()


async def test_time_zone_and_dst_under_freezegun(harness) -> None:  # type: ignore[no-untyped-def]
    # Berlin springs forward on 2024-03-31 at 02:00 → 03:00. A 02:30 local window that day has no
    # 02:30; the schedule resolves it (config's rule) and the agent must follow the schedule under a
    # frozen wall clock, not the machine's clock. asyncio keeps real monotonic time.
    berlin = ZoneInfo("Europe/Berlin")
    window = WindowSchedule(parse_windows("02:30 1h"), berlin)
    with freeze_time("2024-03-31 00:00:00", ignore=["asyncio"]) as frozen:  # 01:00 CET
        h = harness(settings=AgentSettings(window=window, **FAST))
        h.statuses.send(NEED_REBOOT)
        h.start()
        await h.wait_state(State.WAITING_FOR_WINDOW)
        from datetime import UTC, datetime

        now = datetime.now(UTC)
        expected_open = window.next_open(now)
        assert not window.is_open(now)
        frozen.move_to(expected_open - timedelta(seconds=1))
        await asyncio.sleep(0.2)
        assert h.reboot_count() == 0
        frozen.move_to(expected_open + timedelta(seconds=1))
        await h.wait_for(lambda: h.reboot_count() == 1)
        await h.finish()
