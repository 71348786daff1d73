"""LockStore on every real backend: Go-shape bytes, the operations, corrupt values, ages, watching."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from locksmith.kv import Committed, Entry, KVStore, Transactions
from locksmith.lockstore import LockStore, SemaphoreContention
from locksmith.protocol.semaphore import INITIAL, InvalidMax, NotHeld, Semaphore, SemaphoreCorrupt, SemaphoreFull

from .conftest import Backend


async def raw(store: LockStore, key: str | None = None) -> Entry | None:
    return await store.kv.get(key or store.key)


async def test_first_lock_creates_the_go_shape(backend: Backend) -> None:
    ls = backend.lockstore()
    assert "/groups/test+" in ls.key and ls.key.endswith("%2Fx/semaphore")
    assert await raw(ls) is None
    snap = await ls.lock("m1")
    assert snap.semaphore == Semaphore(0, 1, ("m1",))
    entry = await raw(ls)
    assert entry is not None and entry.value == b'{"semaphore":0,"max":1,"holders":["m1"]}'
    assert entry.revision == snap.revision


async def test_lock_is_idempotent_without_a_write(backend: Backend) -> None:
    ls = backend.lockstore()
    first = await ls.lock("m1")
    again = await ls.lock("m1")
    assert again == first
    entry = await raw(ls)
    assert entry is not None and entry.revision == first.revision


async def test_full_not_held_and_unlock(backend: Backend) -> None:
    ls = backend.lockstore()
    await ls.lock("m1")
    with pytest.raises(SemaphoreFull, match="semaphore is at 0"):
        await ls.lock("m2")
    with pytest.raises(NotHeld):
        await ls.unlock("m2")
    snap = await ls.unlock("m1")
    assert snap.semaphore == INITIAL
    entry = await raw(ls)
    assert entry is not None and entry.value == b'{"semaphore":1,"max":1,"holders":[]}'  # as Go writes it
    with pytest.raises(NotHeld):
        await ls.unlock("m1")


async def test_unlock_on_an_absent_key_writes_nothing(backend: Backend) -> None:
    ls = backend.lockstore()
    with pytest.raises(NotHeld):
        await ls.unlock("m1")
    assert await raw(ls) is None


async def test_set_max(backend: Backend) -> None:
    ls = backend.lockstore()
    assert await ls.set_max(3) == (1, 3)  # on an absent key: created with the new max
    await ls.lock("b")
    await ls.lock("a")
    assert await ls.set_max(2) == (3, 2)
    entry = await raw(ls)
    assert entry is not None and entry.value == b'{"semaphore":0,"max":2,"holders":["a","b"]}'
    with pytest.raises(InvalidMax, match="below the 2 current holder"):
        await ls.set_max(1)
    after = await raw(ls)
    assert after == entry


@pytest.mark.parametrize(
    ("go_value", "lock_id", "expected"),
    [
        (b'{"semaphore":1,"max":1,"holders":null}', "m", b'{"semaphore":0,"max":1,"holders":["m"]}'),
        (b'{"semaphore":3,"max":3,"holders":[]}', "m", b'{"semaphore":2,"max":3,"holders":["m"]}'),
        (
            b'{"semaphore":2,"max":4,"holders":["aa","zz"]}',
            "mm",
            b'{"semaphore":1,"max":4,"holders":["aa","mm","zz"]}',
        ),
    ],
)
async def test_reads_and_writes_the_go_shape(backend: Backend, go_value: bytes, lock_id: str, expected: bytes) -> None:
    ls = backend.lockstore()
    assert await ls.kv.create(ls.key, go_value) is not None
    await ls.lock(lock_id)
    entry = await raw(ls)
    assert entry is not None and entry.value == expected


@pytest.mark.parametrize(
    "corrupt",
    [b"{not json", b'{"semaphore":1,"max":1,"holders":["a"]}', b'{"semaphore":"x","max":1,"holders":null}', b""],
)
async def test_corrupt_value_is_never_overwritten(backend: Backend, corrupt: bytes) -> None:
    ls = backend.lockstore()
    before = await ls.kv.create(ls.key, corrupt)
    assert before is not None
    for op in (ls.lock("m1"), ls.unlock("m1"), ls.set_max(3), ls.get(), ls.status()):
        with pytest.raises(SemaphoreCorrupt) as info:
            await op
        assert info.value.key == ls.key
        assert ls.key in str(info.value)
    assert await raw(ls) == before


class RacingStore:
    """A real store wrapper whose every compare-and-swap is beaten by a real concurrent writer."""

    def __init__(self, inner: KVStore, rival: LockStore) -> None:
        self.inner = inner
        self.rival = rival
        self.flip = 0
        if isinstance(inner, Transactions):  # the semaphore is then written by commit()
            self.commit = self._racing_commit

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def _beaten(self) -> None:
        self.flip += 1
        await self.rival.set_max(10 + self.flip % 2)  # a real write that moves the revision

    async def compare_and_swap(self, key: str, value: bytes, revision: int) -> Entry | None:
        await self._beaten()
        return await self.inner.compare_and_swap(key, value, revision)

    async def _racing_commit(
        self, expect: Mapping[str, int], put: Mapping[str, bytes], delete: Sequence[str] = ()
    ) -> Committed:
        assert isinstance(self.inner, Transactions)
        await self._beaten()
        return await self.inner.commit(expect, put, delete)


async def test_conflicts_retry_then_give_up_bounded(backend: Backend) -> None:
    rival = backend.lockstore()
    await rival.set_max(10)
    racing = RacingStore(backend.open(), rival)
    ls = LockStore(racing, backend.group, max_attempts=4)  # type: ignore[arg-type]
    with pytest.raises(SemaphoreContention, match="after 4 attempts"):
        await ls.lock("m1")
    assert racing.flip == 4
    assert "m1" not in (await rival.get()).semaphore.holders


async def test_status_shows_holder_ages(backend: Backend) -> None:
    now = [datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)]
    ls = backend.lockstore(clock=lambda: now[0])
    # Held by a Go locksmith before we arrived: its age is unknown.
    await ls.kv.create(ls.key, b'{"semaphore":2,"max":3,"holders":["gogo"]}')
    await ls.lock("m1")
    now[0] += timedelta(minutes=5)
    await ls.lock("m2")
    await ls.lock("m1")  # idempotent: keeps the original time
    status = await ls.status()
    assert status.semaphore == Semaphore(0, 3, ("gogo", "m1", "m2"))
    since = {h.id: h.since for h in status.holders}
    assert since == {"gogo": None, "m1": datetime(2024, 5, 1, 12, 0, tzinfo=UTC), "m2": now[0]}
    assert status.holders[1].held_for(now[0] + timedelta(seconds=30)) == 330.0
    await ls.unlock("m1")
    status = await ls.status()
    assert {h.id: h.since for h in status.holders} == {"gogo": None, "m2": now[0]}
    ages = await raw(ls, ls.ages_key)
    assert ages is not None and b'"m2":{"since":"2024-05-01T12:05:00Z","revision":' in ages.value
    assert b'"m1"' not in ages.value
    # The semaphore value itself stays in the exact Go shape.
    entry = await raw(ls)
    assert entry is not None and entry.value == b'{"semaphore":1,"max":3,"holders":["gogo","m2"]}'


async def test_an_age_is_dropped_once_its_holder_left_by_another_tool(backend: Backend) -> None:
    """The Go tool (here: raw writes) unlocks m1 and locks it again: the old time would be a lie."""
    now = [datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)]
    ls = backend.lockstore(clock=lambda: now[0])
    await ls.set_max(2)
    await ls.lock("m1")
    await ls.lock("m2")
    first = await raw(ls)
    assert first is not None
    gone = await ls.kv.compare_and_swap(ls.key, b'{"semaphore":1,"max":2,"holders":["m2"]}', first.revision)
    assert gone is not None
    back = await ls.kv.compare_and_swap(ls.key, b'{"semaphore":0,"max":2,"holders":["m1","m2"]}', gone.revision)
    assert back is not None
    status = await ls.status()
    # Both ages are from before a write we did not make: neither can be vouched for any more.
    assert {h.id: h.since for h in status.holders} == {"m1": None, "m2": None}
    # Our next write does not bring them back; a lock we take after it is known again.
    now[0] += timedelta(minutes=1)
    await ls.unlock("m2")
    await ls.lock("m3")
    status = await ls.status()
    assert {h.id: h.since for h in status.holders} == {"m1": None, "m3": now[0]}


async def test_corrupt_ages_record_never_blocks_and_is_left_alone(backend: Backend) -> None:
    ls = backend.lockstore()
    bad = await ls.kv.create(ls.ages_key, b"garbage")
    await ls.lock("m1")
    status = await ls.status()
    assert [h.since for h in status.holders] == [None]
    assert status.ages_problem is not None and ls.ages_key in status.ages_problem
    await ls.unlock("m1")
    assert await raw(ls, ls.ages_key) == bad


async def test_wait_for_change_wakes_on_a_write(backend: Backend) -> None:
    ls = backend.lockstore()
    other = backend.lockstore()
    absent = await ls.get()
    assert not absent.exists and absent.revision == 0
    waiter = asyncio.create_task(ls.wait_for_change(absent.revision))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    await other.lock("m1")
    snap = await asyncio.wait_for(waiter, 10)
    assert snap.semaphore.holders == ("m1",)

    waiter = asyncio.create_task(ls.wait_for_change(snap.revision))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    await other.unlock("m1")
    snap2 = await asyncio.wait_for(waiter, 10)
    assert snap2.semaphore == INITIAL and snap2.revision > snap.revision


async def test_wait_for_change_after_a_deletion_does_not_replay_history(backend: Backend) -> None:
    ls = backend.lockstore()
    await ls.lock("m1")
    entry = await raw(ls)
    assert entry is not None
    assert await ls.kv.delete(ls.key)
    absent = await ls.get()
    assert not absent.exists
    waiter = asyncio.create_task(ls.wait_for_change(absent.revision))
    await asyncio.sleep(0.3)
    assert not waiter.done(), "an old value from before the deletion was handed back"
    await backend.lockstore().lock("m2")
    snap = await asyncio.wait_for(waiter, 10)
    assert snap.semaphore.holders == ("m2",)
