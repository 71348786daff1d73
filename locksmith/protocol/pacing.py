"""Fleet pacing: an optional minimum gap between one host's release and the next acquisition.

Stored as one JSON value at `<semaphore key>-spacing` (the Go tool never reads it):
{"spacing_seconds": float, "last_release": float}. `last_release` is written by the releasing host
from its own clock, so hosts' clocks may disagree. Rule against skew: the wait is computed from the
reader's clock but never exceeds the spacing itself — a release stamped in the reader's future
(reader behind) costs at most one full spacing, never an unbounded wait; a reader ahead waits less
(the gap can shrink by the skew, never become a second holder: `max` still bounds holders).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from locksmith.protocol.bounded_json import json_object, unix_time

MAX_PACING_BYTES = 256


def spacing_key(semaphore_key: str) -> str:
    return f"{semaphore_key}-spacing"


@dataclass(frozen=True)
class Pacing:
    spacing_seconds: float = 0.0
    last_release: float = 0.0

    def encode(self) -> bytes:
        data = {"spacing_seconds": self.spacing_seconds, "last_release": self.last_release}
        return json.dumps(data, separators=(",", ":")).encode()


def decode(raw: bytes) -> Pacing | None:
    """Parse the stored value; None (treated as "no pacing", and reported by the caller) if untrusted."""
    data = json_object(raw, MAX_PACING_BYTES)
    if isinstance(data, str):
        return None
    # A spacing is a duration, not a time, but the same bound keeps it finite and sane.
    spacing, last = unix_time(data.get("spacing_seconds", 0)), unix_time(data.get("last_release", 0))
    if spacing is None or last is None:
        return None
    return Pacing(spacing, last)


def wait_before_acquire(pacing: Pacing, now: float) -> float:
    """Seconds to wait before trying to take a slot: 0 when unpaced, never more than the spacing."""
    if pacing.spacing_seconds <= 0 or pacing.last_release <= 0:
        return 0.0
    remaining = pacing.last_release + pacing.spacing_seconds - now
    return min(max(remaining, 0.0), pacing.spacing_seconds)
