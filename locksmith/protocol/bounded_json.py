"""Defensive reading of the small JSON values we keep beside the semaphore (host records, pacing).

Anyone with write access to the store may have written them, so nothing here raises: a value that is too
large, not UTF-8 JSON, nested past the parser's limit, or not an object comes back as a printable reason.
"""

from __future__ import annotations

import json
import math

_LATEST_TIME = 2**40  # Unix seconds (year ~36812): far past any clock, small enough for every float format


def json_object(raw: bytes, max_bytes: int) -> dict[str, object] | str:
    """The value as a JSON object, or a short reason (safe to print) why it is not one we trust."""
    if len(raw) > max_bytes:
        return f"{len(raw)} bytes, more than {max_bytes}"
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=lambda c: None)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "not UTF-8 JSON"
    if not isinstance(data, dict):
        return "not a JSON object"
    return data


def unix_time(value: object) -> float | None:
    """A JSON number usable as Unix seconds (finite, not negative, bounded); None otherwise (bools too)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or not 0 <= value < _LATEST_TIME:
        return None
    return float(value)
