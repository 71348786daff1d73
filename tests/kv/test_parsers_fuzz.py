"""Hypothesis fuzzing of the reply parsers and key escaping: any input ends in a result or
one KVProtocolError, never another exception; valid replies round-trip."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import unquote

from hypothesis import given
from hypothesis import strategies as st

from locksmith.kv import Change, Entry, KVProtocolError, etcd2
from locksmith.kv import etcd3_wire as etcd3

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
# Objects that use the field names the parsers look at, so the fuzzing reaches deep.
FIELDS = [
    "kvs",
    "key",
    "value",
    "mod_revision",
    "header",
    "revision",
    "succeeded",
    "responses",
    "result",
    "events",
    "type",
    "kv",
    "created",
    "canceled",
    "compact_revision",
    "error",
    "code",
    "message",
    "node",
    "modifiedIndex",
    "action",
    "errorCode",
    "index",
    "dir",
    "cause",
    "response_delete_range",
    "deleted",
]
shaped = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 2**63) | st.text(max_size=8) | st.sampled_from(["aw==", "12", "PUT"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(FIELDS), children, max_size=6),
    max_leaves=30,
)
anything = json_values | shaped


def only_protocol_errors(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except KVProtocolError as exc:
        assert "\n" not in str(exc)


@given(anything)
def test_v3_parsers_never_crash(body: Any) -> None:
    only_protocol_errors(etcd3.parse_range, body, "k")
    only_protocol_errors(etcd3.parse_txn, body)
    only_protocol_errors(etcd3.parse_error, body)
    only_protocol_errors(etcd3.parse_watch_line, json.dumps(body))
    only_protocol_errors(etcd3.parse_range_prefix, body, "k/")


@given(st.binary(min_size=1, max_size=8))
def test_v3_prefix_end_bounds_exactly_the_keys_with_the_prefix(prefix: bytes) -> None:
    end = etcd3.prefix_end(prefix)
    assert end == b"\0" or prefix < end  # b"\0": every key from the prefix on
    if end != b"\0":
        assert prefix + b"\xff" * 4 < end and not end.startswith(prefix)


@given(st.binary(max_size=200))
def test_v3_watch_line_bytes_never_crash(line: bytes) -> None:
    only_protocol_errors(etcd3.parse_watch_line, line)


@given(anything)
def test_v2_parsers_never_crash(body: Any) -> None:
    only_protocol_errors(etcd2.parse_node, body, "k")
    only_protocol_errors(etcd2.parse_error, body)
    only_protocol_errors(etcd2.parse_event, body, "k")
    only_protocol_errors(etcd2.parse_dir, body, "k/", 100)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@given(st.text(min_size=1, max_size=40), st.binary(max_size=100), st.integers(1, 2**63 - 1))
def test_v3_range_round_trip(key: str, value: bytes, revision: int) -> None:
    body = {
        "header": {"revision": str(revision)},
        "kvs": [{"key": b64(key.encode()), "mod_revision": str(revision), "version": "1"}],
        "count": "1",
    }
    if value:  # the gateway omits empty (zero) fields
        body["kvs"][0]["value"] = b64(value)
    assert etcd3.parse_range(json.loads(json.dumps(body)), key) == (Entry(key, value, revision), revision)


@given(st.text(min_size=1, max_size=40), st.one_of(st.none(), st.binary(max_size=50)), st.integers(1, 2**63 - 1))
def test_v3_watch_event_round_trip(key: str, value: bytes | None, revision: int) -> None:
    kv: dict[str, Any] = {"key": b64(key.encode()), "mod_revision": str(revision)}
    event: dict[str, Any] = {"kv": kv}
    if value is None:
        event["type"] = "DELETE"
    elif value:
        kv["value"] = b64(value)
    msg = etcd3.parse_watch_line(json.dumps({"result": {"header": {"revision": str(revision)}, "events": [event]}}))
    assert msg.events == (etcd3.WatchEvent(key.encode(), value, revision),)


@given(st.text(min_size=1, max_size=40), st.text(max_size=50), st.integers(1, 2**53))
def test_v2_event_round_trip(key: str, value: str, index: int) -> None:
    body = {"action": "compareAndSwap", "node": {"key": "/" + key, "value": value, "modifiedIndex": index}}
    assert etcd2.parse_event(json.loads(json.dumps(body)), key) == Change(key, value.encode(), index)
    deleted = {"action": "delete", "node": {"key": "/" + key, "modifiedIndex": index}}
    assert etcd2.parse_event(deleted, key) == Change(key, None, index)


@given(st.lists(st.text(st.characters(blacklist_characters="/", blacklist_categories=["Cs"]), min_size=1), min_size=1))
def test_v2_key_path_round_trips_and_keeps_percent_literal(segments: list[str]) -> None:
    key = "/".join(segments)
    path = etcd2.key_path(key)
    assert path.startswith("/v2/keys/")
    assert "?" not in path and "#" not in path and " " not in path
    assert unquote(path.removeprefix("/v2/keys/")) == key


def test_v2_key_path_matches_the_go_client_for_groups() -> None:
    assert (
        etcd2.key_path("coreos.com/updateengine/rebootlock/groups/prod%2Fdb/semaphore")
        == "/v2/keys/coreos.com/updateengine/rebootlock/groups/prod%252Fdb/semaphore"
    )
