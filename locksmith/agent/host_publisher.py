"""The agent's record in the fleet view: what this host is doing, written beside the semaphore.

An observer (it hears the state machine's events) plus one background job that writes the record at
`<semaphore key>-hosts/<machine id>` (protocol/hostrecord.py) whenever it changes and every
REFRESH_SECONDS, so `locksmithctl status --hosts` can tell a live host from one that is gone (stale). Only
the newest record is written: a slow store sees fewer writes, never an old state after a new one.
Best effort throughout: a record that cannot be written is a log line, never a reason not to reboot.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import structlog

from locksmith.agent.ports import (
    Event,
    LockAcquired,
    LockFailure,
    LockHeldAfterBoot,
    LockKept,
    LockReleased,
    StateEntered,
)
from locksmith.agent.states import State
from locksmith.kv.base import KVError, KVStore
from locksmith.protocol.hostrecord import REFRESH_SECONDS, HostRecord, record_key
from locksmith.safe_text import outside_text

log = structlog.get_logger(__name__)

# What each agent state is in the fleet view when no slot is held: (state, waiting for what).
_SHOWN: dict[State, tuple[str, str]] = {
    State.STARTING: ("idle", ""),
    State.RELEASING_AFTER_BOOT: ("idle", ""),
    State.IDLE: ("idle", ""),
    State.NEED_REBOOT: ("waiting", ""),
    State.WAITING_FOR_WINDOW: ("waiting", "window"),
    State.ACQUIRING: ("waiting", "lock"),
    State.PRE_REBOOT: ("holding", ""),
    State.REBOOTING: ("rebooting", ""),
    State.STOPPING: ("idle", ""),
}


def shown(state: State, slot: bool, kept: bool) -> tuple[str, str]:
    """(fleet-view state, waiting for) of an agent in `state`, holding a slot or not, with a kept lock."""
    if kept:
        return "error", ""
    if state is State.REBOOTING:
        return "rebooting", ""
    if slot:
        return "holding", "health" if state is State.RELEASING_AFTER_BOOT else ""
    return _SHOWN[state]


class HostPublisher:
    """Call it with every event (an Observer); run `publish()` as a background job."""

    def __init__(self, kv: KVStore, semaphore_key: str, machine_id: str, version: str = "") -> None:
        self._kv = kv
        self._key = record_key(semaphore_key, machine_id)
        self._record = HostRecord(state="idle", version=version, since=time.time())
        self._changed = asyncio.Event()
        self._failing = False
        self._state = State.STARTING
        self._kept = False

    @property
    def record(self) -> HostRecord:
        return self._record

    def __call__(self, event: Event) -> None:
        r = self._record
        match event:
            case StateEntered(state=state, at=at):
                self._state = state
                r = dataclasses.replace(r, since=at.timestamp(), version=event.detail.get("version", r.version))
            case LockAcquired() | LockHeldAfterBoot():
                r = dataclasses.replace(r, slot=True)
            case LockReleased():
                r = dataclasses.replace(r, slot=False)
                self._kept = False
            case LockFailure(reason=reason):
                r = dataclasses.replace(r, last_error=outside_text(reason))
            case LockKept(reason=reason):
                self._kept = True
                r = dataclasses.replace(r, last_error=outside_text(reason))
            case _:
                return
        state, waiting_for = shown(self._state, r.slot, self._kept)
        r = dataclasses.replace(r, state=state, waiting_for=waiting_for)
        if r != self._record:
            self._record = r
            self._changed.set()

    async def publish(self) -> None:
        """Write the newest record when it changes, and at least every REFRESH_SECONDS; runs until cancelled."""
        while True:
            self._changed.clear()
            await self._write(dataclasses.replace(self._record, updated=time.time()))
            try:
                async with asyncio.timeout(REFRESH_SECONDS):
                    await self._changed.wait()
            except TimeoutError:
                pass

    async def _write(self, record: HostRecord) -> None:
        value = record.encode()
        try:
            current = await self._kv.get(self._key)
            if current is None:
                written = await self._kv.create(self._key, value)
            else:
                written = await self._kv.compare_and_swap(self._key, value, current.revision)
            if written is None:  # someone else wrote our key in between: the next refresh writes again
                log.info("host-record.conflict", key=self._key)
        except KVError as exc:
            if not self._failing:  # once per outage, not every refresh (best-effort without etcd)
                log.warning("host-record.not-written", key=self._key, error=outside_text(exc))
            self._failing = True
            return
        if self._failing:
            log.info("host-record.written-again", key=self._key)
        self._failing = False
