from __future__ import annotations

import asyncio
import random

from locksmith.updateengine.scheduler import Scheduler


class FakeChecker:
    """Counts checks; fails the first `failures` of them (the scheduler only reads these attributes)."""

    def __init__(self, failures: int = 0) -> None:
        self.busy = False
        self.last_error: str | None = None
        self.calls = 0
        self.failures = failures
        self.checked = asyncio.Event()
        self.asked: list[bool] = []

    async def check_for_update(self, asked: bool = False) -> None:
        self.calls += 1
        self.asked.append(asked)
        self.last_error = "boom" if self.calls <= self.failures else None
        self.checked.set()


def make(checker: FakeChecker, **kw: float) -> Scheduler:
    params = {"initial_delay": 0.0, "interval": 100.0, "fuzz": 20.0, "max_backoff": 1000.0, **kw}
    return Scheduler(checker, rng=random.Random(1), **params)  # type: ignore[arg-type]


def test_delay_has_fuzz_and_backs_off_to_a_cap() -> None:
    s = make(FakeChecker())
    plain = [s.next_delay(0) for _ in range(200)]
    assert all(90 <= d <= 110 for d in plain) and len(set(plain)) > 100
    assert all(190 <= s.next_delay(1) <= 210 for _ in range(50))
    assert all(390 <= s.next_delay(2) <= 410 for _ in range(50))
    assert all(990 <= s.next_delay(n) <= 1010 for n in (4, 10, 100, 10_000))


async def test_first_check_then_on_demand() -> None:
    checker = FakeChecker(failures=2)
    s = make(checker, interval=3600.0, fuzz=0.0)
    task = asyncio.create_task(s.run())
    try:
        await asyncio.wait_for(checker.checked.wait(), 10)  # initial delay 0
        assert (checker.calls == 1 and s.failures == 0) or s.failures == 1
        for expected in (2, 3):
            checker.checked.clear()
            s.request_check()
            await asyncio.wait_for(checker.checked.wait(), 10)
            assert checker.calls == expected
        await asyncio.sleep(0)
        assert s.failures == 0  # the third check succeeded: back-off resets
        assert checker.asked == [False, True, True]  # the schedule's check, then two asked for
        checker.busy = True
        checker.checked.clear()
        s.request_check()  # ignored while an attempt runs, as CoreOS does
        await asyncio.sleep(0.05)
        assert checker.calls == 3
    finally:
        task.cancel()
