"""etcd v3's transactions and line keys (the optional `Transactions` port) against a real member."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing

import pytest

from harness.devtools.etcd import EtcdCluster
from locksmith.kv import Entry, Heads, KVOptions, Transactions, open_store, parse_endpoints
from locksmith.kv.base import LineLook
from locksmith.kv.etcd3 import Etcd3Store


@pytest.fixture
async def store(etcd: EtcdCluster) -> AsyncIterator[Etcd3Store]:
    kv = open_store(KVOptions(parse_endpoints(["etcd3+" + etcd.endpoints[0]])))
    assert isinstance(kv, Etcd3Store) and isinstance(kv, Transactions)
    yield kv
    await kv.aclose()


@pytest.fixture
def prefix() -> str:
    return f"txn-test/{uuid.uuid4().hex}/"


async def test_commit_writes_all_or_nothing_and_a_conflict_answers_with_the_current_values(
    store: Etcd3Store, prefix: str
) -> None:
    a, b, gone = prefix + "a", prefix + "b", prefix + "gone"
    await store.create(gone, b"x")
    done = await store.commit({a: 0, b: 0}, {a: b"1", b: b"2"}, delete=(gone,))
    assert done.revision is not None
    now = await store.read_together([a, b, gone])
    assert {k: (e.value, e.revision) if e else None for k, e in now.items()} == {
        a: (b"1", done.revision),
        b: (b"2", done.revision),
        gone: None,
    }
    await store.compare_and_swap(b, b"3", done.revision)  # someone else moves b
    refused = await store.commit({a: done.revision, b: done.revision}, {a: b"9", b: b"9"})
    assert refused.revision is None
    assert refused.current[a] is not None and refused.current[a].value == b"1"  # nothing was written
    assert refused.current[b] is not None and refused.current[b].value == b"3"


async def test_the_line_is_ordered_by_arrival_and_a_rejoin_keeps_its_place(store: Etcd3Store, prefix: str) -> None:
    line = prefix + "line/"
    joined = [await store.join_line(line + name, b"t", 20) for name in ("z", "a", "m")]  # key order is not arrival
    places = [await store.place_in_line(line, j.created, read=[prefix + "other"]) for j in joined]
    assert [p.predecessor for p in places] == [None, line + "z", line + "a"]
    assert places[0].entries == {prefix + "other": None}
    again = await store.join_line(line + "z", b"t", 20)
    assert again.created == joined[0].created and again.lease != joined[0].lease
    assert await store.stay_in_line(again.lease)
    await store.delete(line + "z")
    assert (await store.place_in_line(line, joined[1].created)).predecessor is None


async def test_a_join_that_looks_sees_what_a_read_right_after_would(store: Etcd3Store, prefix: str) -> None:
    line, other = prefix + "line/", prefix + "other"
    await store.create(other, b"o")
    look = LineLook(line, read=(other,), ahead=2)
    joined = [await store.join_line(line + name, b"t", 20, look) for name in ("z", "a", "m", "b")]
    for j in joined:
        assert j.place is not None and j.place.revision == j.revision  # read in the write's own transaction
        assert j.place.ahead == (await store.place_in_line(line, j.created, ahead=2)).ahead
        assert j.place.entries[other] is not None and j.place.entries[other].value == b"o"
    assert [j.place.ahead for j in joined if j.place] == [
        (),
        (line + "z",),
        (line + "a", line + "z"),
        (line + "m", line + "a"),
    ]
    # A rejoin keeps its place; with newer keys in the line the join cannot see it, and says so.
    again = await store.join_line(line + "a", b"t", 20, look)
    assert again.created == joined[1].created and again.place is None
    newest = await store.join_line(line + "b", b"t", 20, look)
    assert newest.created == joined[3].created
    assert newest.place is not None and newest.place.ahead == (line + "m", line + "a")


async def test_a_line_key_whose_lease_is_not_kept_alive_goes_by_itself(store: Etcd3Store, prefix: str) -> None:
    joined = await store.join_line(prefix + "w", b"t", 2)
    await store.create(prefix + "later", b"x")  # the store moves on; the key's own revision does not
    async with aclosing(store.follow(prefix + "w")) as changes:
        first = await anext(changes)
        assert first.value == b"t"  # the state once the watch is in place comes first
        assert first.revision == joined.created  # with the revision that wrote it
        gone = await asyncio.wait_for(anext(changes), 15)
    assert gone.value is None
    assert not await store.stay_in_line(joined.lease)


async def test_follow_starts_with_an_absent_key_as_absent(store: Etcd3Store, prefix: str) -> None:
    async with aclosing(store.follow(prefix + "never")) as changes:
        first = await asyncio.wait_for(anext(changes), 10)
    assert first.value is None and first.revision == 0


async def test_heads_reads_the_oldest_keys_of_each_prefix_with_other_keys_at_one_revision(
    store: Etcd3Store, prefix: str
) -> None:
    line, leaving = prefix + "line/", prefix + "leaving/"
    joined = [await store.join_line(line + name, b"t", 20) for name in ("z", "a", "m")]
    asked = await store.create(leaving + "q", b"t")
    assert asked is not None
    heads = await store.heads({line: 2, leaving: 5}, read=[prefix + "other", line + "m"])
    assert [(e.key, e.revision) for e in heads.first[line]] == [
        (line + "z", joined[0].revision),
        (line + "a", joined[1].revision),
    ]
    assert [e.key for e in heads.first[leaving]] == [leaving + "q"]
    assert heads.entries[prefix + "other"] is None
    assert heads.entries[line + "m"] is not None and heads.entries[line + "m"].revision == joined[2].revision


async def test_commit_or_queue_writes_its_fallback_and_answers_the_heads_when_a_compare_fails(
    store: Etcd3Store, prefix: str
) -> None:
    key, leaving = prefix + "sem", prefix + "leaving/"
    first = await store.create(key, b"1")
    assert first is not None
    done = await store.commit_or_queue(
        {key: first.revision}, {key: b"2"}, [], otherwise_put={leaving + "me": b"t"}, counts={leaving: 4}, read=[key]
    )
    assert isinstance(done, int) and (await store.get(key)) == Entry(key, b"2", done)
    assert await store.get(leaving + "me") is None  # the fallback is only for a failed compare
    refused = await store.commit_or_queue(
        {key: first.revision}, {key: b"3"}, [], otherwise_put={leaving + "me": b"t"}, counts={leaving: 4}, read=[key]
    )
    assert isinstance(refused, Heads)
    assert refused.entries[key] == Entry(key, b"2", done)  # nothing of the success branch was written
    assert [e.key for e in refused.first[leaving]] == [leaving + "me"]  # the fallback was, and is read back
