"""The waiting line's rules (protocol/waiting_line.py), without a store: who may try, and when a
stalled waiter ahead is passed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from locksmith.protocol.semaphore import Semaphore
from locksmith.protocol.waiting_line import (
    LINE_JUMP_GRACE_SECONDS,
    holder_of,
    jump_after,
    line_key,
    may_try,
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
