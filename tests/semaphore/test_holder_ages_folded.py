"""Holder ages written in the same transaction as the semaphore: the record names its own write's revision
as THIS_WRITE, and a reader puts the record's own revision in its place."""

from __future__ import annotations

from datetime import UTC, datetime

from locksmith.protocol import holder_ages
from locksmith.protocol.holder_ages import THIS_WRITE, AgesRecord

A, B = "a" * 32, "b" * 32
T1, T2 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC), datetime(2026, 1, 1, 12, 5, tzinfo=UTC)


def test_an_age_written_with_the_semaphore_is_true_at_that_write_and_not_after_a_foreign_one() -> None:
    raw = holder_ages.encode(AgesRecord().after_write(5, THIS_WRITE, frozenset({A}), frozenset({A}), T1))
    record = holder_ages.decode(raw, own_revision=9)  # both keys were written at revision 9
    assert record.true_ages(9) == {A: T1}
    assert record.true_ages(12) == {}  # the semaphore moved by a write that was not ours
    assert holder_ages.decode(raw).true_ages(9) == {}  # unresolved, nothing can be proved


def test_folded_writes_chain_like_separate_ones() -> None:
    first = holder_ages.decode(
        holder_ages.encode(AgesRecord().after_write(0, THIS_WRITE, frozenset({A}), frozenset({A}), T1)), 4
    )
    second_raw = holder_ages.encode(first.after_write(4, THIS_WRITE, frozenset({A, B}), frozenset({B}), T2))
    second = holder_ages.decode(second_raw, own_revision=7)
    assert second.true_ages(7) == {A: T1, B: T2}
    third = holder_ages.decode(
        holder_ages.encode(second.after_write(7, THIS_WRITE, frozenset({B}), frozenset(), T2)), 8
    )
    assert third.true_ages(8) == {B: T2}


def test_the_pending_write_is_never_the_one_trimmed_away() -> None:
    record = AgesRecord()
    for revision in range(1, holder_ages.MAX_WRITES + 10):
        record = record.after_write(revision, revision + 1, frozenset({A}), frozenset(), T1)
    record = record.after_write(500, THIS_WRITE, frozenset({A, B}), frozenset({B}), T2)
    assert len(record.writes) == holder_ages.MAX_WRITES
    assert (500, THIS_WRITE) in record.writes
    assert holder_ages.decode(holder_ages.encode(record), 501).true_ages(501) == {B: T2}


def test_an_age_stays_true_across_many_of_our_writes() -> None:
    record = AgesRecord().after_write(0, 1, frozenset({A}), frozenset({A}), T1)
    for revision in range(1, 6):  # five more writes of ours, each from the revision the last one made
        record = holder_ages.decode(
            holder_ages.encode(record.after_write(revision, revision + 1, frozenset({A}), frozenset(), T2))
        )
    assert record.true_ages(6) == {A: T1}
