"""A total deadline for one HTTP exchange.

httpx bounds each connect and each read, not the exchange: a server that sends a byte every second never
trips a 5 s read timeout and can hold a request for hours. Every request we send to the outside (etcd,
FleetLock, Omaha) is therefore also bounded whole. The deadline surfaces as `httpx.ReadTimeout`, so every
caller's existing handling of a timed-out request (try the next endpoint, report the server unreachable)
applies unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx


@asynccontextmanager
async def total_deadline(seconds: float) -> AsyncIterator[None]:
    """Bound everything inside (connect, headers, body) to `seconds`; httpx.ReadTimeout when it passes."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        # asyncio.timeout turns only its own expiry into TimeoutError; a cancellation from outside stays one.
        raise httpx.ReadTimeout(f"no complete reply within {seconds:g}s") from None
