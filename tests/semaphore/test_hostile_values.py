"""Class 1 of issue 9: whatever another writer left in a key we own is parsed defensively.

A bad side record (holder ages) is ignored and logged, never fatal; a semaphore we cannot trust is
refused naming the key, and left as it is. Property tests drive both parsers with arbitrary input."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from locksmith.kv.embedded import EmbeddedStore
from locksmith.lockstore import AgesUnreadable, LockStore
from locksmith.protocol.holder_ages import decode as _decode_ages
from locksmith.protocol.semaphore import HOLDER_MAX_LEN, Semaphore, SemaphoreCorrupt, decode, holder_problem

KEY = "coreos.com/updateengine/rebootlock/semaphore"

# Each was seen to crash something (status, lock, locksmithd) before, or is of the same kind.
BAD_AGES = {
    "date out of range": b'{"m1":"0001-01-01T00:00:00+23:59"}',
    "date at the top": b'{"m1":"9999-12-31T23:59:59-23:59"}',
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "deep object": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "not utf-8": b'{"m1":"\xff"}',
    "no zone": b'{"m1":"2024-05-01T12:00:00"}',
    "not a string": b'{"m1":12}',
    "forged id": b'{"m1\\nAvailable: 9":"2024-05-01T12:00:00Z"}',
    "huge": b'{"m1":"' + b"x" * (2 << 20) + b'"}',
    "a list": b'["m1"]',
    "NaN": b'{"m1":NaN}',
}


@pytest.mark.parametrize("raw", list(BAD_AGES.values()), ids=list(BAD_AGES))
def test_a_bad_ages_record_is_one_bounded_error(raw: bytes) -> None:
    with pytest.raises(AgesUnreadable) as info:
        _decode_ages(raw)
    assert "\n" not in str(info.value) and len(str(info.value)) < 200


@pytest.mark.parametrize("raw", list(BAD_AGES.values()), ids=list(BAD_AGES))
async def test_lock_status_unlock_work_beside_a_bad_ages_record(tmp_path: Path, raw: bytes) -> None:
    kv = EmbeddedStore(tmp_path / "kv.db")
    try:
        ls = LockStore(kv)
        bad = await kv.create(ls.ages_key, raw)
        assert bad is not None
        snap = await ls.lock("m1")  # returns: the slot taken is reported as taken
        assert snap.semaphore.holders == ("m1",)
        status = await ls.status()
        assert [h.id for h in status.holders] == ["m1"] and status.holders[0].since is None
        assert status.ages_problem is not None and ls.ages_key in status.ages_problem
        assert "\n" not in status.ages_problem and len(status.ages_problem) < 400
        await ls.unlock("m1")
        assert await kv.get(ls.ages_key) == bad  # never overwritten
    finally:
        await kv.aclose()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
stamps = st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()) | st.text(max_size=40)


@settings(max_examples=300)
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_decode_ages_of_anything_is_a_record_or_unreadable(raw: bytes) -> None:
    try:
        record = _decode_ages(raw)
    except AgesUnreadable:
        return
    for holder, age in record.holders.items():
        assert holder_problem(holder) is None and age.since.tzinfo is UTC and age.revision >= 0


@settings(max_examples=300)
@given(st.dictionaries(st.text(max_size=10), stamps, max_size=5))
def test_decode_ages_of_any_stamps_never_crashes(record: dict[str, str]) -> None:
    entries = {h: {"since": stamp, "revision": 7} for h, stamp in record.items()}
    for raw in (json.dumps(record), json.dumps({"holders": entries, "writes": [[6, 7]]})):
        try:
            ages = _decode_ages(raw.encode()).true_ages(7)
        except AgesUnreadable:
            continue
        assert all(isinstance(when, datetime) and when.utcoffset() is not None for when in ages.values())


FORGED_HOLDERS = ["m1\nAvailable: 9", "m1\r", "\x1b[2J", "m 1", "a\u2028b", "x" * (HOLDER_MAX_LEN + 1), "\t"]


@pytest.mark.parametrize("holder", FORGED_HOLDERS)
def test_a_stored_holder_that_could_forge_output_is_refused_unrepeated(holder: str) -> None:
    raw = json.dumps({"semaphore": 0, "max": 1, "holders": [holder]}).encode()
    with pytest.raises(SemaphoreCorrupt, match="holder #1 is not a valid id") as info:
        decode(raw, KEY)
    message = str(info.value)
    assert "\n" not in message and holder not in message


def test_a_huge_or_deep_semaphore_is_corrupt_not_a_crash() -> None:
    with pytest.raises(SemaphoreCorrupt, match="bytes long"):
        decode(b" " * (2 << 20), KEY)
    with pytest.raises(SemaphoreCorrupt, match="not JSON"):
        decode(b'{"holders":' + b"[" * 100_000, KEY)


@pytest.mark.parametrize("holder", FORGED_HOLDERS)
def test_lock_refuses_an_id_that_could_forge_output(holder: str) -> None:
    from locksmith.protocol.semaphore import InvalidHolder

    with pytest.raises(InvalidHolder) as info:
        Semaphore(1, 1).lock(holder)
    assert holder not in str(info.value)


@given(st.text(min_size=1, max_size=HOLDER_MAX_LEN))
def test_every_accepted_id_prints_as_one_line(holder: str) -> None:
    if holder_problem(holder) is None:
        assert holder.isprintable() and not any(c.isspace() for c in holder)
        assert decode(json.dumps({"semaphore": 0, "max": 1, "holders": [holder]}).encode(), KEY).holders == (holder,)
