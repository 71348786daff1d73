"""The waiting line's rules (protocol/waiting_line.py), without a store: who may try, when a stalled
waiter ahead is passed, and who gets the slots a release settles."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from locksmith.protocol.semaphore import Semaphore
from locksmith.protocol.waiting_line import (
    LINE_JUMP_GRACE_SECONDS,
    holder_of,
    jump_after,
    leaving_key,
    leaving_prefix,
    line_key,
    may_try,
    settle,
    still_waiting,
)

ME = "m" * 32


def _sem(max_: int, holders: tuple[str, ...] = ()) -> Semaphore:
    return Semaphore(max_ - len(holders), max_, holders)


def test_only_the_first_still_waiting_tries_and_only_for_a_free_slot() -> None:
    assert may_try(ME, 0, _sem(2, ("a",)))
    assert not may_try(ME, 1, _sem(3, ("a",)))  # one ahead still waits: it goes first, even with two slots free
    assert not may_try(ME, 0, _sem(1, ("a",)))  # first, but full
    assert may_try(ME, 5, _sem(1, (ME,)))  # already holding: the lock is a no-op that takes us out of line


def test_hosts_ahead_that_took_their_slot_no_longer_count() -> None:
    ahead = ["a", "b", "c"]
    assert still_waiting(ahead, _sem(5, ("b", "x"))) == {"a", "c"}
    assert still_waiting(ahead, _sem(5)) == set(ahead)


def test_a_line_key_names_its_host() -> None:
    key = line_key("coreos.com/updateengine/rebootlock/semaphore", "0123abcd")
    assert key is not None and holder_of(key) == "0123abcd"


def test_a_stalled_waiter_is_passed_one_place_at_a_time() -> None:
    assert jump_after(0, _sem(1, ("a",))) is None  # nothing free: nothing to jump to
    assert jump_after(1, _sem(1)) == LINE_JUMP_GRACE_SECONDS  # next behind a stalled first: one grace
    assert jump_after(2, _sem(1)) == 2 * LINE_JUMP_GRACE_SECONDS  # one further back: one more


@given(st.integers(0, 60), st.integers(1, 60), st.integers(0, 60))
def test_never_a_try_without_a_free_slot_unless_holding(waiting: int, max_: int, held: int) -> None:
    holders = tuple(f"h{i}" for i in range(min(held, max_)))
    sem = _sem(max_, holders)
    if may_try(ME, waiting, sem):
        assert sem.available > 0 and waiting == 0
    grace = jump_after(waiting, sem)
    assert (grace is None) == (sem.available <= 0)
    assert grace is None or grace >= LINE_JUMP_GRACE_SECONDS


def test_a_release_hands_the_freed_slot_to_the_first_in_line() -> None:
    after, left, granted = settle(_sem(2, ("a", "b")), ["a"], ["w1", "w2"])
    assert (left, granted) == (("a",), ("w1",))
    assert after.holders == tuple(sorted(("b", "w1"))) and after.available == 0


def test_releases_settled_together_free_their_slots_for_the_line_in_order() -> None:
    after, left, granted = settle(_sem(3, ("a", "b", "c")), ["a", "c", "x", "a"], ["w1", "w2", "w3"])
    assert left == ("a", "c")  # x holds nothing: its request changes nothing
    assert granted == ("w1", "w2")
    assert set(after.holders) == {"b", "w1", "w2"}


def test_a_waiter_that_holds_already_or_is_leaving_gets_no_second_slot() -> None:
    after, _left, granted = settle(_sem(3, ("a", "w1")), ["a"], ["w1", "a", "w2"])
    assert granted == ("w2",)
    assert set(after.holders) == {"w1", "w2"}


def test_leaving_keys_name_their_host_and_refuse_ids_that_are_not_one_segment() -> None:
    sem_key = "coreos.com/updateengine/rebootlock/semaphore"
    assert leaving_key(sem_key, "0123abcd") == leaving_prefix(sem_key) + "0123abcd"
    assert leaving_key(sem_key, "a/b") is None


_IDS = st.text("abcdefgh", min_size=1, max_size=2)


@given(
    st.integers(1, 8), st.lists(_IDS, max_size=8, unique=True), st.lists(_IDS, max_size=8), st.lists(_IDS, max_size=8)
)
def test_settling_never_exceeds_max_and_grants_only_in_line_order(
    max_: int, holders: list[str], leaving: list[str], line: list[str]
) -> None:
    sem = _sem(max_, tuple(holders[:max_]))
    after, left, granted = settle(sem, leaving, line)
    assert len(after.holders) <= after.max
    assert set(left) == set(leaving) & set(sem.holders)
    assert set(after.holders) == (set(sem.holders) - set(left)) | set(granted)
    order = [h for h in dict.fromkeys(line) if h in granted]
    assert list(granted) == order  # nobody passes a host ahead of it
    skipped = [h for h in dict.fromkeys(line) if h not in granted and h not in left and not sem.holds(h)]
    if skipped:  # a waiter went without only because the slots ran out before it
        first_skipped = line.index(skipped[0])
        assert all(line.index(g) < first_skipped for g in granted)
        assert after.available == 0
