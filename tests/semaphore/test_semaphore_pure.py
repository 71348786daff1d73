"""The pure semaphore: Go-compatible JSON, the invariant, and each operation's rules."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from locksmith.protocol.semaphore import (
    DEFAULT_KEY,
    INITIAL,
    INITIAL_VALUE,
    InvalidHolder,
    InvalidMax,
    NotHeld,
    Semaphore,
    SemaphoreCorrupt,
    SemaphoreFull,
    decode,
    encode,
    holder_problem,
    holders_key,
    semaphore_key,
)

KEY = DEFAULT_KEY


# --- keys ------------------------------------------------------------------------------------


def test_default_key_is_coreos_key() -> None:
    assert semaphore_key(None) == "coreos.com/updateengine/rebootlock/semaphore"
    assert semaphore_key("") == "coreos.com/updateengine/rebootlock/semaphore"


@pytest.mark.parametrize(
    ("group", "escaped"),
    [
        ("prod", "prod"),
        ("prod/db", "prod%2Fdb"),
        ("a b", "a+b"),
        ("x&y=z?", "x%26y%3Dz%3F"),
        ("ünï", "%C3%BCn%C3%AF"),
        ("keep-_.~", "keep-_.~"),
        ("100%", "100%25"),
    ],
)
def test_group_key_matches_go_query_escape(group: str, escaped: str) -> None:
    assert semaphore_key(group) == f"coreos.com/updateengine/rebootlock/groups/{escaped}/semaphore"


@pytest.mark.parametrize("group", [".", ".."])
def test_group_that_go_would_path_clean_into_another_key_is_refused(group: str) -> None:
    with pytest.raises(ValueError, match="not allowed"):
        semaphore_key(group)


def test_holders_key_is_a_sibling() -> None:
    assert holders_key(DEFAULT_KEY) == "coreos.com/updateengine/rebootlock/semaphore-holders"


# --- Go shape -------------------------------------------------------------------------------


def test_initial_value_is_what_go_creates() -> None:
    assert INITIAL_VALUE == b'{"semaphore":1,"max":1,"holders":null}'
    assert decode(INITIAL_VALUE, KEY) == INITIAL


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"semaphore":1,"max":1,"holders":null}', Semaphore(1, 1, ())),
        (b'{"semaphore":1,"max":1,"holders":[]}', Semaphore(1, 1, ())),  # Go after the last unlock
        (b'{"semaphore":0,"max":2,"holders":["b","a"]}', Semaphore(0, 2, ("a", "b"))),
        (b'{"semaphore": 3, "max": 5, "holders": ["x", "y"], "future": {"k": 1}}', Semaphore(3, 5, ("x", "y"))),
        # The Go tool's set-max could leave more holders than max; readable, so it can drain.
        (b'{"semaphore":-1,"max":0,"holders":["a"]}', Semaphore(-1, 0, ("a",))),
    ],
)
def test_decode_reads_go_shapes(raw: bytes, expected: Semaphore) -> None:
    assert decode(raw, KEY) == expected


def test_encode_is_go_marshal_byte_for_byte() -> None:
    sem = Semaphore(1, 4, ("c3", "a1", "b2"))
    assert encode(sem) == b'{"semaphore":1,"max":4,"holders":["a1","b2","c3"]}'
    assert encode(Semaphore(2, 2, ())) == b'{"semaphore":2,"max":2,"holders":null}'


def test_no_holders_is_null_until_someone_locked_then_empty_brackets_as_go_writes() -> None:
    """Go's nil slice: Init writes null, set-max keeps it; RemoveHolder leaves an empty slice, [] from then on."""
    assert encode(INITIAL.set_max(3)) == b'{"semaphore":3,"max":3,"holders":null}'
    after = INITIAL.lock("a").unlock("a")
    assert encode(after) == b'{"semaphore":1,"max":1,"holders":[]}'
    assert encode(after.set_max(2)) == b'{"semaphore":2,"max":2,"holders":[]}'
    for raw in (b'{"semaphore":1,"max":1,"holders":null}', b'{"semaphore":1,"max":1,"holders":[]}'):
        assert encode(decode(raw, KEY)) == raw  # a value read and written back keeps its bytes
        assert encode(decode(raw, KEY).set_max(1)) == raw


