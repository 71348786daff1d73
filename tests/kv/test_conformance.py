"""One conformance suite for every KV backend: embedded SQLite, etcd v3 and etcd v2.

Each test runs three times (see the `backend` fixture); the etcd backends use the session
etcd with a per-test key prefix.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from locksmith.kv import Change, Entry, KVStore

StoreFactory = Callable[[], KVStore]

SEMAPHORE = b'{"semaphore":1,"max":1,"holders":null}'
WAIT = 15.0  # only a guard against a hung test; nothing here measures time


async def next_change(changes: AsyncIterator[Change]) -> Change:
    async with asyncio.timeout(WAIT):
        return await anext(changes)


async def test_get_absent_returns_none(store: KVStore, unique_key: str) -> None:
    assert await store.get(f"{unique_key}/nothing") is None


async def test_create_only_when_absent(store: KVStore, unique_key: str) -> None:
    key = f"{unique_key}/sem"
    created = await store.create(key, SEMAPHORE)
    assert created is not None
    assert created.key == key and created.value == SEMAPHORE and created.revision > 0
    assert await store.get(key) == created
    assert await store.create(key, b"other") is None
    assert await store.get(key) == created


async def test_values_round_trip_exactly(store: KVStore, unique_key: str) -> None:
    for i, value in enumerate([b"", b"x", json.dumps({"holders": ["a", "b"], "\u00e9": 1}).encode(), b"a\nb\tc"]):
        entry = await store.create(f"{unique_key}/v{i}", value)
        assert entry is not None
        got = await store.get(f"{unique_key}/v{i}")
        assert got is not None and got.value == value


async def test_group_key_with_escaped_slash(store: KVStore, unique_key: str) -> None:
    # The semaphore key of group "prod/db" holds a literal "%2F": it must stay one key.
    key = f"{unique_key}/groups/prod%2Fdb/semaphore"
    created = await store.create(key, SEMAPHORE)
    assert created is not None
    assert await store.get(key) == created
    assert await store.get(f"{unique_key}/groups/prod/db/semaphore") is None


async def test_compare_and_swap(store: KVStore, unique_key: str) -> None:
    key = f"{unique_key}/sem"
    first = await store.create(key, b"1")
    assert first is not None
    second = await store.compare_and_swap(key, b"2", first.revision)
    assert second is not None and second.value == b"2" and second.revision > first.revision
    # A stale revision loses and changes nothing.
    assert await store.compare_and_swap(key, b"3", first.revision) is None
    assert await store.get(key) == second
    assert await store.compare_and_swap(key, b"3", 0) is None
    assert await store.compare_and_swap(f"{unique_key}/absent", b"x", second.revision) is None
    assert await store.get(f"{unique_key}/absent") is None


async def test_delete(store: KVStore, unique_key: str) -> None:
    key = f"{unique_key}/sem"
    assert await store.delete(key) is False
    entry = await store.create(key, b"1")
    assert entry is not None
    assert await store.delete(key, entry.revision + 1000) is False
    assert await store.get(key) == entry
    assert await store.delete(key, entry.revision) is True
    assert await store.get(key) is None
    assert await store.delete(key, entry.revision) is False
    again = await store.create(key, b"2")
    assert again is not None and again.revision > entry.revision
    assert await store.delete(key) is True
    assert await store.get(key) is None


async def test_revisions_grow_across_keys(store: KVStore, unique_key: str) -> None:
    revisions = []
    a = await store.create(f"{unique_key}/a", b"0")
    b = await store.create(f"{unique_key}/b", b"0")
    assert a is not None and b is not None
    revisions += [a.revision, b.revision]
    for i in range(3):
        a2 = await store.compare_and_swap(a.key, str(i).encode(), a.revision)
        b2 = await store.compare_and_swap(b.key, str(i).encode(), b.revision)
        assert a2 is not None and b2 is not None
        a, b = a2, b2
        revisions += [a.revision, b.revision]
    assert revisions == sorted(set(revisions))
    assert revisions[0] > 0


async def test_watch_sees_change_by_another_client(new_store: StoreFactory, unique_key: str) -> None:
    watcher, writer = new_store(), new_store()
    key = f"{unique_key}/sem"
    start = await writer.create(key, b"1")
    assert start is not None
    changes = aiter(watcher.watch(key, start.revision))
    pending = asyncio.ensure_future(next_change(changes))
    await asyncio.sleep(0.2)  # let the watch establish; the result does not depend on it
    updated = await writer.compare_and_swap(key, b"2", start.revision)
    assert updated is not None
    assert await pending == Change(key, b"2", updated.revision)
    assert await writer.delete(key, updated.revision)
    deleted = await next_change(changes)
    assert deleted.value is None and deleted.revision > updated.revision
    await changes.aclose()  # type: ignore[attr-defined]


async def test_watch_after_revision_reports_missed_changes(new_store: StoreFactory, unique_key: str) -> None:
    store = new_store()
    key = f"{unique_key}/sem"
    entry = await store.create(key, b"0")
    assert entry is not None
    base = entry.revision
    for i in range(1, 4):
        nxt = await store.compare_and_swap(key, str(i).encode(), entry.revision)
        assert nxt is not None
        entry = nxt
    # Changes made before the watch started, after `base`, are reported; a backend may
    # coalesce them but must end at the latest state, in increasing revision order.
    seen: list[Change] = []
    changes = aiter(store.watch(key, base))
    while not seen or seen[-1].revision < entry.revision:
        seen.append(await next_change(changes))
    await changes.aclose()  # type: ignore[attr-defined]
    assert seen[0].revision > base
    assert [c.revision for c in seen] == sorted({c.revision for c in seen})
    assert seen[-1] == Change(key, b"3", entry.revision)


async def test_watch_from_current_revision_waits_for_the_next_change(new_store: StoreFactory, unique_key: str) -> None:
    watcher, writer = new_store(), new_store()
    key = f"{unique_key}/sem"
    other = f"{unique_key}/other"
    entry = await writer.create(key, b"0")
    assert entry is not None
    changes = aiter(watcher.watch(key, entry.revision))
    pending = asyncio.ensure_future(next_change(changes))
    # Writes to another key must not wake this watch with a change.
    assert await writer.create(other, b"noise") is not None
    updated = await writer.compare_and_swap(key, b"1", entry.revision)
    assert updated is not None
    assert await pending == Change(key, b"1", updated.revision)
    await changes.aclose()  # type: ignore[attr-defined]


async def test_watch_of_absent_key_sees_its_creation(new_store: StoreFactory, unique_key: str) -> None:
    watcher, writer = new_store(), new_store()
    key = f"{unique_key}/later"
    probe = await writer.create(f"{unique_key}/probe", b"")
    assert probe is not None
    changes = aiter(watcher.watch(key, probe.revision))
    pending = asyncio.ensure_future(next_change(changes))
    created = await writer.create(key, b"here")
    assert created is not None
    assert await pending == Change(key, b"here", created.revision)
    await changes.aclose()  # type: ignore[attr-defined]


async def test_concurrent_cas_has_one_winner_per_revision(new_store: StoreFactory, unique_key: str) -> None:
    clients = [new_store() for _ in range(4)]
    key = f"{unique_key}/sem"
    entry = await clients[0].create(key, b"start")
    assert entry is not None
    for round_ in range(3):
        results = await asyncio.gather(
            *(clients[i % 4].compare_and_swap(key, f"{round_}-{i}".encode(), entry.revision) for i in range(20))
        )
        winners = [r for r in results if r is not None]
        assert len(winners) == 1
        current = await clients[0].get(key)
        assert current == winners[0]
        entry = winners[0]


async def test_fifty_concurrent_increments_count_exactly(new_store: StoreFactory, unique_key: str) -> None:
    clients = [new_store() for _ in range(5)]
    key = f"{unique_key}/counter"
    assert await clients[0].create(key, b"0") is not None

    async def increment(store: KVStore) -> int:
        attempts = 0
        while True:
            attempts += 1
            current = await store.get(key)
            assert current is not None
            if await store.compare_and_swap(key, str(int(current.value) + 1).encode(), current.revision):
                return attempts
            await asyncio.sleep(0)  # a conflict retries at once

    attempts = await asyncio.gather(*(increment(clients[i % 5]) for i in range(50)))
    final = await clients[0].get(key)
    assert final is not None and final.value == b"50"
    assert sum(attempts) >= 50


async def test_list_prefix_returns_the_directorys_entries_in_key_order(store: KVStore, unique_key: str) -> None:
    prefix = f"{unique_key}/sem-hosts/"
    assert await store.list_prefix(prefix, 10) == []
    made = {}
    for name in ("c3", "a1", "b2"):
        entry = await store.create(prefix + name, name.encode())
        assert entry is not None
        made[name] = entry
    assert await store.create(f"{unique_key}/sem-hostsX", b"beside, not under") is not None
    assert await store.create(f"{unique_key}/sem", b"the parent's sibling") is not None
    listed = await store.list_prefix(prefix, 10)
    assert listed == [made["a1"], made["b2"], made["c3"]]
    assert await store.delete(prefix + "b2")
    assert [e.key for e in await store.list_prefix(prefix, 10)] == [prefix + "a1", prefix + "c3"]
    assert len(await store.list_prefix(prefix, 1)) == 1


async def test_ping(store: KVStore) -> None:
    await store.ping()


# --- embedded only: several processes share one file ----------------------------------------

WRITER = """
import asyncio, sys
from locksmith.kv.embedded import EmbeddedStore

