"""The machine's waiting primitives: the first of several coroutines to finish, and a reboot
window opening or closing on the injected clock (re-read in slices, so clock jumps are noticed)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import datetime
from typing import Any

from locksmith.agent.ports import Clock
from locksmith.settings.windows import WindowSchedule


async def first(**contenders: Coroutine[Any, Any, Any]) -> str:
    """Run the contenders, return the name of the first to finish (re-raising its error), cancel
    and reap the rest. Earlier names win ties."""
    tasks = {name: asyncio.ensure_future(c) for name, c in contenders.items()}
    try:
        done, _ = await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks.values():
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    for name, task in tasks.items():
        if task in done:
            task.result()
            return name
    raise AssertionError("unreachable")  # pragma: no cover


async def window_opens(window: WindowSchedule, clock: Clock, check: float) -> None:
    while True:
        now = clock.now()
        if window.is_open(now):
            return
        await clock.sleep(_until(window.next_open(now), now, check))


async def window_closes(window: WindowSchedule, clock: Clock, check: float) -> None:
    while True:
        now = clock.now()
        end = window.current_window_end(now)
        if end is None:
            return
        await clock.sleep(_until(end, now, check))


def _until(when: datetime, now: datetime, check: float) -> float:
    # Sleep in slices so a wall-clock jump (NTP, suspend, a test's frozen clock) is noticed.
    return min(max((when - now).total_seconds(), 0.01), check)
