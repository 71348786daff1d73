"""Per-host records: one small JSON value per machine beside the semaphore (the Go tool never reads it).

Key: `<semaphore key>-hosts/<machine id>`. A record is outside data when read back (any host, or
anyone with write access to the store, may have written it), so `decode` never raises: a value we
cannot trust comes back as an `Unreadable` naming the reason, and the fleet view shows it as such.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from locksmith.protocol.bounded_json import json_object, unix_time

MAX_RECORD_BYTES = 2048
# An agent rewrites its record at least this often; three intervals without one and it reads as stale.
REFRESH_SECONDS = 30.0
MAX_FIELD_CHARS = 200
STATES = frozenset({"idle", "waiting", "holding", "rebooting", "error"})
WAITING_FOR = frozenset({"", "window", "lock", "users", "health", "spacing"})
_TEXT_FIELDS = ("state", "version", "waiting_for", "last_error")


def hosts_prefix(semaphore_key: str) -> str:
    """The prefix under which every host of the semaphore's group keeps its record."""
    return f"{semaphore_key}-hosts/"


def record_key(semaphore_key: str, machine_id: str) -> str:
    return f"{hosts_prefix(semaphore_key)}{machine_id}"


@dataclass(frozen=True)
class HostRecord:
    """What one agent last said about itself. Times are Unix seconds from the writer's clock."""

    state: str
    version: str = ""
    slot: bool = False
    waiting_for: str = ""
    since: float = 0.0
    updated: float = 0.0
    last_error: str = ""

    def encode(self) -> bytes:
        """Bounded JSON: long text is cut so the record always fits MAX_RECORD_BYTES."""
        data = asdict(self)
        for name in _TEXT_FIELDS:
            data[name] = data[name][:MAX_FIELD_CHARS]
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class Unreadable:
    """A stored value that is not a record we trust; `reason` is safe to print."""

    reason: str


def _text(data: dict[str, object], name: str) -> str | None:
    value = data.get(name, "")
    if not isinstance(value, str) or len(value) > MAX_FIELD_CHARS or not value.isprintable():
        return None
    return value


def decode(raw: bytes) -> HostRecord | Unreadable:
    """Parse a stored record; never raises."""
    data = json_object(raw, MAX_RECORD_BYTES)
    if isinstance(data, str):
        return Unreadable(data)
    texts = {name: _text(data, name) for name in _TEXT_FIELDS}
    bad = [name for name, value in texts.items() if value is None]
    if bad:
        return Unreadable(f"field {bad[0]} is not short printable text")
    if texts["state"] not in STATES:
        return Unreadable("unknown state")
    if texts["waiting_for"] not in WAITING_FOR:
        return Unreadable("unknown waiting_for")
    slot = data.get("slot", False)
    if not isinstance(slot, bool):
        return Unreadable("slot is not true/false")
    since, updated = unix_time(data.get("since", 0)), unix_time(data.get("updated", 0))
    if since is None or updated is None:
        return Unreadable("since/updated is not a time")
    return HostRecord(
        state=str(texts["state"]),
        version=str(texts["version"]),
        slot=slot,
        waiting_for=str(texts["waiting_for"]),
        since=since,
        updated=updated,
        last_error=str(texts["last_error"]),
    )


def is_stale(record: HostRecord, now: float, refresh_seconds: float) -> bool:
    """Stale once three refresh intervals pass without an update (one lost write is not enough)."""
    return now - record.updated > 3 * refresh_seconds
