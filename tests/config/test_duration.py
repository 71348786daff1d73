"""Go-style durations: the grammar of time.ParseDuration and the output of Duration.String."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from locksmith.settings.duration import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        ("300ms", timedelta(milliseconds=300)),
        ("0", timedelta(0)),
        ("-0", timedelta(0)),
        ("+5s", timedelta(seconds=5)),
        ("-1m", timedelta(minutes=-1)),
        ("1h0m0s", timedelta(hours=1)),
        (".5s", timedelta(milliseconds=500)),
        ("5.s", timedelta(seconds=5)),
        ("2us", timedelta(microseconds=2)),
        ("2\u00b5s", timedelta(microseconds=2)),
        ("2\u03bcs", timedelta(microseconds=2)),
        ("1500ns", timedelta(microseconds=2)),  # rounded half to even to timedelta's resolution
        ("1h1h", timedelta(hours=2)),  # Go sums repeated units
        ("2562047h", timedelta(hours=2562047)),
    ],
)
def test_parses_go_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "invalid duration"),
        ("1", "missing unit"),
        ("1.5", "missing unit"),
        ("h", "invalid duration"),
        (".s", "invalid duration"),
        ("-", "invalid duration"),
        ("8d", "unknown unit 'd'"),
        ("1h 30m", "unknown unit"),
        (" 1h", "invalid duration"),
        ("2562048h", "out of range"),
        ("99999999999999999999999h", "out of range"),
    ],
)
def test_rejects_what_go_rejects(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment) as info:
        parse_duration(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("td", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(hours=1, minutes=30), "1h30m0s"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(hours=1), "1h0m0s"),
        (timedelta(milliseconds=300), "300ms"),
        (timedelta(microseconds=1500), "1.5ms"),
        (timedelta(microseconds=7), "7\u00b5s"),
        (timedelta(seconds=1, milliseconds=500), "1.5s"),
        (timedelta(minutes=-1), "-1m0s"),
        (timedelta(days=2), "48h0m0s"),
    ],
)
def test_formats_like_go(td: timedelta, text: str) -> None:
    assert format_duration(td) == text


_GO_RANGE_US = 2**63 // 1000 - 1


@given(st.integers(min_value=-_GO_RANGE_US, max_value=_GO_RANGE_US))
def test_format_then_parse_round_trips(us: int) -> None:
    td = timedelta(microseconds=us)
    assert parse_duration(format_duration(td)) == td


@given(st.text(alphabet="0123456789.+-hmsunµμ x", max_size=30) | st.text(max_size=30))
def test_fuzz_only_value_errors(text: str) -> None:
    try:
        result = parse_duration(text)
    except ValueError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(result, timedelta)
        assert parse_duration(format_duration(result)) == result
