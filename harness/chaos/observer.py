"""The independent observer: every change of the semaphore key, with its etcd revision, and of the keys
beside it (`<key>-…`: the waiting line, requests to leave, holder ages), which show why a write changed
the holders as it did.

It speaks etcd's v3 HTTP/JSON gateway itself (a few lines of httpx) rather than reusing
`locksmith.kv`: the thing being checked must not also be the thing doing the checking. A watch
from revision R+1 after a failure on any live member resumes exactly where it stopped, because
etcd keeps every revision until compaction (the harness's etcd never compacts).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from harness.chaos.history import Recorder


def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


@dataclass(frozen=True)
class KeyState:
    """One linearizable read: the store's revision, the key's last modification, its value."""

    revision: int
    mod_revision: int  # 0 when the key does not exist
    value: str | None


async def read_key(client: httpx.AsyncClient, endpoints: list[str], key: str, budget: float = 10.0) -> KeyState | None:
    """A linearizable read of `key`. Tries every member until one with quorum answers, for at
    most `budget` seconds; None if none did."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    while True:
        for url in endpoints:
            try:
                r = await client.post(f"{url}/v3/kv/range", json={"key": _b64(key)}, timeout=1.0)
                if r.status_code != 200:
                    continue
                body = r.json()
                kvs = body.get("kvs") or []
                value = base64.b64decode(kvs[0].get("value", "")).decode() if kvs else None
                mod = int(kvs[0]["mod_revision"]) if kvs else 0
                return KeyState(int(body["header"]["revision"]), mod, value)
            except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
                continue  # a member without quorum, dying, or answering nonsense: ask the next
        if loop.time() > deadline:
            return None
        await asyncio.sleep(0.1)


async def read_revision(
    client: httpx.AsyncClient, endpoints: list[str], key: str, budget: float = 10.0
) -> tuple[int, str | None] | None:
    """A linearizable read of `key`: (store revision, value or None), or None (see `read_key`)."""
    state = await read_key(client, endpoints, key, budget)
    return None if state is None else (state.revision, state.value)


class Observer:
    """Watches one key on a cluster and records every change as a ``sem`` record, and every change of
    the keys beside it (`<key>-…`) as an ``aux`` record."""

    def __init__(
        self,
        endpoints: list[str],
        key: str,
        recorder: Recorder,
        on_value: Callable[[str | None], None] | None = None,
        quiet_check: float = 3.0,
    ) -> None:
        self.endpoints = endpoints
        self.on_value = on_value
        #: After this long without a line from a member, ask whether it is still alive.
        self.quiet_check = quiet_check
        self.key = key
        self.recorder = recorder
        self.last_rev = 0
        # One transaction writes several keys at one revision; None: all of `last_rev` is recorded.
        self._keys_at_last_rev: set[str] | None = None
        self.last_value: str | None = None
        self.reconnects = 0
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def start(self, from_revision: int) -> None:
        """Record every change with a revision >= `from_revision`."""
        self.last_rev, self._keys_at_last_rev = from_revision - 1, None
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_for(self, predicate: Callable[[str | None], bool], within: float) -> bool:
        """Wait until the latest observed value satisfies `predicate`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not predicate(self.last_value):
            self._changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return True

    async def _run(self) -> None:
        i = 0
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=None)) as client:
            while True:
                url = self.endpoints[i % len(self.endpoints)]
                i += 1
                # Any failure of one member just moves the watch to the next one; the observer
                # itself must outlive whatever a dying member sends it.
                with contextlib.suppress(Exception):
                    await self._watch(client, url)
                self.reconnects += 1
                await asyncio.sleep(0.05)

    async def _watch(self, client: httpx.AsyncClient, url: str) -> None:
        # From the last revision seen, not the next: a stream cut between the keys one transaction wrote
        # resumes with the rest of them (`_record` drops what it has).
        body = {
            "create_request": {
                "key": _b64(self.key),
                "range_end": _b64(_prefix_end(self.key)),
                "start_revision": max(1, self.last_rev),
            }
        }
        async with client.stream("POST", f"{url}/v3/watch", json=body) as resp:
            if resp.status_code != 200:
                return
            # A dead or paused member leaves the stream silent, so progress notifications
            # can't be relied on: after a quiet spell we ask the member whether it is alive, and
            # drop it if not; its events are then re-read from another member by revision.
            # The pending read is kept across quiet spells, never cancelled: cancelling it would
            # end the line iterator for good (an async generator does not survive that).
            lines = resp.aiter_lines()
            pending: asyncio.Task[str] | None = None
            try:
                while True:
                    if pending is None:
                        pending = asyncio.ensure_future(anext(lines))
                    done, _ = await asyncio.wait({pending}, timeout=self.quiet_check)
                    if not done:
                        if not await self._member_alive(client, url):
                            return
                        continue
                    task, pending = pending, None
                    try:
                        line = task.result()
                    except StopAsyncIteration:
                        return
                    if not line.strip():
                        continue
                    result = json.loads(line).get("result") or {}
                    if result.get("canceled") or result.get("compact_revision"):
                        raise ValueError(f"watch on {url} was cancelled: {result}")
                    for ev in result.get("events") or []:
                        self._record(ev)
            finally:
                if pending is not None:
                    pending.cancel()
                    await asyncio.wait({pending})
                    if not pending.cancelled():
                        pending.exception()  # retrieved: the stream is being dropped anyway

    async def _member_alive(self, client: httpx.AsyncClient, url: str) -> bool:
        try:
            r = await client.get(f"{url}/health", timeout=1.0)
            return r.status_code == 200 and '"true"' in r.text.replace(" ", "")
        except httpx.HTTPError:
            return False

    def _record(self, ev: dict[str, object]) -> None:
        kv = ev.get("kv") or {}
        assert isinstance(kv, dict)
        rev = int(kv.get("mod_revision", 0))
        key = base64.b64decode(kv.get("key", "")).decode(errors="replace")
        seen = self._keys_at_last_rev
        if rev < self.last_rev or (rev == self.last_rev and (seen is None or key in seen)):
            return  # a resumed watch repeats what we already have
        if rev > self.last_rev or seen is None:
            self.last_rev, seen = rev, set()
        seen.add(key)
        self._keys_at_last_rev = seen
        value = None if ev.get("type") == "DELETE" else base64.b64decode(kv.get("value", "")).decode()
        if key != self.key:
            self.recorder.add("aux", rev=rev, key=key, present=value is not None)
            return
        self.recorder.add("sem", rev=rev, value=value)
        self.last_value = value
        self._changed.set()
        if self.on_value:
            self.on_value(value)


def _prefix_end(key: str) -> bytes:
    """The end of the range of every key that starts with `key` (etcd's range_end for a prefix)."""
    end = bytearray(key.encode())
    end[-1] += 1
    return bytes(end)
