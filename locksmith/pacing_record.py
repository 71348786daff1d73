"""The fleet's pacing record beside the semaphore (protocol/pacing.py): read it, set it (locksmithctl
set-spacing), and stamp each release in it. LockStore carries these; they are here to keep one job per
module. The record only spaces our own agents' locks (the Go tool never reads it)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

import structlog

from locksmith.kv.base import Entry, KVError, KVStore
from locksmith.protocol import pacing
from locksmith.protocol.pacing import Pacing
from locksmith.protocol.semaphore import SemaphoreContention
from locksmith.safe_text import outside_text

log = structlog.get_logger(__name__)

_STAMP_ATTEMPTS = 10


class PacingRecord:
    """What LockStore provides for it: its store, the record's key, its attempts and its clock."""

    kv: KVStore
    spacing_key: str
    _max_attempts: int
    _clock: Callable[[], datetime]

    async def read_pacing(self) -> tuple[Pacing, str | None]:
        """The fleet's pacing, and why it is ignored when the stored value is not one we trust."""
        return self.pacing_of(await self.kv.get(self.spacing_key))

    def pacing_of(self, entry: Entry | None) -> tuple[Pacing, str | None]:
        """`read_pacing` of an entry already read."""
        if entry is None:
            return Pacing(), None
        parsed = pacing.decode(entry.value)
        if parsed is None:
            return Pacing(), f"{self.spacing_key!r} is not a pacing record; ignored (set it again with set-spacing)"
        return parsed, None

    def paced(self, seen: Mapping[str, Entry | None]) -> bool:
        """Whether the spacing may hold a host back, by the record in `seen`: one with a spacing, or one we
        cannot read. A release then hands no slot over; each waiter paces itself."""
        entry = seen.get(self.spacing_key)
        if entry is None:
            return False
        parsed, problem = self.pacing_of(entry)
        return problem is not None or parsed.spacing_seconds > 0

    async def set_spacing(self, seconds: float) -> float:
        """Set the minimum gap between a release and the next lock (0: none); returns the old one."""
        for _ in range(self._max_attempts):
            entry = await self.kv.get(self.spacing_key)
            old = pacing.decode(entry.value) if entry is not None else None
            new = Pacing(seconds, old.last_release if old else 0.0).encode()
            if entry is None:
                if await self.kv.create(self.spacing_key, new) is not None:
                    return 0.0
            elif await self.kv.compare_and_swap(self.spacing_key, new, entry.revision) is not None:
                return old.spacing_seconds if old else 0.0
        raise SemaphoreContention(f"gave up on {self.spacing_key!r}: other writers changed it every time; try again")

    async def note_release(self, seen: Mapping[str, Entry | None] | None = None) -> None:
        """Stamp the release just made, when the fleet is paced (best effort: never fails a release).
        `seen`: the record as read just before the release, when it was (saves a read when unpaced)."""
        try:
            for attempt in range(_STAMP_ATTEMPTS):
                if attempt == 0 and seen is not None and self.spacing_key in seen:
                    entry = seen[self.spacing_key]
                else:
                    entry = await self.kv.get(self.spacing_key)
                current = pacing.decode(entry.value) if entry is not None else None
                if entry is None or current is None or current.spacing_seconds <= 0:
                    return
                stamped = Pacing(current.spacing_seconds, self._clock().timestamp()).encode()
                if await self.kv.compare_and_swap(self.spacing_key, stamped, entry.revision) is not None:
                    return
        except KVError as exc:
            log.warning("pacing not stamped", key=self.spacing_key, error=outside_text(exc))
