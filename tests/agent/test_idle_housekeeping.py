"""Once the agent first waits idle, start-up's objects are collected and frozen, so the update engine's
signal does not run a garbage collection of its own in front of the reboot call. In a fresh
interpreter: freezing is process-wide, and the test process's own objects must stay out of it."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import asyncio, gc
from datetime import UTC, datetime
from locksmith.agent.ports import StateEntered
from locksmith.agent.states import State
from locksmith.agent.wiring import freeze_start_up_objects_when_idle

async def main():
    observe = freeze_start_up_objects_when_idle()
    now = datetime.now(UTC)
    observe(StateEntered(State.RELEASING_AFTER_BOOT, State.STARTING, now))
    await asyncio.sleep(0)
    before = gc.get_freeze_count()
    observe(StateEntered(State.IDLE, State.RELEASING_AFTER_BOOT, now))
    at_once = gc.get_freeze_count()
    await asyncio.sleep(0)  # one turn of the loop: the collection is scheduled, not run inside the state change
    after_idle = gc.get_freeze_count()
    gc.unfreeze()
    observe(StateEntered(State.IDLE, State.NEED_REBOOT, now))  # a later idle: once is enough
    await asyncio.sleep(0)
    print(before, at_once, after_idle, gc.get_freeze_count())

asyncio.run(main())
"""


def test_the_first_idle_freezes_start_up_objects_once_after_the_state_change() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=True)
    before, at_once, after_idle, later = (int(n) for n in out.stdout.split())
    assert before == 0 and at_once == 0
    assert after_idle > 1000  # every module, function and class loaded so far
    assert later == 0