def test_encode_escapes_strings_like_go() -> None:
    sem = Semaphore(0, 1, ('a"<b>&\\\n\x01\u2028é',))
    assert (
        encode(sem) == b'{"semaphore":0,"max":1,"holders":["a\\"\\u003cb\\u003e\\u0026\\\\\\n\\u0001\\u2028\xc3\xa9"]}'
    )
    # An id with a newline or a control character is never read back: it could forge `status` lines.
    with pytest.raises(SemaphoreCorrupt, match="holder #1 is not a valid id"):
        decode(encode(sem), KEY)
    printable = Semaphore(0, 1, ('a"<b>&\\é',))
    assert encode(printable) == b'{"semaphore":0,"max":1,"holders":["a\\"\\u003cb\\u003e\\u0026\\\\\xc3\xa9"]}'
    assert decode(encode(printable), KEY) == printable


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not JSON"),
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1,2]", "expected a JSON object"),
        (b'{"semaphore":1,"max":1}', "missing field(s) holders"),
        (b'{"max":1,"holders":null}', "missing field(s) semaphore"),
        (b'{"semaphore":"1","max":1,"holders":null}', "semaphore must be an integer"),
        (b'{"semaphore":1.0,"max":1,"holders":null}', "semaphore must be an integer"),
        (b'{"semaphore":true,"max":1,"holders":null}', "semaphore must be an integer"),
        (b'{"semaphore":1,"max":NaN,"holders":null}', "not JSON"),
        (b'{"semaphore":1,"max":99999999999999999999,"holders":null}', "out of range"),
        (b'{"semaphore":-2,"max":-1,"holders":["a"]}', "max is negative"),
        (b'{"semaphore":1,"max":1,"holders":"a"}', "holders must be a list"),
        (b'{"semaphore":1,"max":1,"holders":[1]}', "holders must all be strings"),
        (b'{"semaphore":0,"max":2,"holders":["a","a"]}', "listed twice: a"),
        (b'{"semaphore":0,"max":1,"holders":[""]}', "holder id is empty"),
        (b'{"semaphore":1,"max":1,"holders":["a"]}', "does not equal max 1 minus 1"),
        (b'{"semaphore":5,"max":1,"holders":null}', "does not equal"),
    ],
)
def test_decode_rejects_untrustworthy_values_naming_the_key(raw: bytes, reason: str) -> None:
    with pytest.raises(SemaphoreCorrupt) as info:
        decode(raw, "the/key")
    assert info.value.key == "the/key"
    assert reason in info.value.reason
    assert "'the/key'" in str(info.value)
    assert "\n" not in str(info.value)


# --- operations -------------------------------------------------------------------------------


def test_lock_takes_a_slot_and_is_idempotent() -> None:
    sem = INITIAL.lock("a")
    assert sem == Semaphore(0, 1, ("a",))
    assert sem.lock("a") == sem  # the Go tool said "semaphore is at 0" here


def test_lock_when_full_raises_full_with_the_holders() -> None:
    sem = INITIAL.lock("a")
    with pytest.raises(SemaphoreFull, match=r"semaphore is at 0 \(max 1, held by a\)"):
        sem.lock("b")


def test_lock_refuses_an_empty_id() -> None:
    with pytest.raises(InvalidHolder):
        INITIAL.lock("")


def test_unlock_gives_back_the_slot_and_refuses_a_non_holder() -> None:
    sem = INITIAL.set_max(2).lock("a").lock("b")
    assert sem.unlock("a") == Semaphore(1, 2, ("b",))
    with pytest.raises(NotHeld, match="'c' does not hold the lock"):
        sem.unlock("c")


def test_over_full_go_value_refuses_locks_but_drains() -> None:
    sem = decode(b'{"semaphore":-1,"max":1,"holders":["a","b"]}', KEY)
    with pytest.raises(SemaphoreFull):
        sem.lock("c")
    assert sem.lock("a") == sem  # a holder is still a holder
    assert sem.unlock("a").unlock("b") == Semaphore(1, 1, ())


