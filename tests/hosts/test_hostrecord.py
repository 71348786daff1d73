"""The per-host record parser: round trips, and never raises on anything the store may hold."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from locksmith.protocol import hostrecord
from locksmith.protocol.hostrecord import HostRecord, Unreadable

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=20,
)
_records = st.builds(
    HostRecord,
    state=st.sampled_from(sorted(hostrecord.STATES)),
    version=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    slot=st.booleans(),
    waiting_for=st.sampled_from(sorted(hostrecord.WAITING_FOR)),
    since=st.floats(min_value=0, max_value=2e9),
    updated=st.floats(min_value=0, max_value=2e9),
    last_error=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=300),
)


@given(_records)
def test_encode_then_decode_gives_the_record_back_and_fits_the_bound(record: HostRecord) -> None:
    raw = record.encode()
    assert len(raw) <= hostrecord.MAX_RECORD_BYTES
    back = hostrecord.decode(raw)
    assert isinstance(back, HostRecord)
    assert back.last_error == record.last_error[: hostrecord.MAX_FIELD_CHARS]
    assert (back.state, back.slot, back.since) == (record.state, record.slot, record.since)


@given(st.binary(max_size=3000))
def test_any_bytes_decode_to_a_record_or_unreadable(raw: bytes) -> None:
    assert isinstance(hostrecord.decode(raw), HostRecord | Unreadable)


@given(_json)
def test_any_json_decodes_to_a_record_or_unreadable(value: object) -> None:
    result = hostrecord.decode(json.dumps(value).encode())
    assert isinstance(result, HostRecord | Unreadable)


def test_hostile_values_are_unreadable_with_a_printable_reason() -> None:
    for raw in (b"x" * 5000, b'{"state":"holding\\n[forged]"}', b'{"state":"idle","slot":1}', b"[1]"):
        result = hostrecord.decode(raw)
        assert isinstance(result, Unreadable)
        assert result.reason.isprintable()


def test_stale_after_three_refresh_intervals() -> None:
    record = HostRecord(state="waiting", waiting_for="lock", updated=1000.0)
    assert not hostrecord.is_stale(record, now=1090.0, refresh_seconds=30)
    assert hostrecord.is_stale(record, now=1091.0, refresh_seconds=30)


def test_record_key_sits_beside_the_semaphore() -> None:
    key = "coreos.com/updateengine/rebootlock/semaphore"
    assert hostrecord.record_key(key, "abc") == f"{key}-hosts/abc"
