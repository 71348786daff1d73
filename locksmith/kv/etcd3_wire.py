"""The etcd v3 gateway's wire format, pure: base64 keys and values, 64-bit numbers as strings, omitted
zero fields. Every reply goes through these parsers, which turn anything unexpected into KVProtocolError
rather than a traceback (fuzzed by hypothesis in tests/kv)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from locksmith.kv.base import Entry, Heads, KVProtocolError


def b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def _unb64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise KVProtocolError(f"etcd v3 reply: {what} is {type(value).__name__}, not base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise KVProtocolError(f"etcd v3 reply: {what} is not valid base64 ({value[:40]!r})") from None


def _int(value: Any, what: str, default: int | None = None) -> int:
    if value is None and default is not None:
        return default
    # 64-bit integers come as decimal strings; small ones may come as JSON numbers.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise KVProtocolError(f"etcd v3 reply: {what} is {value!r}, not an integer")
    if isinstance(value, str) and not (value.isascii() and value.lstrip("-").isdigit()):
        raise KVProtocolError(f"etcd v3 reply: {what} is {value[:40]!r}, not an integer")
    return int(value)


def _obj(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise KVProtocolError(f"etcd v3 reply: {what} is {type(value).__name__}, not an object")
    return value


def _header_revision(body: Mapping[str, Any]) -> int:
    return _int(_obj(body.get("header"), "header").get("revision"), "header.revision", 0)


def parse_error(body: Any) -> tuple[str, int] | None:
    """The gateway's error shape `{"error": msg, "code": n}` (or `{"message": ...}`), else None."""
    if not isinstance(body, dict):
        return None
    err = body.get("error")
    if isinstance(err, dict):  # the watch stream wraps errors one level deeper
        body, err = err, err.get("message")
    if err is None and "code" in body and "message" in body:
        err = body.get("message")
    if err is None:
        return None
    code = body.get("code", 0)
    return str(err), code if isinstance(code, int) and not isinstance(code, bool) else 0


def parse_range(body: Any, key: str) -> tuple[Entry | None, int]:
    """A range reply → (the key's Entry or None, the store revision of the reply)."""
    body = _obj(body, "range reply")
    kvs = body.get("kvs") or []
    if not isinstance(kvs, list):
        raise KVProtocolError("etcd v3 reply: kvs is not a list")
    revision = _header_revision(body)
    if revision <= 0:
        raise KVProtocolError("etcd v3 reply: a range reply without a header revision")
    for item in kvs:
        kv = _obj(item, "kvs[]")
        if _unb64(kv.get("key"), "kv.key") != key.encode():
            continue
        value = _unb64(kv["value"], "kv.value") if "value" in kv else b""
        mod = _int(kv.get("mod_revision"), "kv.mod_revision")
        if mod <= 0:
            raise KVProtocolError(f"etcd v3 reply: kv.mod_revision is {mod}, not positive")
        return Entry(key, value, mod), revision
    return None, revision


def prefix_end(prefix: bytes) -> bytes:
    """etcd's range_end for "every key starting with prefix": the prefix with its last byte below 0xff
    raised by one (trailing 0xff bytes dropped); an all-0xff prefix has no end (b"\0": to the end)."""
    trimmed = prefix.rstrip(b"\xff")
    return trimmed[:-1] + bytes([trimmed[-1] + 1]) if trimmed else b"\0"


def parse_range_prefix(body: Any, prefix: str) -> list[Entry]:
    """A prefix range reply → its entries (keys outside the prefix, which no etcd sends, are dropped)."""
    body = _obj(body, "range reply")
    kvs = body.get("kvs") or []
    if not isinstance(kvs, list):
        raise KVProtocolError("etcd v3 reply: kvs is not a list")
    entries = []
    for item in kvs:
        kv = _obj(item, "kvs[]")
        raw_key = _unb64(kv.get("key"), "kv.key")
        if not raw_key.startswith(prefix.encode()):
            continue
        mod = _int(kv.get("mod_revision"), "kv.mod_revision")
        value = _unb64(kv["value"], "kv.value") if "value" in kv else b""
        entries.append(Entry(raw_key.decode("utf-8", errors="replace"), value, mod))
    return entries


@dataclass(frozen=True, slots=True)
class Row:
    """One key of a range reply, with both its revisions (a line is ordered by `created`)."""

    key: bytes
    value: bytes
    modified: int
    created: int


@dataclass(frozen=True, slots=True)
class Rows:
    rows: tuple[Row, ...]
    revision: int = 0  # the store revision it was read at (0: the reply did not say)