def test_set_max_shifts_the_semaphore() -> None:
    sem = INITIAL.set_max(5).lock("a").lock("b")
    assert sem == Semaphore(3, 5, ("a", "b"))
    assert sem.set_max(2) == Semaphore(0, 2, ("a", "b"))
    assert sem.set_max(9) == Semaphore(7, 9, ("a", "b"))
    assert INITIAL.set_max(0) == Semaphore(0, 0, ())


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_set_max_refuses_non_counts(bad: object) -> None:
    with pytest.raises(InvalidMax):
        INITIAL.set_max(bad)  # type: ignore[arg-type]


def test_set_max_refuses_to_go_below_the_holders() -> None:
    sem = INITIAL.set_max(3).lock("a").lock("b")
    with pytest.raises(InvalidMax, match="below the 2 current holder"):
        sem.set_max(1)


def test_direct_construction_checks_the_invariant() -> None:
    with pytest.raises(ValueError):
        Semaphore(1, 1, ("a",))


# --- properties ---------------------------------------------------------------------------------

ids = st.text(min_size=1, max_size=12).filter(lambda h: holder_problem(h) is None)
ops = st.one_of(
    st.tuples(st.just("lock"), st.sampled_from(["a", "b", "c", "d", "e", "f"])),
    st.tuples(st.just("unlock"), st.sampled_from(["a", "b", "c", "d", "e", "f"])),
    st.tuples(st.just("set_max"), st.integers(min_value=-2, max_value=8)),
)


@settings(max_examples=300)
@given(st.lists(ops, max_size=40))
def test_random_operation_sequences_keep_the_invariant(sequence: list[tuple[str, object]]) -> None:
    sem = INITIAL
    for name, arg in sequence:
        try:
            nxt = getattr(sem, name)(arg)
        except (SemaphoreFull, NotHeld, InvalidMax):
            continue
        # An independent statement of the rules, checked against every step.
        if name == "lock":
            assert arg in nxt.holders
            assert len(nxt.holders) == len(sem.holders) + (0 if arg in sem.holders else 1)
        elif name == "unlock":
            assert arg not in nxt.holders and len(nxt.holders) == len(sem.holders) - 1
        else:
            assert nxt.max == arg and nxt.holders == sem.holders
        sem = nxt
        assert 0 <= len(sem.holders) <= sem.max
        assert sem.semaphore == sem.max - len(sem.holders) >= 0
        assert list(sem.holders) == sorted(set(sem.holders))
        assert decode(encode(sem), KEY) == sem


@given(st.integers(min_value=0, max_value=2**40), st.lists(ids, unique=True, max_size=8))
def test_encode_decode_round_trip(extra: int, holders: list[str]) -> None:
    sem = Semaphore(extra, extra + len(holders), tuple(holders))
    raw = encode(sem)
    assert decode(raw, KEY) == sem
    # Our bytes are also plain JSON any reader (the Go tool) parses to the same fields, in Go's order.
    data = json.loads(raw)
    assert list(data) == ["semaphore", "max", "holders"]
    assert data["holders"] == (sorted(holders) or None)


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_decode_of_arbitrary_bytes_only_ever_raises_corrupt(raw: bytes) -> None:
    try:
        sem = decode(raw, KEY)
    except SemaphoreCorrupt:
        return
    assert sem.semaphore == sem.max - len(sem.holders)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "semaphore": json_values | st.integers(-3, 5),
            "max": json_values | st.integers(-3, 5),
            "holders": json_values | st.lists(st.sampled_from(["a", "b", ""]), max_size=4),
        },
    )
)
def test_decode_of_arbitrary_json_objects_is_corrupt_or_consistent(obj: dict[str, object]) -> None:
    try:
        sem = decode(json.dumps(obj).encode(), KEY)
    except SemaphoreCorrupt:
        return
    assert sem.semaphore == sem.max - len(sem.holders)
    assert sem.max >= 0 and len(set(sem.holders)) == len(sem.holders)
