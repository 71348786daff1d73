"""The pacing record and its wait rule, including clock skew."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from locksmith.protocol import pacing
from locksmith.protocol.pacing import Pacing


def test_unpaced_never_waits() -> None:
    assert pacing.wait_before_acquire(Pacing(0, 1000), now=1000) == 0
    assert pacing.wait_before_acquire(Pacing(300, 0), now=1000) == 0


def test_waits_the_rest_of_the_gap() -> None:
    assert pacing.wait_before_acquire(Pacing(300, 1000), now=1100) == 200
    assert pacing.wait_before_acquire(Pacing(300, 1000), now=1400) == 0


def test_a_release_stamped_in_the_future_costs_at_most_one_spacing() -> None:
    assert pacing.wait_before_acquire(Pacing(300, 10_000), now=1000) == 300


@given(st.floats(0, 1e6), st.floats(0, 2e9), st.floats(0, 2e9))
def test_wait_is_bounded_by_the_spacing(spacing: float, last: float, now: float) -> None:
    wait = pacing.wait_before_acquire(Pacing(spacing, last), now)
    assert 0 <= wait <= spacing


@given(st.binary(max_size=400))
def test_decode_never_raises(raw: bytes) -> None:
    assert pacing.decode(raw) is None or isinstance(pacing.decode(raw), Pacing)


def test_round_trip_and_hostile_values() -> None:
    assert pacing.decode(Pacing(300.0, 1000.0).encode()) == Pacing(300.0, 1000.0)
    for raw in (b'{"spacing_seconds":-1}', b'{"spacing_seconds":NaN}', b'{"last_release":true}', b"[]"):
        assert pacing.decode(raw) is None
    assert pacing.spacing_key("k/semaphore") == "k/semaphore-spacing"
