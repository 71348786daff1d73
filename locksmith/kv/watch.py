"""What the etcd watches (v2 long poll, v3 stream) share: the resync once history is gone, and the
bounded, jittered reconnect.

Both backends lose events the same way (v3 compaction, v2's 1000-event window: "index cleared"), and
the KVStore contract allows coalescing but never skipping the latest state, so both answer it the
same way: the key's current state stands in for the history that is gone.
"""

from __future__ import annotations

import asyncio
import random
import time

from locksmith.kv.base import Change, Entry, KVUnavailable

# A watch quiet for this long is re-opened from its last revision (v3 stream, v2 long poll alike). Idle is
# normal, but a member that froze (its kernel still accepts, the process never answers) looks the same, and
# the re-open's deadline is what finds it out and moves to another member: this bounds how long a waiter
# can stay deaf.
WATCH_IDLE_SECONDS = 15.0

_FIRST_DELAY = 0.05
_MAX_DELAY = 1.0


def resync(key: str, entry: Entry | None, store_revision: int, last: int) -> tuple[Change | None, int]:
    """After the history past `last` was dropped: the Change that stands for it (None when the key's
    current state is not newer than what was already reported) and the new `last`.

    `entry` is the key as read now, `store_revision` the store's revision at that read (a deleted
    key has no revision of its own, so its deletion is reported at the store's)."""
    change: Change | None = None
    if entry is not None and entry.revision > last:
        change = Change(key, entry.value, entry.revision)
        last = entry.revision
    elif entry is None and store_revision > last:
        change = Change(key, None, store_revision)
        last = store_revision
    return change, max(last, store_revision)


class Reconnect:
    """The watch's reconnect policy: jittered exponential pauses (50 ms doubling up to 1 s) and a
    budget: unreachable for longer than `budget` seconds in a row ends the watch with KVUnavailable."""

    def __init__(self, api: str, key: str, budget: float) -> None:
        self._api, self._key, self._budget = api, key, budget
        self._down_since: float | None = None
        self._delay = _FIRST_DELAY

    def answered(self) -> None:
        """A server answered: the budget and the back-off start over."""
        self._down_since, self._delay = None, _FIRST_DELAY

    def unreachable(self, exc: Exception) -> None:
        """No endpoint answered; raise KVUnavailable once that has lasted longer than the budget."""
        now = time.monotonic()
        self._down_since = self._down_since or now
        if now - self._down_since > self._budget:
            if isinstance(exc, KVUnavailable):
                raise exc
            raise KVUnavailable(f"{self._api}: the watch on {self._key} could not reconnect: {exc}") from None

    async def pause(self) -> None:
        """Wait a jittered moment before the next attempt; each pause may be twice the last."""
        await asyncio.sleep(random.uniform(0, self._delay))
        self._delay = min(_MAX_DELAY, self._delay * 2)
