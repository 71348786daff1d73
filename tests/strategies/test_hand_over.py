"""Slots handed over on real etcd (protocol/waiting_line.py's `settle`): a release gives its slot to the
first in line in its own write, releases that collide are settled together, a handed slot that its host
never takes is taken back, and nothing is handed over in a paced fleet or to a host that stopped waiting."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import structlog
from strategy_helpers import Fleet, ids, present

from locksmith.protocol.semaphore import decode
from locksmith.protocol.waiting_line import LINE_JUMP_GRACE_SECONDS, leaving_key, line_key
from locksmith.waitline import WaitingLine

A, B, W = ids(3)


@pytest.fixture
async def fleet(etcd_ctx) -> AsyncIterator[Fleet]:  # type: ignore[no-untyped-def]
    fleet = Fleet(etcd_ctx)
    yield fleet
    await fleet.aclose()


async def _writes_to(fleet: Fleet, after: int, until_done: asyncio.Task[None]) -> list[tuple[str, ...]]:
    """The holders at each write of the semaphore after revision `after`, until `until_done` finished."""
    seen: list[tuple[str, ...]] = []

    async def follow() -> None:
        async for change in fleet.kv.watch(fleet.locks.key, after):
            seen.append(() if change.value is None else decode(change.value, fleet.locks.key).holders)

    watcher = asyncio.create_task(follow())
    try:
        await asyncio.wait_for(until_done, 15)
        await asyncio.sleep(0.3)  # a write made after it would show here; none is expected
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    return seen


async def test_a_release_hands_its_slot_to_the_first_in_line_in_one_write(fleet: Fleet) -> None:
    await fleet.locks.set_max(1)
    await fleet.acquire(A)
    waiter = fleet.waiting(W)
    await fleet.in_line(W)
    before = (await fleet.locks.get()).revision
    with structlog.testing.capture_logs() as logs:
        await fleet.release(A)
        writes = await _writes_to(fleet, before, waiter)
    assert writes == [(W,)], "one write took A out and W in; W took it without writing the semaphore"
    assert [e.get("handed_to") for e in logs if e["event"] == "lock.released"] == [[W]]
    assert [e.get("handed_over") for e in logs if e["event"] == "lock.acquired"] == [True]
    assert not await present(fleet.kv, line_key(fleet.locks.key, W) or "")  # W left the line by taking it
    await fleet.release(W)
    assert await fleet.holders() == ()


async def test_a_request_to_leave_is_settled_by_the_next_release_and_its_key_removed(fleet: Fleet) -> None:
    await fleet.locks.set_max(2)
    await fleet.acquire(A)
    await fleet.acquire(B)
    asked = leaving_key(fleet.locks.key, B)
    assert asked is not None
    await fleet.kv.create(asked, b"then")  # what B's release writes when its compare-and-swap loses
    await fleet.release(A)
    assert await fleet.holders() == ()  # one write for both
    assert not await present(fleet.kv, asked)
    with structlog.testing.capture_logs() as logs:
        await fleet.release(B)  # B, retrying, finds its slot given back
    assert [e["event"] for e in logs] == ["lock.release.not-held"]


async def test_a_stale_request_to_leave_never_gives_back_a_later_hold(fleet: Fleet) -> None:
    await fleet.locks.set_max(2)
    asked = leaving_key(fleet.locks.key, B)
    assert asked is not None
    await fleet.kv.create(asked, b"long ago")  # left behind while B did not hold
    await fleet.acquire(A)
    await fleet.acquire(B)
    assert not await present(fleet.kv, asked)  # B's own lock removed it
    await fleet.release(A)
    assert await fleet.holders() == (B,)
    await fleet.release(B)


async def test_a_slot_handed_to_a_host_that_never_takes_it_is_taken_back_for_the_next(fleet: Fleet) -> None:
    await fleet.locks.set_max(1)
    await fleet.acquire(A)
    stalled = WaitingLine(fleet.locks, B)  # in line and renewing its lease, but it never looks again
    await stalled.join()
    waiter = fleet.waiting(W)
    try:
        await fleet.in_line(W)
        await fleet.release(A)
        assert await fleet.holders() == (B,)  # handed to the first in line
        with structlog.testing.capture_logs() as logs:
            await asyncio.wait_for(waiter, 20)
        assert await fleet.holders() == (W,)
        taken = [e for e in logs if e["event"] == "lock.line.taken-back"]
        assert [e["hosts"] for e in taken] == [[B]]
        assert not await stalled.confirm()  # too late: the slot is gone, and B is in line again
        assert await present(fleet.kv, line_key(fleet.locks.key, B) or "")
    finally:
        await stalled.leave()
        waiter.cancel()
    await fleet.release(W)


async def test_a_host_handed_a_slot_that_stops_waiting_gives_it_back(fleet: Fleet, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    await fleet.locks.set_max(1)
    await fleet.acquire(A)
    handed = asyncio.Event()

    async def slow_confirm(self: WaitingLine) -> bool:
        handed.set()
        await asyncio.Event().wait()  # the host stops here, handed a slot, until cancelled
        return False

    monkeypatch.setattr(WaitingLine, "confirm", slow_confirm)
    waiter = fleet.waiting(W)
    await fleet.in_line(W)
    await fleet.release(A)
    await asyncio.wait_for(handed.wait(), 10)
    assert await fleet.holders() == (W,)
    waiter.cancel()  # e.g. the update was withdrawn, or the agent stops
    with contextlib.suppress(asyncio.CancelledError):
        await waiter
    assert await fleet.holders() == ()


async def test_a_paced_fleet_hands_nothing_over_each_waiter_paces_itself(fleet: Fleet) -> None:
    await fleet.locks.set_max(1)
    await fleet.locks.set_spacing(0.5)
    await fleet.acquire(A)
    waiter = fleet.waiting(W)
    await fleet.in_line(W)
    before = (await fleet.locks.get()).revision
    await fleet.release(A)
    writes = await _writes_to(fleet, before, waiter)
    assert writes == [(), (W,)]  # the release freed the slot; W took it itself once the spacing allowed
    await fleet.release(W)


async def test_a_key_in_the_line_that_is_not_a_host_s_own_never_frees_a_holder(fleet: Fleet) -> None:
    await fleet.locks.set_max(1)
    await fleet.acquire(B)  # B holds its slot: it may be rebooting
    odd = f"{fleet.locks.key}-line/x/{B}"  # names B in its last segment, but is not B's line key
    await fleet.kv.create(odd, b"garbage")
    waiter = fleet.waiting(W)
    try:
        await fleet.in_line(W)
        done, _ = await asyncio.wait({waiter}, timeout=LINE_JUMP_GRACE_SECONDS + 2)  # past the take-back grace
        assert not done and await fleet.holders() == (B,)
    finally:
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        await fleet.kv.delete(odd)
    await fleet.release(B)
