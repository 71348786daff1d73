"""When to check: a first check after a delay, then periodic with random fuzz, exponential back-off after
failures (capped), and on demand (AttemptUpdate)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Protocol

import structlog

log = structlog.get_logger("update_engine.scheduler")


class Checker(Protocol):
    @property
    def busy(self) -> bool: ...
    @property
    def last_error(self) -> str | None: ...
    async def check_for_update(self, asked: bool = False) -> object: ...


class Scheduler:
    def __init__(
        self,
        engine: Checker,
        *,
        initial_delay: float,
        interval: float,
        fuzz: float,
        max_backoff: float,
        periodic: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        self.engine = engine
        self.initial_delay = initial_delay
        self.interval = interval
        self.fuzz = fuzz
        self.max_backoff = max_backoff
        self.periodic = periodic
        self.failures = 0
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._asked = False  # the next check was asked for (AttemptUpdate), not scheduled

    def next_delay(self, failures: int) -> float:
        """Seconds until the next periodic check after `failures` failed attempts in a row."""
        base = self.interval * (2 ** min(failures, 32)) if failures else self.interval
        base = min(base, max(self.max_backoff, self.interval))
        jitter = self._rng.uniform(-self.fuzz / 2, self.fuzz / 2) if self.fuzz else 0.0
        return max(0.0, base + jitter)

    def request_check(self) -> None:
        """AttemptUpdate: check now, unless an attempt is already running (CoreOS ignores it then)."""
        if self.engine.busy:
            log.info("AttemptUpdate ignored: an update attempt is already running")
            return
        self._asked = True
        self._wake.set()

    async def _sleep(self, delay: float | None) -> None:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a stop (cancellation) that
        # arrives together with a wake-up.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()
        self._wake.clear()

    async def run(self) -> None:
        delay: float | None = self.initial_delay if self.periodic else None
        while True:
            await self._sleep(delay)
            asked, self._asked = self._asked, False
            await self.engine.check_for_update(asked=asked)
            self.failures = self.failures + 1 if self.engine.last_error else 0
            delay = self.next_delay(self.failures) if self.periodic else None
            log.info("next update check", in_seconds=delay, failures=self.failures)