def parse_rows(body: Any) -> Rows:
    """A range reply (or a txn's response_range) → its rows."""
    body = _obj(body, "range reply")
    kvs = body.get("kvs") or []
    if not isinstance(kvs, list):
        raise KVProtocolError("etcd v3 reply: kvs is not a list")
    rows = []
    for item in kvs:
        kv = _obj(item, "kvs[]")
        modified = _int(kv.get("mod_revision"), "kv.mod_revision")
        created = _int(kv.get("create_revision"), "kv.create_revision")
        if modified <= 0 or created <= 0:
            raise KVProtocolError("etcd v3 reply: a kv whose revisions are not positive")
        value = _unb64(kv["value"], "kv.value") if "value" in kv else b""
        rows.append(Row(_unb64(kv.get("key"), "kv.key"), value, modified, created))
    return Rows(tuple(rows), _header_revision(body))


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    deleted: int = 0
    ranges: tuple[Rows, ...] = ()  # the reply of every range the taken branch ran, in order


def parse_txn(body: Any) -> TxnResult:
    body = _obj(body, "txn reply")
    succeeded = body.get("succeeded", False)
    if not isinstance(succeeded, bool):
        raise KVProtocolError(f"etcd v3 reply: succeeded is {succeeded!r}, not a boolean")
    revision = _header_revision(body)
    deleted = 0
    ranges = []
    responses = body.get("responses") or []
    if not isinstance(responses, list):
        raise KVProtocolError("etcd v3 reply: responses is not a list")
    for item in responses:
        response = _obj(item, "responses[]")
        dr = response.get("response_delete_range")
        if dr is not None:
            deleted += _int(_obj(dr, "response_delete_range").get("deleted"), "deleted", 0)
        if "response_range" in response:
            ranges.append(parse_rows(response["response_range"]))
    if revision <= 0 and (succeeded or ranges):
        raise KVProtocolError("etcd v3 reply: a txn reply without a header revision")
    return TxnResult(succeeded, revision, deleted, tuple(ranges))


def parse_lease_grant(body: Any) -> int:
    """The ID of a granted lease (`/v3/lease/grant`); an error field or no ID is KVProtocolError."""
    body = _obj(body, "lease grant reply")
    if body.get("error"):
        raise KVProtocolError(f"etcd v3 refused a lease: {str(body['error'])[:120]!r}")
    lease_id = _int(body.get("ID"), "ID", 0)
    if lease_id <= 0:
        raise KVProtocolError("etcd v3 reply: a lease grant without an ID")
    return lease_id


def parse_keepalive(body: Any) -> int:
    """The TTL a lease keep-alive answered with (`{"result": {"ID", "TTL"}}`): 0 once the lease expired."""
    result = _obj(_obj(body, "keepalive reply").get("result"), "keepalive result")
    return _int(result.get("TTL"), "TTL", 0)


@dataclass(frozen=True, slots=True)
class WatchEvent:
    key: bytes
    value: bytes | None  # None for DELETE
    revision: int


@dataclass(frozen=True, slots=True)
class WatchMessage:
    created: bool = False
    canceled: bool = False
    cancel_reason: str = ""
    compact_revision: int = 0
    revision: int = 0
    events: tuple[WatchEvent, ...] = field(default_factory=tuple)
    error: tuple[str, int] | None = None


def parse_watch_line(line: str | bytes) -> WatchMessage:
    """One line of the /v3/watch stream: `{"result": {...}}` or `{"error": {...}}`."""
    try:
        body = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        text = line if isinstance(line, str) else line.decode("utf-8", "replace")
        raise KVProtocolError(f"etcd v3 watch stream: a line that is not JSON ({text[:60]!r})") from None
    error = parse_error(body)
    if error is not None:
        return WatchMessage(error=error)
    result = _obj(_obj(body, "watch message").get("result"), "watch result")
    events = []
    raw_events = result.get("events") or []
    if not isinstance(raw_events, list):
        raise KVProtocolError("etcd v3 watch stream: events is not a list")
    for item in raw_events:
        ev = _obj(item, "event")
        kv = _obj(ev.get("kv"), "event.kv")
        kind = ev.get("type", "PUT")
        if kind not in ("PUT", "DELETE"):
            raise KVProtocolError(f"etcd v3 watch stream: unknown event type {kind!r}")
        value = None if kind == "DELETE" else (_unb64(kv["value"], "event value") if "value" in kv else b"")
        events.append(WatchEvent(_unb64(kv.get("key"), "event key"), value, _int(kv.get("mod_revision"), "mod_rev")))
    for flag in ("created", "canceled"):
        if not isinstance(result.get(flag, False), bool):
            raise KVProtocolError(f"etcd v3 watch stream: {flag} is not a boolean")
    reason = result.get("cancel_reason", "")
    return WatchMessage(
        created=result.get("created", False),
        canceled=result.get("canceled", False),
        cancel_reason=reason if isinstance(reason, str) else repr(reason),
        compact_revision=_int(result.get("compact_revision"), "compact_revision", 0),
        revision=_header_revision(result),
        events=tuple(events),
    )


