"""The agent's fleet-view record: built from the state machine's events, written to a real (embedded) store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from locksmith.agent.host_publisher import HostPublisher
from locksmith.agent.ports import LockAcquired, LockHeldAfterBoot, LockKept, LockReleased, StateEntered
from locksmith.agent.states import State
from locksmith.kv.embedded import EmbeddedStore
from locksmith.protocol.hostrecord import HostRecord, decode, record_key
from locksmith.protocol.semaphore import DEFAULT_KEY

ID = "a" * 32


def entered(state: State) -> StateEntered:
    return StateEntered(state, None, datetime(2026, 1, 1, tzinfo=UTC))


def test_the_record_follows_the_lifecycle(tmp_path: Path) -> None:
    p = HostPublisher(EmbeddedStore(tmp_path / "kv.db"), DEFAULT_KEY, ID)
    steps = [
        (entered(State.WAITING_FOR_WINDOW), ("waiting", False, "window")),
        (entered(State.ACQUIRING), ("waiting", False, "lock")),
        (LockAcquired(), ("holding", True, "")),
        (entered(State.REBOOTING), ("rebooting", True, "")),
    ]
    for event, expected in steps:
        p(event)
        assert (p.record.state, p.record.slot, p.record.waiting_for) == expected, event
    after_boot = HostPublisher(EmbeddedStore(tmp_path / "kv.db"), DEFAULT_KEY, ID)  # a new process
    after_boot(entered(State.RELEASING_AFTER_BOOT))
    assert (after_boot.record.state, after_boot.record.slot) == ("idle", False)
    after_boot(LockHeldAfterBoot())
    assert (after_boot.record.state, after_boot.record.waiting_for) == ("holding", "health")
    after_boot(LockKept("health-gate", "the health gate failed"))
    assert after_boot.record.state == "error" and "health gate" in after_boot.record.last_error
    after_boot(LockReleased("by hand"))
    after_boot(entered(State.IDLE))
    assert (after_boot.record.state, after_boot.record.slot) == ("idle", False)


async def test_publish_writes_the_newest_record_to_the_store(tmp_path: Path) -> None:
    kv = EmbeddedStore(tmp_path / "kv.db")
    p = HostPublisher(kv, DEFAULT_KEY, ID)
    job = asyncio.create_task(p.publish())
    try:
        p(entered(State.ACQUIRING))
        async with asyncio.timeout(20):
            while True:
                entry = await kv.get(record_key(DEFAULT_KEY, ID))
                stored = decode(entry.value) if entry is not None else None
                if isinstance(stored, HostRecord) and stored.waiting_for == "lock":
                    break
                await asyncio.sleep(0.02)  # the job writes in the background; look until it has
        assert stored.state == "waiting" and stored.updated > 0
    finally:
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)
        await kv.aclose()
