"""The semaphore as the KV store has it, change by change: who holds a slot, and the most holders
ever seen at once. This is the demo's independent view of the lock: it reads the store, never the
agents' logs or claims."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from locksmith.kv.base import KVError
from locksmith.lockstore import LockStore
from locksmith.protocol.semaphore import SemaphoreError


class SemaphoreWatch:
    def __init__(self, store: LockStore, on_change: Callable[[tuple[str, ...]], None] | None = None) -> None:
        self.store = store
        self.on_change = on_change
        self.holders: tuple[str, ...] = ()
        self.max_holders = 0
        self.max_slots = 0
        self.changes = 0
        self.revision = 0
        self.problem: str | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        snap = await self.store.get()  # raises a clear KV error now rather than in the background
        self._take(snap.semaphore.holders, snap.semaphore.max, snap.revision)
        self._task = asyncio.create_task(self._run(), name="semaphore-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _take(self, holders: list[str] | tuple[str, ...], slots: int, revision: int) -> None:
        self.holders = tuple(holders)
        self.max_slots = slots
        self.revision = revision
        self.changes += 1
        self.max_holders = max(self.max_holders, len(self.holders))
        if self.on_change is not None:
            self.on_change(self.holders)

    async def _run(self) -> None:
        while True:
            try:
                snap = await self.store.wait_for_change(self.revision)
                self.problem = None
            except (KVError, SemaphoreError) as exc:
                # Say so in the view, and catch up from the current value once the store answers.
                self.problem = str(exc)
                await asyncio.sleep(0.5)
                with contextlib.suppress(KVError, SemaphoreError):
                    snap = await self.store.get()
                    if snap.revision != self.revision:
                        self._take(snap.semaphore.holders, snap.semaphore.max, snap.revision)
                continue
            self._take(snap.semaphore.holders, snap.semaphore.max, snap.revision)