# --- transactions: compares, per-key reads and the heads of key prefixes ---------------------------


def compares(expect: Mapping[str, int]) -> list[dict[str, Any]]:
    """A txn's compares: each key at its mod revision, or absent (0)."""
    return [
        {"key": b64(k), "result": "EQUAL", "target": "VERSION", "version": "0"}
        if revision == 0
        else {"key": b64(k), "result": "EQUAL", "target": "MOD", "mod_revision": str(revision)}
        for k, revision in expect.items()
    ]


def entries_of(keys: Sequence[str], ranges: Sequence[Rows]) -> dict[str, Entry | None]:
    """The answers of a txn's per-key ranges, by key (a range that matched nothing: absent)."""
    if len(ranges) != len(keys):
        raise KVProtocolError(f"etcd v3 reply: {len(ranges)} range answers for {len(keys)} keys")
    entries: dict[str, Entry | None] = {}
    for key, rows in zip(keys, ranges, strict=True):
        row = next((r for r in rows.rows if r.key == key.encode()), None)
        entries[key] = None if row is None else Entry(key, row.value, row.modified)
    return entries


def writes_of(put: Mapping[str, bytes], delete: Iterable[str] = ()) -> list[dict[str, Any]]:
    """A txn's puts, then its deletes of single keys."""
    writes = [{"request_put": {"key": b64(k), "value": b64(v)}} for k, v in put.items()]
    return writes + [{"request_delete_range": {"key": b64(k)}} for k in delete]


def key_reads(keys: Iterable[str]) -> list[dict[str, Any]]:
    """A txn's reads of single keys, answered by `entries_of` in the same order."""
    return [{"request_range": {"key": b64(k)}} for k in keys]


def by_creation(prefix: str, limit: int, order: str, created_before: int | None = None) -> dict[str, Any]:
    """A txn's read of the keys under `prefix` sorted by create revision (`order`: ASCEND for the oldest
    first, DESCEND for the newest), keys only, at most `limit`; only those created before revision
    `created_before` when given. etcd applies the sort and the create-revision filter after reading the
    whole range: few rows come back, but every key under the prefix is read."""
    before = {"max_create_revision": str(created_before - 1)} if created_before is not None else {}
    return {
        "request_range": {
            "key": b64(prefix),
            "range_end": b64(prefix_end(prefix.encode())),
            **before,
            "sort_order": order,
            "sort_target": "CREATE",
            "limit": str(max(1, limit)),
            "keys_only": True,
        }
    }


def head_reads(counts: Mapping[str, int], read: Sequence[str]) -> list[dict[str, Any]]:
    """A txn's reads of the oldest keys (by creation, keys only) under each prefix, then of `read`."""
    return [by_creation(prefix, count, "ASCEND") for prefix, count in counts.items()] + key_reads(read)


def parse_heads(counts: Mapping[str, int], read: Sequence[str], ranges: Sequence[Rows]) -> Heads:
    """The answers of `head_reads`."""
    if len(ranges) != len(counts) + len(read):
        raise KVProtocolError(f"etcd v3 reply: a read of {len(counts) + len(read)} ranges answered {len(ranges)}")
    first = {
        prefix: tuple(Entry(r.key.decode("utf-8", errors="replace"), b"", r.modified) for r in rows.rows)
        for prefix, rows in zip(counts, ranges, strict=False)
    }
    return Heads(first, entries_of(read, ranges[len(counts) :]))


def line_range(prefix: str, limit: int, created_before: int | None = None) -> dict[str, Any]:
    """A read of a line's keys, newest first (`by_creation`)."""
    return by_creation(prefix, limit, "DESCEND", created_before)


def ahead_of(rows: Rows, created: int, ahead: int) -> tuple[str, ...] | None:
    """The keys created before `created`, nearest first, from a `line_range` read without a bound and
    holding `ahead` + 1 rows at most; None when a key newer than ours took a row (the read was short)."""
    if not rows.rows or rows.rows[0].created != created:
        return None
    return tuple(row.key.decode("utf-8", errors="replace") for row in rows.rows[1 : ahead + 1])