async def main() -> None:
    store = EmbeddedStore(sys.argv[1])
    entry = await store.get(sys.argv[2])
    result = await store.compare_and_swap(sys.argv[2], sys.argv[3].encode(), entry.revision)
    print(result.revision)
    await store.aclose()

asyncio.run(main())
"""


async def test_embedded_watch_wakes_on_another_process(
    tmp_path: Path, unique_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from locksmith.kv import embedded

    # Without the periodic safety re-check, only a real wake-up can deliver the change
    # before the guard expires: a lost inotify wake-up fails this test instead of hiding.
    monkeypatch.setattr(embedded, "RECHECK_INTERVAL", 3600.0)
    path = tmp_path / "shared.db"
    store = embedded.EmbeddedStore(path)
    key = f"{unique_key}/sem"
    entry = await store.create(key, b"mine")
    assert entry is not None
    changes = aiter(store.watch(key, entry.revision))
    for i in range(5):
        pending = asyncio.ensure_future(next_change(changes))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", WRITER, str(path), key, f"theirs-{i}", stdout=subprocess.PIPE
        )
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        assert await pending == Change(key, f"theirs-{i}".encode(), int(out))
    await changes.aclose()  # type: ignore[attr-defined]
    await store.aclose()


async def test_embedded_counter_across_processes(tmp_path: Path) -> None:
    """Four processes increment one counter by CAS; the store's BEGIN IMMEDIATE makes it exact."""
    from locksmith.kv.embedded import EmbeddedStore

    path = tmp_path / "shared.db"
    store = EmbeddedStore(path)
    assert await store.create("counter", b"0") is not None
    script = """
import asyncio, sys
from locksmith.kv.embedded import EmbeddedStore

async def main() -> None:
    store = EmbeddedStore(sys.argv[1])
    for _ in range(25):
        while True:
            cur = await store.get("counter")
            if await store.compare_and_swap("counter", str(int(cur.value) + 1).encode(), cur.revision):
                break
    await store.aclose()

asyncio.run(main())
"""
    procs = [await asyncio.create_subprocess_exec(sys.executable, "-c", script, str(path)) for _ in range(4)]
    codes = [await p.wait() for p in procs]
    assert codes == [0, 0, 0, 0]
    final = await store.get("counter")
    assert final == Entry("counter", b"100", final.revision if final else -1)
    await store.aclose()
