"""The independent observer: every change of the semaphore key, with its etcd revision.

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

import httpx

from locksmith.chaos.history import Recorder


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def read_revision(
    client: httpx.AsyncClient, endpoints: list[str], key: str, budget: float = 10.0
) -> tuple[int, str | None] | None:
    """A linearizable read of `key`: (store revision, value or None). Tries every member until
    one with quorum answers, for at most `budget` seconds; None if none did."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    while True:
        for url in endpoints:
            try:
                r = await client.post(f"{url}/v3/kv/range", json={"key": _b64(key)}, timeout=1.0)
                if r.status_code != 200:
                    continue
                body = r.json()
            except (httpx.HTTPError, ValueError):
                continue
            kvs = body.get("kvs") or []
            value = base64.b64decode(kvs[0].get("value", "")).decode() if kvs else None
            return int(body["header"]["revision"]), value
        if loop.time() > deadline:
            return None
        await asyncio.sleep(0.1)


class Observer:
    """Watches one key on a cluster and records every change as a ``sem`` record."""

    def __init__(self, endpoints: list[str], key: str, recorder: Recorder) -> None:
        self.endpoints = endpoints
        self.key = key
        self.recorder = recorder
        self.last_rev = 0
        self.last_value: str | None = None
        self.reconnects = 0
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._listeners: list[Callable[[int, str | None], None]] = []

    async def start(self, from_revision: int) -> None:
        """Record every change with a revision >= `from_revision`."""
        self.last_rev = from_revision - 1
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
                # Any failure of one member just moves the watch to the next one.
                with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                    await self._watch(client, url)
                self.reconnects += 1
                await asyncio.sleep(0.05)

    async def _watch(self, client: httpx.AsyncClient, url: str) -> None:
        body = {"create_request": {"key": _b64(self.key), "start_revision": self.last_rev + 1}}
        async with client.stream("POST", f"{url}/v3/watch", json=body) as resp:
            if resp.status_code != 200:
                return
            # A dead or paused member leaves the stream silent, so progress notifications
            # can't be relied on: a member that stopped answering is dropped by the timeout
            # on each line, and its events are re-read from another member by revision.
            lines = resp.aiter_lines()
            while True:
                try:
                    line = await asyncio.wait_for(anext(lines), 3.0)
                except (TimeoutError, StopAsyncIteration):
                    if not await self._member_alive(client, url):
                        return
                    continue
                if not line.strip():
                    continue
                result = json.loads(line).get("result") or {}
                if result.get("canceled") or result.get("compact_revision"):
                    raise ValueError(f"watch on {url} was cancelled: {result}")
                for ev in result.get("events") or []:
                    self._record(ev)

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
        if rev <= self.last_rev:
            return  # a resumed watch may repeat what we already have
        value = None if ev.get("type") == "DELETE" else base64.b64decode(kv.get("value", "")).decode()
        self.recorder.add("sem", rev=rev, value=value)
        self.last_rev = rev
        self.last_value = value
        self._changed.set()
