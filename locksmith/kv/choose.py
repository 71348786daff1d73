"""Which etcd API a plain http(s):// endpoint means: the one that holds the fleet's semaphore.

The Go locksmith reads `LOCKSMITHD_ENDPOINT=http://…` as the etcd **v2** keys API; we default to v3.
An admin who swaps one host's locksmith keeping the URL would otherwise get two semaphores on one etcd
(Go hosts on v2, ours on v3) and more than `max` hosts down at once. So before its first operation a
store for a plain URL looks at the semaphore's key (the `decisive_key`) in both keyspaces:

    in v2 only       → v2, and one warning saying so (write etcd2+http:// to make it explicit);
    in both          → refuse, one line: two semaphores already exist, an admin must pick one;
    in v3, or none   → v3 (a warning when v2 is enabled but empty: a Go host starting later would
                       create its own there — name the API to be sure).

`etcd2+http(s)://` and `etcd3+http(s)://` skip all this. A store that cannot be reached yet makes the
first operation fail as unavailable; the choice is made again on the next one, and then kept.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import aclosing

import structlog

from locksmith.kv.base import (
    BACKEND_ETCD2,
    Change,
    Committed,
    Entry,
    ExpiringKeys,
    Heads,
    InLine,
    KVError,
    KVOptions,
    KVProtocolError,
    KVStore,
    LineLook,
    NoTransactions,
    Place,
    Transactions,
)

log = structlog.get_logger(__name__)


class SplitSemaphore(KVError):
    """The semaphore exists in both etcd keyspaces: using either would let more than `max` hosts reboot."""


class ApiChoosingStore:
    """A KVStore for plain http(s):// etcd endpoints that settles on v2 or v3 at first use (see module)."""

    def __init__(self, options: KVOptions, decisive_key: str) -> None:
        self._options = options
        self._key = decisive_key
        self._chosen: KVStore | None = None
        self._transactions_of_chosen: Transactions | None = None
        self._choosing = asyncio.Lock()

    async def _store(self) -> KVStore:
        if self._chosen is not None:  # every request asks: no lock once settled
            return self._chosen
        async with self._choosing:
            if self._chosen is None:
                chosen = await self._choose()
                # A runtime protocol check costs microseconds on each of many calls: once is enough.
                self._transactions_of_chosen = chosen if isinstance(chosen, Transactions) else None
                self._chosen = chosen
            return self._chosen

    async def _choose(self) -> KVStore:
        from locksmith.kv.etcd2 import Etcd2Store
        from locksmith.kv.etcd3 import Etcd3Store

        as_v2 = tuple(dataclasses.replace(e, backend=BACKEND_ETCD2) for e in self._options.endpoints)
        v2 = Etcd2Store(dataclasses.replace(self._options, endpoints=as_v2))
        v3 = Etcd3Store(self._options)
        try:
            try:
                in_v2: bool | None = await v2.get(self._key) is not None
            except KVProtocolError:
                in_v2 = None  # the v2 API is off (etcd answers 404 text): no Go host can be using it
            in_v3 = await v3.get(self._key) is not None
        except BaseException:
            await v2.aclose()
            await v3.aclose()
            raise
        urls = ", ".join(e.original for e in self._options.endpoints)
        if in_v2 and in_v3:
            await v2.aclose()
            await v3.aclose()
            raise SplitSemaphore(
                f"{self._key!r} exists in both the etcd v2 and v3 keyspaces at {urls}: two semaphores, so more"
                " than max hosts could reboot at once; keep the one your fleet uses (Go locksmiths use v2),"
                " delete the other, and name the API with etcd2+http:// or etcd3+http://"
            )
        if in_v2:
            await v3.aclose()
            log.warning(
                "etcd-api-chosen",
                api="v2",
                key=self._key,
                reason="the semaphore is in the v2 keyspace, where Go locksmiths keep it",
                fix="write the endpoint as etcd2+http(s):// to say so",
            )
            return v2
        await v2.aclose()
        if in_v2 is False and not in_v3:
            log.warning(
                "etcd-api-chosen",
                api="v3",
                key=self._key,
                reason="no semaphore yet, and this etcd also serves v2, where a Go locksmith would create its own",
                fix="name the API the fleet uses: etcd2+http(s):// (with Go hosts) or etcd3+http(s)://",
            )
        return v3

    async def get(self, key: str) -> Entry | None:
        return await (await self._store()).get(key)

    async def create(self, key: str, value: bytes) -> Entry | None:
        return await (await self._store()).create(key, value)

    async def compare_and_swap(self, key: str, value: bytes, revision: int) -> Entry | None:
        return await (await self._store()).compare_and_swap(key, value, revision)

    async def delete(self, key: str, revision: int | None = None) -> bool:
        return await (await self._store()).delete(key, revision)

    async def watch(self, key: str, after_revision: int) -> AsyncIterator[Change]:
        store = await self._store()
        async with aclosing(store.watch(key, after_revision)) as changes:
            async for change in changes:
                yield change

    async def list_prefix(self, prefix: str, limit: int) -> list[Entry]:
        return await (await self._store()).list_prefix(prefix, limit)

    async def put_expiring(self, key: str, value: bytes, ttl_seconds: int, *, only_if_present: bool = False) -> bool:
        store = await self._store()
        assert isinstance(store, ExpiringKeys)  # both etcd backends have expiring keys
        return await store.put_expiring(key, value, ttl_seconds, only_if_present=only_if_present)

    async def _transactions(self) -> Transactions:
        await self._store()
        if self._transactions_of_chosen is None:
            raise NoTransactions(f"the etcd v2 API holds {self._key!r}: no multi-key transactions")
        return self._transactions_of_chosen

    async def read_together(self, keys: Sequence[str]) -> dict[str, Entry | None]:
        return await (await self._transactions()).read_together(keys)

    async def commit(
        self, expect: Mapping[str, int], put: Mapping[str, bytes], delete: Sequence[str] = ()
    ) -> Committed:
        return await (await self._transactions()).commit(expect, put, delete)

    async def join_line(self, key: str, value: bytes, ttl_seconds: int, look: LineLook | None = None) -> InLine:
        return await (await self._transactions()).join_line(key, value, ttl_seconds, look)

    async def follow(self, key: str) -> AsyncIterator[Change]:
        async with aclosing((await self._transactions()).follow(key)) as changes:
            async for change in changes:
                yield change

    async def stay_in_line(self, lease: int) -> bool:
        return await (await self._transactions()).stay_in_line(lease)

    async def place_in_line(self, prefix: str, created: int, read: Sequence[str] = (), ahead: int = 1) -> Place:
        return await (await self._transactions()).place_in_line(prefix, created, read, ahead)

    async def heads(self, counts: Mapping[str, int], read: Sequence[str] = ()) -> Heads:
        return await (await self._transactions()).heads(counts, read)

    async def commit_or_queue(
        self,
        expect: Mapping[str, int],
        put: Mapping[str, bytes],
        delete: Sequence[str],
        *,
        otherwise_put: Mapping[str, bytes],
        counts: Mapping[str, int],
        read: Sequence[str],
    ) -> int | Heads:
        store = await self._transactions()
        return await store.commit_or_queue(expect, put, delete, otherwise_put=otherwise_put, counts=counts, read=read)

    async def ping(self) -> None:
        await (await self._store()).ping()

    async def aclose(self) -> None:
        if self._chosen is not None:
            await self._chosen.aclose()
